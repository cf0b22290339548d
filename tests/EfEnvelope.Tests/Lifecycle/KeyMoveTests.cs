using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using EfEnvelope.KeyManagement;
using EfEnvelope.Lifecycle;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Lifecycle;

/// <summary>
/// Which keys a job gives a record it moves (issue 12, items 6 and 8): a record moved to a master key chosen for it
/// gets a fresh data key, and JSON-owned records follow TargetKeyId under the job's own key-encryption keys.
/// </summary>
public abstract class KeyMoveTests<TFixture> : IAsyncLifetime
    where TFixture : DatabaseFixture, new()
{
    private readonly TFixture _fixture = new();
    private readonly InsecureInMemoryMasterKeyProvider _provider = new InsecureInMemoryMasterKeyProvider("primary").AddKey("subject-a");

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

    private void SkipIfUnavailable()
    {
        if (_fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }
    }

    private static string? SubjectA(object entity) => "subject-a";

    private static string? NoSelector(object entity) => null;

    private ClinicContext Create(Action<EnvelopeEncryptionOptionsBuilder>? extra = null) =>
        _fixture.CreateContext(e =>
        {
            e.UseProvider(_provider);
            extra?.Invoke(e);
        });

    private static Patient NewPatient(int i) => new()
    {
        Id = Guid.NewGuid(),
        Name = "mover " + i,
        Ssn = $"SSN-MOVE-{i}-{Guid.NewGuid():N}",
        Diagnosis = "diagnosis " + i,
        DateOfBirth = new DateOnly(1970, 1, 1).AddDays(i),
        HomeAddress = new Address { City = "Springfield", Street = i + " Moving Road" },
        Emergency = new EmergencyContact { Relation = "brother", Phone = "+1-555-01" + i },
    };

    private async Task<List<Patient>> SeedAsync(int count)
    {
        var patients = Enumerable.Range(0, count).Select(NewPatient).ToList();
        await using var db = Create();
        db.Patients.AddRange(patients);
        await db.SaveChangesAsync(Ct);
        return patients;
    }

    private static string KeyIdOf(byte[] blob)
    {
        var position = 18 + 1 + blob[18];
        return Encoding.UTF8.GetString(blob, position + 2, BinaryPrimitives.ReadUInt16BigEndian(blob.AsSpan(position)));
    }

    // The KEK part of a mode 1 blob: provider name, key id, entity and provider-wrapped KEK (docs/FORMAT.md).
    private static string KekOf(byte[] blob) => Convert.ToHexString(blob[18..^60]);

    /// <summary>A column of a patient's row as stored (column names are constants of these tests).</summary>
    private async Task<byte[]?> ReadColumnAsync(string column, Guid id)
    {
        await using var db = Create();
#pragma warning disable EF1002
        return await db.Database.SqlQueryRaw<byte[]?>($"SELECT \"{column}\" AS \"Value\" FROM \"Patients\" WHERE \"Id\" = {{0}}", id).SingleAsync(Ct);
#pragma warning restore EF1002
    }

    /// <summary>The wrapped-key blob of a patient's JSON-owned emergency contact, read from the stored document.</summary>
    private async Task<byte[]> EmergencyKeyAsync(Guid id)
    {
        await using var db = Create();
        var json = await db.Database.SqlQueryRaw<string>("SELECT CAST(\"Emergency\" AS TEXT) AS \"Value\" FROM \"Patients\" WHERE \"Id\" = {0}", id).SingleAsync(Ct);
        using var document = JsonDocument.Parse(json);
        var text = document.RootElement.EnumerateObject().Single(p => p.Name.Contains("EfEnvelopeKey", StringComparison.Ordinal)).Value.GetString()!;

        // EF's JSON writer stores bytes as hex on SQLite and base64 on PostgreSQL.
        return text.All(char.IsAsciiHexDigitUpper) ? Convert.FromHexString(text) : Convert.FromBase64String(text);
    }

    [Theory]
    [InlineData("selector")]
    [InlineData("TargetKeyId")]
    public async Task A_record_moved_to_a_chosen_master_key_gets_a_fresh_data_key_so_an_old_key_column_backup_opens_nothing(string how)
    {
        SkipIfUnavailable();
        var patient = NewPatient(0);

        // No owned records: the row's one key column is the whole of what a backup would give back.
        patient.HomeAddress = null;
        patient.Emergency = null;
        await using (var writer = Create())
        {
            writer.Patients.Add(patient);
            await writer.SaveChangesAsync(Ct);
        }

        var backup = (await ReadColumnAsync("EfEnvelopeKey", patient.Id))!;
        var ssnBefore = await ReadColumnAsync("Ssn", patient.Id);

        // The records are under the primary key the configuration without a selector chose: accepted on read while the
        // job moves them.
        await using (var db = how == "selector" ? Create(e => e.UseMasterKeySelector(SubjectA, o => o.AcceptPreviousSelector(NoSelector))) : Create())
        {
            var options = how == "selector" ? new LifecycleOptions { EntityTypes = { typeof(Patient) } } : new LifecycleOptions { EntityTypes = { typeof(Patient) }, TargetKeyId = "subject-a" };
            var result = await EnvelopeKeyLifecycle.RotateAsync(db, options, cancellationToken: Ct);
            Assert.True(result.Succeeded, string.Join("; ", result.Failures));
        }

        var moved = (await ReadColumnAsync("EfEnvelopeKey", patient.Id))!;
        Assert.Equal("subject-a", KeyIdOf(moved));
        Assert.NotEqual(backup[2..18], moved[2..18]);
        Assert.NotEqual(ssnBefore, await ReadColumnAsync("Ssn", patient.Id));

        // The subject is erased; the old master key lives on for everyone else. The backed-up key column, written
        // back beside the current ciphertext, must not open it (with the kept data key it would read as current).
        _provider.DestroyKey("subject-a");
        await using (var db = Create())
        {
            Assert.Equal(1, await db.Database.ExecuteSqlRawAsync("UPDATE \"Patients\" SET \"EfEnvelopeKey\" = {0} WHERE \"Id\" = {1}", [backup, patient.Id], Ct));
        }

        await using var reader = Create();
        reader.ClearEnvelopeKeyCache();
        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => reader.Patients.AsNoTracking().SingleAsync(p => p.Id == patient.Id, Ct));
        Assert.DoesNotContain(patient.Ssn, error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_target_key_id_with_a_master_key_selector_is_refused_before_any_record_is_written()
    {
        SkipIfUnavailable();
        var patient = (await SeedAsync(1))[0];
        var before = await ReadColumnAsync("EfEnvelopeKey", patient.Id);

        // Records the job put under TargetKeyId would be refused on read: the job must not start.
        await using (var db = Create(e => e.UseMasterKeySelector(NoSelector)))
        {
            var error = await Assert.ThrowsAsync<InvalidOperationException>(() => EnvelopeKeyLifecycle.RotateAsync(db, new LifecycleOptions { TargetKeyId = "subject-a" }, cancellationToken: Ct));
            Assert.Contains("TargetKeyId ('subject-a')", error.Message, StringComparison.Ordinal);
            Assert.Contains("AcceptPreviousSelector", error.Message, StringComparison.Ordinal);
            await Assert.ThrowsAsync<InvalidOperationException>(() => EnvelopeKeyLifecycle.ReencryptAsync(db, new LifecycleOptions { TargetKeyId = "subject-a" }, cancellationToken: Ct));

            // A partitioned job is refused before it claims a partition, so the corrected run of another worker finds all
            // of them free (a claimed one would stay leased to w1).
            var partitioned = new PartitionedJobOptions("selector-move") { WorkerId = "w1", Partitions = 1, WaitForOtherWorkers = false };
            partitioned.Job.TargetKeyId = "subject-a";
            await Assert.ThrowsAsync<InvalidOperationException>(() => EnvelopeKeyLifecycle.RunPartitionedAsync(db, LifecycleOperation.Reencrypt, partitioned, cancellationToken: Ct));
            Assert.Equal(before, await ReadColumnAsync("EfEnvelopeKey", patient.Id));

            var corrected = new PartitionedJobOptions("selector-move") { WorkerId = "w2", Partitions = 1, WaitForOtherWorkers = false };
            var result = await EnvelopeKeyLifecycle.RunPartitionedAsync(db, LifecycleOperation.Reencrypt, corrected, cancellationToken: Ct);
            Assert.True(result.Succeeded, string.Join("; ", result.Failures));
            Assert.NotEqual(0, result.RecordsChanged);
            Assert.NotEqual(before, await ReadColumnAsync("EfEnvelopeKey", patient.Id));
            var owners = await db.Database.SqlQueryRaw<string>("SELECT \"Owner\" AS \"Value\" FROM \"EfEnvelopeJobPartitions\" WHERE \"Job\" = 'selector-move'").ToListAsync(Ct);
            Assert.NotEmpty(owners);
            Assert.DoesNotContain("w1", owners);
        }

        await using var reader = Create(e => e.UseMasterKeySelector(NoSelector));
        Assert.Equal(patient.Ssn, (await reader.Patients.AsNoTracking().SingleAsync(p => p.Id == patient.Id, Ct)).Ssn);
    }

    [Fact]
    public async Task A_move_to_the_primary_key_is_plain_rotation_and_keeps_the_data_key()
    {
        SkipIfUnavailable();
        var patient = (await SeedAsync(1))[0];
        var before = (await ReadColumnAsync("EfEnvelopeKey", patient.Id))!;
        var ssnBefore = await ReadColumnAsync("Ssn", patient.Id);

        _provider.SetPrimaryKey("subject-a");
        await using (var db = Create())
        {
            var result = await EnvelopeKeyLifecycle.RotateAsync(db, new LifecycleOptions { EntityTypes = { typeof(Patient) }, TargetKeyId = "subject-a" }, cancellationToken: Ct);
            Assert.True(result.Succeeded, string.Join("; ", result.Failures));
        }

        var after = (await ReadColumnAsync("EfEnvelopeKey", patient.Id))!;
        Assert.Equal("subject-a", KeyIdOf(after));
        Assert.Equal(before[2..18], after[2..18]);
        Assert.Equal(ssnBefore, await ReadColumnAsync("Ssn", patient.Id));
    }

    [Fact]
    public async Task Json_owned_records_follow_target_key_id_under_the_jobs_own_keys()
    {
        SkipIfUnavailable();
        var patients = await SeedAsync(3);
        await using (var db = Create())
        {
            var result = await EnvelopeKeyLifecycle.RotateAsync(db, new LifecycleOptions { EntityTypes = { typeof(Patient) }, TargetKeyId = "subject-a" }, cancellationToken: Ct);
            Assert.True(result.Succeeded, string.Join("; ", result.Failures));
        }

        foreach (var patient in patients)
        {
            Assert.Equal("subject-a", KeyIdOf(await EmergencyKeyAsync(patient.Id)));
        }

        await using (var db = Create())
        {
            db.ClearEnvelopeKeyCache();
            var read = await db.Patients.AsNoTracking().OrderBy(p => p.Name).ToListAsync(Ct);
            Assert.Equal(patients.OrderBy(p => p.Name).Select(p => p.Emergency!.Phone), read.Select(p => p.Emergency!.Phone));
            var again = await EnvelopeKeyLifecycle.RotateAsync(db, new LifecycleOptions { EntityTypes = { typeof(Patient) }, TargetKeyId = "subject-a" }, cancellationToken: Ct);
            Assert.Equal(0, again.RecordsChanged);
        }
    }

    [Fact]
    public async Task Reencryption_never_wraps_json_owned_records_under_the_shared_write_key()
    {
        SkipIfUnavailable();
        var patients = await SeedAsync(3);

        // A record saved now gets the shared cache's current write key of its entity type.
        var fresh = (await SeedAsync(1))[0];
        var sharedKek = KekOf(await EmergencyKeyAsync(fresh.Id));

        await using (var db = Create())
        {
            var result = await EnvelopeKeyLifecycle.ReencryptAsync(db, new LifecycleOptions { EntityTypes = { typeof(Patient) } }, cancellationToken: Ct);
            Assert.True(result.Succeeded, string.Join("; ", result.Failures));
        }

        foreach (var patient in patients.Append(fresh))
        {
            var key = await EmergencyKeyAsync(patient.Id);
            Assert.Equal("primary", KeyIdOf(key));
            Assert.NotEqual(sharedKek, KekOf(key));
        }

        await using var reader = Create();
        reader.ClearEnvelopeKeyCache();
        var read = await reader.Patients.AsNoTracking().ToListAsync(Ct);
        Assert.Equal(patients.Append(fresh).Select(p => p.Emergency!.Phone).Order(), read.Select(p => p.Emergency!.Phone).Order());
    }
}

public sealed class KeyMoveSqliteTests : KeyMoveTests<SqliteFixture>;

public sealed class KeyMovePostgresTests : KeyMoveTests<PostgresFixture>;
