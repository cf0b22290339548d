using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Reliability.Tests.Faults;

/// <summary>
/// The provider fails, throttles, times out or is cancelled at each point of a large SaveChanges that inserts and
/// updates several entity types: nothing reaches the database, the entities keep plaintext and state, a retry succeeds.
/// </summary>
public abstract class ProviderFaultTests<TFixture>(TFixture fixture) : IClassFixture<TFixture>
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

    /// <summary>One unit of work: existing rows to edit and new rows of four entity types.</summary>
    private sealed class Workload
    {
        public List<Patient> Existing { get; } = [];

        public List<Patient> NewPatients { get; } = [];

        public List<Invoice> Invoices { get; } = [];

        public List<AllTypes> AllTypes { get; } = [];

        public Dictionary<Guid, string> ExpectedSsn { get; } = [];
    }

    private async Task<List<Guid>> SeedExistingAsync(Random random, int count)
    {
        var patients = Enumerable.Range(0, count).Select(_ => NewPatient(random)).ToList();
        await using var db = fixture.CreateContext();
        db.Patients.AddRange(patients);
        await db.SaveChangesAsync(Ct);
        return patients.Select(p => p.Id).ToList();
    }

    private static Patient NewPatient(Random random)
    {
        var patient = new Patient
        {
            Id = Guid.NewGuid(),
            Name = "Fault",
            Ssn = $"SSN-{random.Next():x8}",
            Diagnosis = random.Next(3) == 0 ? null : $"Dx-{random.Next():x8}",
            DateOfBirth = new DateOnly(1950 + random.Next(60), 1, 1),
            HomeAddress = new Address { City = "C", Street = $"Street-{random.Next():x8}" },
            Emergency = new EmergencyContact { Relation = "r", Phone = $"Phone-{random.Next():x8}" },
        };
        patient.Visits.Add(new Visit { At = DateTime.UtcNow, Notes = $"Visit-{random.Next():x8}" });
        return patient;
    }

    /// <summary>Loads the existing rows in <paramref name="db"/>, edits them and adds new rows; the key cache is then emptied so the save needs the provider for both.</summary>
    private static async Task<Workload> PrepareAsync(ClinicContext db, List<Guid> existing, Random random)
    {
        var work = new Workload();
        work.Existing.AddRange(await db.Patients.Where(p => existing.Contains(p.Id)).ToListAsync(Ct));
        foreach (var patient in work.Existing)
        {
            patient.Ssn = $"EDITED-{random.Next():x8}";
            work.ExpectedSsn[patient.Id] = patient.Ssn;
        }

        work.NewPatients.AddRange(Enumerable.Range(0, 150).Select(_ => NewPatient(random)));
        work.Invoices.AddRange(Enumerable.Range(0, 60).Select(i => new Invoice { CardNumber = $"4{random.NextInt64(1_000_000_000_000_000, 9_999_999_999_999_999)}", Amount = i }));
        work.AllTypes.AddRange(Enumerable.Range(0, 10).Select(i => new AllTypes { Text = $"T-{random.Next():x8}", Int = i, Enum = BloodType.ONegative }));
        foreach (var patient in work.NewPatients)
        {
            work.ExpectedSsn[patient.Id] = patient.Ssn;
        }

        db.Patients.AddRange(work.NewPatients);
        db.Invoices.AddRange(work.Invoices);
        db.AllTypes.AddRange(work.AllTypes);
        db.ClearEnvelopeKeyCache();
        return work;
    }

    private async Task<(int Patients, int Visits, int Invoices, int AllTypes)> CountRowsAsync()
    {
        await using var db = fixture.CreateContext();
        return (await db.Patients.CountAsync(Ct), await db.Visits.CountAsync(Ct), await db.Invoices.CountAsync(Ct), await db.AllTypes.CountAsync(Ct));
    }

    private static void AssertUntouched(ClinicContext db, Workload work, SqlCapture sql)
    {
        Assert.DoesNotContain(sql.Commands, c => c.Contains("INSERT", StringComparison.OrdinalIgnoreCase) || c.Contains("UPDATE", StringComparison.OrdinalIgnoreCase));
        foreach (var patient in work.NewPatients)
        {
            var entry = db.Entry(patient);
            Assert.Equal(EntityState.Added, entry.State);
            Assert.Null(entry.Property<byte[]?>("EfEnvelopeKey").CurrentValue);
            Assert.Null(entry.Property<byte[]?>("Ssn_Ciphertext").CurrentValue);
            Assert.Equal(work.ExpectedSsn[patient.Id], patient.Ssn);
            Assert.StartsWith("Street-", patient.HomeAddress!.Street, StringComparison.Ordinal);
            Assert.Equal(EntityState.Added, db.Entry(patient.Visits[0]).State);
            Assert.StartsWith("Visit-", patient.Visits[0].Notes, StringComparison.Ordinal);
        }

        foreach (var patient in work.Existing)
        {
            var entry = db.Entry(patient);
            Assert.Equal(EntityState.Modified, entry.State);
            Assert.Equal(work.ExpectedSsn[patient.Id], patient.Ssn);

            // The ciphertext column still holds what was read: no new ciphertext was assigned.
            var ciphertext = entry.Property<byte[]?>("Ssn_Ciphertext");
            Assert.Equal(ciphertext.OriginalValue, ciphertext.CurrentValue);
        }

        Assert.All(work.Invoices, i => Assert.Equal(EntityState.Added, db.Entry(i).State));
        Assert.All(work.Invoices, i => Assert.StartsWith("4", i.CardNumber, StringComparison.Ordinal));
        Assert.All(work.AllTypes, a => Assert.Null(db.Entry(a).Property<byte[]?>("EfEnvelopeKey").CurrentValue));
    }

    private async Task AssertSavedAsync(Workload work)
    {
        await using var db = fixture.CreateContext();
        var ids = work.ExpectedSsn.Keys.ToList();
        var stored = await db.Patients.AsNoTracking().Include(p => p.Visits).Where(p => ids.Contains(p.Id)).ToListAsync(Ct);
        Assert.Equal(ids.Count, stored.Count);
        Assert.All(stored, p => Assert.Equal(work.ExpectedSsn[p.Id], p.Ssn));
        Assert.All(stored, p => Assert.Single(p.Visits));
        var invoiceIds = work.Invoices.Select(i => i.Id).ToList();
        var invoices = await db.Invoices.AsNoTracking().Where(i => invoiceIds.Contains(i.Id)).ToListAsync(Ct);
        Assert.Equal(work.Invoices.Select(i => i.CardNumber).Order(), invoices.Select(i => i.CardNumber).Order());
    }

    [Fact]
    public async Task A_provider_fault_at_any_call_of_a_large_save_writes_nothing_and_a_retry_succeeds()
    {
        SkipIfUnavailable();
        await Seeds.RunAsync(nameof(A_provider_fault_at_any_call_of_a_large_save_writes_nothing_and_a_retry_succeeds), async random =>
        {
            var existing = await SeedExistingAsync(random, 30);

            // A clean run first, to learn how many provider calls the save makes.
            int callsPerSave;
            {
                var counting = new ScriptedProvider(fixture.Provider);
                await using var db = fixture.CreateContext(e => e.UseProvider(counting));
                var work = await PrepareAsync(db, existing, random);
                var before = counting.Calls;
                await db.SaveChangesAsync(Ct);
                callsPerSave = counting.Calls - before;
                await AssertSavedAsync(work);
            }

            Assert.True(callsPerSave >= 6, $"expected several provider calls (key per entity type, unwraps for edits), saw {callsPerSave}");
            var kinds = new[] { ProviderFault.Fail, ProviderFault.Throttle, ProviderFault.Hang, ProviderFault.Hang };
            for (var call = 1; call <= callsPerSave; call++)
            {
                // Every call gets a plain failure; one seeded kind each of throttling, timeout and cancellation too.
                var kind = call == 1 ? ProviderFault.Fail : kinds[random.Next(kinds.Length)];
                var cancel = kind == ProviderFault.Hang && random.Next(2) == 0;
                var synchronous = !cancel && random.Next(3) == 0;
                await FaultOnceAsync(existing, random, call, kind, cancel, synchronous);
            }
        });
    }

    private async Task FaultOnceAsync(List<Guid> existing, Random random, int call, ProviderFault kind, bool cancel, bool synchronous)
    {
        var what = $"{kind}{(cancel ? " (cancelled)" : "")} on provider call {call} of the save ({(synchronous ? "sync" : "async")})";
        var scripted = new ScriptedProvider(fixture.Provider) { Fault = kind };
        var sql = new SqlCapture();
        await using var db = fixture.CreateContext(e => e.UseProvider(scripted).UseProviderTimeout(TimeSpan.FromMilliseconds(250)), sql);
        var work = await PrepareAsync(db, existing, random);
        var countsBefore = await CountRowsAsync();
        scripted.FaultOnCall = scripted.Calls + call;
        sql.Clear();

        using var cancellation = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var save = synchronous
            ? Task.Run(() => db.SaveChanges(), Ct)
            : db.SaveChangesAsync(cancellation.Token);
        if (cancel)
        {
            await scripted.FaultStarted.Task.WaitAsync(TimeSpan.FromSeconds(30), Ct);
            await cancellation.CancelAsync();
        }

        var error = await Record.ExceptionAsync(() => save);
        Assert.True(error is not null, $"{what}: the save succeeded");
        if (cancel)
        {
            Assert.True(error is OperationCanceledException, $"{what}: {error}");
        }
        else
        {
            var masterKeyError = Assert.IsType<MasterKeyException>(error, exactMatch: false);
            Assert.Equal(fixture.Provider.Name, masterKeyError.Provider);
        }

        AssertUntouched(db, work, sql);
        Assert.Equal(countsBefore, await CountRowsAsync());

        // The cause is gone (the scripted fault fires once): the same context saves everything on retry.
        if (synchronous)
        {
            db.SaveChanges();
        }
        else
        {
            await db.SaveChangesAsync(Ct);
        }

        await AssertSavedAsync(work);
    }
}

public sealed class SqliteProviderFaultTests(SqliteFixture fixture) : ProviderFaultTests<SqliteFixture>(fixture);

public sealed class PostgresProviderFaultTests(PostgresFixture fixture) : ProviderFaultTests<PostgresFixture>(fixture);
