using EfEnvelope.KeyManagement;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.EntityFramework;

/// <summary>
/// An optional record sharing its principal's row (an owned type, or table splitting) is absent for plain EF (a null
/// navigation) when every one of its columns is NULL, which is how plain EF stores an instance without values. With
/// encryption its record's key column is one of them. Found by user-style hunts: the record read as an empty instance.
/// </summary>
public sealed class OptionalDependentTests : PlainAndEncryptedSqlite
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [MemberData(nameof(Encryption))]
    public async Task An_owned_value_whose_members_are_all_null_reads_as_absent(bool encrypted)
    {
        await SeedAsync(
            encrypted,
            new Customer { Id = 1, Home = new Address() },
            new Customer { Id = 2, Home = new Address { Street = "Main St" } },
            new Customer { Id = 3 });

        await using var read = Create(encrypted);
        var customers = await read.Customers.OrderBy(c => c.Id).ToListAsync(Ct);
        Assert.Equal([null, "Main St", null], customers.Select(c => c.Home?.Street));
        Assert.Equal([false, true, false], customers.Select(c => c.Home is not null));
        Assert.Equal([false, true, false], await read.Customers.AsNoTracking().OrderBy(c => c.Id).Select(c => c.Home != null).ToListAsync(Ct));
    }

    [Theory]
    [MemberData(nameof(Encryption))]
    public async Task An_owned_value_emptied_by_an_edit_reads_as_absent_and_a_later_value_reads_back(bool encrypted)
    {
        await using (var db = Create(encrypted))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.AddRange(
                new Customer { Id = 1, Home = new Address { Street = "Main St" } },
                new Customer { Id = 2, Home = new Address { Street = "Side St", City = "Oslo" } });
            await db.SaveChangesAsync(Ct);

            // Emptied by an encrypted value, and by a plain one beside an encrypted null.
            var customers = await db.Customers.OrderBy(c => c.Id).ToListAsync(Ct);
            customers[0].Home!.Street = null;
            customers[1].Home!.Street = null;
            await db.SaveChangesAsync(Ct);
            Assert.Equal([false, true], await Present(Create(encrypted)));
            customers[1].Home!.City = null;
            await db.SaveChangesAsync(Ct);
            Assert.Equal([false, false], await Present(Create(encrypted)));

            // The same tracked instances get values again, in the context that emptied them.
            customers[0].Home!.Street = "New St";
            customers[1].Home!.City = "Bergen";
            await db.SaveChangesAsync(Ct);
        }

        await using var read = Create(encrypted);
        var again = await read.Customers.OrderBy(c => c.Id).ToListAsync(Ct);
        Assert.Equal([("New St", (string?)null), (null, "Bergen")], again.Select(c => (c.Home?.Street, c.Home?.City)));

        static async Task<List<bool>> Present(CustomerContext context)
        {
            await using (context)
            {
                return await context.Customers.AsNoTracking().OrderBy(c => c.Id).Select(c => c.Home != null).ToListAsync(Ct);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Encryption))]
    public async Task A_table_split_dependent_without_values_reads_as_absent(bool encrypted)
    {
        await SeedAsync(encrypted, new Order { Id = 1, Detail = new OrderDetail() }, new Order { Id = 2, Detail = new OrderDetail { Secret = "s" } });

        await using var read = Create(encrypted);
        Assert.Equal(1, await read.Set<OrderDetail>().CountAsync(Ct));
        Assert.Equal([null, "s"], (await read.Orders.Include(o => o.Detail).OrderBy(o => o.Id).ToListAsync(Ct)).Select(o => o.Detail?.Secret));
        Assert.Equal([true, false], (await read.Orders.OrderBy(o => o.Id).ToListAsync(Ct)).Select(o => o.Detail is null));
    }

    [Theory]
    [MemberData(nameof(Encryption))]
    public async Task An_attached_partial_owned_value_emptied_by_an_edit_does_not_erase_stored_values(bool encrypted)
    {
        // From a review: the attached instance lacks the stored City, so its values being null says nothing about the
        // row. Plain EF writes only Street; EfEnvelope cannot read an owned record's key by itself and refuses, as it
        // did before optional records could be stored without a key. Either way City stays.
        await SeedAsync(encrypted, new Customer { Id = 1, Home = new Address { Street = "Main St", City = "Oslo" } });

        await using (var db = Create(encrypted))
        {
            var stub = new Customer { Id = 1, Home = new Address { Street = "Main St" } };
            db.Attach(stub);
            stub.Home.Street = null;
            var error = await Record.ExceptionAsync(() => db.SaveChangesAsync(Ct));
            Assert.Equal(encrypted, error is InvalidOperationException);
        }

        await using var read = Create(encrypted);
        var home = (await read.Customers.SingleAsync(Ct)).Home;
        Assert.Equal((encrypted ? "Main St" : null, "Oslo"), (home?.Street, home?.City));
    }

    [Fact]
    public async Task Emptying_a_record_that_a_concurrent_save_gave_a_value_is_a_conflict_and_loses_nothing()
    {
        // From a review: the emptying update compared no key column and left the other save's ciphertext keyless, which
        // made every query of the table fail. It compares the key it read, as any other edit of the record does.
        await SeedAsync(encrypted: true, new Customer { Id = 1, Home = new Address { Street = "Main St" } });

        await using var first = Create(encrypted: true);
        var mine = await ReadWhileAnotherContextSetsStreetAsync(first);

        mine.Home!.Street = null;
        await Assert.ThrowsAsync<DbUpdateConcurrencyException>(() => first.SaveChangesAsync(Ct));

        await using var read = Create(encrypted: true);
        Assert.Equal("Side St", (await read.Customers.SingleAsync(Ct)).Home?.Street);
    }

    [Fact]
    public async Task A_record_with_a_legacy_plaintext_column_keeps_its_seal_when_emptied_so_a_forged_legacy_value_is_refused()
    {
        // From a review: stored without a key, the record had no seal to say its value is NULL, so text written into
        // the legacy column read as the value (and the migration job would have sealed it).
        await using (var db = new LegacyCustomerContext(Options(true)))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Add(new Customer { Id = 1, Home = new Address() });
            db.Add(new Customer { Id = 2, Home = new Address { Street = "Main St" } });
            await db.SaveChangesAsync(Ct);
            (await db.Customers.SingleAsync(c => c.Id == 2, Ct)).Home!.Street = null;
            await db.SaveChangesAsync(Ct);
        }

        await using (var command = Connection.CreateCommand())
        {
            command.CommandText = "UPDATE \"Customers\" SET \"Home_Street_Plain\" = 'forged'";
            Assert.Equal(2, await command.ExecuteNonQueryAsync(Ct));
        }

        await using var read = new LegacyCustomerContext(Options(true));
        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => read.Customers.Where(c => c.Id == 1).ToListAsync(Ct));
        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => read.Customers.Where(c => c.Id == 2).ToListAsync(Ct));
    }

    [Fact]
    public async Task An_emptied_record_that_a_plain_value_makes_present_again_is_sealed()
    {
        // From a review: the record stayed without a key, and with RequireSealedRecords every query of the table failed.
        var options = Options(true, e => e.UseProvider(Provider).RequireSealedRecords());
        await using (var db = new EncryptedCustomerContext(options))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Add(new Customer { Id = 1, Home = new Address { Street = "Main St" } });
            await db.SaveChangesAsync(Ct);
            var customer = await db.Customers.SingleAsync(Ct);
            customer.Home!.Street = null;
            await db.SaveChangesAsync(Ct);
            customer.Home.City = "Oslo";
            await db.SaveChangesAsync(Ct);
        }

        await using var read = new EncryptedCustomerContext(options);
        var home = (await read.Customers.SingleAsync(Ct)).Home;
        Assert.Equal(((string?)null, "Oslo"), (home?.Street, home?.City));
    }

    [Fact]
    public async Task Sealing_a_record_read_without_a_key_over_a_concurrent_save_is_a_conflict_and_loses_nothing()
    {
        // From a review: sealing a keyless record after a plain edit wrote the key column unconditionally, so another
        // context's value saved meanwhile stayed beside a seal saying NULL: the row no longer read, the value was lost.
        await using (var db = Create(encrypted: true))
        {
            await db.Database.EnsureCreatedAsync(Ct);
        }

        await using (var command = Connection.CreateCommand())
        {
            // A row as a migration that added the encrypted columns leaves it.
            command.CommandText = "INSERT INTO \"Customers\" (\"Id\", \"Home_City\") VALUES (1, 'Oslo')";
            await command.ExecuteNonQueryAsync(Ct);
        }

        await using var first = Create(encrypted: true);
        var mine = await ReadWhileAnotherContextSetsStreetAsync(first);

        mine.Home!.City = "Bergen";
        await Assert.ThrowsAsync<DbUpdateConcurrencyException>(() => first.SaveChangesAsync(Ct));

        await using var read = Create(encrypted: true);
        var home = (await read.Customers.SingleAsync(Ct)).Home;
        Assert.Equal(("Side St", "Oslo"), (home?.Street, home?.City));
    }

    [Fact]
    public async Task A_record_emptied_in_the_save_that_moves_its_owner_to_another_key_reads_as_absent()
    {
        // From a review: the move to the selector's new key came first and gave the empty record a key.
        var provider = new InsecureInMemoryMasterKeyProvider("key-a").AddKey("key-b");
        var options = Options(true, e => e.UseProvider(provider).UseMasterKeySelector(entity => entity is Customer { Name: "b" } ? "key-b" : "key-a"));
        await using (var db = new EncryptedCustomerContext(options))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Add(new Customer { Id = 1, Name = "a", Home = new Address { Street = "Main St" } });
            await db.SaveChangesAsync(Ct);
            var customer = await db.Customers.SingleAsync(Ct);
            customer.Name = "b";
            customer.Home!.Street = null;
            await db.SaveChangesAsync(Ct);
        }

        await using var read = new EncryptedCustomerContext(options);
        Assert.Null((await read.Customers.SingleAsync(Ct)).Home);
    }

    private async Task SeedAsync(bool encrypted, params object[] entities)
    {
        await using var db = Create(encrypted);
        await db.Database.EnsureCreatedAsync(Ct);
        db.AddRange(entities);
        await db.SaveChangesAsync(Ct);
    }

    // Reads the customer in the given context, then has another context give its Home.Street a value and save.
    private async Task<Customer> ReadWhileAnotherContextSetsStreetAsync(CustomerContext context)
    {
        var customer = await context.Customers.SingleAsync(Ct);
        await using var other = Create(encrypted: true);
        (await other.Customers.SingleAsync(Ct)).Home!.Street = "Side St";
        await other.SaveChangesAsync(Ct);
        return customer;
    }

    private CustomerContext Create(bool encrypted) => encrypted ? new EncryptedCustomerContext(Options(true)) : new CustomerContext(Options(false));

    private sealed class Customer
    {
        public int Id { get; set; }

        public string? Name { get; set; }

        public Address? Home { get; set; }
    }

    private sealed class Address
    {
        public string? Street { get; set; }

        public string? City { get; set; }
    }

    private sealed class LegacyCustomerContext(DbContextOptions options) : CustomerContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            base.OnModelCreating(modelBuilder);
            modelBuilder.Entity<Customer>().OwnsOne(c => c.Home).Property(a => a.Street).IsEncrypted().HasLegacyPlaintextColumn("Home_Street_Plain");
        }
    }

    private sealed class Order
    {
        public int Id { get; set; }

        public OrderDetail? Detail { get; set; }
    }

    private sealed class OrderDetail
    {
        public int Id { get; set; }

        public string? Secret { get; set; }
    }

    private class CustomerContext(DbContextOptions options) : DbContext(options)
    {
        public DbSet<Customer> Customers => Set<Customer>();

        public DbSet<Order> Orders => Set<Order>();

        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            modelBuilder.Entity<Customer>().OwnsOne(c => c.Home);
            modelBuilder.Entity<Order>().ToTable("Orders").HasOne(o => o.Detail).WithOne().HasForeignKey<OrderDetail>(d => d.Id);
            modelBuilder.Entity<OrderDetail>().ToTable("Orders");
        }
    }

    private sealed class EncryptedCustomerContext(DbContextOptions options) : CustomerContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            base.OnModelCreating(modelBuilder);
            modelBuilder.Entity<Customer>().OwnsOne(c => c.Home).Property(a => a.Street).IsEncrypted();
            modelBuilder.Entity<OrderDetail>().Property(d => d.Secret).IsEncrypted();
        }
    }
}
