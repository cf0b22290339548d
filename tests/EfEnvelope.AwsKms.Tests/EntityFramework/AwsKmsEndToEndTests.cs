using Amazon.KeyManagementService;
using Amazon.KeyManagementService.Model;
using Amazon.Runtime;
using EfEnvelope.AwsKms.Tests.LocalKms;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.Time.Testing;

namespace EfEnvelope.AwsKms.Tests.EntityFramework;

/// <summary>EF Core on SQLite with the AWS KMS provider: call counts from the endpoint's own counters, faults, rotation.</summary>
public sealed class AwsKmsEndToEndTests : IAsyncLifetime
{
    private const int BulkRows = 10_000;

    private LocalKmsFixture _kms = null!;
    private SqliteConnection _connection = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private LocalKmsServer Server => _kms.Server;

    public async ValueTask InitializeAsync()
    {
        _kms = await LocalKmsFixture.StartAsync();
        _connection = new SqliteConnection("Data Source=:memory:");
        await _connection.OpenAsync(Ct);
        await using var db = new ClinicContext(Options(_kms.Client));
        await db.Database.EnsureCreatedAsync(Ct);
        Server.ResetCounters();
    }

    public async ValueTask DisposeAsync()
    {
        await _connection.DisposeAsync();
        await _kms.DisposeAsync();
    }

    [Fact]
    public async Task Ten_thousand_rows_in_one_SaveChanges_make_at_most_one_GenerateDataKey()
    {
        Server.RecordRequests = false;

        await InsertPatientsAsync(Options(_kms.Client), BulkRows);

        Assert.Equal(BulkRows, await CountRowsAsync());
        Assert.InRange(Server.CallCount("GenerateDataKey"), 1, 1);
        Assert.Equal(0, Server.CallCount("Decrypt"));
    }

    [Fact]
    public async Task Reading_ten_thousand_rows_with_a_cold_cache_makes_at_most_one_Decrypt()
    {
        Server.RecordRequests = false;
        await InsertPatientsAsync(Options(_kms.Client), BulkRows);

        // Another client instance makes another provider configuration: a new key cache, as in a fresh process.
        using var freshClient = Server.CreateClient();
        Server.ResetCounters();
        await using var db = new ClinicContext(Options(freshClient));
        var patients = await db.Patients.AsNoTracking().OrderBy(p => p.Name).ToListAsync(Ct);

        Assert.Equal(BulkRows, patients.Count);
        Assert.All(patients, p => Assert.Equal(SsnOf(p.Name), p.Ssn));
        Assert.InRange(Server.CallCount("Decrypt"), 1, 1);
        Assert.Equal(0, Server.CallCount("GenerateDataKey"));
    }

    [Fact]
    public async Task Direct_mode_makes_one_KMS_call_per_record_each_way()
    {
        const int rows = 200;
        await InsertPatientsAsync(Options(_kms.Client, e => e.UseKeyWrappingMode(KeyWrappingMode.Direct)), rows);
        var generated = Server.CallCount("GenerateDataKey");

        using var freshClient = Server.CreateClient();
        await using var db = new ClinicContext(Options(freshClient, e => e.UseKeyWrappingMode(KeyWrappingMode.Direct)));
        var patients = await db.Patients.AsNoTracking().ToListAsync(Ct);

        Assert.All(patients, p => Assert.Equal(SsnOf(p.Name), p.Ssn));
        Assert.Equal(rows, generated);
        Assert.Equal(rows, Server.CallCount("Decrypt"));
        var contexts = Server.Requests("GenerateDataKey").Select(r => r.EncryptionContext[EfEnvelope.KeyManagement.KeyContext.RecordKey]).ToHashSet();
        Assert.Equal(rows, contexts.Count);
    }

    [Fact]
    public async Task Separately_built_options_with_equal_settings_share_one_key_cache()
    {
        var credentials = new BasicAWSCredentials("test", "test");
        void Configure(AwsKmsOptions o)
        {
            o.KeyId = LocalKmsFixture.PrimaryAlias;
            o.ServiceUrl = Server.Url.ToString();
            o.AuthenticationRegion = LocalKmsServer.Region;
            o.Credentials = credentials;
        }

        DbContextOptions Build() => Plain().UseEnvelopeEncryption(e => e.UseAwsKms(Configure)).Options;

        await InsertPatientsAsync(Build(), 10);
        await using var db = new ClinicContext(Build());
        var patients = await db.Patients.AsNoTracking().ToListAsync(Ct);

        Assert.Equal(10, patients.Count);
        Assert.Equal(1, Server.CallCount("GenerateDataKey"));
        Assert.Equal(0, Server.CallCount("Decrypt"));
    }

    [Fact]
    public async Task Nothing_is_written_when_KMS_refuses_during_SaveChanges()
    {
        Server.DenyAccess = true;

        await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => InsertPatientsAsync(Options(_kms.Client), 5));

        Assert.Equal(0, await CountRowsAsync());
    }

    [Fact]
    public async Task Nothing_is_written_when_KMS_keeps_failing_during_SaveChanges()
    {
        using var client = Server.CreateClient(maxErrorRetry: 1);
        Server.FailNextWithServerError(10);

        var error = await Assert.ThrowsAsync<MasterKeyException>(() => InsertPatientsAsync(Options(client), 5));

        Assert.IsNotType<MasterKeyAccessRevokedException>(error);
        Assert.Equal(0, await CountRowsAsync());
    }

    [Fact]
    public async Task Disabled_key_takes_effect_for_reads_once_the_cached_keys_expire()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var options = Options(_kms.Client, e => e.UseTimeProvider(clock).ConfigureKeyCache(c => c.TimeToLive = TimeSpan.FromMinutes(5)));
        await InsertPatientsAsync(options, 3);
        await _kms.Client.DisableKeyAsync(new DisableKeyRequest { KeyId = _kms.PrimaryKeyArn }, Ct);

        await using (var cached = new ClinicContext(options))
        {
            Assert.Equal(3, (await cached.Patients.AsNoTracking().ToListAsync(Ct)).Count);
        }

        Assert.Equal(0, Server.CallCount("Decrypt"));
        clock.Advance(TimeSpan.FromMinutes(6));
        await using var expired = new ClinicContext(options);
        var error = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => expired.Patients.AsNoTracking().ToListAsync(Ct));

        Assert.Equal(_kms.PrimaryKeyArn, error.KeyId);
        Assert.NotEqual(0, Server.CallCount("Decrypt"));

        await _kms.Client.EnableKeyAsync(new EnableKeyRequest { KeyId = _kms.PrimaryKeyArn }, Ct);
        await using var restored = new ClinicContext(options);
        Assert.Equal(3, (await restored.Patients.AsNoTracking().ToListAsync(Ct)).Count);
    }

    [Fact]
    public async Task Disabled_key_takes_effect_for_writes_once_the_cached_key_expires_and_nothing_is_written()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var options = Options(_kms.Client, e => e.UseTimeProvider(clock).ConfigureKeyCache(c => c.TimeToLive = TimeSpan.FromMinutes(5)));
        await InsertPatientsAsync(options, 3);
        await _kms.Client.DisableKeyAsync(new DisableKeyRequest { KeyId = _kms.PrimaryKeyArn }, Ct);

        await InsertPatientsAsync(options, 2);
        clock.Advance(TimeSpan.FromMinutes(6));
        await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => InsertPatientsAsync(options, 4));

        Assert.Equal(5, await CountRowsAsync());
        Assert.Equal(2, Server.CallCount("GenerateDataKey"));
    }

    [Fact]
    public async Task Synchronous_SaveChanges_and_queries_work_over_the_async_only_SDK()
    {
        using (var db = new ClinicContext(Options(_kms.Client)))
        {
            db.Patients.Add(NewPatient(1));
            db.SaveChanges();
        }

        using var freshClient = Server.CreateClient();
        using var reader = new ClinicContext(Options(freshClient));
        var patient = reader.Patients.Single();

        Assert.Equal(SsnOf(patient.Name), patient.Ssn);
        Assert.Equal(1, Server.CallCount("Decrypt"));
    }

    [Fact]
    public async Task Rows_under_an_old_key_stay_readable_after_rotation_only_while_it_is_configured()
    {
        var old = await LocalKmsFixture.CreateKeyAsync(_kms.Client, "old");
        await InsertPatientsAsync(Options(_kms.Client, keyId: old), 4);

        using var rotatedClient = Server.CreateClient();
        await using (var rotated = new ClinicContext(Options(rotatedClient, additionalKeyIds: [old])))
        {
            rotated.Patients.Add(NewPatient(100));
            await rotated.SaveChangesAsync(Ct);
            Assert.Equal(5, (await rotated.Patients.AsNoTracking().ToListAsync(Ct)).Count);
        }

        Assert.Equal([old, LocalKmsFixture.PrimaryAlias], Server.Requests("GenerateDataKey").Select(r => r.KeyId));
        Assert.Equal([old], Server.Requests("Decrypt").Select(r => r.KeyId));

        using var forgetfulClient = Server.CreateClient();
        Server.ResetCounters();
        await using var forgetful = new ClinicContext(Options(forgetfulClient));
        var error = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => forgetful.Patients.AsNoTracking().ToListAsync(Ct));

        Assert.Equal(old, error.KeyId);
        Assert.Equal(0, Server.CallCount("Decrypt"));
    }

    [Fact]
    public async Task A_moved_or_forged_key_column_never_reaches_KMS_for_another_entity_and_costs_one_Decrypt_per_period()
    {
        var patient = NewPatient(1);
        await using (var db = new ClinicContext(Options(_kms.Client)))
        {
            db.Patients.AddRange(patient, NewPatient(2));
            db.Visits.Add(new Visit { PatientId = patient.Id, At = DateTime.UtcNow, Notes = "moved" });
            await db.SaveChangesAsync(Ct);
        }

        async Task SetKeyAsync(byte[] value)
        {
            await using var command = _connection.CreateCommand();
            command.CommandText = "UPDATE Patients SET EfEnvelopeKey = $key WHERE Name = 'P00001'";
            command.Parameters.AddWithValue("$key", value);
            Assert.Equal(1, await command.ExecuteNonQueryAsync(Ct));
        }

        async Task<byte[]> ReadKeyAsync(string table, string where)
        {
            await using var command = _connection.CreateCommand();
            command.CommandText = $"SELECT EfEnvelopeKey FROM {table} WHERE {where}";
            return (byte[])(await command.ExecuteScalarAsync(Ct))!;
        }

        var original = await ReadKeyAsync("Patients", "Name = 'P00001'");

        // Another client: another configuration and key cache, as in a fresh process.
        using var freshClient = Server.CreateClient();
        await using var reader = new ClinicContext(Options(freshClient));
        async Task ReadFailsAsync(bool synchronous) =>
            await Assert.ThrowsAnyAsync<Exception>(async () =>
            {
                if (synchronous)
                {
                    _ = reader.Patients.AsNoTracking().Single(p => p.Id == patient.Id);
                }
                else
                {
                    _ = await reader.Patients.AsNoTracking().SingleAsync(p => p.Id == patient.Id, Ct);
                }
            });

        // A Visit's authentic key blob in the Patient row: KMS would decrypt it for entity Visit, and log that.
        await SetKeyAsync(await ReadKeyAsync("Visits", "1 = 1"));
        Server.ResetCounters();
        await ReadFailsAsync(synchronous: false);
        await ReadFailsAsync(synchronous: true);
        Assert.Equal(0, Server.CallCount("Decrypt"));

        // The Patient's own blob with its KMS ciphertext damaged: KMS refuses it once, and the refusal is remembered.
        var damaged = original.ToArray();
        damaged[^70] ^= 0x01;
        await SetKeyAsync(damaged);
        for (var read = 0; read < 4; read++)
        {
            await ReadFailsAsync(synchronous: read == 3);
        }

        Assert.Equal(1, Server.CallCount("Decrypt"));
        Assert.All(Server.Requests("Decrypt"), r => Assert.Equal(typeof(Patient).FullName, r.EncryptionContext[EfEnvelope.KeyManagement.KeyContext.EntityKey]));
        Assert.Equal(0, reader.GetEnvelopeKeyCacheStatistics().SynchronousMisses);
    }

    private DbContextOptions Options(
        IAmazonKeyManagementService client,
        Action<EnvelopeEncryptionOptionsBuilder>? configure = null,
        string keyId = LocalKmsFixture.PrimaryAlias,
        string[]? additionalKeyIds = null) =>
        Plain()
            .UseEnvelopeEncryption(e =>
            {
                e.UseAwsKms(client, keyId, additionalKeyIds ?? []).UseApplicationName("clinic");
                configure?.Invoke(e);
            })
            .Options;

    // Every test builds configurations of its own (its own endpoint and clients), each one EF service provider; EF
    // counts them process-wide and refuses past twenty, which is about the test run, not the library.
    private DbContextOptionsBuilder Plain() =>
        new DbContextOptionsBuilder()
            .UseSqlite(_connection)
            .ConfigureWarnings(w => w.Ignore(CoreEventId.ManyServiceProvidersCreatedWarning));

    private static string SsnOf(string name) => $"900-{name[1..]}";

    private static Patient NewPatient(int i) => new()
    {
        Id = Guid.NewGuid(),
        Name = $"P{i:D5}",
        Ssn = SsnOf($"P{i:D5}"),
        Diagnosis = i % 3 == 0 ? null : "J45",
        DateOfBirth = new DateOnly(1950, 1, 1).AddDays(i),
    };

    private static async Task InsertPatientsAsync(DbContextOptions options, int count)
    {
        await using var db = new ClinicContext(options);
        db.Patients.AddRange(Enumerable.Range(1, count).Select(NewPatient));
        await db.SaveChangesAsync(Ct);
    }

    private async Task<long> CountRowsAsync()
    {
        await using var command = _connection.CreateCommand();
        command.CommandText = "SELECT COUNT(*) FROM Patients";
        return (long)(await command.ExecuteScalarAsync(Ct))!;
    }
}
