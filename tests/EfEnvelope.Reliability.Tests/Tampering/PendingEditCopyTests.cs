using EfEnvelope.KeyManagement;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Reliability.Tests.Tampering;

#pragma warning disable EF1002 // raw SQL built from the test's own table and column names

/// <summary>
/// Stored values copied over an unsaved edit (<c>CurrentValues.SetValues(OriginalValues)</c>, or of
/// <c>GetDatabaseValues()</c>) take the edit back, as for a plain property: the record's key column is marked while the
/// edit is pending so that EF reports the copy (EncryptionChangeDetector). What the copy brings in is either the
/// record EfEnvelope already holds or is decrypted and checked against the record's seal; a ciphertext or key column
/// moved in from another row, in the database or in the entry's original values, is refused, never restored as the
/// record's plaintext, and the record cannot be saved (so the forgery is not sealed).
/// </summary>
public sealed class PendingEditCopyTests() : ScratchDatabaseTests<VaultContext>("pendingcopy")
{
    private readonly InsecureInMemoryMasterKeyProvider _provider = new();

    protected override VaultContext NewContext() => new(OptionsBuilder().UseEnvelopeEncryption(e => e.UseProvider(_provider)).Options);

    private async Task<(int A, int B)> SeedAsync(string database)
    {
        await UseAsync(database);
        await using var db = NewContext();
        var a = new Vault { Label = "a", Secret = "secret a", Pin = "1111" };
        var b = new Vault { Label = "b", Secret = "secret b", Pin = "2222" };
        db.AddRange(a, b);
        await db.SaveChangesAsync(Ct);
        return (a.Id, b.Id);
    }

    private async Task<Vault> ReadAsync(int id)
    {
        await using var db = NewContext();
        return await db.Vaults.AsNoTracking().SingleAsync(v => v.Id == id, Ct);
    }

    private async Task AssertRefusedWhenReadAsync(int id)
    {
        await using var reader = NewContext();
        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => reader.Vaults.SingleAsync(v => v.Id == id, Ct));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Original_values_copied_over_an_edit_take_it_back_and_the_save_writes_a_record_that_reads(string database)
    {
        var (a, _) = await SeedAsync(database);
        await using (var db = NewContext())
        {
            var vault = await db.Vaults.SingleAsync(v => v.Id == a, Ct);
            vault.Secret = "edited";
            vault.Pin = null;
            vault.Label = "edited";
            db.Entry(vault).CurrentValues.SetValues(db.Entry(vault).OriginalValues);

            Assert.Equal(("a", "secret a", "1111"), (vault.Label, vault.Secret, vault.Pin));
            Assert.Equal(1, await db.SaveChangesAsync(Ct));
        }

        var stored = await ReadAsync(a);
        Assert.Equal(("a", "secret a", "1111"), (stored.Label, stored.Secret, stored.Pin));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task After_a_failed_save_the_copy_still_takes_the_edit_back(string database)
    {
        var (a, _) = await SeedAsync(database);
        await using (var db = NewContext())
        {
            var vault = await db.Vaults.SingleAsync(v => v.Id == a, Ct);
            vault.Secret = "edited";
            vault.Label = "b"; // unique: the save fails after encrypting and assigning the record
            await Assert.ThrowsAsync<DbUpdateException>(() => db.SaveChangesAsync(Ct));

            db.Entry(vault).CurrentValues.SetValues(db.Entry(vault).OriginalValues);
            Assert.Equal(("a", "secret a"), (vault.Label, vault.Secret));
            Assert.Equal(1, await db.SaveChangesAsync(Ct));
        }

        var stored = await ReadAsync(a);
        Assert.Equal(("a", "secret a", "1111"), (stored.Label, stored.Secret, stored.Pin));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task A_ciphertext_moved_in_from_another_row_reaches_the_edit_through_the_database_values_and_is_refused(string database)
    {
        var (a, b) = await SeedAsync(database);
        await using var db = NewContext();
        var vault = await db.Vaults.SingleAsync(v => v.Id == a, Ct);
        vault.Secret = "edited";
        await db.Database.ExecuteSqlRawAsync($"UPDATE \"Vaults\" SET \"Secret\" = (SELECT \"Secret\" FROM \"Vaults\" WHERE \"Id\" = {b}) WHERE \"Id\" = {a}", Ct);

        db.Entry(vault).CurrentValues.SetValues((await db.Entry(vault).GetDatabaseValuesAsync(Ct))!);

        Assert.NotEqual("secret b", vault.Secret);
        Assert.NotEqual("edited", vault.Secret);
        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.SaveChangesAsync(Ct));
        await AssertRefusedWhenReadAsync(a);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Another_rows_key_or_ciphertext_put_in_the_original_values_is_verified_by_the_copy_and_refused(string database)
    {
        var (a, b) = await SeedAsync(database);
        foreach (var column in new[] { "EfEnvelopeKey", "Secret_Ciphertext" })
        {
            await using var db = NewContext();
            var vault = await db.Vaults.SingleAsync(v => v.Id == a, Ct);
            var other = await db.Vaults.SingleAsync(v => v.Id == b, Ct);
            vault.Secret = "edited";
            db.Entry(vault).OriginalValues[column] = db.Entry(other).Property<byte[]>(column).CurrentValue;

            db.Entry(vault).CurrentValues.SetValues(db.Entry(vault).OriginalValues);

            Assert.NotEqual("secret b", vault.Secret);
            Assert.NotEqual("edited", vault.Secret);
            await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.SaveChangesAsync(Ct));
        }

        var stored = await ReadAsync(a);
        Assert.Equal(("a", "secret a", "1111"), (stored.Label, stored.Secret, stored.Pin));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task State_Unchanged_after_an_edit_leaves_no_mark_that_would_write_the_key_column_over_another_save(string database)
    {
        var (a, _) = await SeedAsync(database);
        await using var db = NewContext();
        var vault = await db.Vaults.SingleAsync(v => v.Id == a, Ct);
        vault.Secret = "edited";
        db.ChangeTracker.DetectChanges();
        db.Entry(vault).State = EntityState.Unchanged;
        Assert.Equal("secret a", vault.Secret);

        await using (var other = NewContext())
        {
            (await other.Vaults.SingleAsync(v => v.Id == a, Ct)).Secret = "saved elsewhere";
            await other.SaveChangesAsync(Ct);
        }

        vault.Label = "renamed";
        Assert.Equal(1, await db.SaveChangesAsync(Ct));
        var stored = await ReadAsync(a);
        Assert.Equal(("renamed", "saved elsewhere"), (stored.Label, stored.Secret));
    }
}

public class Vault
{
    public int Id { get; set; }

    public string Label { get; set; } = "";

    [Encrypted]
    public string? Secret { get; set; }

    [Encrypted]
    public string? Pin { get; set; }
}

public sealed class VaultContext(DbContextOptions<VaultContext> options) : DbContext(options)
{
    public DbSet<Vault> Vaults => Set<Vault>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<Vault>(vault =>
        {
            vault.ToTable("Vaults");
            vault.HasIndex(v => v.Label).IsUnique();
        });
}
