using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Query;

/// <summary>
/// A tracking query that projects an encrypted value beside a member of a collection navigation: a member .NET
/// declares (<c>Count</c>) is translated and tracks nothing, as in plain EF; a member the application's collection type
/// declares makes EF materialize and track the entities, so it is refused like any tracked entity beside an encrypted
/// value (a review found the first version of the group-key fix let it through, silently tracking nothing).
/// </summary>
public sealed class CollectionMemberProjectionTests : PlainAndEncryptedSqlite
{

    public CollectionMemberProjectionTests()
    {
        using var db = Create();
        db.Database.EnsureCreated();
        db.Add(new Customer { Id = 1, Notes = "note", Orders = [new Order { Id = 1, Amount = 2 }, new Order { Id = 2, Amount = 3 }] });
        db.SaveChanges();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_dotnet_collection_member_beside_an_encrypted_value_tracks_nothing_as_in_plain_EF()
    {
        await using var db = Create();
        var row = await db.Customers.Select(c => new { c.Notes, c.Orders.Count }).SingleAsync(Ct);
        Assert.Equal(("note", 2), (row.Notes, row.Count));
        Assert.Empty(db.ChangeTracker.Entries());
    }

    [Fact]
    public async Task A_member_of_the_applications_collection_type_beside_an_encrypted_value_is_refused_in_a_tracking_query()
    {
        await using var db = Create();
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => db.Customers.Select(c => new { c.Notes, c.Orders.Total }).SingleAsync(Ct));
        Assert.Contains("projects encrypted property 'Customer.Notes' beside an entity of type 'Order'", error.Message, StringComparison.Ordinal);

        var row = await db.Customers.AsNoTracking().Select(c => new { c.Notes, c.Orders.Total }).SingleAsync(Ct);
        Assert.Equal(("note", 5m), (row.Notes, row.Total));
    }

    private CustomerContext Create() => new(Options(encrypted: true));

    private sealed class Customer
    {
        public int Id { get; set; }

        [Encrypted]
        public string? Notes { get; set; }

        public OrderList Orders { get; set; } = [];
    }

    private sealed class Order
    {
        public int Id { get; set; }

        public int CustomerId { get; set; }

        public decimal Amount { get; set; }
    }

    private sealed class OrderList : List<Order>
    {
        public decimal Total => this.Sum(o => o.Amount);
    }

    private sealed class CustomerContext(DbContextOptions options) : DbContext(options)
    {
        public DbSet<Customer> Customers => Set<Customer>();
    }
}
