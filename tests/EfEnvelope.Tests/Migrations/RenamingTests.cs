using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Migrations;

/// <summary>
/// Every stored value is bound to its entity's and property's names. Renaming either breaks that binding unless the
/// old name is kept as the binding name.
/// </summary>
public sealed class RenamingTests : IDisposable
{
    private readonly SqliteConnection _connection = new("Data Source=:memory:");
    private readonly InsecureInMemoryMasterKeyProvider _provider = new("primary");
    private readonly Guid _id = Guid.NewGuid();
    private readonly string _oldEntityName;

    public RenamingTests()
    {
        _connection.Open();
        using var db = Create<BeforeRename>();
        db.Database.EnsureCreated();
        db.Add(new Customer { Id = _id, Ssn = "078-05-1120", Home = new Address { Street = "1 Old Road" }, Work = new Address { Street = "2 Mill Lane" } });
        db.SaveChanges();
        _oldEntityName = db.Model.FindEntityType(typeof(Customer))!.Name;
    }

    public void Dispose() => _connection.Dispose();

    [Fact]
    public void Renamed_class_and_property_with_their_old_binding_names_read_rows_written_before()
    {
        using var db = Create<AfterRenameWithBindingNames>();
        var client = db.Set<Client>().Single(c => c.Id == _id);

        Assert.Equal("078-05-1120", client.TaxId);
        Assert.Equal("1 Old Road", client.Home!.Street);
        Assert.Equal("2 Mill Lane", client.Work!.Street);

        client.TaxId = "219-09-9999";
        db.SaveChanges();
        using var check = Create<BeforeRename>();
        Assert.Equal("219-09-9999", check.Set<Customer>().Single(c => c.Id == _id).Ssn);
    }

    [Fact]
    public void Renamed_property_without_its_old_binding_name_fails_authentication_instead_of_reading()
    {
        using var db = Create<AfterRenameWithoutBindingNames>();

        var error = Assert.Throws<EnvelopeDecryptionException>(() => db.Set<Client>().Single(c => c.Id == _id));
        Assert.DoesNotContain("078-05-1120", error.Message, StringComparison.Ordinal);
    }

    private TContext Create<TContext>()
        where TContext : DbContext =>
        (TContext)Activator.CreateInstance(typeof(TContext), new DbContextOptionsBuilder<TContext>()
            .UseSqlite(_connection).ManyConfigurationsPerProcess().UseEnvelopeEncryption(e => e.UseProvider(_provider)).Options, _oldEntityName)!;

    private sealed class Customer
    {
        public Guid Id { get; set; }

        [Encrypted]
        public string Ssn { get; set; } = "";

        public Address? Home { get; set; }

        public Address? Work { get; set; }
    }

    private sealed class Client
    {
        public Guid Id { get; set; }

        public string TaxId { get; set; } = "";

        public Address? Home { get; set; }

        public Address? Work { get; set; }
    }

    private sealed class Address
    {
        [Encrypted]
        public string Street { get; set; } = "";
    }

    private sealed class BeforeRename(DbContextOptions<BeforeRename> options, string? unused) : DbContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder) =>
            modelBuilder.Entity<Customer>(b =>
            {
                b.ToTable("Customers");
                b.OwnsOne(c => c.Home);
                b.OwnsOne(c => c.Work);
                _ = unused;
            });
    }

    private sealed class AfterRenameWithBindingNames(DbContextOptions<AfterRenameWithBindingNames> options, string oldEntityName) : DbContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder) =>
            modelBuilder.Entity<Client>(b =>
            {
                b.ToTable("Customers").HasEncryptionBindingName(oldEntityName);
                b.Property(c => c.TaxId).HasColumnName("Ssn").IsEncrypted().HasEncryptionBindingName("Ssn");
                // Address is owned twice, so each owned type is named after its owner and navigation.
                b.OwnsOne(c => c.Home, home => home.HasEncryptionBindingName(oldEntityName + ".Home#Address"));
                b.OwnsOne(c => c.Work, work => work.HasEncryptionBindingName(oldEntityName + ".Work#Address"));
            });
    }

    private sealed class AfterRenameWithoutBindingNames(DbContextOptions<AfterRenameWithoutBindingNames> options, string? unused) : DbContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder) =>
            modelBuilder.Entity<Client>(b =>
            {
                b.ToTable("Customers");
                b.Property(c => c.TaxId).HasColumnName("Ssn").IsEncrypted();
                b.OwnsOne(c => c.Home);
                b.OwnsOne(c => c.Work);
                _ = unused;
            });
    }
}
