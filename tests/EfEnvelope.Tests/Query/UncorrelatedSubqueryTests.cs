using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Query;

/// <summary>
/// A projection reading an encrypted member of one record from a subquery that does not depend on the row: EfEnvelope
/// must read the record with its key column, which SQLite cannot translate (EF's "requires the SQL APPLY operation").
/// EfEnvelope refuses it with the property's name and what to do instead; a correlated subquery reads as in plain EF.
/// </summary>
public sealed class UncorrelatedSubqueryTests : PlainAndEncryptedSqlite
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [MemberData(nameof(Encryption))]
    public async Task An_uncorrelated_single_record_is_refused_on_SQLite_and_a_correlated_one_reads(bool encrypted)
    {
        await using var db = encrypted ? new EncryptedShopContext(Options(true)) : new ShopContext(Options(false));
        await db.Database.EnsureCreatedAsync(Ct);
        db.Add(new Customer { Id = 1, Orders = [new Order { Id = 1, Card = "4111" }, new Order { Id = 2, Card = "5500" }] });
        await db.SaveChangesAsync(Ct);

        Assert.Equal(["4111"], await db.Customers.Select(c => c.Orders.OrderBy(o => o.Id).Select(o => o.Card).FirstOrDefault()).ToListAsync(Ct));

        var byValue = db.Customers.Select(c => new { c.Id, Card = db.Orders.OrderBy(o => o.Id).Select(o => o.Card).FirstOrDefault() });
        var byRecord = db.Customers.Select(c => new { c.Id, db.Orders.OrderBy(o => o.Id).First().Card });
        if (!encrypted)
        {
            Assert.Equal("4111", (await byValue.SingleAsync(Ct)).Card);
            Assert.Equal("4111", (await byRecord.SingleAsync(Ct)).Card);
            return;
        }

        foreach (var query in new Func<Task>[] { () => byValue.ToListAsync(Ct), () => byRecord.ToListAsync(Ct) })
        {
            var error = await Assert.ThrowsAsync<InvalidOperationException>(query);
            Assert.Contains("'Order.Card'", error.Message, StringComparison.Ordinal);
            Assert.Contains("Run the subquery as a query of its own first", error.Message, StringComparison.Ordinal);
        }
    }

    private sealed class Customer
    {
        public int Id { get; set; }

        public List<Order> Orders { get; set; } = [];
    }

    private sealed class Order
    {
        public int Id { get; set; }

        public int CustomerId { get; set; }

        public string Card { get; set; } = "";
    }

    private class ShopContext(DbContextOptions options) : DbContext(options)
    {
        public DbSet<Customer> Customers => Set<Customer>();

        public DbSet<Order> Orders => Set<Order>();
    }

    private sealed class EncryptedShopContext(DbContextOptions options) : ShopContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.Entity<Order>().Property(o => o.Card).IsEncrypted();
    }
}
