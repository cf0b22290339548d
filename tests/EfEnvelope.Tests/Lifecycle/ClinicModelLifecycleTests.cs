using EfEnvelope.KeyManagement;
using EfEnvelope.Lifecycle;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Lifecycle;

/// <summary>The jobs over the behaviour suite's model: every supported type, fluent configuration, a table-split owned type, a JSON owned type, int and Guid keys.</summary>
public abstract class ClinicModelLifecycleTests<TFixture> : IAsyncLifetime
    where TFixture : DatabaseFixture, new()
{
    private readonly TFixture _fixture = new();
    private readonly InsecureInMemoryMasterKeyProvider _provider = new("old-key");

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        if (_fixture.SkipReason is null)
        {
            await _fixture.InitializeAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_fixture.SkipReason is null)
        {
            await _fixture.DisposeAsync();
        }

        GC.SuppressFinalize(this);
    }

    private ClinicContext Create() => _fixture.CreateContext(e => e.UseProvider(_provider));

    private static AllTypes Full(int i) => new()
    {
        Text = "Grüße " + i,
        Bytes = [0, 1, (byte)i, 255],
        Flag = i % 2 == 0,
        Small = (byte)i,
        Short = (short)-i,
        Int = int.MinValue + i,
        Long = long.MaxValue - i,
        Float = 3.25f * i,
        Double = -1e300 / (i + 1),
        Decimal = 1234567890.0123456789m + i,
        Guid = new Guid(i, 1, 2, new byte[8]),
        DateTime = new DateTime(2024, 2, 29, 13, 14, 15, DateTimeKind.Utc).AddTicks(i),
        DateTimeOffset = new DateTimeOffset(2024, 2, 29, 13, 14, 15, TimeSpan.FromHours(-5)).AddDays(i),
        DateOnly = new DateOnly(1, 1, 1).AddDays(i),
        TimeOnly = new TimeOnly(23, 59, 59, 999).Add(TimeSpan.FromMinutes(-i)),
        TimeSpan = TimeSpan.FromDays(-3.5 * i),
        Enum = (BloodType)(99 + i),
        NullableInt = i % 3 == 0 ? null : i,
        NullableGuid = i % 3 == 1 ? null : Guid.Empty,
        NullableEnum = BloodType.ONegative,
        NullableDateTime = i % 3 == 2 ? null : DateTime.MaxValue,
    };

    private static Patient NewPatient(int i) => new()
    {
        Id = new Guid(i + 1, 7, 7, new byte[8]),
        Name = "patient " + i,
        Ssn = $"123-45-{i:D4}",
        Diagnosis = i % 2 == 0 ? null : "J45",
        DateOfBirth = new DateOnly(1980, 2, 29).AddDays(i),
        HomeAddress = new Address { City = "Springfield", Street = i + " Evergreen Terrace" },
        Emergency = i % 3 == 0 ? null : new EmergencyContact { Relation = "sister", Phone = "+1-555-" + i },
        Visits = [new Visit { At = new DateTime(2024, 1, 1, 0, 0, 0, DateTimeKind.Utc), Notes = "visit " + i }],
    };

    [Fact]
    public async Task Rotation_then_reencryption_keep_every_value_of_every_type_and_owned_kind()
    {
        if (_fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        const int count = 12;
        await using (var db = Create())
        {
            db.AllTypes.AddRange(Enumerable.Range(0, count).Select(Full));
            db.Patients.AddRange(Enumerable.Range(0, count).Select(NewPatient));
            db.Invoices.AddRange(Enumerable.Range(0, count).Select(i => new Invoice { CardNumber = "4111-" + i, Amount = i }));
            await db.SaveChangesAsync(Ct);
        }

        _provider.AddKey("new-key");
        _provider.SetPrimaryKey("new-key");
        await using (var db = Create())
        {
            var rotated = await EnvelopeKeyLifecycle.RotateAsync(db, new LifecycleOptions { BatchSize = 5, VerifyAfterwards = true }, cancellationToken: Ct);
            Assert.True(rotated.Succeeded, string.Join("; ", rotated.Failures));

            // All types, patients, home addresses, emergency contacts (two in three), visits, invoices.
            Assert.Equal(count * 5 + count * 2 / 3, rotated.RecordsChanged);
        }

        _provider.DisableKey("old-key");
        await using (var db = Create())
        {
            db.ClearEnvelopeKeyCache();
            var reencrypted = await EnvelopeKeyLifecycle.ReencryptAsync(db, new LifecycleOptions { BatchSize = 5, VerifyAfterwards = true }, cancellationToken: Ct);
            Assert.True(reencrypted.Succeeded, string.Join("; ", reencrypted.Failures));
            Assert.Equal(count * 5 + count * 2 / 3, reencrypted.RecordsChanged);
        }

        await using (var db = Create())
        {
            db.ClearEnvelopeKeyCache();
            var all = await db.AllTypes.AsNoTracking().OrderBy(a => a.Id).ToListAsync(Ct);
            Assert.Equal(count, all.Count);
            for (var i = 0; i < count; i++)
            {
                var expected = Full(i);
                expected.Id = all[i].Id;
                Assert.Equivalent(expected, all[i], strict: true);
                Assert.Equal(Full(i).Bytes, all[i].Bytes);
                Assert.Equal(Full(i).Decimal, all[i].Decimal);
                Assert.Equal(Full(i).DateTimeOffset, all[i].DateTimeOffset);
                Assert.Equal(Full(i).NullableDateTime, all[i].NullableDateTime);
            }

            var patients = await db.Patients.AsNoTracking().Include(p => p.Visits).OrderBy(p => p.Name).ToListAsync(Ct);
            foreach (var patient in patients)
            {
                var expected = NewPatient(int.Parse(patient.Name[8..], System.Globalization.CultureInfo.InvariantCulture));
                Assert.Equal(expected.Ssn, patient.Ssn);
                Assert.Equal(expected.Diagnosis, patient.Diagnosis);
                Assert.Equal(expected.DateOfBirth, patient.DateOfBirth);
                Assert.Equal(expected.HomeAddress!.Street, patient.HomeAddress!.Street);
                Assert.Equal(expected.Emergency?.Phone, patient.Emergency?.Phone);
                Assert.Equal(expected.Visits[0].Notes, Assert.Single(patient.Visits).Notes);
            }

            Assert.Equal(Enumerable.Range(0, count).Select(i => "4111-" + i).Order(), (await db.Invoices.AsNoTracking().ToListAsync(Ct)).Select(i => i.CardNumber).Order());
        }
    }

    // A job runs without automatic change detection and saves JSON-mapped records through SaveChanges with the
    // context's own setting: both settings must write them, under the target key, and leave the setting as it was.
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task JSON_mapped_records_are_reencrypted_under_the_target_key_whatever_the_contexts_change_detection(bool detectChanges)
    {
        if (_fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        const int count = 6;
        await using (var db = Create())
        {
            db.Patients.AddRange(Enumerable.Range(0, count).Select(NewPatient));
            await db.SaveChangesAsync(Ct);
        }

        _provider.AddKey("new-key");
        await using (var db = Create())
        {
            db.ChangeTracker.AutoDetectChangesEnabled = detectChanges;
            var result = await EnvelopeKeyLifecycle.ReencryptAsync(db, new LifecycleOptions { BatchSize = 4, TargetKeyId = "new-key", VerifyAfterwards = true }, cancellationToken: Ct);
            Assert.True(result.Succeeded, string.Join("; ", result.Failures));

            // Patients, home addresses, emergency contacts (JSON-mapped, two in three), visits.
            Assert.Equal(count * 3 + count * 2 / 3, result.RecordsChanged);
            Assert.Equal(detectChanges, db.ChangeTracker.AutoDetectChangesEnabled);
        }

        _provider.DisableKey("old-key");
        await using (var db = Create())
        {
            db.ClearEnvelopeKeyCache();
            var patients = await db.Patients.AsNoTracking().ToListAsync(Ct);
            Assert.Equal(count, patients.Count);
            foreach (var patient in patients)
            {
                Assert.Equal(NewPatient(int.Parse(patient.Name[8..], System.Globalization.CultureInfo.InvariantCulture)).Emergency?.Phone, patient.Emergency?.Phone);
            }
        }
    }
}

public sealed class ClinicModelLifecycleSqliteTests : ClinicModelLifecycleTests<SqliteFixture>;

public sealed class ClinicModelLifecyclePostgresTests : ClinicModelLifecycleTests<PostgresFixture>;
