using System.Collections.Concurrent;
using System.Data.Common;
using System.Runtime.CompilerServices;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace EfEnvelope.Reliability.Tests.Tampering;

#pragma warning disable EF1002 // raw SQL built from the test's own table and column names

/// <summary>
/// Issue 12's last point: a whole record written back as an earlier saved version is authentic and reads, unless the
/// application keeps a version outside the database. These tests run the recipe of docs/SECURITY.md ("Detecting
/// whole-record rollback"): a version column bound to the record seal (<c>IsBoundToRecord()</c>) and EF's own
/// interceptors comparing it with a ledger the database writer cannot reach.
/// </summary>
public sealed class RollbackDetectionTests() : ScratchDatabaseTests<AccountContext>("rollback")
{
    private readonly InsecureInMemoryMasterKeyProvider _provider = new("primary");

    // Stands for the store outside the database (another database, a ledger service, a signed log).
    private readonly VersionLedger _ledger = new();

    protected override AccountContext NewContext() =>
        new(OptionsBuilder()
            .UseEnvelopeEncryption(e => e.UseProvider(_provider))
            .AddInterceptors(new VersionStamping(_ledger), new VersionChecking(_ledger))
            .Options);

    private static readonly string[] Columns = ["EfEnvelopeKey", "Balance", "Version"];

    private static async Task<Dictionary<string, object?>> ReadRowAsync(AccountContext db, Guid id)
    {
        var row = new Dictionary<string, object?>();
        var connection = db.Database.GetDbConnection();
        await db.Database.OpenConnectionAsync(Ct);
        try
        {
            await using var command = connection.CreateCommand();
            command.CommandText = $"SELECT {string.Join(", ", Columns.Select(c => $"\"{c}\""))} FROM \"Accounts\" WHERE \"Id\" = @id";
            command.Parameters.Add(Parameter(command, "@id", id));
            await using var reader = await command.ExecuteReaderAsync(Ct);
            Assert.True(await reader.ReadAsync(Ct));
            for (var i = 0; i < Columns.Length; i++)
            {
                row[Columns[i]] = reader.IsDBNull(i) ? null : reader.GetValue(i);
            }
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }

        return row;
    }

    private static async Task WriteColumnsAsync(AccountContext db, Guid id, Dictionary<string, object?> row, params string[] columns)
    {
        foreach (var column in columns)
        {
            var changed = await db.Database.ExecuteSqlRawAsync($"UPDATE \"Accounts\" SET \"{column}\" = {{0}} WHERE \"Id\" = {{1}}", [row[column]!, id], Ct);
            Assert.Equal(1, changed);
        }
    }

    private static DbParameter Parameter(DbCommand command, string name, object value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value;
        return parameter;
    }

    /// <summary>Saves an account, then edits it, and returns its id and the row as it was after the first save.</summary>
    private async Task<(Guid Id, Dictionary<string, object?> Older)> SaveTwiceAsync()
    {
        var account = new Account { Balance = "balance-100" };
        await using (var db = NewContext())
        {
            db.Accounts.Add(account);
            await db.SaveChangesAsync(Ct);
        }

        Dictionary<string, object?> older;
        await using (var db = NewContext())
        {
            older = await ReadRowAsync(db, account.Id);
            var tracked = await db.Accounts.SingleAsync(a => a.Id == account.Id, Ct);
            tracked.Balance = "balance-0";
            await db.SaveChangesAsync(Ct);
        }

        Assert.Equal(2, _ledger.Current(account.Id));
        return (account.Id, older);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Every_save_advances_the_version_and_reads_of_the_current_version_pass_the_check(string database)
    {
        await UseAsync(database);
        var (id, _) = await SaveTwiceAsync();

        await using var reader = NewContext();
        var read = await reader.Accounts.AsNoTracking().SingleAsync(a => a.Id == id, Ct);
        Assert.Equal(("balance-0", 2L), (read.Balance, read.Version));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task An_older_record_written_back_under_the_current_version_is_refused_by_the_seal(string database)
    {
        // The library's half of the recipe: the version column is sealed with the values, so the older ciphertexts and
        // key column cannot be paired with the current version number.
        await UseAsync(database);
        var (id, older) = await SaveTwiceAsync();
        await using (var db = NewContext())
        {
            await WriteColumnsAsync(db, id, older, "EfEnvelopeKey", "Balance");
        }

        await using var reader = NewContext();
        var error = await Record.ExceptionAsync(() => reader.Accounts.AsNoTracking().SingleAsync(a => a.Id == id, Ct));
        Assert.IsType<EnvelopeDecryptionException>(error);
        Assert.DoesNotContain("balance-", error.ToString());
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task A_whole_older_record_written_back_with_its_version_is_caught_by_the_ledger(string database)
    {
        // The application's half: the older row is authentic (the seal verifies), but its version is behind the ledger.
        await UseAsync(database);
        var (id, older) = await SaveTwiceAsync();
        await using (var db = NewContext())
        {
            await WriteColumnsAsync(db, id, older, "EfEnvelopeKey", "Balance", "Version");
        }

        foreach (var tracking in new[] { false, true })
        {
            await using var reader = NewContext();
            var query = tracking ? reader.Accounts : reader.Accounts.AsNoTracking();
            var error = await Record.ExceptionAsync(() => query.SingleAsync(a => a.Id == id, Ct));
            var rolledBack = Assert.IsType<RecordRolledBackException>(error);
            Assert.Equal((1L, 2L), (rolledBack.Read, rolledBack.Expected));
        }

        // Without the check the same row reads as the older version: the seal alone cannot tell (by design).
        await using var unchecked_ = NewContext();
        unchecked_.CheckVersions = false;
        Assert.Equal("balance-100", (await unchecked_.Accounts.AsNoTracking().SingleAsync(a => a.Id == id, Ct)).Balance);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task A_failed_save_leaves_the_ledger_where_the_database_is(string database)
    {
        await UseAsync(database);
        var (id, _) = await SaveTwiceAsync();
        await using (var db = NewContext())
        {
            var tracked = await db.Accounts.SingleAsync(a => a.Id == id, Ct);
            tracked.Balance = "balance-lost";
            await db.Database.ExecuteSqlRawAsync("UPDATE \"Accounts\" SET \"Version\" = 7 WHERE \"Id\" = {0}", [id], Ct);
            await Assert.ThrowsAsync<DbUpdateConcurrencyException>(() => db.SaveChangesAsync(Ct));
        }

        Assert.Equal(2, _ledger.Current(id));
    }

    /// <summary>What the application keeps outside the database: the last saved version of each record.</summary>
    private sealed class VersionLedger
    {
        private readonly ConcurrentDictionary<Guid, long> _versions = new();

        public long Current(Guid id) => _versions.GetValueOrDefault(id);

        public void Record(Guid id, long version) => _versions.AddOrUpdate(id, version, (_, known) => Math.Max(known, version));
    }

    /// <summary>Gives every added or modified account the next version; the ledger learns it once the save committed.</summary>
    private sealed class VersionStamping(VersionLedger ledger) : SaveChangesInterceptor
    {
        private readonly ConditionalWeakTable<DbContext, List<Account>> _pending = [];

        public override InterceptionResult<int> SavingChanges(DbContextEventData eventData, InterceptionResult<int> result)
        {
            Stamp(eventData.Context!);
            return result;
        }

        public override ValueTask<InterceptionResult<int>> SavingChangesAsync(DbContextEventData eventData, InterceptionResult<int> result, CancellationToken cancellationToken = default)
        {
            Stamp(eventData.Context!);
            return ValueTask.FromResult(result);
        }

        public override int SavedChanges(SaveChangesCompletedEventData eventData, int result)
        {
            Commit(eventData.Context!);
            return result;
        }

        public override ValueTask<int> SavedChangesAsync(SaveChangesCompletedEventData eventData, int result, CancellationToken cancellationToken = default)
        {
            Commit(eventData.Context!);
            return ValueTask.FromResult(result);
        }

        private void Stamp(DbContext context)
        {
            context.ChangeTracker.DetectChanges();
            var stamped = new List<Account>();
            foreach (var entry in context.ChangeTracker.Entries<Account>().Where(e => e.State is EntityState.Added or EntityState.Modified))
            {
                entry.Entity.Version++;
                stamped.Add(entry.Entity);
            }

            _pending.AddOrUpdate(context, stamped);
        }

        private void Commit(DbContext context)
        {
            if (_pending.TryGetValue(context, out var stamped))
            {
                foreach (var account in stamped)
                {
                    ledger.Record(account.Id, account.Version);
                }

                _pending.Remove(context);
            }
        }
    }

    /// <summary>Refuses an account whose (sealed) version is not the one the ledger holds.</summary>
    private sealed class VersionChecking(VersionLedger ledger) : IMaterializationInterceptor
    {
        public object InitializedInstance(MaterializationInterceptionData materializationData, object entity)
        {
            if (entity is Account account && materializationData.Context is AccountContext { CheckVersions: true }
                && ledger.Current(account.Id) is var expected && account.Version != expected)
            {
                throw new RecordRolledBackException(account.Id, account.Version, expected);
            }

            return entity;
        }
    }

    private sealed class RecordRolledBackException(Guid id, long read, long expected)
        : InvalidOperationException($"Account {id} was read at version {read}, but version {expected} is the last one saved: the row was rolled back.")
    {
        public long Read { get; } = read;

        public long Expected { get; } = expected;
    }
}

public class Account
{
    public Guid Id { get; set; } = Guid.NewGuid();

    public long Version { get; set; }

    [Encrypted]
    public string Balance { get; set; } = "";
}

public sealed class AccountContext(DbContextOptions<AccountContext> options) : DbContext(options)
{
    public bool CheckVersions { get; set; } = true;

    public DbSet<Account> Accounts => Set<Account>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<Account>(account =>
        {
            account.ToTable("Accounts");
            account.Property(a => a.Version).IsConcurrencyToken().IsBoundToRecord();
        });
}
