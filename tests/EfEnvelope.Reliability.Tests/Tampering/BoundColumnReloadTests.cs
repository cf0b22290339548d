using EfEnvelope.KeyManagement;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Reliability.Tests.Tampering;

#pragma warning disable EF1002 // raw SQL built from the test's own table and column names

/// <summary>
/// A column bound to the record seal (<c>IsBoundToRecord()</c>) that changes in the database after a context read the
/// record reaches the context through <c>Reload()</c> or <c>SetValues</c>, not through a query that checks the seal. A
/// forged change must not be sealed by the next save (found by an attacker probe); a genuine change, saved by another
/// context under a new seal, must reload cleanly.
/// </summary>
public sealed class BoundColumnReloadTests() : ScratchDatabaseTests<TenantBoundContext>("boundreload")
{
    private readonly InsecureInMemoryMasterKeyProvider _provider = new InsecureInMemoryMasterKeyProvider("tenant-1").AddKey("tenant-2");

    protected override TenantBoundContext NewContext() => new(OptionsBuilder()
        .UseEnvelopeEncryption(e => e.UseProvider(_provider).UseMasterKeySelector(entity => entity is TenantBound t ? $"tenant-{t.TenantId}" : null))
        .Options);

    private async Task<Guid> SeedAsync(string database)
    {
        await UseAsync(database);
        await using var db = NewContext();
        var row = new TenantBound { Id = Guid.NewGuid(), TenantId = 1, Secret = "tenant-1 secret" };
        db.Rows.Add(row);
        await db.SaveChangesAsync(Ct);
        return row.Id;
    }

    private async Task ForgeTenantAsync(Guid id)
    {
        await using var db = NewContext();
        Assert.Equal(1, await db.Database.ExecuteSqlAsync($"UPDATE \"TenantBound\" SET \"TenantId\" = 2 WHERE \"Id\" = {id}", Ct));
    }

    private async Task AssertRefusedWhenReadAsync(Guid id)
    {
        await using var reader = NewContext();
        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => reader.Rows.SingleAsync(r => r.Id == id, Ct));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task A_forged_bound_column_brought_in_by_Reload_is_refused_by_the_next_save_instead_of_sealed(string database)
    {
        var id = await SeedAsync(database);
        await using var db = NewContext();
        var row = await db.Rows.SingleAsync(r => r.Id == id, Ct);
        await ForgeTenantAsync(id);
        await AssertRefusedWhenReadAsync(id);

        await db.Entry(row).ReloadAsync(Ct);
        row.Secret = "edited";
        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.SaveChangesAsync(Ct));
        Assert.DoesNotContain("tenant-1 secret", error.Message, StringComparison.Ordinal);

        // Not laundered: the row still reads as forged.
        await AssertRefusedWhenReadAsync(id);
    }

    [Fact]
    public async Task A_forged_bound_column_brought_in_by_SetValues_of_the_database_values_is_refused_by_the_next_save()
    {
        var id = await SeedAsync("sqlite");
        await using var db = NewContext();
        var row = await db.Rows.SingleAsync(r => r.Id == id, Ct);
        await ForgeTenantAsync(id);

        var stored = (await db.Entry(row).GetDatabaseValuesAsync(Ct))!;
        #pragma warning disable EFENV009 // Brings the forged stored values in on purpose; no unsaved edit is pending.
        db.Entry(row).CurrentValues.SetValues(stored);
        #pragma warning restore EFENV009
        db.Entry(row).OriginalValues.SetValues(stored);
        row.Secret = "edited";
        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.SaveChangesAsync(Ct));
        await AssertRefusedWhenReadAsync(id);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task A_record_another_context_moved_to_another_tenant_reloads_and_saves(string database)
    {
        var id = await SeedAsync(database);
        await using var db = NewContext();
        var row = await db.Rows.SingleAsync(r => r.Id == id, Ct);
        await using (var other = NewContext())
        {
            var moved = await other.Rows.SingleAsync(r => r.Id == id, Ct);
            (moved.TenantId, moved.Secret) = (2, "tenant-2 secret");
            await other.SaveChangesAsync(Ct);
        }

        await db.Entry(row).ReloadAsync(Ct);
        Assert.Equal((2, "tenant-2 secret"), (row.TenantId, row.Secret));
        row.Secret = "edited";
        await db.SaveChangesAsync(Ct);

        await using var reader = NewContext();
        var read = await reader.Rows.SingleAsync(r => r.Id == id, Ct);
        Assert.Equal((2, "edited"), (read.TenantId, read.Secret));
    }

    [Fact]
    public async Task The_applications_own_edit_of_a_bound_column_through_SetValues_is_sealed_by_the_save()
    {
        var id = await SeedAsync("sqlite");
        await using var db = NewContext();
        var row = await db.Rows.SingleAsync(r => r.Id == id, Ct);

        db.Entry(row).CurrentValues.SetValues(new { TenantId = 2 });
        row.Secret = "moved";
        await db.SaveChangesAsync(Ct);

        await using var reader = NewContext();
        var read = await reader.Rows.SingleAsync(r => r.Id == id, Ct);
        Assert.Equal((2, "moved"), (read.TenantId, read.Secret));
    }
}

public class TenantBound
{
    public Guid Id { get; set; }

    public int TenantId { get; set; }

    [Encrypted]
    public string? Secret { get; set; }
}

public sealed class TenantBoundContext(DbContextOptions<TenantBoundContext> options) : DbContext(options)
{
    public DbSet<TenantBound> Rows => Set<TenantBound>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<TenantBound>(row =>
        {
            row.ToTable("TenantBound");
            row.Property(r => r.TenantId).IsBoundToRecord();
        });
}
