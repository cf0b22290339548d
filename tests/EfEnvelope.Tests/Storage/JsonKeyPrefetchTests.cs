using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging.Abstractions;

namespace EfEnvelope.Tests.Storage;

public sealed class JsonKeyPrefetchSqliteTests(SqliteFixture fixture) : JsonKeyPrefetchTests<SqliteFixture>(fixture);

public sealed class JsonKeyPrefetchPostgresTests(PostgresFixture fixture) : JsonKeyPrefetchTests<PostgresFixture>(fixture);

/// <summary>
/// An async query never blocks a thread on the provider, also for the keys of JSON-mapped owned records, which are
/// inside the owner's JSON column (hexadecimal on SQLite, base64 on PostgreSQL). Direct mode makes every record's key
/// a provider call, so a cold read shows each one.
/// </summary>
public abstract class JsonKeyPrefetchTests<TFixture>(TFixture fixture) : IClassFixture<TFixture>
    where TFixture : DatabaseFixture
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_cold_async_read_fetches_the_keys_of_JSON_mapped_records_before_materializing_them()
    {
        if (fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        var provider = new InsecureInMemoryMasterKeyProvider("direct");
        var patient = new Patient
        {
            Id = Guid.NewGuid(),
            Name = "Jo",
            Ssn = "555-01-0001",
            DateOfBirth = new DateOnly(1990, 1, 1),
            Emergency = new EmergencyContact { Relation = "sister", Phone = "+1 555 0100" },
        };
        await using (var db = fixture.CreateContext(e => e.UseProvider(provider).UseKeyWrappingMode(KeyWrappingMode.Direct)))
        {
            db.Patients.Add(patient);
            await db.SaveChangesAsync(Ct);
        }

        // Each context a configuration of its own (another logger factory), so each starts with an empty key cache.
        await using (var entity = fixture.CreateContext(e => e.UseProvider(provider).UseKeyWrappingMode(KeyWrappingMode.Direct).UseLoggerFactory(new NullLoggerFactory())))
        {
            var read = await entity.Patients.AsNoTracking().SingleAsync(p => p.Id == patient.Id, Ct);
            Assert.Equal("+1 555 0100", read.Emergency!.Phone);
            Assert.Equal(2, entity.GetEnvelopeKeyCacheStatistics().Misses);
            Assert.Equal(0, entity.GetEnvelopeKeyCacheStatistics().SynchronousMisses);
        }

        await using (var projection = fixture.CreateContext(e => e.UseProvider(provider).UseKeyWrappingMode(KeyWrappingMode.Direct).UseLoggerFactory(new NullLoggerFactory())))
        {
            var emergency = await projection.Patients.AsNoTracking().Where(p => p.Id == patient.Id).Select(p => p.Emergency).SingleAsync(Ct);
            Assert.Equal("+1 555 0100", emergency!.Phone);
            Assert.Equal(0, projection.GetEnvelopeKeyCacheStatistics().SynchronousMisses);
        }

        // The synchronous query makes the same provider calls on the calling thread (the prefetch is for async reads).
        await using var synchronous = fixture.CreateContext(e => e.UseProvider(provider).UseKeyWrappingMode(KeyWrappingMode.Direct).UseLoggerFactory(new NullLoggerFactory()));
        Assert.Equal("+1 555 0100", synchronous.Patients.AsNoTracking().Single(p => p.Id == patient.Id).Emergency!.Phone);
        Assert.Equal(2, synchronous.GetEnvelopeKeyCacheStatistics().SynchronousMisses);
    }

    [Fact]
    public async Task A_key_shaped_value_where_EF_reads_no_record_is_not_fetched_and_cannot_fail_the_query()
    {
        if (fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        var provider = new InsecureInMemoryMasterKeyProvider("old").AddKey("new");
        Action<EnvelopeEncryptionOptionsBuilder> direct = e => e.UseProvider(provider).UseKeyWrappingMode(KeyWrappingMode.Direct).UseLoggerFactory(new NullLoggerFactory());
        var a = NewPatient("+1 555 0001");
        var b = NewPatient("+1 555 0002");
        await using (var db = fixture.CreateContext(direct))
        {
            db.Patients.Add(a);
            await db.SaveChangesAsync(Ct);
            provider.SetPrimaryKey("new");
            db.Patients.Add(b);
            await db.SaveChangesAsync(Ct);

            // A's emergency contact key, as the database stores it, left under a member EF does not map in B's
            // document (a navigation removed from the model), and in a same-named column of a table outside the model.
            var aKey = System.Text.Json.Nodes.JsonNode.Parse(await EmergencyAsync(db, a.Id))!["EfEnvelopeKey"]!.GetValue<string>();
            var isPostgres = db.Database.ProviderName!.Contains("Npgsql", StringComparison.Ordinal);
            await db.Database.ExecuteSqlRawAsync(
                isPostgres
                    ? "UPDATE \"Patients\" SET \"Emergency\" = jsonb_set(\"Emergency\"::jsonb, '{{Removed}}', jsonb_build_object('EfEnvelopeKey', {0}::text)) WHERE \"Id\" = {1}"
                    : "UPDATE \"Patients\" SET \"Emergency\" = json_set(\"Emergency\", '$.Removed', json_object('EfEnvelopeKey', {0})) WHERE \"Id\" = {1}",
                [aKey, b.Id],
                Ct);
            await db.Database.ExecuteSqlRawAsync("CREATE TABLE \"UnmappedNotes\" (\"Id\" integer, \"Emergency\" text)", Ct);
            await db.Database.ExecuteSqlRawAsync("INSERT INTO \"UnmappedNotes\" VALUES (1, {0})", ["{\"EfEnvelopeKey\":\"" + aKey + "\"}"], Ct);
        }

        // A's key is disabled: asking for it fails, so the read of B succeeds only if nothing asks.
        provider.DisableKey("old");
        await using (var reader = fixture.CreateContext(direct))
        {
            var calls = provider.DecryptDataKeyCalls;
            var read = await reader.Patients.AsNoTracking().SingleAsync(p => p.Id == b.Id, Ct);
            Assert.Equal("+1 555 0002", read.Emergency!.Phone);
            Assert.Equal(0, reader.GetEnvelopeKeyCacheStatistics().SynchronousMisses);
            Assert.Equal(2, provider.DecryptDataKeyCalls - calls);

            calls = provider.DecryptDataKeyCalls;
            var notes = await reader.Database.SqlQueryRaw<string>("SELECT \"Emergency\" FROM \"UnmappedNotes\"").ToListAsync(Ct);
            Assert.Single(notes);
            Assert.Equal(0, provider.DecryptDataKeyCalls - calls);
        }
    }

    private static Patient NewPatient(string phone) => new()
    {
        Id = Guid.NewGuid(),
        Name = "Jo",
        Ssn = "555-01-0001",
        DateOfBirth = new DateOnly(1990, 1, 1),
        Emergency = new EmergencyContact { Relation = "sister", Phone = phone },
    };

    private static Task<string> EmergencyAsync(DbContext db, Guid id) =>
        db.Database.SqlQueryRaw<string>("SELECT \"Emergency\" AS \"Value\" FROM \"Patients\" WHERE \"Id\" = {0}", id).SingleAsync(Ct);
}
