using Amazon.KeyManagementService;
using Amazon.KeyManagementService.Model;
using EfEnvelope.AwsKms.Tests.LocalKms;
using EfEnvelope.Lifecycle;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace EfEnvelope.AwsKms.Tests.EntityFramework;

/// <summary>Rotation between two KMS keys on the local endpoint, counted by the endpoint itself.</summary>
public sealed class AwsKmsLifecycleTests : IAsyncLifetime
{
    private const int Patients = 300;

    private LocalKmsFixture _kms = null!;
    private SqliteConnection _connection = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private LocalKmsServer Server => _kms.Server;

    public async ValueTask InitializeAsync()
    {
        _kms = await LocalKmsFixture.StartAsync();
        _connection = new SqliteConnection("Data Source=:memory:");
        await _connection.OpenAsync(Ct);
    }

    public async ValueTask DisposeAsync()
    {
        await _connection.DisposeAsync();
        await _kms.DisposeAsync();
    }

    [Fact]
    public async Task Rotation_to_a_new_KMS_key_costs_KMS_calls_per_key_not_per_row_and_the_old_key_can_then_be_disabled()
    {
        var old = await LocalKmsFixture.CreateKeyAsync(_kms.Client, "old");
        await using (var db = new ClinicContext(Options(_kms.Client, old)))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Patients.AddRange(Enumerable.Range(0, Patients).Select(NewPatient));
            await db.SaveChangesAsync(Ct);
        }

        // A new process configured with the new primary key and the old one for reading (a fresh client: a cold cache).
        using var rotatingClient = Server.CreateClient();
        Server.ResetCounters();
        await using (var db = new ClinicContext(Options(rotatingClient, LocalKmsFixture.PrimaryAlias, old)))
        {
            var result = await EnvelopeKeyLifecycle.RotateAsync(db, new LifecycleOptions { BatchSize = 64 }, cancellationToken: Ct);
            Assert.True(result.Succeeded, string.Join("; ", result.Failures));

            // Patients, home addresses (a column each), emergency contacts (JSON), visits: 4 records per patient.
            Assert.Equal(4 * Patients, result.RecordsChanged);
        }

        // One Decrypt per stored KEK (one per entity type: they were all written in one SaveChanges), one
        // GenerateDataKey per entity type under the new key; 1,200 records, 8 KMS calls.
        Assert.Equal(4, Server.CallCount("Decrypt"));
        Assert.All(Server.Requests("Decrypt"), r => Assert.Equal(old, r.KeyId));
        Assert.Equal(4, Server.CallCount("GenerateDataKey"));
        Assert.All(Server.Requests("GenerateDataKey"), r => Assert.Equal(LocalKmsFixture.PrimaryAlias, r.KeyId));

        await _kms.Client.DisableKeyAsync(new DisableKeyRequest { KeyId = old }, Ct);

        // The old key is disabled and no longer configured: everything reads under the new key alone.
        using var readingClient = Server.CreateClient();
        Server.ResetCounters();
        await using (var db = new ClinicContext(Options(readingClient, LocalKmsFixture.PrimaryAlias)))
        {
            var patients = await db.Patients.AsNoTracking().Include(p => p.Visits).OrderBy(p => p.Name).ToListAsync(Ct);
            Assert.Equal(Patients, patients.Count);
            for (var i = 0; i < Patients; i++)
            {
                var expected = NewPatient(i);
                Assert.Equal(expected.Ssn, patients[i].Ssn);
                Assert.Equal(expected.HomeAddress!.Street, patients[i].HomeAddress!.Street);
                Assert.Equal(expected.Emergency!.Phone, patients[i].Emergency!.Phone);
                Assert.Equal(expected.Visits[0].Notes, Assert.Single(patients[i].Visits).Notes);
            }

            var verification = await EnvelopeKeyLifecycle.VerifyAsync(db, cancellationToken: Ct);
            Assert.True(verification.Succeeded, string.Join("; ", verification.Failures));
            Assert.Equal(0, Server.CallCount("GenerateDataKey"));
            Assert.All(Server.Requests("Decrypt"), r => Assert.Equal(_kms.PrimaryKeyArn, r.KeyId));
        }
    }

    private DbContextOptions Options(IAmazonKeyManagementService client, string keyId, params string[] additionalKeyIds) =>
        new DbContextOptionsBuilder()
            .UseSqlite(_connection)
            .ConfigureWarnings(w => w.Ignore(CoreEventId.ManyServiceProvidersCreatedWarning))
            .UseEnvelopeEncryption(e => e.UseAwsKms(client, keyId, additionalKeyIds).UseApplicationName("clinic"))
            .Options;

    private static Patient NewPatient(int i) => new()
    {
        Id = new Guid(i, 0, 0, new byte[8]),
        Name = $"P{i:D5}",
        Ssn = $"900-{i:D5}",
        Diagnosis = i % 3 == 0 ? null : "J45",
        DateOfBirth = new DateOnly(1950, 1, 1).AddDays(i),
        HomeAddress = new Address { City = "Springfield", Street = $"{i} Evergreen Terrace" },
        Emergency = new EmergencyContact { Relation = "sister", Phone = $"+1-555-{i:D4}" },
        Visits = [new Visit { At = new DateTime(2024, 1, 1, 0, 0, 0, DateTimeKind.Utc).AddDays(i), Notes = $"visit of {i}" }],
    };
}
