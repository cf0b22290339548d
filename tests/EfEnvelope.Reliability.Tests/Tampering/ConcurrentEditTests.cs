using EfEnvelope.Specification.Tests;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Reliability.Tests.Tampering;

/// <summary>
/// Two contexts editing one record: where EfEnvelope cannot merge the second save as plain EF would, it reports EF's
/// <see cref="DbUpdateConcurrencyException"/>, writes nothing twice, and leaves a row that reads (never one whose seal
/// describes values it does not hold).
/// </summary>
public sealed class ConcurrentEditTests() : ScratchDatabaseTests<EditContext>("concurrentedit")
{
    private readonly KeyManagement.InsecureInMemoryMasterKeyProvider _provider = new("primary");

    protected override EditContext NewContext() => new(OptionsBuilder().UseEnvelopeEncryption(e => e.UseProvider(_provider)).Options);

    private async Task<Guid> SeedAsync()
    {
        var record = new EditRecord { Tenant = "A", Note = "n0", Other = "o0", Home = new EditHome { Street = "s0" } };
        await UseAsync("sqlite");
        await using var db = NewContext();
        db.Records.Add(record);
        await db.SaveChangesAsync(Ct);
        return record.Id;
    }

    private async Task EditElsewhereAsync(Guid id, Action<EditRecord> edit)
    {
        await using var other = NewContext();
        edit(await other.Records.SingleAsync(r => r.Id == id, Ct));
        await other.SaveChangesAsync(Ct);
    }

    private async Task<EditRecord> ReadAsync(Guid id)
    {
        await using var reader = NewContext();
        return await reader.Records.AsNoTracking().SingleAsync(r => r.Id == id, Ct);
    }

    [Fact]
    public async Task A_bound_column_changed_by_another_context_is_reported_not_sealed_over()
    {
        var id = await SeedAsync();
        await using var db = NewContext();
        var stale = await db.Records.SingleAsync(r => r.Id == id, Ct);
        await EditElsewhereAsync(id, r => r.Tenant = "B");

        stale.Note = "n1";
        await Assert.ThrowsAsync<DbUpdateConcurrencyException>(() => db.SaveChangesAsync(Ct));
        Assert.Equal(("B", "n0"), ((await ReadAsync(id)).Tenant, (await ReadAsync(id)).Note));
    }

    [Fact]
    public async Task Without_a_transaction_the_save_is_not_run_again_and_nothing_is_written_twice()
    {
        var id = await SeedAsync();
        await using var db = NewContext();
        db.Database.AutoTransactionBehavior = AutoTransactionBehavior.Never;
        var stale = await db.Records.SingleAsync(r => r.Id == id, Ct);
        await EditElsewhereAsync(id, r => r.Other = "o1");

        stale.Note = "n1";
        db.Logs.Add(new EditLog { Text = "once" });
        await Assert.ThrowsAsync<DbUpdateConcurrencyException>(() => db.SaveChangesAsync(Ct));

        await using var reader = NewContext();
        Assert.True(await reader.Logs.CountAsync(Ct) <= 1);
        Assert.Equal(("n0", "o1"), ((await ReadAsync(id)).Note, (await ReadAsync(id)).Other));
    }

    [Fact]
    public async Task An_owned_record_edited_by_another_context_is_reported_and_the_row_still_reads()
    {
        var id = await SeedAsync();
        await using var db = NewContext();
        var stale = await db.Records.SingleAsync(r => r.Id == id, Ct);
        await EditElsewhereAsync(id, r => r.Home!.Street = "s1");

        stale.Home!.Street = "s2";
        await Assert.ThrowsAsync<DbUpdateConcurrencyException>(() => db.SaveChangesAsync(Ct));
        Assert.Equal("s1", (await ReadAsync(id)).Home!.Street);
    }

    [Fact]
    public async Task Edits_of_different_properties_merge_as_in_plain_EF()
    {
        var id = await SeedAsync();
        await using var db = NewContext();
        var stale = await db.Records.SingleAsync(r => r.Id == id, Ct);
        await EditElsewhereAsync(id, r => r.Other = "o1");

        stale.Note = "n1";
        db.Logs.Add(new EditLog { Text = "once" });
        await db.SaveChangesAsync(Ct);

        var read = await ReadAsync(id);
        Assert.Equal(("A", "n1", "o1", "s0"), (read.Tenant, read.Note, read.Other, read.Home!.Street));
        await using var reader = NewContext();
        Assert.Equal(1, await reader.Logs.CountAsync(Ct));
    }
}

public class EditRecord
{
    public Guid Id { get; set; } = Guid.NewGuid();

    public string Tenant { get; set; } = "";

    [Encrypted]
    public string Note { get; set; } = "";

    [Encrypted]
    public string Other { get; set; } = "";

    public EditHome? Home { get; set; }
}

[Owned]
public class EditHome
{
    [Encrypted]
    public string Street { get; set; } = "";
}

public class EditLog
{
    public int Id { get; set; }

    public string Text { get; set; } = "";
}

public sealed class EditContext(DbContextOptions<EditContext> options) : DbContext(options)
{
    public DbSet<EditRecord> Records => Set<EditRecord>();

    public DbSet<EditLog> Logs => Set<EditLog>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<EditRecord>().Property(r => r.Tenant).IsBoundToRecord();
}
