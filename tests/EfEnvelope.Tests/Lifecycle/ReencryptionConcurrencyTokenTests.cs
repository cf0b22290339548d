using EfEnvelope.KeyManagement;
using EfEnvelope.Lifecycle;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Lifecycle;

public class CaseNote
{
    public Guid Id { get; set; }

    [Encrypted]
    public string Text { get; set; } = "";

    [Encrypted]
    public string Author { get; set; } = "";
}

/// <summary>PostgreSQL's <c>xmin</c> as the concurrency token: the database changes it on every UPDATE, the job's too.</summary>
public sealed class CaseNoteContext(DbContextOptions<CaseNoteContext> options) : DbContext(options)
{
    public DbSet<CaseNote> Notes => Set<CaseNote>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<CaseNote>().Property<uint>("xmin").IsRowVersion();
}

/// <summary>docs/KEY-MANAGEMENT.md, "Re-encrypting": a database-maintained token turns the one race into a retryable conflict.</summary>
public sealed class ReencryptionConcurrencyTokenTests : IAsyncDisposable
{
    private readonly LifecycleDatabase<PostgresFixture> _database = new();
    private readonly InsecureInMemoryMasterKeyProvider _provider = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _database.DisposeAsync();

    private CaseNoteContext Create() => new(_database.Options<CaseNoteContext>(e => e.UseProvider(_provider)));

    [Fact]
    public async Task An_edit_read_before_a_reencryption_and_saved_after_it_fails_as_a_concurrency_conflict_and_succeeds_on_retry()
    {
        if (_database.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        var id = Guid.NewGuid();
        await using (var db = Create())
        {
            await db.Database.EnsureDeletedAsync(Ct);
            await db.Database.EnsureCreatedAsync(Ct);
            db.Notes.Add(new CaseNote { Id = id, Text = "first", Author = "dr. a" });
            db.Notes.AddRange(Enumerable.Range(0, 9).Select(i => new CaseNote { Id = Guid.NewGuid(), Text = "note " + i, Author = "dr. b" }));
            await db.SaveChangesAsync(Ct);
        }

        // The application reads the note, then the job re-keys every record, then the application saves its edit.
        await using var app = Create();
        var note = await app.Notes.SingleAsync(n => n.Id == id, Ct);
        await using (var job = Create())
        {
            var result = await EnvelopeKeyLifecycle.ReencryptAsync(job, new LifecycleOptions { BatchSize = 4 }, cancellationToken: Ct);
            Assert.Equal(10, result.RecordsChanged);
        }

        note.Text = "edited";
        await Assert.ThrowsAsync<DbUpdateConcurrencyException>(() => app.SaveChangesAsync(Ct));

        // The usual optimistic-concurrency handling: reload, apply the edit again, save.
        await app.Entry(note).ReloadAsync(Ct);
        Assert.Equal("first", note.Text);
        note.Text = "edited";
        await app.SaveChangesAsync(Ct);

        await using var reader = Create();
        reader.ClearEnvelopeKeyCache();
        var stored = await reader.Notes.AsNoTracking().SingleAsync(n => n.Id == id, Ct);
        Assert.Equal("edited", stored.Text);
        Assert.Equal("dr. a", stored.Author);
    }
}
