using EfEnvelope.KeyManagement;
using EfEnvelope.Query;
using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace EfEnvelope.Tests.Query;

/// <summary>
/// Queries without tracking are read a batch ahead and decrypted on two threads (Query/ReadAhead.cs): the consumer must
/// see exactly what it sees when each record is decrypted as EF materializes it, including where reading fails or stops.
/// </summary>
public sealed class ReadAheadTests
{
    // More than three batches, and not a multiple of the batch size.
    internal const int Rows = (ReadAhead.BatchSize * 3) + 7;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Every_row_reads_decrypted_as_a_tracking_query_reads_it_sync_and_async()
    {
        using var clinic = Seeded();
        using var db = clinic.CreateContext();
        var query = db.Patients.AsNoTracking().OrderBy(p => p.Name);
        Assert.True(IsReadAhead(query));

        var expected = Describe(clinic.CreateContext().Patients.OrderBy(p => p.Name).ToList());
        Assert.Equal(Rows, expected.Count);
        Assert.Equal(expected, Describe(query.ToList()));
        Assert.Equal(expected, Describe(await query.ToListAsync(Ct)));

        var streamed = new List<Patient>();
        await foreach (var patient in query.AsAsyncEnumerable().WithCancellation(Ct))
        {
            streamed.Add(patient);
        }

        Assert.Equal(expected, Describe(streamed));
        Assert.Equal(expected.Where(e => e.StartsWith("p01", StringComparison.Ordinal)), Describe(db.Patients.AsNoTracking().Where(p => p.Name.StartsWith("p01")).OrderBy(p => p.Name).ToList()));
    }

    [Fact]
    public async Task A_tampered_row_fails_where_the_consumer_reaches_it_after_every_row_before_it_sync_and_async()
    {
        const int Tampered = (ReadAhead.BatchSize * 2) + 5;
        using var clinic = Seeded();
        using (var command = clinic.Connection.CreateCommand())
        {
            // Another row's ciphertext: it authenticates under neither the record's data key nor its record id.
            command.CommandText = $"UPDATE Patients SET Ssn = (SELECT Ssn FROM Patients WHERE Name = 'p000') WHERE Name = 'p{Tampered:D3}'";
            Assert.Equal(1, command.ExecuteNonQuery());
        }

        using var db = clinic.CreateContext();
        var plain = Assert.Throws<EnvelopeDecryptionException>(() => clinic.CreateContext().Patients.OrderBy(p => p.Name).ToList());
        var query = db.Patients.AsNoTracking().OrderBy(p => p.Name);

        var received = new List<Patient>();
        var sync = Assert.Throws<EnvelopeDecryptionException>(() =>
        {
            foreach (var patient in query)
            {
                received.Add(patient);
            }
        });
        Assert.Equal(Tampered, received.Count);
        Assert.Equal(plain.Message, sync.Message);
        Assert.All(received, p => Assert.Equal("ssn-" + p.Name, p.Ssn));

        received.Clear();
        var async = await Assert.ThrowsAsync<EnvelopeDecryptionException>(async () =>
        {
            await foreach (var patient in query.AsAsyncEnumerable().WithCancellation(Ct))
            {
                received.Add(patient);
            }
        });
        Assert.Equal(Tampered, received.Count);
        Assert.Equal(plain.Message, async.Message);
    }

    [Fact]
    public void A_tampered_row_that_EF_also_fails_to_read_throws_the_tamper_error_as_plain_decryption_does()
    {
        // EF decrypts a record as it constructs it, before it reads the row's JSON column: the tamper error comes first.
        const int Bad = ReadAhead.BatchSize + 8;
        using var clinic = Seeded();
        Execute(clinic, $"UPDATE Patients SET Ssn = (SELECT Ssn FROM Patients WHERE Name = 'p000'), Emergency = '{{not json' WHERE Name = 'p{Bad:D3}'");

        using var db = clinic.CreateContext();
        var plain = Assert.Throws<EnvelopeDecryptionException>(() => db.Patients.OrderBy(p => p.Name).ToList());
        var received = 0;
        var readAhead = Assert.Throws<EnvelopeDecryptionException>(() =>
        {
            foreach (var patient in db.Patients.AsNoTracking().OrderBy(p => p.Name))
            {
                received++;
            }
        });
        Assert.Equal(Bad, received);
        Assert.Equal(plain.Message, readAhead.Message);
    }

    [Fact]
    public async Task A_consumer_that_goes_on_after_an_unreadable_row_gets_the_rows_after_it_as_from_EF_sync_and_async()
    {
        const int Bad = ReadAhead.BatchSize + 8;
        using var clinic = Seeded();
        Execute(clinic, $"UPDATE Patients SET Emergency = '{{not json' WHERE Name = 'p{Bad:D3}'");
        using var db = clinic.CreateContext();

        // Select(p => p) is not read ahead: the same query, decrypted as EF materializes each row.
        var plain = Outcomes(db.Patients.AsNoTracking().OrderBy(p => p.Name).Select(p => p));
        Assert.Equal(Rows + 1, plain.Count);
        Assert.DoesNotContain("ssn", plain[Bad], StringComparison.Ordinal);
        Assert.Equal("ssn-p" + (Bad + 1).ToString("D3", System.Globalization.CultureInfo.InvariantCulture), plain[Bad + 1]);
        Assert.Equal("end", plain[^1]);
        Assert.Equal(plain, Outcomes(db.Patients.AsNoTracking().OrderBy(p => p.Name)));
        Assert.Equal(plain, await OutcomesAsync(db.Patients.AsNoTracking().OrderBy(p => p.Name)));

        static List<string> Outcomes(IQueryable<Patient> query)
        {
            var outcomes = new List<string>();
            using var rows = query.GetEnumerator();
            while (outcomes.LastOrDefault() != "end" && outcomes.Count <= Rows + 1)
            {
                try
                {
                    outcomes.Add(rows.MoveNext() ? rows.Current.Ssn : "end");
                }
                catch (Exception error)
                {
                    outcomes.Add(error.GetType().Name);
                }
            }

            return outcomes;
        }

        static async Task<List<string>> OutcomesAsync(IQueryable<Patient> query)
        {
            var outcomes = new List<string>();
            await using var rows = query.AsAsyncEnumerable().GetAsyncEnumerator(Ct);
            while (outcomes.LastOrDefault() != "end" && outcomes.Count <= Rows + 1)
            {
                try
                {
                    outcomes.Add(await rows.MoveNextAsync() ? rows.Current.Ssn : "end");
                }
                catch (Exception error)
                {
                    outcomes.Add(error.GetType().Name);
                }
            }

            return outcomes;
        }
    }

    [Fact]
    public async Task A_cancellation_throws_the_exception_EF_throws()
    {
        using var clinic = Seeded();
        using var db = clinic.CreateContext();
        var plain = await CancelAfterThree(db.Patients.OrderBy(p => p.Name));
        Assert.IsAssignableFrom<OperationCanceledException>(plain);
        Assert.Equal(plain.GetType(), (await CancelAfterThree(db.Patients.AsNoTracking().OrderBy(p => p.Name))).GetType());

        static async Task<Exception> CancelAfterThree(IQueryable<Patient> query)
        {
            using var cancellation = new CancellationTokenSource();
            var received = 0;
            return await Assert.ThrowsAnyAsync<Exception>(async () =>
            {
                await foreach (var patient in query.AsAsyncEnumerable().WithCancellation(cancellation.Token))
                {
                    if (++received == 3)
                    {
                        await cancellation.CancelAsync();
                    }
                }
            });
        }
    }

    [Fact]
    public async Task A_cancelled_async_read_stops_at_the_next_row_though_later_rows_were_read_ahead()
    {
        using var clinic = Seeded();
        using var db = clinic.CreateContext();
        using var cancellation = new CancellationTokenSource();
        var received = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var patient in db.Patients.AsNoTracking().OrderBy(p => p.Name).AsAsyncEnumerable().WithCancellation(cancellation.Token))
            {
                Assert.NotEmpty(patient.Ssn);
                if (++received == 3)
                {
                    await cancellation.CancelAsync();
                }
            }
        });
        Assert.Equal(3, received);
    }

    [Fact]
    public void A_consumer_that_stops_early_leaves_the_context_usable_and_its_entities_decrypted()
    {
        using var clinic = Seeded();
        var reads = new ReadCounter();
        using var db = new ClinicContext(new DbContextOptionsBuilder<ClinicContext>()
            .UseSqlite(clinic.Connection).ManyConfigurationsPerProcess().AddInterceptors(reads).UseEnvelopeEncryption(clinic.Configure).Options);
        var first = new List<Patient>();
        foreach (var patient in db.Patients.AsNoTracking().OrderBy(p => p.Name))
        {
            first.Add(patient);
            if (first.Count == 2)
            {
                break;
            }
        }

        Assert.Equal(new[] { "ssn-p000", "ssn-p001" }, first.Select(p => p.Ssn));

        // What differs from EF decrypting as it materializes (docs/DESIGN.md): the reader ran two batches ahead.
        Assert.Equal([2 * ReadAhead.BatchSize], reads.Counts);
        Assert.Equal(Rows, db.Patients.AsNoTracking().ToList().Count);
        Assert.Equal("ssn-p005", db.Patients.Single(p => p.Name == "p005").Ssn);
    }

    [Fact]
    public void Queries_where_an_entity_could_be_seen_before_it_is_decrypted_are_not_read_ahead()
    {
        using var clinic = Seeded();
        using var db = clinic.CreateContext();
        Assert.False(IsReadAhead(db.Patients.OrderBy(p => p.Name)));
        Assert.False(IsReadAhead(db.Patients.AsNoTracking().AsTracking()));
        Assert.False(IsReadAhead(db.Patients.AsNoTracking().Include(p => p.Visits)));
        Assert.False(IsReadAhead(db.Patients.AsNoTracking().Select(p => new Patient { Id = p.Id, Ssn = p.Ssn })));

        db.ChangeTracker.QueryTrackingBehavior = QueryTrackingBehavior.NoTracking;
        Assert.True(IsReadAhead(db.Patients.OrderBy(p => p.Name)));

        using var direct = clinic.CreateContext(e => e.UseProvider(clinic.Provider).UseKeyWrappingMode(KeyWrappingMode.Direct));
        Assert.False(IsReadAhead(direct.Patients.AsNoTracking()));

        // Without EF's thread-safety checks, a query an interceptor ran on the same context could not be told apart.
        using var withoutChecks = new ClinicContext(new DbContextOptionsBuilder<ClinicContext>()
            .UseSqlite(clinic.Connection).ManyConfigurationsPerProcess().EnableThreadSafetyChecks(false).UseEnvelopeEncryption(clinic.Configure).Options);
        Assert.False(IsReadAhead(withoutChecks.Patients.AsNoTracking()));
        Assert.True(IsReadAhead(db.Patients.AsNoTracking()));
    }

    [Fact]
    public void A_type_with_an_owned_collection_is_not_read_ahead_because_EF_fills_the_collection_while_materializing()
    {
        using var connection = new Microsoft.Data.Sqlite.SqliteConnection("Data Source=:memory:");
        connection.Open();
        var provider = new InsecureInMemoryMasterKeyProvider("primary");
        using var db = new LedgerContext(new DbContextOptionsBuilder<LedgerContext>()
            .UseSqlite(connection).ManyConfigurationsPerProcess().UseEnvelopeEncryption(e => e.UseProvider(provider)).Options);
        db.Database.EnsureCreated();
        db.Ledgers.Add(new Ledger { Secret = "s", Lines = [new LedgerLine { Id = 1, Amount = 1 }] });
        db.SaveChanges();

        Assert.False(IsReadAhead(db.Ledgers.AsNoTracking()));
        Assert.True(IsReadAhead(db.Tags.AsNoTracking()));
        Assert.Equal("s", Assert.Single(db.Ledgers.AsNoTracking().ToList()).Secret);
    }

    [Fact]
    public void A_materialization_interceptor_sees_each_entity_decrypted_because_its_query_is_not_read_ahead()
    {
        using var clinic = Seeded();
        var interceptor = new SsnObserver();
        using var db = new ClinicContext(new DbContextOptionsBuilder<ClinicContext>()
            .UseSqlite(clinic.Connection).ManyConfigurationsPerProcess().AddInterceptors(interceptor).UseEnvelopeEncryption(clinic.Configure).Options);

        Assert.False(IsReadAhead(db.Patients.AsNoTracking()));
        Assert.Equal(Rows, db.Patients.AsNoTracking().ToList().Count);
        Assert.Equal(Rows, interceptor.Seen.Count);
        Assert.All(interceptor.Seen, ssn => Assert.StartsWith("ssn-p", ssn, StringComparison.Ordinal));
    }

    private static void Execute(InMemoryClinic clinic, string sql)
    {
        using var command = clinic.Connection.CreateCommand();
        command.CommandText = sql;
        Assert.Equal(1, command.ExecuteNonQuery());
    }

    internal static InMemoryClinic Seeded()
    {
        var clinic = new InMemoryClinic();
        using var db = clinic.CreateContext();
        for (var i = 0; i < Rows; i++)
        {
            var name = $"p{i:D3}";
            db.Patients.Add(new Patient
            {
                Id = Guid.NewGuid(),
                Name = name,
                Ssn = "ssn-" + name,
                Diagnosis = i % 3 == 0 ? null : "diagnosis " + i,
                DateOfBirth = new DateOnly(1950, 1, 1).AddDays(i),
                HomeAddress = new Address { Street = "street " + i },
                Emergency = new EmergencyContact { Phone = "phone " + i },
            });
        }

        db.SaveChanges();
        return clinic;
    }

    private static List<string> Describe(IEnumerable<Patient> patients) =>
        [.. patients.Select(p => $"{p.Name}|{p.Ssn}|{p.Diagnosis}|{p.DateOfBirth}|{p.HomeAddress?.Street}|{p.Emergency?.Phone}")];

    internal static bool IsReadAhead<T>(IQueryable<T> query)
    {
        using var enumerator = query.GetEnumerator();
        return enumerator.GetType().DeclaringType is { IsGenericType: true } declaring && declaring.GetGenericTypeDefinition() == typeof(ReadAheadEnumerable<>);
    }

    private sealed class LedgerContext(DbContextOptions options) : DbContext(options)
    {
        public DbSet<Ledger> Ledgers => Set<Ledger>();

        public DbSet<Tag> Tags => Set<Tag>();

        protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.Entity<Ledger>().OwnsMany(l => l.Lines, line => line.Property(l => l.Id).ValueGeneratedNever());
    }

    private sealed class Ledger
    {
        public int Id { get; set; }

        [Encrypted]
        public string Secret { get; set; } = "";

        public List<LedgerLine> Lines { get; set; } = [];
    }

    private sealed class LedgerLine
    {
        public int Id { get; set; }

        public decimal Amount { get; set; }
    }

    private sealed class Tag
    {
        public int Id { get; set; }

        [Encrypted]
        public string Label { get; set; } = "";
    }

    private sealed class ReadCounter : DbCommandInterceptor
    {
        public List<int> Counts { get; } = [];

        public override InterceptionResult DataReaderDisposing(System.Data.Common.DbCommand command, DataReaderDisposingEventData eventData, InterceptionResult result)
        {
            Counts.Add(eventData.ReadCount);
            return result;
        }
    }

    private sealed class SsnObserver : IMaterializationInterceptor
    {
        public List<string> Seen { get; } = [];

        public object InitializedInstance(MaterializationInterceptionData materializationData, object entity)
        {
            if (entity is Patient patient)
            {
                Seen.Add(patient.Ssn);
            }

            return entity;
        }
    }
}
