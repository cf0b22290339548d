using System.Data.Common;
using EfEnvelope.Crypto;
using EfEnvelope.KeyManagement;
using EfEnvelope.Lifecycle;
using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Storage;

namespace EfEnvelope.Reliability.Tests.Tampering;

#pragma warning disable EF1002 // raw SQL built from the test's own table and column names

/// <summary>
/// <c>BindStoreGeneratedKeys()</c> (issue 12, records whose key the database generates): a record is bound to its
/// identity key, and an owned collection item to its generated ordinal, in the save that inserts it, so the moves that
/// AttackReviewTests D5 and D6 pin as the default's gap are refused from the first read, on SQLite and PostgreSQL.
/// </summary>
public sealed class GeneratedKeyBindingTests() : ScratchDatabaseTests<TicketContext>("genkeys")
{
    private readonly InsecureInMemoryMasterKeyProvider _provider = new("primary");
    private readonly FailingKeyUpdate _fault = new();

    protected override TicketContext NewContext() => NewContext(bind: true);

    private TicketContext NewContext(bool bind, bool retrying = false) =>
        new(OptionsBuilder(retrying ? d => new RetryingStrategy(d) : null)
            .UseEnvelopeEncryption(e =>
            {
                e.UseProvider(_provider);
                if (bind)
                {
                    e.BindStoreGeneratedKeys();
                }
            })
            .AddInterceptors(_fault)
            .Options);

    private static async Task<object?> RawAsync(DbContext db, string table, string column, string where)
    {
        var connection = db.Database.GetDbConnection();
        await db.Database.OpenConnectionAsync(Ct);
        try
        {
            await using var command = connection.CreateCommand();
            command.CommandText = $"SELECT \"{column}\" FROM \"{table}\" WHERE {where}";
            var value = await command.ExecuteScalarAsync(Ct);
            return value is DBNull ? null : value;
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    private static async Task CopyAsync(DbContext db, string table, string from, string to, params string[] columns)
    {
        foreach (var column in columns)
        {
            await db.Database.ExecuteSqlRawAsync($"UPDATE \"{table}\" SET \"{column}\" = (SELECT \"{column}\" FROM \"{table}\" WHERE {from}) WHERE {to}", Ct);
        }
    }

    private static byte Flags(object? key)
    {
        Assert.True(WrappedKeyBlob.TryParse((byte[])key!, out var blob, out var error), error);
        return blob.BindingFlags;
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task An_identity_keyed_record_is_bound_to_its_key_by_the_save_that_inserts_it_so_a_move_is_refused_and_not_laundered(string database)
    {
        await UseAsync(database);
        int a, b;
        await using (var db = NewContext())
        {
            var ta = new Ticket { Secret = "ticket-A" };
            var tb = new Ticket { Secret = "ticket-B" };
            db.Tickets.AddRange(ta, tb);
            Assert.Equal(2, await db.SaveChangesAsync(Ct));
            (a, b) = (ta.Id, tb.Id);

            // The tracked records carry the blobs that were stored: an edit in the same context saves and reads.
            ta.Secret = "ticket-A, edited";
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = NewContext())
        {
            Assert.Equal(EnvelopeFormat.FlagKeyBound, Flags(await RawAsync(db, "Tickets", "EfEnvelopeKey", $"\"Id\" = {b}")) & EnvelopeFormat.FlagKeyBound);
            Assert.Equal("ticket-A, edited", (await db.Tickets.AsNoTracking().SingleAsync(t => t.Id == a, Ct)).Secret);
            await CopyAsync(db, "Tickets", $"\"Id\" = {a}", $"\"Id\" = {b}", "EfEnvelopeKey", "Secret");
        }

        await using (var db = NewContext())
        {
            await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.Tickets.AsNoTracking().SingleAsync(t => t.Id == b, Ct));
        }

        // What AttackReviewTests D5 shows for the default: re-encryption would seal the moved record where it sits.
        await using (var job = NewContext())
        {
            var result = await EnvelopeKeyLifecycle.ReencryptAsync(job, cancellationToken: Ct);
            Assert.Contains(result.Failures, f => f.Key.Contains(b.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal));
        }

        await using var reader = NewContext();
        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => reader.Tickets.AsNoTracking().SingleAsync(t => t.Id == b, Ct));
    }

    // PostgreSQL only: EF's default key of a table-mapped owned collection (owner id, generated Id) cannot be generated
    // by SQLite, where plain EF fails the same insert ("NOT NULL constraint failed").
    [Theory]
    [InlineData("postgres")]
    public async Task Owned_collection_items_are_bound_to_their_generated_ordinals_so_two_swapped_items_are_refused(string database)
    {
        await UseAsync(database);
        int id;
        await using (var db = NewContext())
        {
            var ticket = new Ticket { Secret = "with notes", Notes = [new TicketNote { Text = "note one" }, new TicketNote { Text = "note two" }] };
            db.Tickets.Add(ticket);
            db.SaveChanges();
            id = ticket.Id;
        }

        await using (var db = NewContext())
        {
            Assert.Equal(["note one", "note two"], (await db.Tickets.AsNoTracking().Include(t => t.Notes).SingleAsync(Ct)).Notes.Select(n => n.Text).Order());
            var key = await RawAsync(db, "TicketNotes", "EfEnvelopeKey", "\"Text\" IS NOT NULL ORDER BY \"Id\" LIMIT 1");
            Assert.Equal(EnvelopeFormat.FlagKeyBound | EnvelopeFormat.FlagItemKeyBound, Flags(key) & (EnvelopeFormat.FlagKeyBound | EnvelopeFormat.FlagItemKeyBound));

            // Swap the encrypted columns of the two notes (through a copy of the first).
            var ids = await db.Database.SqlQueryRaw<int>($"SELECT \"Id\" AS \"Value\" FROM \"TicketNotes\" WHERE \"TicketId\" = {id} ORDER BY \"Id\"").ToListAsync(Ct);
            foreach (var column in new[] { "EfEnvelopeKey", "Text" })
            {
                var first = await RawAsync(db, "TicketNotes", column, $"\"Id\" = {ids[0]}");
                var second = await RawAsync(db, "TicketNotes", column, $"\"Id\" = {ids[1]}");
                await db.Database.ExecuteSqlRawAsync($"UPDATE \"TicketNotes\" SET \"{column}\" = {{0}} WHERE \"Id\" = {{1}}", [second!, ids[0]], Ct);
                await db.Database.ExecuteSqlRawAsync($"UPDATE \"TicketNotes\" SET \"{column}\" = {{0}} WHERE \"Id\" = {{1}}", [first!, ids[1]], Ct);
            }
        }

        await using var reader = NewContext();
        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => reader.Tickets.AsNoTracking().Include(t => t.Notes).SingleAsync(Ct));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task A_failed_seal_update_rolls_the_inserts_back_and_the_same_entries_save_afterwards(string database)
    {
        await UseAsync(database);
        await using var db = NewContext();
        var ticket = new Ticket { Secret = "retried later" };
        db.Tickets.Add(ticket);

        _fault.Failures = 1;
        _fault.Make = () => new InvalidOperationException("injected failure of the seal update");
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => db.SaveChangesAsync(Ct));
        Assert.Equal("injected failure of the seal update", error.Message);
        Assert.Equal(EntityState.Added, db.Entry(ticket).State);
        await using (var check = NewContext())
        {
            Assert.Equal(0, await check.Tickets.CountAsync(Ct));
        }

        Assert.Equal(1, await db.SaveChangesAsync(Ct));
        await using var reader = NewContext();
        Assert.Equal("retried later", (await reader.Tickets.AsNoTracking().SingleAsync(Ct)).Secret);
        Assert.Equal(EnvelopeFormat.FlagKeyBound, Flags(await RawAsync(reader, "Tickets", "EfEnvelopeKey", $"\"Id\" = {ticket.Id}")) & EnvelopeFormat.FlagKeyBound);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task A_retrying_execution_strategy_retries_the_inserts_and_the_seal_update_together(string database)
    {
        await UseAsync(database);
        await using (var db = NewContext(bind: true, retrying: true))
        {
            db.Tickets.AddRange(new Ticket { Secret = "one" }, new Ticket { Secret = "two" });
            _fault.Failures = 1;
            _fault.Make = () => new TimeoutException("injected transient failure");
            Assert.Equal(2, db.SaveChanges());
            Assert.Equal(0, _fault.Failures);
        }

        await using var reader = NewContext();
        var stored = await reader.Tickets.AsNoTracking().Select(t => t.Secret).ToListAsync(Ct);
        Assert.Equal(["one", "two"], stored.Order());
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Without_a_transaction_to_hold_the_seal_update_the_save_is_refused_before_anything_is_written(string database)
    {
        await UseAsync(database);
        await using (var db = NewContext())
        {
            db.Database.AutoTransactionBehavior = AutoTransactionBehavior.Never;
            var ticket = new Ticket { Secret = "never written" };
            db.Tickets.Add(ticket);
            var error = await Assert.ThrowsAsync<InvalidOperationException>(() => db.SaveChangesAsync(Ct));
            Assert.Contains(typeof(Ticket).FullName!, error.Message, StringComparison.Ordinal);
            Assert.Contains("AutoTransactionBehavior", error.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("never written", error.ToString(), StringComparison.Ordinal);
            Assert.Equal(EntityState.Added, db.Entry(ticket).State);

            // The application's own transaction holds both, and decides.
            await using (var transaction = await db.Database.BeginTransactionAsync(Ct))
            {
                Assert.Equal(1, await db.SaveChangesAsync(Ct));
                await transaction.RollbackAsync(Ct);
            }
        }

        await using var reader = NewContext();
        Assert.Equal(0, await reader.Tickets.CountAsync(Ct));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Without_the_option_an_identity_keyed_record_is_inserted_unbound_as_documented(string database)
    {
        await UseAsync(database);
        await using var db = NewContext(bind: false);
        var ticket = new Ticket { Secret = "unbound until its next write" };
        db.Tickets.Add(ticket);
        await db.SaveChangesAsync(Ct);

        Assert.Equal(0, Flags(await RawAsync(db, "Tickets", "EfEnvelopeKey", $"\"Id\" = {ticket.Id}")) & EnvelopeFormat.FlagKeyBound);
        Assert.Equal(0, _fault.SealUpdates);
    }

    /// <summary>Fails the next seal updates (an <c>UPDATE</c> of a key column) with what <see cref="Make"/> returns; counts them.</summary>
    private sealed class FailingKeyUpdate : DbCommandInterceptor
    {
        public int Failures { get; set; }

        public Func<Exception> Make { get; set; } = () => new InvalidOperationException();

        public int SealUpdates { get; private set; }

        public override InterceptionResult<int> NonQueryExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<int> result)
        {
            Inspect(command);
            return result;
        }

        public override ValueTask<InterceptionResult<int>> NonQueryExecutingAsync(DbCommand command, CommandEventData eventData, InterceptionResult<int> result, CancellationToken cancellationToken = default)
        {
            Inspect(command);
            return ValueTask.FromResult(result);
        }

        private void Inspect(DbCommand command)
        {
            if (!command.CommandText.StartsWith("UPDATE", StringComparison.Ordinal) || !command.CommandText.Contains("\"EfEnvelopeKey\" = ", StringComparison.Ordinal))
            {
                return;
            }

            SealUpdates++;
            if (Failures > 0)
            {
                Failures--;
                throw Make();
            }
        }
    }

    private sealed class RetryingStrategy(ExecutionStrategyDependencies dependencies) : ExecutionStrategy(dependencies, 3, TimeSpan.FromMilliseconds(10))
    {
        protected override bool ShouldRetryOn(Exception exception) => exception is TimeoutException;
    }
}

public class Ticket
{
    public int Id { get; set; }

    [Encrypted]
    public string? Secret { get; set; }

    public List<TicketNote> Notes { get; set; } = [];
}

public class TicketNote
{
    [Encrypted]
    public string? Text { get; set; }
}

public sealed class TicketContext(DbContextOptions<TicketContext> options) : DbContext(options)
{
    public DbSet<Ticket> Tickets => Set<Ticket>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<Ticket>().OwnsMany(t => t.Notes, note => note.ToTable("TicketNotes"));
}
