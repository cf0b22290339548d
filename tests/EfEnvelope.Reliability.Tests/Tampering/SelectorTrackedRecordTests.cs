using EfEnvelope.Specification.Tests;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Reliability.Tests.Tampering;

#pragma warning disable EF1002 // raw SQL built from the test's own constant table and column names

/// <summary>
/// With a per-tenant master-key selector and identity keys (not bound by the seal), a record copied into another
/// tenant's row is refused where EfEnvelope sees both the record and its row's tenant: an owned record once EF tracks
/// it beside its owner, and an entity whose values <c>Reload()</c> brings in.
/// </summary>
public sealed class SelectorTrackedRecordTests() : ScratchDatabaseTests<TenantAccountContext>("selectortracked")
{
    private readonly KeyManagement.InsecureInMemoryMasterKeyProvider _provider = new KeyManagement.InsecureInMemoryMasterKeyProvider("key-a").AddKey("key-b");

    protected override TenantAccountContext NewContext() => new(OptionsBuilder()
        .UseEnvelopeEncryption(e => e.UseProvider(_provider).UseMasterKeySelector(entity => entity is TenantAccount { Tenant: "b" } ? "key-b" : "key-a"))
        .Options);

    private async Task<(int A, int B)> SeedAsync()
    {
        var a = new TenantAccount { Tenant = "a", Secret = "a-secret", Home = new TenantHome { Street = "a-street" } };
        var b = new TenantAccount { Tenant = "b", Secret = "b-secret", Home = new TenantHome { Street = "b-street" } };
        await UseAsync("sqlite");
        await using var db = NewContext();
        db.Accounts.AddRange(a, b);
        await db.SaveChangesAsync(Ct);
        return (a.Id, b.Id);
    }

    private async Task CopyAsync(string[] columns, int from, int to)
    {
        await using var db = NewContext();
        var assignments = string.Join(", ", columns.Select(c => $"\"{c}\" = (SELECT \"{c}\" FROM \"Accounts\" WHERE \"Id\" = {from})"));
        Assert.Equal(1, await db.Database.ExecuteSqlRawAsync($"UPDATE \"Accounts\" SET {assignments} WHERE \"Id\" = {to}", Ct));
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
}

[Microsoft.EntityFrameworkCore.Owned]
public class TenantHome
{
    [Encrypted]
    public string Street { get; set; } = "";
}

public sealed class TenantAccountContext(DbContextOptions<TenantAccountContext> options) : DbContext(options)
{
    public DbSet<TenantAccount> Accounts => Set<TenantAccount>();
}
