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
}
