using System.Data.Common;
using EfEnvelope.Crypto;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Reliability.Tests.Tampering;

#pragma warning disable EF1002 // raw SQL built from the test's own table and column names

/// <summary>
/// BindStoreGeneratedKeys() across mappings and save shapes (found by an independent review): owned and JSON-owned
/// types, TPH and TPT, mixed saves, unaccepted saves, large saves, application interceptors and transactions, and the
/// blob an INSERT writes, which must verify nowhere.
/// </summary>
public sealed class GeneratedKeyBindingMappingTests() : ScratchDatabaseTests<RvContext>("genkeyrv")
{
    private readonly InsecureInMemoryMasterKeyProvider _provider = new("primary");

    protected override RvContext NewContext() => NewContext(bind: true);

    private RvContext NewContext(bool bind, bool direct = false, params IInterceptor[] interceptors) =>
        new(OptionsBuilder()
            .UseEnvelopeEncryption(e =>
            {
                e.UseProvider(_provider);
                if (bind)
                {
                    e.BindStoreGeneratedKeys();
                }

                if (direct)
                {
                    e.UseKeyWrappingMode(KeyWrappingMode.Direct);
                }
            })
            .AddInterceptors(interceptors)
            .Options);

    private static async Task<object?> RawAsync(DbContext db, string sql)
    {
        var connection = db.Database.GetDbConnection();
        await db.Database.OpenConnectionAsync(Ct);
        try
        {
            await using var command = connection.CreateCommand();
            command.CommandText = sql;
            var value = await command.ExecuteScalarAsync(Ct);
            return value is DBNull ? null : value;
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    private static string KeyColumn(DbContext db, Type type, string table)
    {
        var property = db.Model.FindEntityType(type)!.FindProperty("EfEnvelopeKey")!;
        return property.GetColumnName(StoreObjectIdentifier.Table(table))!;
    }

    private static async Task<byte> FlagsAsync(DbContext db, Type type, string table, string where)
    {
        var raw = await RawAsync(db, $"SELECT \"{KeyColumn(db, type, table)}\" FROM \"{table}\" WHERE {where}");
        Assert.True(WrappedKeyBlob.TryParse((byte[])raw!, out var blob, out var error), error);
        return blob.BindingFlags;
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task A_table_split_owned_one_and_a_json_owned_one_under_an_identity_owner_save_read_and_edit(string database)
    {
        await UseAsync(database);
        int id;
        await using (var db = NewContext())
        {
            var ticket = new RvTicket { Secret = "s1", Address = new RvAddress { Street = "street 1" }, Prefs = new RvPrefs { Color = "red" } };
            db.Tickets.Add(ticket);
            Assert.Equal(1, await db.SaveChangesAsync(Ct) > 0 ? 1 : 0);
            id = ticket.Id;
            Assert.Equal(EntityState.Unchanged, db.Entry(ticket).State);
            Assert.Equal(EntityState.Unchanged, db.Entry(ticket.Address).State);

            // Edit all three in the same context.
            ticket.Address.Street = "street 2";
            ticket.Prefs.Color = "blue";
            ticket.Secret = "s2";
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = NewContext())
        {
            Assert.Equal(EnvelopeFormat.FlagKeyBound, await FlagsAsync(db, typeof(RvTicket), "Tickets", $"\"Id\" = {id}") & EnvelopeFormat.FlagKeyBound);
            Assert.Equal(EnvelopeFormat.FlagKeyBound, await FlagsAsync(db, typeof(RvAddress), "Tickets", $"\"Id\" = {id}") & EnvelopeFormat.FlagKeyBound);
            var ticket = await db.Tickets.SingleAsync(t => t.Id == id, Ct);
            Assert.Equal(("s2", "street 2", "blue"), (ticket.Secret, ticket.Address!.Street, ticket.Prefs!.Color));
            ticket.Address.Street = "street 3";
            ticket.Prefs.Color = "green";
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = NewContext())
        {
            var ticket = await db.Tickets.AsNoTracking().SingleAsync(t => t.Id == id, Ct);
            Assert.Equal(("s2", "street 3", "green"), (ticket.Secret, ticket.Address!.Street, ticket.Prefs!.Color));
        }
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Tph_and_tpt_hierarchies_with_identity_keys_save_read_and_edit(string database)
    {
        await UseAsync(database);
        await using (var db = NewContext())
        {
            db.Payments.AddRange(new RvPayment { Memo = "base" }, new RvCard { Memo = "card", Last4 = "4242" });
            db.Animals.AddRange(new RvAnimal { Name = "generic" }, new RvDog { Name = "rex", Bark = "woof" });
            await db.SaveChangesAsync(Ct);
            var card = db.Payments.Local.OfType<RvCard>().Single();
            var dog = db.Animals.Local.OfType<RvDog>().Single();
            card.Last4 = "1111";
            dog.Bark = "arf";
            dog.Name = "rex2";
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = NewContext())
        {
            var payments = await db.Payments.ToListAsync(Ct);
            var animals = await db.Animals.ToListAsync(Ct);
            Assert.Equal(["base:", "card:1111"], payments.Select(p => $"{p.Memo}:{(p as RvCard)?.Last4}").Order(StringComparer.Ordinal));
            Assert.Equal(["generic:", "rex2:arf"], animals.Select(a => $"{a.Name}:{(a as RvDog)?.Bark}").Order(StringComparer.Ordinal));
            foreach (var p in payments)
            {
                Assert.Equal(EnvelopeFormat.FlagKeyBound, await FlagsAsync(db, typeof(RvPayment), "Payments", $"\"Id\" = {p.Id}") & EnvelopeFormat.FlagKeyBound);
            }

            foreach (var a in animals)
            {
                Assert.Equal(EnvelopeFormat.FlagKeyBound, await FlagsAsync(db, typeof(RvAnimal), "Animals", $"\"Id\" = {a.Id}") & EnvelopeFormat.FlagKeyBound);
            }

            payments.OfType<RvCard>().Single().Last4 = "2222";
            animals.OfType<RvDog>().Single().Bark = "grr";
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = NewContext())
        {
            Assert.Equal("2222", (await db.Payments.OfType<RvCard>().SingleAsync(Ct)).Last4);
            Assert.Equal("grr", (await db.Animals.OfType<RvDog>().SingleAsync(Ct)).Bark);
        }
    }

    [Theory]
    [InlineData("sqlite", false)]
    [InlineData("sqlite", true)]
    [InlineData("postgres", false)]
    [InlineData("postgres", true)]
    public async Task A_save_mixing_inserts_edits_and_deletes_returns_what_plain_ef_returns_and_leaves_the_same_states(string database, bool sync)
    {
        await UseAsync(database);
        int keep, drop;
        await using (var db = NewContext())
        {
            var a = new RvTicket { Secret = "keep" };
            var b = new RvTicket { Secret = "drop" };
            db.Tickets.AddRange(a, b);
            await db.SaveChangesAsync(Ct);
            (keep, drop) = (a.Id, b.Id);
        }

        int bound, plain;
        RvTicket added;
        await using (var db = NewContext())
        {
            var a = await db.Tickets.SingleAsync(t => t.Id == keep, Ct);
            var b = await db.Tickets.SingleAsync(t => t.Id == drop, Ct);
            a.Secret = "kept, edited";
            db.Tickets.Remove(b);
            added = new RvTicket { Secret = "new", Address = new RvAddress { Street = "new street" } };
            db.Tickets.Add(added);
            db.Tickets.Add(new RvTicket { Secret = "new 2" });
            bound = sync ? db.SaveChanges() : await db.SaveChangesAsync(Ct);
            Assert.All(db.ChangeTracker.Entries(), e => Assert.Equal(EntityState.Unchanged, e.State));
            Assert.DoesNotContain(db.ChangeTracker.Entries(), e => e.Entity == b);
        }

        await using (var db = NewContext(bind: false))
        {
            var a = await db.Tickets.SingleAsync(t => t.Id == keep, Ct);
            a.Secret = "kept, edited again";
            db.Tickets.Remove(await db.Tickets.SingleAsync(t => t.Id == added.Id, Ct));
            db.Tickets.Add(new RvTicket { Secret = "new 3", Address = new RvAddress { Street = "x" } });
            db.Tickets.Add(new RvTicket { Secret = "new 4" });
            plain = sync ? db.SaveChanges() : await db.SaveChangesAsync(Ct);
        }

        Assert.Equal(plain, bound);
        await using var reader = NewContext();
        Assert.Equal(["kept, edited again", "new 2", "new 3", "new 4"], (await reader.Tickets.AsNoTracking().Select(t => t.Secret).ToListAsync(Ct)).Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task SaveChanges_without_accepting_then_AcceptAllChanges_then_an_edit_saves_and_reads(string database)
    {
        await UseAsync(database);
        var ticket = new RvTicket { Secret = "first", Address = new RvAddress { Street = "a" } };
        await using (var db = NewContext())
        {
            db.Tickets.Add(ticket);
            var rows = await db.SaveChangesAsync(acceptAllChangesOnSuccess: false, Ct);
            Assert.True(rows >= 1, $"rows {rows}");
            Assert.Equal(EntityState.Added, db.Entry(ticket).State);
            db.ChangeTracker.AcceptAllChanges();
            Assert.True(ticket.Id > 0, $"id {ticket.Id}");
            Assert.Equal(EntityState.Unchanged, db.Entry(ticket).State);
            ticket.Secret = "second";
            ticket.Address.Street = "b";
            var edited = await db.SaveChangesAsync(Ct);
            Assert.True(edited >= 1, $"edit saved {edited} rows; ciphertext modified: {db.Entry(ticket).Property("Secret_Ciphertext").IsModified}");
        }

        await using var reader = NewContext();
        var read = await reader.Tickets.AsNoTracking().SingleAsync(Ct);
        Assert.Equal(("second", "b"), (read.Secret, read.Address!.Street));
        Assert.Equal(EnvelopeFormat.FlagKeyBound, await FlagsAsync(reader, typeof(RvTicket), "Tickets", $"\"Id\" = {ticket.Id}") & EnvelopeFormat.FlagKeyBound);
    }

    [Theory]
    [InlineData("sqlite", false)]
    [InlineData("postgres", true)]
    public async Task More_than_a_hundred_records_in_one_save_are_all_bound_and_read(string database, bool direct)
    {
        await UseAsync(database);
        const int count = 251;
        await using (var db = NewContext(bind: true, direct: direct))
        {
            for (var i = 0; i < count; i++)
            {
                db.Tickets.Add(new RvTicket { Secret = $"t{i}", Address = i % 2 == 0 ? new RvAddress { Street = $"s{i}" } : null });
            }

            Assert.Equal(count, db.SaveChanges());
        }

        await using var reader = NewContext(bind: true, direct: direct);
        var all = await reader.Tickets.AsNoTracking().OrderBy(t => t.Id).ToListAsync(Ct);
        Assert.Equal(count, all.Count);
        Assert.Equal(Enumerable.Range(0, count).Select(i => $"t{i}").Order(StringComparer.Ordinal), all.Select(t => t.Secret!).Order(StringComparer.Ordinal));
        var unbound = await RawAsync(reader, "SELECT COUNT(*) FROM \"Tickets\"");
        Assert.Equal(count, Convert.ToInt32(unbound, System.Globalization.CultureInfo.InvariantCulture));
        foreach (var t in all)
        {
            Assert.Equal(EnvelopeFormat.FlagKeyBound, await FlagsAsync(reader, typeof(RvTicket), "Tickets", $"\"Id\" = {t.Id}") & EnvelopeFormat.FlagKeyBound);
        }
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task An_application_interceptor_that_stamps_a_bound_column_at_SavingChanges_is_sealed_over_and_reads(string database)
    {
        await UseAsync(database);
        await using (var db = NewContext(bind: true, direct: false, new StampTenant()))
        {
            db.TenantNotes.Add(new RvTenantNote { Text = "note" });
            Assert.Equal(1, await db.SaveChangesAsync(Ct));
        }

        await using var reader = NewContext();
        var note = await reader.TenantNotes.AsNoTracking().SingleAsync(Ct);
        Assert.Equal(("note", 42), (note.Text, note.TenantId));
        Assert.Equal(EnvelopeFormat.FlagKeyBound | EnvelopeFormat.FlagColumnsBound, await FlagsAsync(reader, typeof(RvTenantNote), "TenantNotes", $"\"Id\" = {note.Id}"));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task An_application_transaction_with_a_savepoint_rolled_back_keeps_the_other_inserts_bound(string database)
    {
        await UseAsync(database);
        await using (var db = NewContext())
        {
            await using var transaction = await db.Database.BeginTransactionAsync(Ct);
            db.Tickets.Add(new RvTicket { Secret = "A" });
            await db.SaveChangesAsync(Ct);
            await transaction.CreateSavepointAsync("s1", Ct);
            var b = new RvTicket { Secret = "B" };
            db.Tickets.Add(b);
            await db.SaveChangesAsync(Ct);
            await transaction.RollbackToSavepointAsync("s1", Ct);
            db.Entry(b).State = EntityState.Detached;
            db.Tickets.Add(new RvTicket { Secret = "C" });
            await db.SaveChangesAsync(Ct);
            await transaction.CommitAsync(Ct);
        }

        await using var reader = NewContext();
        Assert.Equal(["A", "C"], (await reader.Tickets.AsNoTracking().Select(t => t.Secret).ToListAsync(Ct)).Order(StringComparer.Ordinal));
    }

    /// <summary>
    /// Plain EF rolls its inserts back to a savepoint when a save inside an application transaction fails, so the
    /// application may retry the save in the same transaction. A failed seal update does the same: no insert is left
    /// behind for the retry to repeat.
    /// </summary>
    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task A_failed_seal_update_inside_an_application_transaction_leaves_no_insert_behind_like_plain_ef(string database)
    {
        await UseAsync(database);
        await using (var db = NewContext())
        {
            await using var transaction = await db.Database.BeginTransactionAsync(Ct);
            await db.Database.ExecuteSqlRawAsync(database == "postgres"
                ? "CREATE FUNCTION touch_rv_ticket() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE \"Tickets\" SET \"EfEnvelopeKey\" = '\\x00' WHERE \"Id\" = NEW.\"Id\"; RETURN NULL; END $$; "
                  + "CREATE TRIGGER \"TicketTouched\" AFTER INSERT ON \"Tickets\" FOR EACH ROW EXECUTE FUNCTION touch_rv_ticket();"
                : "CREATE TRIGGER \"TicketTouched\" AFTER INSERT ON \"Tickets\" BEGIN UPDATE \"Tickets\" SET \"EfEnvelopeKey\" = X'00' WHERE \"Id\" = NEW.\"Id\"; END;", Ct);
            var ticket = new RvTicket { Secret = "once" };
            db.Tickets.Add(ticket);
            await Assert.ThrowsAsync<DbUpdateConcurrencyException>(() => db.SaveChangesAsync(Ct));
            Assert.Equal(EntityState.Added, db.Entry(ticket).State);

            // What an application does after a failed save in its transaction (as with plain EF): try again.
            await db.Database.ExecuteSqlRawAsync(database == "postgres" ? "DROP TRIGGER \"TicketTouched\" ON \"Tickets\"" : "DROP TRIGGER \"TicketTouched\"", Ct);
            await db.SaveChangesAsync(Ct);
            await transaction.CommitAsync(Ct);
        }

        await using var reader = NewContext();
        Assert.Equal("once", (await reader.Tickets.AsNoTracking().SingleAsync(Ct)).Secret);
    }

    /// <summary>Control for the test above: plain EF (no option) whose second INSERT fails inside an application transaction.</summary>
    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Control_plain_ef_rolls_a_failed_save_back_to_its_savepoint_inside_an_application_transaction(string database)
    {
        await UseAsync(database);
        var failDogs = new FailingInsert("INSERT INTO \"Dogs\"");
        await using (var db = NewContext(bind: false, direct: false, failDogs))
        {
            await using var transaction = await db.Database.BeginTransactionAsync(Ct);
            db.Animals.Add(new RvDog { Name = "once", Bark = "b" });
            failDogs.Failures = 1;
            await Assert.ThrowsAnyAsync<Exception>(() => db.SaveChangesAsync(Ct));
            Assert.Equal(0, failDogs.Failures);
            await db.SaveChangesAsync(Ct);
            await transaction.CommitAsync(Ct);
        }

        await using var reader = NewContext();
        Assert.Equal(1, await reader.Animals.CountAsync(Ct));
    }

    /// <summary>
    /// The record's blob as inserted (sealed before the key existed) exists in the database for the length of the
    /// transaction and wherever the database keeps row history (an INSERT audit trigger here; SQL Server temporal
    /// tables, CDC, logical replication). Its seal is void, so copied into another row it does not read.
    /// </summary>
    [Theory]
    [InlineData("postgres")]
    public async Task The_unbound_blob_of_the_insert_captured_by_an_audit_trigger_is_refused_when_moved_to_another_row(string database)
    {
        await UseAsync(database);
        await using (var db = NewContext())
        {
            await db.Database.ExecuteSqlRawAsync("""
                CREATE TABLE "Audit" ("Id" int, "EfEnvelopeKey" bytea, "Secret" bytea);
                CREATE FUNCTION audit_insert() RETURNS trigger AS $$ BEGIN INSERT INTO "Audit" VALUES (NEW."Id", NEW."EfEnvelopeKey", NEW."Secret"); RETURN NEW; END $$ LANGUAGE plpgsql;
                CREATE TRIGGER audit AFTER INSERT ON "Tickets" FOR EACH ROW EXECUTE FUNCTION audit_insert();
                """, Ct);
        }

        int a, b;
        await using (var db = NewContext())
        {
            var ta = new RvTicket { Secret = "victim secret" };
            var tb = new RvTicket { Secret = "attacker's row" };
            db.Tickets.AddRange(ta, tb);
            await db.SaveChangesAsync(Ct);
            (a, b) = (ta.Id, tb.Id);
        }

        await using (var db = NewContext())
        {
            // The stored rows are bound; the audit copy of A is not.
            Assert.Equal(EnvelopeFormat.FlagKeyBound, await FlagsAsync(db, typeof(RvTicket), "Tickets", $"\"Id\" = {a}") & EnvelopeFormat.FlagKeyBound);
            await db.Database.ExecuteSqlRawAsync($"UPDATE \"Tickets\" SET \"EfEnvelopeKey\" = x.\"EfEnvelopeKey\", \"Secret\" = x.\"Secret\" FROM \"Audit\" x WHERE x.\"Id\" = {a} AND \"Tickets\".\"Id\" = {b}", Ct);
        }

        await using var reader = NewContext();
        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => reader.Tickets.AsNoTracking().SingleAsync(t => t.Id == b, Ct));
    }

    private sealed class StampTenant : SaveChangesInterceptor
    {
        public override ValueTask<InterceptionResult<int>> SavingChangesAsync(DbContextEventData eventData, InterceptionResult<int> result, CancellationToken cancellationToken = default)
        {
            foreach (var entry in eventData.Context!.ChangeTracker.Entries<RvTenantNote>())
            {
                if (entry.State == EntityState.Added)
                {
                    entry.Entity.TenantId = 42;
                }
            }

            return ValueTask.FromResult(result);
        }
    }
}

/// <summary>Fails the next commands that contain a text.</summary>
internal sealed class FailingInsert(string text) : DbCommandInterceptor
{
    public int Failures { get; set; }

    public override InterceptionResult<DbDataReader> ReaderExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<DbDataReader> result)
    {
        Inspect(command);
        return result;
    }

    public override ValueTask<InterceptionResult<DbDataReader>> ReaderExecutingAsync(DbCommand command, CommandEventData eventData, InterceptionResult<DbDataReader> result, CancellationToken cancellationToken = default)
    {
        Inspect(command);
        return ValueTask.FromResult(result);
    }

    public override ValueTask<InterceptionResult<int>> NonQueryExecutingAsync(DbCommand command, CommandEventData eventData, InterceptionResult<int> result, CancellationToken cancellationToken = default)
    {
        Inspect(command);
        return ValueTask.FromResult(result);
    }

    private void Inspect(DbCommand command)
    {
        if (Failures > 0 && command.CommandText.Contains(text, StringComparison.Ordinal))
        {
            Failures--;
            throw new InvalidOperationException("injected failure of an insert");
        }
    }
}

public class RvTicket
{
    public int Id { get; set; }

    [Encrypted]
    public string? Secret { get; set; }

    public RvAddress? Address { get; set; }

    public RvPrefs? Prefs { get; set; }
}

public class RvAddress
{
    [Encrypted]
    public string? Street { get; set; }
}

public class RvPrefs
{
    [Encrypted]
    public string? Color { get; set; }
}

public class RvPayment
{
    public int Id { get; set; }

    [Encrypted]
    public string? Memo { get; set; }
}

public class RvCard : RvPayment
{
    [Encrypted]
    public string? Last4 { get; set; }
}

public class RvAnimal
{
    public int Id { get; set; }

    [Encrypted]
    public string? Name { get; set; }
}

public class RvDog : RvAnimal
{
    [Encrypted]
    public string? Bark { get; set; }
}

public class RvTenantNote
{
    public int Id { get; set; }

    public int TenantId { get; set; }

    [Encrypted]
    public string? Text { get; set; }
}

public sealed class RvContext(DbContextOptions<RvContext> options) : DbContext(options)
{
    public DbSet<RvTicket> Tickets => Set<RvTicket>();

    public DbSet<RvPayment> Payments => Set<RvPayment>();

    public DbSet<RvAnimal> Animals => Set<RvAnimal>();

    public DbSet<RvTenantNote> TenantNotes => Set<RvTenantNote>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        var ticket = modelBuilder.Entity<RvTicket>().ToTable("Tickets");
        ticket.OwnsOne(t => t.Address);
        ticket.OwnsOne(t => t.Prefs, p => p.ToJson());
        modelBuilder.Entity<RvPayment>().ToTable("Payments");
        modelBuilder.Entity<RvCard>();
        modelBuilder.Entity<RvAnimal>().ToTable("Animals").UseTptMappingStrategy();
        modelBuilder.Entity<RvDog>().ToTable("Dogs");
        modelBuilder.Entity<RvTenantNote>().ToTable("TenantNotes").Property(n => n.TenantId).IsBoundToRecord();
    }
}
