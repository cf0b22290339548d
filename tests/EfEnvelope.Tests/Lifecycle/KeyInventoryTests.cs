using EfEnvelope.KeyManagement;
using EfEnvelope.Lifecycle;
using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Lifecycle;

/// <summary>The key inventory: what stored rows still need, read from the wrapped keys without decrypting anything.</summary>
public sealed class KeyInventoryTests : IDisposable
{
    private readonly SqliteConnection _connection = new("Data Source=:memory:");
    private readonly InsecureInMemoryMasterKeyProvider _provider = new("old-key");

    public KeyInventoryTests() => _connection.Open();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _connection.Dispose();

    [Fact]
    public async Task Rows_are_counted_per_master_key_and_mode_and_the_old_key_is_needed_until_rotation()
    {
        await using (var db = Clinic())
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Invoices.AddRange(Enumerable.Range(0, 3).Select(i => new Invoice { CardNumber = $"4000-{i}", Amount = i }));
            await db.SaveChangesAsync(Ct);
        }

        _provider.AddKey("new-key").SetPrimaryKey("new-key");
        await using (var db = Clinic(KeyWrappingMode.Direct))
        {
            db.Invoices.AddRange(Enumerable.Range(0, 2).Select(i => new Invoice { CardNumber = $"5000-{i}", Amount = i }));
            await db.SaveChangesAsync(Ct);
        }

        var decryptCalls = _provider.DecryptDataKeyCalls;
        KeyInventory before;
        await using (var db = Clinic())
        {
            before = await EnvelopeKeyLifecycle.InventoryAsync(db, Ct);
        }

        var invoices = Assert.Single(before.Entities, e => e.Entity == nameof(Invoice));
        Assert.Equal(5, invoices.Rows);
        Assert.Equal(new Dictionary<string, long> { ["new-key"] = 2, ["old-key"] = 3 }, invoices.ByMasterKey);
        Assert.Equal(new Dictionary<string, long> { ["cached-kek"] = 3, ["direct"] = 2 }, invoices.ByWrappingMode);
        Assert.Equal(new Dictionary<int, long> { [2] = 5 }, invoices.ByFormatVersion);
        Assert.Equal(3, invoices.DistinctKeyEncryptionKeys);
        Assert.Equal((0, 0, 0), (invoices.RowsWithoutKey, invoices.LegacyPlaintextRows, invoices.UnreadableRows));
        Assert.Equal("new-key", before.PrimaryKeyId);
        Assert.True(before.StillNeeds("old-key"));
        Assert.Equal(decryptCalls, _provider.DecryptDataKeyCalls);

        await using (var db = Clinic())
        {
            Assert.True((await EnvelopeKeyLifecycle.RotateAsync(db, cancellationToken: Ct)).Succeeded);
            var after = await EnvelopeKeyLifecycle.InventoryAsync(db, Ct);
            Assert.False(after.StillNeeds("old-key"));
            Assert.Equal(new Dictionary<string, long> { ["new-key"] = 5 }, Assert.Single(after.Entities, e => e.Entity == nameof(Invoice)).ByMasterKey);
        }
    }

    [Fact]
    public async Task Rows_still_in_a_legacy_plaintext_column_and_damaged_keys_are_counted()
    {
        var options = new DbContextOptionsBuilder<MigratingClinicContext>().UseSqlite(_connection).ManyConfigurationsPerProcess()
            .UseEnvelopeEncryption(e => e.UseProvider(_provider)).Options;
        await using var db = new MigratingClinicContext(options);
        await db.Database.EnsureCreatedAsync(Ct);
        await db.Database.ExecuteSqlRawAsync("INSERT INTO Patients (Id, Name, Ssn_Plaintext) VALUES (1, 'Ann', '078-05-1120'), (2, 'Bob', '219-09-9999')", Ct);
        db.Patients.Add(new ClinicPatient { Id = 3, Name = "Cy", Ssn = "457-55-5462" });
        await db.SaveChangesAsync(Ct);
        await db.Database.ExecuteSqlRawAsync("UPDATE Patients SET EfEnvelopeKey = X'0902' WHERE Id = 3", Ct);

        var patients = Assert.Single((await EnvelopeKeyLifecycle.InventoryAsync(db, Ct)).Entities);

        Assert.Equal((3L, 2L, 2L, 1L), (patients.Rows, patients.RowsWithoutKey, patients.LegacyPlaintextRows, patients.UnreadableRows));
        Assert.Equal(new Dictionary<int, long> { [9] = 1 }, patients.ByFormatVersion);
        Assert.True((await EnvelopeKeyLifecycle.InventoryAsync(db, Ct)).StillNeeds("any-key"), "an unreadable row might need any key");
    }

    [Fact]
    public async Task A_forged_key_id_is_reported_escaped()
    {
        await using var db = Clinic();
        await db.Database.EnsureCreatedAsync(Ct);
        db.Invoices.Add(new Invoice { CardNumber = "4000-1", Amount = 1 });
        await db.SaveChangesAsync(Ct);

        // Version, mode, record id, provider "in-memory", then a key id with a line break and a terminal escape.
        var forgedId = "k\n\u001b[2J";
        var blob = (byte[])[1, 1, .. new byte[16], 9, .. "in-memory"u8, 0, (byte)System.Text.Encoding.UTF8.GetByteCount(forgedId), .. System.Text.Encoding.UTF8.GetBytes(forgedId), 0, 1, (byte)'E', 0, 1, 0, .. new byte[60]];
        await db.Database.ExecuteSqlRawAsync("UPDATE Invoices SET EfEnvelopeKey = {0}", [blob], Ct);

        var invoices = Assert.Single((await EnvelopeKeyLifecycle.InventoryAsync(db, Ct)).Entities, e => e.Entity == nameof(Invoice));
        Assert.Equal(["k\\u000A\\u001B[2J"], invoices.ByMasterKey.Keys);
    }

    private ClinicContext Clinic(KeyWrappingMode mode = KeyWrappingMode.CachedKeyEncryptionKey) =>
        new(new DbContextOptionsBuilder<ClinicContext>().UseSqlite(_connection).ManyConfigurationsPerProcess()
            .UseEnvelopeEncryption(e => e.UseProvider(_provider).UseKeyWrappingMode(mode)).Options);
}
