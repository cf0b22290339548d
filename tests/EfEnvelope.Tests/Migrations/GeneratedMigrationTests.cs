using EfEnvelope.KeyManagement;
using EfEnvelope.Search;
using EfEnvelope.Specification.Tests;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Migrations;
using Microsoft.EntityFrameworkCore.Migrations.Operations;
using Microsoft.EntityFrameworkCore.Storage;

namespace EfEnvelope.Tests.Migrations;

/// <summary>
/// The schema changes docs/MIGRATIONS.md describes, made the way <c>dotnet ef migrations add</c> makes them (EF's own
/// model differ and SQL generator) on a table that already has rows, then read and written through EF.
/// </summary>
public sealed class GeneratedMigrationTests : IDisposable
{
    private static readonly InsecureInMemoryMasterKeyProvider Provider = new("primary");
    private static readonly byte[] IndexKey = BlindIndexKey.CreateAsync(Provider).GetAwaiter().GetResult();

    private readonly SqliteConnection _connection = new("Data Source=:memory:");

    public GeneratedMigrationTests() => _connection.Open();

    public void Dispose() => _connection.Dispose();

    [Fact]
    public void Adding_the_first_encrypted_properties_to_a_table_with_rows_adds_nullable_key_and_empty_defaults()
    {
        var id = Seed(Version.Plain);

        var operations = Migrate(Version.Plain, Version.Encrypted);

        var added = operations.OfType<AddColumnOperation>().ToDictionary(o => o.Name);
        Assert.True(added["EfEnvelopeKey"].IsNullable);
        Assert.True(added["Email"].IsNullable);
        Assert.Equal(Array.Empty<byte>(), added["Phone"].DefaultValue);
        using (var db = Create(Version.Encrypted))
        {
            var row = db.Customers.Single(c => c.Id == id);
            Assert.Equal(("Ann", null, "", 0), (row.Name, row.Email, row.Phone, row.Score));
            row.Email = "ann@example.org";
            db.SaveChanges();
        }

        using var check = Create(Version.Encrypted);
        var reread = check.Customers.AsNoTracking().Single(c => c.Id == id);
        Assert.Equal(("ann@example.org", "", 0), (reread.Email, reread.Phone, reread.Score));
    }

    [Fact]
    public void Removing_an_encrypted_property_drops_its_column_and_leaves_the_others_readable()
    {
        var id = Seed(Version.Encrypted, email: "bo@example.org", phone: "+1-555-0100");

        var operations = Migrate(Version.Encrypted, Version.WithoutPhone);

        Assert.Equal("Phone", Assert.Single(operations.OfType<DropColumnOperation>()).Name);
        using var db = Create(Version.WithoutPhone);
        Assert.Equal("bo@example.org", db.Customers.Single(c => c.Id == id).Email);
    }

    [Fact]
    public async Task Making_a_property_searchable_adds_an_empty_index_that_a_rebuild_fills()
    {
        var id = Seed(Version.Encrypted, email: "cy@example.org");

        var operations = Migrate(Version.Encrypted, Version.Searchable);

        Assert.Equal("Email_Index", Assert.Single(operations.OfType<AddColumnOperation>()).Name);
        Assert.Single(operations.OfType<CreateIndexOperation>());
        await using var db = Create(Version.Searchable);
        Assert.Empty(await db.Customers.Where(c => c.Email == "cy@example.org").ToListAsync(TestContext.Current.CancellationToken));

        await db.RebuildBlindIndexesAsync<Customer>(cancellationToken: TestContext.Current.CancellationToken);

        Assert.Equal(id, (await db.Customers.SingleAsync(c => c.Email == "cy@example.org", TestContext.Current.CancellationToken)).Id);
    }

    [Fact]
    public void Changing_an_encrypted_propertys_type_in_place_is_refused_on_read_rather_than_misread()
    {
        // int (4 bytes) read as long (8 bytes): the stored encoding does not fit the new type.
        var id = Seed(Version.Encrypted, score: 42);

        Assert.Empty(Migrate(Version.Encrypted, Version.LongScore).OfType<AddColumnOperation>());

        using var db = Create(Version.LongScore);
        var error = Assert.Throws<EnvelopeDecryptionException>(() => db.Customers.Single(c => c.Id == id));
        Assert.Contains("Score", error.Message, StringComparison.Ordinal);
    }

    private Guid Seed(Version version, string? email = null, string phone = "", int score = 0)
    {
        using var db = Create(version);
        db.Database.EnsureCreated();
        var id = Guid.NewGuid();
        db.Customers.Add(new Customer { Id = id, Name = "Ann", Email = email, Phone = phone, Score = score, LongScore = score });
        db.SaveChanges();
        return id;
    }

    /// <summary>Diffs the two models as <c>dotnet ef migrations add</c> does and applies the generated SQL.</summary>
    private IReadOnlyList<MigrationOperation> Migrate(Version from, Version to)
    {
        using var source = Create(from);
        using var target = Create(to);
        var operations = target.GetService<IMigrationsModelDiffer>().GetDifferences(
            source.GetService<IDesignTimeModel>().Model.GetRelationalModel(),
            target.GetService<IDesignTimeModel>().Model.GetRelationalModel());
        var commands = target.GetService<IMigrationsSqlGenerator>().Generate(operations, target.GetService<IDesignTimeModel>().Model);
        target.GetService<IMigrationCommandExecutor>().ExecuteNonQuery(commands, target.GetService<IRelationalConnection>());
        return operations;
    }

    private CustomersContext Create(Version version)
    {
        var options = new DbContextOptionsBuilder<CustomersContext>().UseSqlite(_connection).ManyConfigurationsPerProcess()
            .ReplaceService<IModelCacheKeyFactory, VersionedModelCacheKeyFactory>();
        if (version != Version.Plain)
        {
            options.UseEnvelopeEncryption(e => e.UseProvider(Provider).UseBlindIndexKey(IndexKey));
        }

        return new CustomersContext(options.Options, version);
    }

    public enum Version
    {
        Plain,
        Encrypted,
        WithoutPhone,
        Searchable,
        LongScore,
    }

    public sealed class Customer
    {
        public Guid Id { get; set; }

        public string Name { get; set; } = "";

        public string? Email { get; set; }

        public string Phone { get; set; } = "";

        public int Score { get; set; }

        public long LongScore { get; set; }
    }

    /// <summary>One model per version of the entity (EF caches models per context type otherwise).</summary>
    private sealed class VersionedModelCacheKeyFactory : IModelCacheKeyFactory
    {
        public object Create(DbContext context, bool designTime) => (context.GetType(), ((CustomersContext)context).Version, designTime);
    }

    private sealed class CustomersContext(DbContextOptions<CustomersContext> options, Version version) : DbContext(options)
    {
        public Version Version => version;

        public DbSet<Customer> Customers => Set<Customer>();

        protected override void OnModelCreating(ModelBuilder modelBuilder) =>
            modelBuilder.Entity<Customer>(b =>
            {
                b.ToTable("Customers");
                switch (version)
                {
                    case Version.Plain:
                        b.Ignore(c => c.Email).Ignore(c => c.Phone).Ignore(c => c.Score).Ignore(c => c.LongScore);
                        break;
                    case Version.LongScore:
                        b.Ignore(c => c.Score);
                        b.Property(c => c.LongScore).HasColumnName("Score").IsEncrypted().HasEncryptionBindingName("Score");
                        b.Property(c => c.Email).IsEncrypted();
                        b.Property(c => c.Phone).IsEncrypted();
                        break;
                    default:
                        b.Ignore(c => c.LongScore);
                        b.Property(c => c.Score).IsEncrypted();
                        if (version == Version.Searchable)
                        {
                            b.Property(c => c.Email).IsEncrypted(_ => { });
                        }
                        else
                        {
                            b.Property(c => c.Email).IsEncrypted();
                        }

                        if (version == Version.WithoutPhone)
                        {
                            b.Ignore(c => c.Phone);
                        }
                        else
                        {
                            b.Property(c => c.Phone).IsEncrypted();
                        }

                        break;
                }
            });
    }
}
