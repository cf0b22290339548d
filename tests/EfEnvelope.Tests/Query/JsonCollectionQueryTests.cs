using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Storage;

namespace EfEnvelope.Tests.Query;

// SQLite translates none of these queries, for plain EF either ("requires the SQL APPLY operation").
public sealed class JsonCollectionQueryPostgresTests(PostgresFixture fixture) : JsonCollectionQueryTests<PostgresFixture>(fixture);

/// <summary>
/// Queries that unpack a JSON-mapped owned collection in the database (SelectMany, a filtered or skipped collection,
/// an ordered First) read its items' encrypted members. Found by a user-style review on PostgreSQL: the database's
/// recordset functions hand a byte[] member over as the bytes of its JSON text (base64), which read as a wrapped key
/// of "unknown format version 65" on untouched rows.
/// </summary>
public abstract class JsonCollectionQueryTests<TFixture>(TFixture fixture) : IClassFixture<TFixture>
    where TFixture : DatabaseFixture
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Queries_that_unpack_a_JSON_collection_in_the_database_decrypt_its_items()
    {
        if (fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        await using (var db = new LedgerContext(fixture.CreateOptions<LedgerContext>()))
        {
            await db.GetService<IRelationalDatabaseCreator>().CreateTablesAsync(Ct);
            db.Ledgers.Add(new Ledger { Id = 1, Lines = [new LedgerLine { Text = "one", Qty = 1 }, new LedgerLine { Text = "two", Qty = 2 }, new LedgerLine { Text = "three", Qty = 3 }] });
            await db.SaveChangesAsync(Ct);
        }

        await using var read = new LedgerContext(fixture.CreateOptions<LedgerContext>());
        var ledgers = read.Ledgers.AsNoTracking().Where(l => l.Id == 1);
        Assert.Equal(["one", "two", "three"], (await ledgers.SelectMany(l => l.Lines).ToListAsync(Ct)).Select(l => l.Text));
        Assert.Equal(["one", "two", "three"], await ledgers.SelectMany(l => l.Lines).Select(l => l.Text).ToListAsync(Ct));
        Assert.Equal(["two", "three"], (await ledgers.Select(l => l.Lines.Where(x => x.Qty > 1).ToList()).SingleAsync(Ct)).Select(l => l.Text));
        Assert.Equal(["two", "three"], (await ledgers.Select(l => l.Lines.Skip(1).ToList()).SingleAsync(Ct)).Select(l => l.Text));
    }

    private sealed class Ledger
    {
        public int Id { get; set; }

        public List<LedgerLine> Lines { get; set; } = [];
    }

    private sealed class LedgerLine
    {
        public string? Text { get; set; }

        public int Qty { get; set; }
    }

    private sealed class LedgerContext(DbContextOptions<LedgerContext> options) : DbContext(options)
    {
        public DbSet<Ledger> Ledgers => Set<Ledger>();

        protected override void OnModelCreating(ModelBuilder modelBuilder) =>
            modelBuilder.Entity<Ledger>(ledger =>
            {
                ledger.Property(l => l.Id).ValueGeneratedNever();
                ledger.OwnsMany(l => l.Lines, line =>
                {
                    line.ToJson();
                    line.Property(x => x.Text).IsEncrypted();
                });
            });
    }
}
