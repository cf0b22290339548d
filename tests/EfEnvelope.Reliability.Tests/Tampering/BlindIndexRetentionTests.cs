using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Reliability.Tests.Tampering;

/// <summary>A row's blind index survives later saves of the same context: it stays searchable and unique.</summary>
public abstract class BlindIndexRetentionTests<TFixture>(TFixture fixture) : IClassFixture<TFixture>
    where TFixture : DatabaseFixture
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_second_save_in_the_same_context_leaves_earlier_rows_searchable_and_unique()
    {
        if (fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        var indexKey = await BlindIndexKey.CreateAsync(fixture.Provider, cancellationToken: Ct);
        var sql = new SqlCapture();
        await using var db = new SearchContext(fixture.CreateOptions<SearchContext>(e => e.UseProvider(fixture.Provider).UseBlindIndexKey(indexKey), sql));
        var first = new Person { Name = "first", Ssn = $"RET-{Guid.NewGuid():N}" };
        db.People.Add(first);
        await db.SaveChangesAsync(Ct);
        Assert.Equal(EntityState.Unchanged, db.Entry(first).State);

        sql.Clear();
        db.People.Add(new Person { Name = "second", Ssn = $"RET-{Guid.NewGuid():N}" });
        await db.SaveChangesAsync(Ct);
        Assert.DoesNotContain(sql.Commands, c => c.Contains("UPDATE", StringComparison.OrdinalIgnoreCase));

        await using (var reader = new SearchContext(fixture.CreateOptions<SearchContext>(e => e.UseProvider(fixture.Provider).UseBlindIndexKey(indexKey))))
        {
            Assert.Equal(first.Id, (await reader.People.SingleAsync(p => p.Ssn == first.Ssn, Ct)).Id);
        }

        db.People.Add(new Person { Name = "duplicate", Ssn = first.Ssn });
        await Assert.ThrowsAsync<DbUpdateException>(() => db.SaveChangesAsync(Ct));
    }
}

public sealed class SqliteBlindIndexRetentionTests(SqliteFixture fixture) : BlindIndexRetentionTests<SqliteFixture>(fixture);

public sealed class PostgresBlindIndexRetentionTests(PostgresFixture fixture) : BlindIndexRetentionTests<PostgresFixture>(fixture);
