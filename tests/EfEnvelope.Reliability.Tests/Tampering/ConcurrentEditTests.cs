using EfEnvelope.Specification.Tests;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Reliability.Tests.Tampering;

/// <summary>
/// Two contexts editing one record: EfEnvelope merges the second save as plain EF would, or, where it cannot, reports EF's
/// <see cref="DbUpdateConcurrencyException"/>, writes nothing twice, and leaves a row that reads (never one whose seal
/// describes values it does not hold).
/// </summary>
public sealed class ConcurrentEditTests() : ScratchDatabaseTests<EditContext>("concurrentedit")
{
    private readonly KeyManagement.InsecureInMemoryMasterKeyProvider _provider = new("primary");

    protected override EditContext NewContext() => new(OptionsBuilder().UseEnvelopeEncryption(e => e.UseProvider(_provider)).Options);

    private async Task<Guid> SeedAsync(string database = "sqlite")
    {
        var record = new EditRecord { Tenant = "A", Note = "n0", Other = "o0", Home = new EditHome { Street = "s0" } };
        await UseAsync(database);
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

    // EF creates a savepoint before each save inside the application's transaction and rolls a failed save back to it,
    // so the attempt that conflicted leaves nothing behind and the save can run again: the log row is written once.
    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task In_the_application_transaction_edits_merge_and_nothing_is_written_twice(string database)
    {
        var id = await SeedAsync(database);
        await using var db = NewContext();
        var stale = await db.Records.SingleAsync(r => r.Id == id, Ct);
        await EditElsewhereAsync(id, r => r.Other = "o1");

        await using (var transaction = await db.Database.BeginTransactionAsync(Ct))
        {
            stale.Note = "n1";
            db.Logs.Add(new EditLog { Text = "first" });
            db.Logs.Add(new EditLog { Text = "second" });
            await db.SaveChangesAsync(Ct);
            await transaction.CommitAsync(Ct);
        }

        var read = await ReadAsync(id);
        Assert.Equal(("n1", "o1"), (read.Note, read.Other));
        await using var reader = NewContext();
        Assert.Equal(2, await reader.Logs.CountAsync(Ct));
    }

    // Without EF's savepoint nothing undoes the statements of the attempt that conflicted: the conflict is reported, and
    // the application's rollback leaves the row as the other context saved it.
    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task In_a_transaction_without_savepoints_the_conflict_is_reported_and_nothing_is_written_twice(string database)
    {
        var id = await SeedAsync(database);
        await using var db = NewContext();
        db.Database.AutoSavepointsEnabled = false;
        var stale = await db.Records.SingleAsync(r => r.Id == id, Ct);
        await EditElsewhereAsync(id, r => r.Other = "o1");

        await using (var transaction = await db.Database.BeginTransactionAsync(Ct))
        {
            stale.Note = "n1";
            db.Logs.Add(new EditLog { Text = "once" });
            await Assert.ThrowsAsync<DbUpdateConcurrencyException>(() => db.SaveChangesAsync(Ct));
            Assert.True(await db.Logs.CountAsync(Ct) <= 1);
            await transaction.RollbackAsync(Ct);
        }

        var read = await ReadAsync(id);
        Assert.Equal(("n0", "o1"), (read.Note, read.Other));
    }

    // A rolled-back transaction leaves the context holding the key column of the save it undid as stored; the next edit
    // conflicts with the restored row, reads it again, and saves over the values the rollback restored.
    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task An_edit_after_a_rolled_back_save_is_saved_over_the_restored_row(string database)
    {
        var id = await SeedAsync(database);
        await using var db = NewContext();
        var record = await db.Records.SingleAsync(r => r.Id == id, Ct);
        await using (var undone = await db.Database.BeginTransactionAsync(Ct))
        {
            record.Other = "rolled back";
            await db.SaveChangesAsync(Ct);
            await undone.RollbackAsync(Ct);
        }

        await using (var kept = await db.Database.BeginTransactionAsync(Ct))
        {
            record.Note = "n1";
            await db.SaveChangesAsync(Ct);
            await kept.CommitAsync(Ct);
        }

        var read = await ReadAsync(id);
        Assert.Equal(("n1", "o0"), (read.Note, read.Other));
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
