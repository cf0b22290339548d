using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Reliability.Tests.Tampering;

#pragma warning disable EF1002 // raw SQL built from the test's own file names

/// <summary>
/// A whole row copied from one database into another (database- or schema-per-tenant) that shares the master key: a
/// record names no store, so it reads there unless each store has its own application name, which every wrapped key
/// is bound to (docs/SECURITY.md, found by an attacker probe).
/// </summary>
public sealed class CrossStoreCopyTests : IDisposable
{
    private readonly InsecureInMemoryMasterKeyProvider _provider = new("shared-master-key");
    private readonly string _first = Path.Combine(Path.GetTempPath(), $"efenvelope-store-a-{Guid.NewGuid():N}.db");
    private readonly string _second = Path.Combine(Path.GetTempPath(), $"efenvelope-store-b-{Guid.NewGuid():N}.db");

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose()
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        File.Delete(_first);
        File.Delete(_second);
    }

    private StoreContext Open(string path, string? applicationName) => new(new DbContextOptionsBuilder<StoreContext>()
        .ManyConfigurationsPerProcess()
        .UseSqlite($"Data Source={path}")
        .UseEnvelopeEncryption(e =>
        {
            e.UseProvider(_provider).RequireSealedRecords();
            if (applicationName is not null)
            {
                e.UseApplicationName(applicationName);
            }
        })
        .Options);

    // Writes a row in the first store and copies it, as stored, into the second.
    private async Task<Guid> CopyRowAsync(string? firstName, string? secondName)
    {
        var id = Guid.NewGuid();
        await using (var first = Open(_first, firstName))
        {
            await first.Database.EnsureCreatedAsync(Ct);
            first.Records.Add(new StoreRecord { Id = id, Secret = "store A only" });
            await first.SaveChangesAsync(Ct);
        }

        await using var second = Open(_second, secondName);
        await second.Database.EnsureCreatedAsync(Ct);
        await second.Database.ExecuteSqlRawAsync($"ATTACH DATABASE '{_first}' AS other", Ct);
        await second.Database.ExecuteSqlRawAsync("INSERT INTO \"Records\" SELECT * FROM other.\"Records\"", Ct);
        await second.Database.ExecuteSqlRawAsync("DETACH DATABASE other", Ct);
        return id;
    }

    [Fact]
    public async Task A_row_copied_between_stores_that_share_the_master_key_and_application_name_reads_there_a_documented_gap()
    {
        var id = await CopyRowAsync(null, null);

        await using var second = Open(_second, null);
        Assert.Equal("store A only", (await second.Records.SingleAsync(r => r.Id == id, Ct)).Secret);
    }

    [Fact]
    public async Task A_row_copied_between_stores_with_their_own_application_names_is_refused()
    {
        var id = await CopyRowAsync("clinic-a", "clinic-b");

        await using var second = Open(_second, "clinic-b");
        var error = await Assert.ThrowsAnyAsync<Exception>(() => second.Records.SingleAsync(r => r.Id == id, Ct));
        Assert.True(error is EnvelopeDecryptionException or MasterKeyException, error.ToString());
        Assert.DoesNotContain("store A only", error.ToString(), StringComparison.Ordinal);

        // Each store still reads its own rows.
        await using var first = Open(_first, "clinic-a");
        Assert.Equal("store A only", (await first.Records.SingleAsync(r => r.Id == id, Ct)).Secret);
    }
}

public class StoreRecord
{
    public Guid Id { get; set; }

    [Encrypted]
    public string Secret { get; set; } = "";
}

public sealed class StoreContext(DbContextOptions<StoreContext> options) : DbContext(options)
{
    public DbSet<StoreRecord> Records => Set<StoreRecord>();
}
