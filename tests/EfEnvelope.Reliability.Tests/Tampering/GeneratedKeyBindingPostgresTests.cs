using EfEnvelope.Crypto;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Reliability.Tests.Tampering;

#pragma warning disable EF1002 // raw SQL from the test's own table names

/// <summary>BindStoreGeneratedKeys(): PostgreSQL-only mappings (xmin concurrency token).</summary>
public sealed class GeneratedKeyBindingXminTests() : ScratchDatabaseTests<RvXminContext>("genkeyxm")
{
    private readonly InsecureInMemoryMasterKeyProvider _provider = new("primary");

    private bool _bind = true;

    protected override RvXminContext NewContext() => new(OptionsBuilder().UseEnvelopeEncryption(e =>
    {
        e.UseProvider(_provider);
        if (_bind)
        {
            e.BindStoreGeneratedKeys();
        }
    }).Options);

    [Theory]
    [InlineData("postgres")]
    public async Task Without_the_option_a_record_with_a_row_version_token_is_edited_in_the_context_that_inserted_it(string database)
    {
        _bind = false;
        await UseAsync(database);
        await using var db = NewContext();
        var account = new RvAccount { Secret = "v1" };
        db.Accounts.Add(account);
        await db.SaveChangesAsync(Ct);
        account.Secret = "v2";
        await db.SaveChangesAsync(Ct);

        await using var reader = NewContext();
        Assert.Equal("v2", (await reader.Accounts.AsNoTracking().SingleAsync(Ct)).Secret);
    }

    /// <summary>
    /// Plain EF reads the row version (PostgreSQL xmin) back from the INSERT; a seal update after it would change it and
    /// leave the entity with a stale token, so the option refuses such a type before anything is written.
    /// </summary>
    [Theory]
    [InlineData("postgres")]
    public async Task With_the_option_a_type_with_a_row_version_token_is_refused_before_anything_is_written(string database)
    {
        await UseAsync(database);
        await using (var db = NewContext())
        {
            db.Accounts.Add(new RvAccount { Secret = "v1" });
            var error = await Assert.ThrowsAsync<InvalidOperationException>(() => db.SaveChangesAsync(Ct));
            Assert.Contains(typeof(RvAccount).FullName!, error.Message, StringComparison.Ordinal);
            Assert.Contains("row version", error.Message, StringComparison.Ordinal);
        }

        await using var reader = NewContext();
        Assert.Equal(0, await reader.Accounts.CountAsync(Ct));
    }
}

/// <summary>BindStoreGeneratedKeys(): TPC hierarchy whose keys PostgreSQL generates from a shared sequence.</summary>
public sealed class GeneratedKeyBindingTpcTests() : ScratchDatabaseTests<RvTpcContext>("genkeytpc")
{
    private readonly InsecureInMemoryMasterKeyProvider _provider = new("primary");

    protected override RvTpcContext NewContext() => new(OptionsBuilder().UseEnvelopeEncryption(e => e.UseProvider(_provider).BindStoreGeneratedKeys()).Options);

    [Theory]
    [InlineData("postgres")]
    public async Task Tpc_rows_of_each_concrete_type_with_database_generated_keys_save_and_read(string database)
    {
        await UseAsync(database);
        await using (var db = NewContext())
        {
            db.Vehicles.AddRange(new RvCar { Plate = "car-1", Seats = "5" }, new RvBike { Plate = "bike-1", Gears = "21" });
            await db.SaveChangesAsync(Ct);
        }

        await using var reader = NewContext();
        var all = await reader.Vehicles.AsNoTracking().ToListAsync(Ct);
        Assert.Equal(["bike-1", "car-1"], all.Select(v => v.Plate!).Order(StringComparer.Ordinal));
    }
}

public class RvAccount
{
    public int Id { get; set; }

    [Encrypted]
    public string? Secret { get; set; }

    [System.ComponentModel.DataAnnotations.Timestamp]
    public uint Version { get; set; }
}

public sealed class RvXminContext(DbContextOptions<RvXminContext> options) : DbContext(options)
{
    public DbSet<RvAccount> Accounts => Set<RvAccount>();
}

public abstract class RvVehicle
{
    public int Id { get; set; }

    [Encrypted]
    public string? Plate { get; set; }
}

public class RvCar : RvVehicle
{
    [Encrypted]
    public string? Seats { get; set; }
}

public class RvBike : RvVehicle
{
    [Encrypted]
    public string? Gears { get; set; }
}

public sealed class RvTpcContext(DbContextOptions<RvTpcContext> options) : DbContext(options)
{
    public DbSet<RvVehicle> Vehicles => Set<RvVehicle>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<RvVehicle>().UseTpcMappingStrategy();
        modelBuilder.Entity<RvCar>().ToTable("Cars");
        modelBuilder.Entity<RvBike>().ToTable("Bikes");
    }
}

/// <summary>BindStoreGeneratedKeys(): nested owned types, converted and composite keys, database-generated Guids.</summary>
public sealed class GeneratedKeyBindingKeysTests() : ScratchDatabaseTests<RvKeysContext>("genkeyks")
{
    private readonly InsecureInMemoryMasterKeyProvider _provider = new("primary");

    protected override RvKeysContext NewContext() => new(OptionsBuilder().UseEnvelopeEncryption(e => e.UseProvider(_provider).BindStoreGeneratedKeys()).Options);

    [Theory]
    [InlineData("postgres")]
    public async Task Nested_owned_one_in_an_owned_collection_item_with_generated_ordinals_is_bound_and_edits(string database)
    {
        await UseAsync(database);
        await using (var db = NewContext())
        {
            var folder = new RvFolder { Name = "f", Items = [new RvItem { Text = "i1", Detail = new RvDetail { Note = "d1" } }, new RvItem { Text = "i2", Detail = new RvDetail { Note = "d2" } }] };
            db.Folders.Add(folder);
            await db.SaveChangesAsync(Ct);
            folder.Items[0].Detail!.Note = "d1 edited";
            await db.SaveChangesAsync(Ct);
        }

        await using var reader = NewContext();
        var read = await reader.Folders.AsNoTracking().SingleAsync(Ct);
        Assert.Equal(["i1:d1 edited", "i2:d2"], read.Items.Select(i => $"{i.Text}:{i.Detail!.Note}").Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData("postgres")]
    public async Task An_item_added_to_an_existing_owners_collection_is_bound_and_reads(string database)
    {
        await UseAsync(database);
        await using (var db = NewContext())
        {
            db.Folders.Add(new RvFolder { Name = "f", Items = [new RvItem { Text = "i1" }] });
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = NewContext())
        {
            var folder = await db.Folders.SingleAsync(Ct);
            folder.Items.Add(new RvItem { Text = "i2", Detail = new RvDetail { Note = "d2" } });
            folder.Items[0].Text = "i1 edited";
            await db.SaveChangesAsync(Ct);
            folder.Items[1].Text = "i2 edited";
            await db.SaveChangesAsync(Ct);
        }

        await using var reader = NewContext();
        var read = await reader.Folders.AsNoTracking().SingleAsync(Ct);
        Assert.Equal(["i1 edited:", "i2 edited:d2"], read.Items.Select(i => $"{i.Text}:{i.Detail?.Note}").Order(StringComparer.Ordinal));
        foreach (var raw in await reader.Database.SqlQueryRaw<byte[]>("SELECT \"EfEnvelopeKey\" AS \"Value\" FROM \"Items\"").ToListAsync(Ct))
        {
            Assert.True(WrappedKeyBlob.TryParse(raw, out var blob, out _));
            Assert.Equal(EnvelopeFormat.FlagKeyBound | EnvelopeFormat.FlagItemKeyBound, blob.BindingFlags & (EnvelopeFormat.FlagKeyBound | EnvelopeFormat.FlagItemKeyBound));
        }
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task A_converted_identity_key_and_a_composite_key_with_an_identity_part_are_bound_and_edit(string database)
    {
        await UseAsync(database);
        await using (var db = NewContext())
        {
            var typed = new RvTyped { Secret = "typed" };
            db.Typed.Add(typed);
            if (database == "postgres")
            {
                db.Composite.Add(new RvComposite { Tenant = 7, Secret = "composite" });
                db.Uuids.Add(new RvUuid { Secret = "uuid" });
            }

            await db.SaveChangesAsync(Ct);
            typed.Secret = "typed 2";
            await db.SaveChangesAsync(Ct);
        }

        await using var reader = NewContext();
        Assert.Equal("typed 2", (await reader.Typed.AsNoTracking().SingleAsync(Ct)).Secret);
        if (database == "postgres")
        {
            Assert.Equal("composite", (await reader.Composite.AsNoTracking().SingleAsync(Ct)).Secret);
            Assert.Equal("uuid", (await reader.Uuids.AsNoTracking().SingleAsync(Ct)).Secret);
            foreach (var table in new[] { "Typed", "Composite", "Uuids" })
            {
                var raw = (byte[])(await reader.Database.SqlQueryRaw<byte[]>($"SELECT \"EfEnvelopeKey\" AS \"Value\" FROM \"{table}\"").SingleAsync(Ct));
                Assert.True(WrappedKeyBlob.TryParse(raw, out var blob, out _));
                Assert.Equal(EnvelopeFormat.FlagKeyBound, blob.BindingFlags & EnvelopeFormat.FlagKeyBound);
            }
        }
    }
}

public class RvFolder
{
    public int Id { get; set; }

    [Encrypted]
    public string? Name { get; set; }

    public List<RvItem> Items { get; set; } = [];
}

public class RvItem
{
    [Encrypted]
    public string? Text { get; set; }

    public RvDetail? Detail { get; set; }
}

public class RvDetail
{
    [Encrypted]
    public string? Note { get; set; }
}

public readonly record struct RvTypedId(int Value);

public class RvTyped
{
    public RvTypedId Id { get; set; }

    [Encrypted]
    public string? Secret { get; set; }
}

public class RvComposite
{
    public int Tenant { get; set; }

    public int Id { get; set; }

    [Encrypted]
    public string? Secret { get; set; }
}

public class RvUuid
{
    public Guid Id { get; set; }

    [Encrypted]
    public string? Secret { get; set; }
}

public sealed class RvKeysContext(DbContextOptions<RvKeysContext> options) : DbContext(options)
{
    public DbSet<RvFolder> Folders => Set<RvFolder>();

    public DbSet<RvTyped> Typed => Set<RvTyped>();

    public DbSet<RvComposite> Composite => Set<RvComposite>();

    public DbSet<RvUuid> Uuids => Set<RvUuid>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        var sqlite = Database.ProviderName!.Contains("Sqlite", StringComparison.Ordinal);
        if (sqlite)
        {
            modelBuilder.Ignore<RvFolder>();
            modelBuilder.Ignore<RvComposite>();
            modelBuilder.Ignore<RvUuid>();
        }
        else
        {
            modelBuilder.Entity<RvFolder>().OwnsMany(f => f.Items, i =>
            {
                i.ToTable("Items");
                i.OwnsOne(x => x.Detail);
            });
            modelBuilder.Entity<RvComposite>().ToTable("Composite").HasKey(c => new { c.Tenant, c.Id });
            modelBuilder.Entity<RvComposite>().Property(c => c.Id).ValueGeneratedOnAdd();
            modelBuilder.Entity<RvUuid>().ToTable("Uuids").Property(u => u.Id).HasDefaultValueSql("gen_random_uuid()");
        }

        modelBuilder.Entity<RvTyped>().ToTable("Typed").Property(t => t.Id).HasConversion(v => v.Value, v => new RvTypedId(v)).ValueGeneratedOnAdd();
    }
}

/// <summary>
/// BindStoreGeneratedKeys(): a COMMIT that fails after the seal updates. Like plain EF, which discards the generated
/// key values of a failed save (commit included) so that the retry generates them again, the binding discards them
/// and puts back the blobs as inserted (whose seal is void), whatever failed.
/// </summary>
public sealed class GeneratedKeyBindingCommitTests() : ScratchDatabaseTests<RvAlwaysContext>("genkeycm")
{
    private readonly InsecureInMemoryMasterKeyProvider _provider = new("primary");
    private readonly FailingCommit _commit = new();
    private bool _bind = true;
    private bool _retrying;

    protected override RvAlwaysContext NewContext() => new(OptionsBuilder(_retrying ? d => new RetryOnTimeout(d) : null)
        .UseEnvelopeEncryption(e =>
        {
            e.UseProvider(_provider);
            if (_bind)
            {
                e.BindStoreGeneratedKeys();
            }
        })
        .AddInterceptors(_commit)
        .Options);

    [Theory]
    [InlineData("postgres", true)]
    [InlineData("postgres", false)]
    public async Task A_retrying_strategy_retries_a_save_whose_commit_failed_transiently(string database, bool bind)
    {
        await UseAsync(database);
        (_bind, _retrying) = (bind, true);
        await using (var db = NewContext())
        {
            db.Database.AutoTransactionBehavior = AutoTransactionBehavior.Always;
            db.Items.AddRange(new RvAlways { Secret = "one" }, new RvAlways { Secret = "two" });
            _commit.Failures = 1;
            Assert.Equal(2, await db.SaveChangesAsync(Ct));
            Assert.Equal(0, _commit.Failures);
        }

        await using var reader = NewContext();
        Assert.Equal(["one", "two"], (await reader.Items.AsNoTracking().Select(i => i.Secret!).ToListAsync(Ct)).Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData("postgres", true)]
    [InlineData("postgres", false)]
    [InlineData("sqlite", true)]
    [InlineData("sqlite", false)]
    public async Task After_a_failed_commit_the_entries_are_back_to_what_they_were_before_the_save(string database, bool bind)
    {
        await UseAsync(database);
        _bind = bind;
        await using var db = NewContext();
        db.Database.AutoTransactionBehavior = AutoTransactionBehavior.Always;
        var item = new RvAlways { Secret = "one" };
        db.Items.Add(item);
        _commit.Failures = 1;
        await Assert.ThrowsAnyAsync<Exception>(() => db.SaveChangesAsync(Ct));
        Assert.Equal(EntityState.Added, db.Entry(item).State);
        var keptKey = !db.Entry(item).Property(i => i.Id).IsTemporary;

        // Another writer inserts meanwhile: on SQLite it gets the key the rolled-back insert had.
        await using (var other = NewContext())
        {
            other.Items.Add(new RvAlways { Secret = "other" });
            await other.SaveChangesAsync(Ct);
        }

        var error = await Record.ExceptionAsync(() => db.SaveChangesAsync(Ct));
        Assert.True(error is null, $"retry after the failed commit: {error?.GetBaseException().Message}; key from the rolled-back insert kept in the entry: {keptKey}");
        await using var reader = NewContext();
        Assert.Equal(["one", "other"], (await reader.Items.AsNoTracking().Select(i => i.Secret!).ToListAsync(Ct)).Order(StringComparer.Ordinal));
    }

    /// <summary>
    /// The retried save's record must not be sealed over the key of the rolled-back insert: on SQLite that key is
    /// reused by the next insert, where such a record would read.
    /// </summary>
    [Theory]
    [InlineData("sqlite")]
    public async Task After_a_failed_commit_and_a_retry_no_record_verifies_in_another_row(string database)
    {
        await UseAsync(database);
        await using (var db = NewContext())
        {
            var item = new RvAlways { Secret = "mine" };
            db.Items.Add(item);
            _commit.Failures = 1;
            await Assert.ThrowsAnyAsync<Exception>(() => db.SaveChangesAsync(Ct));
            await using (var other = NewContext())
            {
                other.Items.Add(new RvAlways { Secret = "other" });
                await other.SaveChangesAsync(Ct);
            }

            await db.SaveChangesAsync(Ct);
        }

        await using (var db = NewContext())
        {
            var otherId = await db.Database.SqlQueryRaw<int>("SELECT \"Id\" AS \"Value\" FROM \"Items\" WHERE \"Id\" = (SELECT MIN(\"Id\") FROM \"Items\")").SingleAsync(Ct);
            var mineId = await db.Database.SqlQueryRaw<int>("SELECT \"Id\" AS \"Value\" FROM \"Items\" WHERE \"Id\" = (SELECT MAX(\"Id\") FROM \"Items\")").SingleAsync(Ct);
            foreach (var column in new[] { "EfEnvelopeKey", "Secret" })
            {
                await db.Database.ExecuteSqlRawAsync($"UPDATE \"Items\" SET \"{column}\" = (SELECT \"{column}\" FROM \"Items\" WHERE \"Id\" = {mineId}) WHERE \"Id\" = {otherId}", Ct);
            }
        }

        await using var reader = NewContext();
        var moved = await Record.ExceptionAsync(() => reader.Items.AsNoTracking().OrderBy(i => i.Id).FirstAsync(Ct));
        Assert.IsType<EnvelopeDecryptionException>(moved);
    }

    /// <summary>
    /// The same without an injected fault: a deferred unique constraint fails the COMMIT, the application corrects the
    /// value and saves again, as it would with plain EF; the record it stores reads.
    /// </summary>
    [Theory]
    [InlineData("postgres", true)]
    [InlineData("postgres", false)]
    public async Task A_commit_refused_by_a_deferred_constraint_then_corrected_and_saved_again_stores_a_readable_record(string database, bool bind)
    {
        await UseAsync(database);
        _bind = bind;
        await using (var db = NewContext())
        {
            await db.Database.ExecuteSqlRawAsync("ALTER TABLE \"Items\" ADD CONSTRAINT \"UniqueCode\" UNIQUE (\"Code\") DEFERRABLE INITIALLY DEFERRED", Ct);
            db.Items.Add(new RvAlways { Code = 1, Secret = "first" });
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = NewContext())
        {
            db.Database.AutoTransactionBehavior = AutoTransactionBehavior.Always;
            var item = new RvAlways { Code = 1, Secret = "second" };
            db.Items.Add(item);
            await Assert.ThrowsAnyAsync<Exception>(() => db.SaveChangesAsync(Ct));
            item.Code = 2;
            await db.SaveChangesAsync(Ct);
        }

        await using var reader = NewContext();
        Assert.Equal(["first", "second"], (await reader.Items.AsNoTracking().Select(i => i.Secret!).ToListAsync(Ct)).Order(StringComparer.Ordinal));
    }
}

public class RvAlways
{
    public int Id { get; set; }

    public int Code { get; set; }

    [Encrypted]
    public string? Secret { get; set; }
}

public sealed class RvAlwaysContext(DbContextOptions<RvAlwaysContext> options) : DbContext(options)
{
    public DbSet<RvAlways> Items => Set<RvAlways>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        var item = modelBuilder.Entity<RvAlways>().ToTable("Items");
        if (!Database.ProviderName!.Contains("Sqlite", StringComparison.Ordinal))
        {
            // GENERATED ALWAYS: an INSERT that names the key is refused, as SQL Server refuses one into an IDENTITY column.
            Microsoft.EntityFrameworkCore.NpgsqlPropertyBuilderExtensions.UseIdentityAlwaysColumn(item.Property(i => i.Id));
        }
    }
}
