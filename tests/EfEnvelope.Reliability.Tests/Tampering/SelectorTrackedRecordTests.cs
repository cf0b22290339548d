using EfEnvelope.Specification.Tests;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Reliability.Tests.Tampering;

#pragma warning disable EF1002 // raw SQL built from the test's own constant table and column names

/// <summary>
/// With a per-tenant master-key selector and identity keys (not bound by the seal), a record copied into another
/// tenant's row is refused where EfEnvelope sees both the record and its row's tenant: an owned record once EF tracks
/// it beside its owner or, without tracking, once EF has materialized its owner; an entity whose values
/// <c>Reload()</c> brings in.
/// </summary>
public sealed class SelectorTrackedRecordTests() : ScratchDatabaseTests<TenantAccountContext>("selectortracked")
{
    private readonly KeyManagement.InsecureInMemoryMasterKeyProvider _provider = new KeyManagement.InsecureInMemoryMasterKeyProvider("key-a").AddKey("key-b");

    protected override TenantAccountContext NewContext() => new(OptionsBuilder()
        .UseEnvelopeEncryption(e => e.UseProvider(_provider).UseMasterKeySelector(entity => entity is TenantAccount { Tenant: "b" } ? "key-b" : "key-a"))
        .Options);

    private async Task<(int A, int B)> SeedAsync(string database = "sqlite")
    {
        var a = new TenantAccount { Tenant = "a", Secret = "a-secret", Home = new TenantHome { Street = "a-street" }, Cards = [new TenantCard { Id = 1, Number = "a-card" }], Profile = new TenantProfile { Motto = "a-motto" } };
        var b = new TenantAccount { Tenant = "b", Secret = "b-secret", Home = new TenantHome { Street = "b-street" }, Cards = [new TenantCard { Id = 1, Number = "b-card" }], Profile = new TenantProfile { Motto = "b-motto" } };
        await UseAsync(database);
        await using var db = NewContext();
        db.Accounts.AddRange(a, b);
        await db.SaveChangesAsync(Ct);
        return (a.Id, b.Id);
    }

    private async Task CopyAsync(string[] columns, int from, int to) => await CopyAsync("Accounts", "Id", columns, from, to);

    private async Task CopyAsync(string table, string rowKey, string[] columns, int from, int to)
    {
        await using var db = NewContext();
        var assignments = string.Join(", ", columns.Select(c => $"\"{c}\" = (SELECT \"{c}\" FROM \"{table}\" WHERE \"{rowKey}\" = {from})"));
        Assert.Equal(1, await db.Database.ExecuteSqlRawAsync($"UPDATE \"{table}\" SET {assignments} WHERE \"{rowKey}\" = {to}", Ct));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task An_owned_record_copied_into_another_tenants_row_is_refused_by_a_query_without_tracking(string database)
    {
        var (a, b) = await SeedAsync(database);
        await CopyAsync(["Home_Street", "Home_EfEnvelopeKey"], a, b);

        await using var db = NewContext();
        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.Accounts.AsNoTracking().SingleAsync(x => x.Id == b, Ct));
        Assert.Contains("'key-a'", error.Message, StringComparison.Ordinal);
        Assert.Contains("'key-b'", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("a-street", error.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.Accounts.AsNoTrackingWithIdentityResolution().OrderBy(x => x.Id).ToListAsync(Ct));

        // Tenant a's own row, and every row before the copy, read without tracking as with it.
        var own = await db.Accounts.AsNoTracking().SingleAsync(x => x.Id == a, Ct);
        Assert.Equal(("a-street", "a-card"), (own.Home!.Street, own.Cards.Single().Number));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task An_owned_collection_item_copied_into_another_tenants_row_is_refused_by_a_split_query_without_tracking(string database)
    {
        var (a, b) = await SeedAsync(database);
        await using (var db = NewContext())
        {
            var cards = db.Model.FindEntityType(typeof(TenantCard))!;
            var table = cards.GetTableName()!;
            var owner = cards.FindOwnership()!.Properties.Single().GetColumnName();
            await CopyAsync(table, owner, ["Number", "EfEnvelopeKey"], a, b);
        }

        await using var reader = NewContext();
        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => reader.Accounts.AsNoTracking().AsSplitQuery().Where(x => x.Id == b).ToListAsync(Ct));
        Assert.Contains("'key-a'", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("a-card", error.Message, StringComparison.Ordinal);
        Assert.Equal(["a-card"], (await reader.Accounts.AsNoTracking().AsSplitQuery().SingleAsync(x => x.Id == a, Ct)).Cards.Select(c => c.Number));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task A_JSON_owned_document_copied_into_another_tenants_row_is_refused_by_a_query_without_tracking(string database)
    {
        var (a, b) = await SeedAsync(database);
        await CopyAsync(["Profile"], a, b);

        await using var db = NewContext();
        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.Accounts.AsNoTracking().SingleAsync(x => x.Id == b, Ct));
        Assert.DoesNotContain("a-motto", error.Message, StringComparison.Ordinal);
        Assert.Equal("a-motto", (await db.Accounts.AsNoTracking().SingleAsync(x => x.Id == a, Ct)).Profile!.Motto);
    }

    [Fact]
    public async Task An_owner_read_by_an_earlier_query_never_answers_for_an_owned_record_read_without_it()
    {
        var (a, _) = await SeedAsync();
        await using var db = NewContext();
        var kept = await db.Accounts.AsNoTracking().SingleAsync(x => x.Id == a, Ct);
        await using (var attacker = NewContext())
        {
            Assert.Equal(1, await attacker.Database.ExecuteSqlRawAsync($"UPDATE \"Accounts\" SET \"Tenant\" = 'b' WHERE \"Id\" = {a}", Ct));
        }

        // Before, the owner kept from the first query answered for the row: tenant a's street came back in a query for
        // tenant b's rows. Now only the owners of the query itself answer, and this one materializes none.
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => db.Accounts.AsNoTracking().Where(x => x.Tenant == "b").Select(x => x.Home).ToListAsync(Ct));
        Assert.DoesNotContain("a-street", error.Message, StringComparison.Ordinal);
        await Assert.ThrowsAnyAsync<InvalidOperationException>(() => db.Accounts.AsNoTracking().SelectMany(x => x.Cards).Select(c => c.Number).ToListAsync(Ct));
        GC.KeepAlive(kept);
    }

    [Fact]
    public async Task An_owner_with_a_binary_key_is_found_for_its_owned_records_without_tracking()
    {
        await SeedAsync();
        await using (var db = NewContext())
        {
            db.Binary.Add(new BinaryKeyedAccount { Id = [1, 2, 3], Home = new TenantHome { Street = "binary-street" } });
            await db.SaveChangesAsync(Ct);
        }

        await using var reader = NewContext();
        Assert.Equal("binary-street", (await reader.Binary.AsNoTracking().SingleAsync(Ct)).Home!.Street);
    }

    [Fact]
    public async Task An_owned_member_projected_without_its_owner_and_without_tracking_is_refused_with_the_fix()
    {
        var (a, _) = await SeedAsync();

        await using var db = NewContext();
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => db.Accounts.AsNoTracking().Where(x => x.Id == a).Select(x => x.Home).SingleAsync(Ct));
        Assert.Contains("TenantHome", error.Message, StringComparison.Ordinal);
        Assert.Contains("Select the owning entity in the query", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("a-street", error.Message, StringComparison.Ordinal);

        // With its owner in the projection, it reads.
        var row = await db.Accounts.AsNoTracking().Where(x => x.Id == a).Select(x => new { Account = x, x.Tenant }).SingleAsync(Ct);
        Assert.Equal("a-street", row.Account.Home!.Street);
    }

    [Fact]
    public async Task An_owned_record_copied_into_another_tenants_row_is_refused_by_a_tracking_query_and_so_never_rewritten()
    {
        var (a, b) = await SeedAsync();
        await CopyAsync(["Home_Street", "Home_EfEnvelopeKey"], a, b);

        await using var db = NewContext();
        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.Accounts.SingleAsync(x => x.Id == b, Ct));
        Assert.Contains("'key-a'", error.Message, StringComparison.Ordinal);
        Assert.Contains("'key-b'", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("a-street", error.Message, StringComparison.Ordinal);

        // EF tracked the owned record before the check: the same context does not return its plaintext afterwards,
        // and refuses to save it where it is (which would launder it under tenant b's key).
        var again = await db.Accounts.SingleAsync(x => x.Id == b, Ct);
        Assert.NotEqual("a-street", again.Home?.Street);
        again.Home!.Street = "laundered";
        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.SaveChangesAsync(Ct));

        // Tenant a's own row still reads.
        await using var reader = NewContext();
        Assert.Equal("a-street", (await reader.Accounts.SingleAsync(x => x.Id == a, Ct)).Home!.Street);
    }

    [Fact]
    public async Task A_record_copied_into_another_tenants_row_is_not_shown_by_Reload_and_cannot_be_saved_there()
    {
        var (a, b) = await SeedAsync();
        await using var db = NewContext();
        var account = await db.Accounts.SingleAsync(x => x.Id == b, Ct);
        await CopyAsync(["EfEnvelopeKey", "Secret"], a, b);

        await db.Entry(account).ReloadAsync(Ct);

        Assert.NotEqual("a-secret", account.Secret);
        account.Tenant = "b";
        account.Secret = "rewritten";
        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.SaveChangesAsync(Ct));
    }
}

public class TenantAccount
{
    public int Id { get; set; }

    public string Tenant { get; set; } = "";

    [Encrypted]
    public string Secret { get; set; } = "";

    public TenantHome? Home { get; set; }

    public List<TenantCard> Cards { get; set; } = [];

    public TenantProfile? Profile { get; set; }
}

[Microsoft.EntityFrameworkCore.Owned]
public class TenantHome
{
    [Encrypted]
    public string Street { get; set; } = "";
}

[Microsoft.EntityFrameworkCore.Owned]
public class TenantCard
{
    // Set by the test (1 in each account), so that a card copied between accounts keeps the key its seal binds.
    [System.ComponentModel.DataAnnotations.Schema.DatabaseGenerated(System.ComponentModel.DataAnnotations.Schema.DatabaseGeneratedOption.None)]
    public int Id { get; set; }

    [Encrypted]
    public string Number { get; set; } = "";
}

public class TenantProfile
{
    [Encrypted]
    public string Motto { get; set; } = "";
}

public class BinaryKeyedAccount
{
    public byte[] Id { get; set; } = [];

    public TenantHome? Home { get; set; }
}

public sealed class TenantAccountContext(DbContextOptions<TenantAccountContext> options) : DbContext(options)
{
    public DbSet<TenantAccount> Accounts => Set<TenantAccount>();

    public DbSet<BinaryKeyedAccount> Binary => Set<BinaryKeyedAccount>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<TenantAccount>().OwnsOne(a => a.Profile, p => p.ToJson());
}
