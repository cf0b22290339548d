using System.Data.Common;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace EfEnvelope.Reliability.Tests.Faults;

/// <summary>The database fails in the middle of a save: nothing is lost or half-encrypted, the cache stays consistent, a retry succeeds.</summary>
public abstract class DatabaseFaultTests<TFixture>(TFixture fixture) : IClassFixture<TFixture>
    where TFixture : DatabaseFixture
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private void SkipIfUnavailable()
    {
        if (fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }
    }

    private static Patient NewPatient(int i) => new()
    {
        Id = Guid.NewGuid(),
        Name = $"Bulk {i}",
        Ssn = $"BULK-SSN-{i:00000}",
        Diagnosis = $"BULK-DX-{i:00000}",
        DateOfBirth = new DateOnly(1990, 1, 1).AddDays(i),
        HomeAddress = new Address { City = "C", Street = $"BULK-STREET-{i:00000}" },
    };

    /// <summary>Every stored row of the given ids decrypts, and is either absent or equal to its plaintext.</summary>
    private async Task<int> CountStoredAsync(IReadOnlyCollection<Patient> patients)
    {
        var expected = patients.ToDictionary(p => p.Id);
        await using var db = fixture.CreateContext();
        var ids = expected.Keys.ToList();
        var stored = 0;
        foreach (var chunk in ids.Chunk(1000))
        {
            foreach (var row in await db.Patients.AsNoTracking().Where(p => chunk.Contains(p.Id)).ToListAsync(Ct))
            {
                Assert.Equal(expected[row.Id].Ssn, row.Ssn);
                Assert.Equal(expected[row.Id].Diagnosis, row.Diagnosis);
                Assert.Equal(expected[row.Id].HomeAddress!.Street, row.HomeAddress!.Street);
                stored++;
            }
        }

        return stored;
    }

    [Fact]
    public async Task A_unique_violation_on_row_5000_of_10000_writes_nothing_and_the_fixed_retry_writes_all()
    {
        SkipIfUnavailable();
        var existing = NewPatient(-1);
        await using (var db = fixture.CreateContext())
        {
            db.Patients.Add(existing);
            await db.SaveChangesAsync(Ct);
        }

        var patients = Enumerable.Range(0, 10_000).Select(NewPatient).ToList();
        var clash = patients[4_999];
        var clashId = clash.Id;
        clash.Id = existing.Id;

        await using var context = fixture.CreateContext();
        context.Patients.AddRange(patients);
        var error = await Assert.ThrowsAsync<DbUpdateException>(() => context.SaveChangesAsync(Ct));
        Assert.DoesNotContain("BULK-SSN", error.ToString(), StringComparison.Ordinal);

        Assert.All(patients, p => Assert.Equal(EntityState.Added, context.Entry(p).State));
        Assert.Equal(0, await CountStoredAsync(patients.Where(p => p != clash).ToList()));
        Assert.Equal("BULK-SSN-04999", clash.Ssn);

        // The cache still serves the rows it wrote before and the rows it writes next.
        var statistics = context.GetEnvelopeKeyCacheStatistics();
        Assert.InRange(statistics.CachedKeys, 1, 1000);

        clash.Id = clashId;
        await context.SaveChangesAsync(Ct);
        Assert.Equal(10_000, await CountStoredAsync(patients));
        Assert.Equal(1, await CountStoredAsync([existing]));
    }

    [Fact]
    public async Task A_connection_lost_mid_save_writes_nothing_and_a_retry_writes_all()
    {
        SkipIfUnavailable();
        foreach (var failOnCommand in new[] { 1, 2, 3 })
        {
            var breaker = new ConnectionBreaker { BreakOnCommand = failOnCommand };
            await using var db = fixture.CreateContext(null, breaker);
            var patients = Enumerable.Range(0, 2_000).Select(NewPatient).ToList();
            var invoices = Enumerable.Range(0, 500).Select(i => new Invoice { CardNumber = $"CARD-{i:0000}", Amount = i }).ToList();
            db.Patients.AddRange(patients);
            db.Invoices.AddRange(invoices);

            await Assert.ThrowsAnyAsync<Exception>(() => db.SaveChangesAsync(Ct));
            Assert.True(breaker.Broke, "the interceptor did not break the connection: the save sent fewer commands");
            Assert.Equal(0, await CountStoredAsync(patients));
            Assert.All(patients, p => Assert.Equal(EntityState.Added, db.Entry(p).State));
            Assert.All(invoices, i => Assert.StartsWith("CARD-", i.CardNumber, StringComparison.Ordinal));

            await db.SaveChangesAsync(Ct);
            Assert.Equal(2_000, await CountStoredAsync(patients));
        }
    }

    [Fact]
    public async Task A_rolled_back_transaction_leaves_the_old_rows_and_the_same_context_saves_again()
    {
        SkipIfUnavailable();
        var patients = Enumerable.Range(0, 300).Select(NewPatient).ToList();
        await using (var seed = fixture.CreateContext())
        {
            seed.Patients.AddRange(patients);
            await seed.SaveChangesAsync(Ct);
        }

        await using var db = fixture.CreateContext();
        var seededIds = patients.Select(p => p.Id).ToList();
        var mine = await db.Patients.Where(p => seededIds.Contains(p.Id)).ToListAsync(Ct);
        foreach (var patient in mine)
        {
            patient.Ssn = "ROLLED-BACK-" + patient.Ssn;
        }

        await using (var transaction = await db.Database.BeginTransactionAsync(Ct))
        {
            await db.SaveChangesAsync(Ct);
            await transaction.RollbackAsync(Ct);
        }

        // The database holds the old values; the context believes it saved. Reload() shows the stored values again.
        Assert.Equal(300, await CountStoredAsync(patients));
        foreach (var patient in mine)
        {
            await db.Entry(patient).ReloadAsync(Ct);
        }

        Assert.All(mine, p => Assert.StartsWith("BULK-SSN-", p.Ssn, StringComparison.Ordinal));

        // Edit and save again, for real this time.
        foreach (var patient in mine)
        {
            patient.Ssn = "SAVED-" + patient.Ssn;
        }

        await db.SaveChangesAsync(Ct);
        await using var reader = fixture.CreateContext();
        var ids = mine.Select(p => p.Id).ToList();
        Assert.All(await reader.Patients.AsNoTracking().Where(p => ids.Contains(p.Id)).ToListAsync(Ct), p => Assert.StartsWith("SAVED-BULK-SSN-", p.Ssn, StringComparison.Ordinal));
    }

    [Fact]
    public async Task After_a_failed_save_an_edit_reverted_before_the_retry_is_what_gets_stored()
    {
        SkipIfUnavailable();
        var patient = NewPatient(7);
        await using (var seed = fixture.CreateContext())
        {
            seed.Patients.Add(patient);
            await seed.SaveChangesAsync(Ct);
        }

        var breaker = new ConnectionBreaker { BreakOnCommand = 1 };
        await using var db = fixture.CreateContext(null, breaker);
        var tracked = await db.Patients.SingleAsync(p => p.Id == patient.Id, Ct);
        breaker.Armed = true;
        tracked.Ssn = "ABANDONED-VALUE";
        await Assert.ThrowsAnyAsync<Exception>(() => db.SaveChangesAsync(Ct));

        // The user gives up on the edit and saves something else on the same record.
        tracked.Ssn = patient.Ssn;
        tracked.Diagnosis = "NEW-DIAGNOSIS";
        await db.SaveChangesAsync(Ct);

        await using var reader = fixture.CreateContext();
        var stored = await reader.Patients.AsNoTracking().SingleAsync(p => p.Id == patient.Id, Ct);
        Assert.Equal("NEW-DIAGNOSIS", stored.Diagnosis);
        Assert.Equal(patient.Ssn, stored.Ssn);
    }

    /// <summary>Breaks the connection when a save sends its Nth modification command (SELECTs are not counted).</summary>
    private sealed class ConnectionBreaker : DbCommandInterceptor
    {
        private int _commands;

        public int BreakOnCommand { get; init; }

        public bool Armed { get; set; } = true;

        public bool Broke { get; private set; }

        public override InterceptionResult<DbDataReader> ReaderExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<DbDataReader> result)
        {
            Check(command);
            return result;
        }

        public override ValueTask<InterceptionResult<DbDataReader>> ReaderExecutingAsync(DbCommand command, CommandEventData eventData, InterceptionResult<DbDataReader> result, CancellationToken cancellationToken = default)
        {
            Check(command);
            return ValueTask.FromResult(result);
        }

        public override InterceptionResult<int> NonQueryExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<int> result)
        {
            Check(command);
            return result;
        }

        public override ValueTask<InterceptionResult<int>> NonQueryExecutingAsync(DbCommand command, CommandEventData eventData, InterceptionResult<int> result, CancellationToken cancellationToken = default)
        {
            Check(command);
            return ValueTask.FromResult(result);
        }

        private void Check(DbCommand command)
        {
            if (!Armed || Broke || !(command.CommandText.Contains("INSERT", StringComparison.OrdinalIgnoreCase) || command.CommandText.Contains("UPDATE", StringComparison.OrdinalIgnoreCase)))
            {
                return;
            }

            if (++_commands == BreakOnCommand)
            {
                Broke = true;
                Armed = false;

                // Like a network drop: the connection is gone under the command about to run.
                command.Connection!.Close();
            }
        }
    }
}

public sealed class SqliteDatabaseFaultTests(SqliteFixture fixture) : DatabaseFaultTests<SqliteFixture>(fixture);

public sealed class PostgresDatabaseFaultTests(PostgresFixture fixture) : DatabaseFaultTests<PostgresFixture>(fixture);
