using System.Collections.Concurrent;
using System.Diagnostics;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Reliability.Tests.Load;

/// <summary>
/// 16 contexts in parallel on one configuration (one shared key cache), inserting, editing and reading for a bounded
/// time, with a cache small and short-lived enough that keys are generated, expire and are evicted (and zeroed)
/// while other threads use them. Every value is derived from its row's id, so a key or field mix-up cannot pass.
/// </summary>
public abstract class ParallelLoadTests<TFixture>(TFixture fixture) : IClassFixture<TFixture>
    where TFixture : DatabaseFixture
{
    private const int Workers = 16;

    private static readonly TimeSpan Duration = TimeSpan.FromSeconds(
        double.TryParse(Environment.GetEnvironmentVariable("EFENVELOPE_LOAD_SECONDS"), System.Globalization.CultureInfo.InvariantCulture, out var seconds) ? seconds : 5);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly MasterKeySelector ByTenant = entity => entity is Patient p && (p.Id.ToByteArray()[0] & 1) == 1 ? "secondary" : null;

    private static string Ssn(Guid id) => $"{id:N}-ssn";

    private static string Street(Guid id) => $"{id:N}-street";

    private static string DiagnosisPrefix(Guid id) => $"{id:N}-dx";

    private static void AssertConsistent(Patient patient)
    {
        Assert.True(patient.Ssn == Ssn(patient.Id), $"row {patient.Id} read Ssn '{patient.Ssn}'");
        Assert.True(patient.Diagnosis!.StartsWith(DiagnosisPrefix(patient.Id), StringComparison.Ordinal), $"row {patient.Id} read Diagnosis '{patient.Diagnosis}'");
        Assert.True(patient.HomeAddress!.Street == Street(patient.Id), $"row {patient.Id} read Street '{patient.HomeAddress.Street}'");
    }

    [Fact]
    public async Task Sixteen_parallel_contexts_read_back_exactly_what_they_wrote()
    {
        if (fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        var seed = Seeds.For(nameof(Sixteen_parallel_contexts_read_back_exactly_what_they_wrote));
        TestContext.Current.TestOutputHelper?.WriteLine($"seed {seed}, {Duration.TotalSeconds} s");
        void Configure(EnvelopeEncryptionOptionsBuilder e) => e
            .UseProvider(fixture.Provider)
            .UseMasterKeySelector(ByTenant)
            .ConfigureKeyCache(c =>
            {
                c.MaxEntries = 4;
                c.TimeToLive = TimeSpan.FromMilliseconds(700);
                c.MaxEncryptionUses = 37;
            });

        var written = new ConcurrentDictionary<Guid, byte>();
        var errors = new ConcurrentQueue<Exception>();
        var operations = new int[Workers];
        var stopwatch = Stopwatch.StartNew();
        var tasks = Enumerable.Range(0, Workers).Select(worker => Task.Run(async () =>
        {
            var random = new Random(seed + worker);
            try
            {
                // Every worker completes at least one round, however loaded the machine (a bounded wait: the
                // synchronous half of the workers blocks pool threads, which the pool adds only gradually).
                while ((stopwatch.Elapsed < Duration || operations[worker] == 0) && errors.IsEmpty)
                {
                    if (stopwatch.Elapsed > Duration + TimeSpan.FromSeconds(60))
                    {
                        throw new TimeoutException($"worker {worker} completed no round in {stopwatch.Elapsed.TotalSeconds:0} s");
                    }

                    await using var db = fixture.CreateContext(Configure);
                    var synchronous = random.Next(2) == 0;
                    var batch = Enumerable.Range(0, random.Next(1, 12)).Select(_ =>
                    {
                        var id = Guid.NewGuid();
                        return new Patient
                        {
                            Id = id,
                            Name = "load",
                            Ssn = Ssn(id),
                            Diagnosis = DiagnosisPrefix(id),
                            DateOfBirth = new DateOnly(2000, 1, 1),
                            HomeAddress = new Address { City = "L", Street = Street(id) },
                        };
                    }).ToList();
                    db.Patients.AddRange(batch);

                    // Edit a few rows other workers wrote: reads and re-encrypts under keys this thread did not create.
                    var others = written.Keys.Take(200).OrderBy(_ => random.Next()).Take(5).ToList();
                    var edited = await db.Patients.Where(p => others.Contains(p.Id)).ToListAsync(Ct);
                    foreach (var patient in edited)
                    {
                        AssertConsistent(patient);
                        patient.Diagnosis = DiagnosisPrefix(patient.Id) + $"-w{worker}-{random.Next()}";
                    }

                    if (synchronous)
                    {
                        db.SaveChanges();
                    }
                    else
                    {
                        await db.SaveChangesAsync(Ct);
                    }

                    foreach (var patient in batch)
                    {
                        written[patient.Id] = 0;
                    }

                    await using var reader = fixture.CreateContext(Configure);
                    var sample = batch.Select(p => p.Id).Concat(written.Keys.Skip(random.Next(Math.Max(1, written.Count - 20))).Take(20)).ToList();
                    var read = synchronous
                        ? [.. reader.Patients.AsNoTracking().Where(p => sample.Contains(p.Id))]
                        : await reader.Patients.AsNoTracking().Where(p => sample.Contains(p.Id)).ToListAsync(Ct);
                    Assert.Equal(sample.Distinct().Count(), read.Count);
                    read.ForEach(AssertConsistent);
                    operations[worker]++;
                }
            }
            catch (Exception ex)
            {
                errors.Enqueue(new InvalidOperationException($"worker {worker} (seed {seed + worker}): {ex.Message}", ex));
            }
        }, Ct)).ToList();
        await Task.WhenAll(tasks);

        Assert.True(errors.IsEmpty, string.Join("\n\n", errors.Select(e => e.ToString())));
        Assert.All(operations, count => Assert.True(count > 0, "a worker never completed a round"));

        // A configuration with its own, cold cache reads every row written.
        await using var verifier = fixture.CreateContext(e => e.UseProvider(fixture.Provider).UseMasterKeySelector(ByTenant));
        var ids = written.Keys.ToList();
        var all = new List<Patient>();
        foreach (var chunk in ids.Chunk(500))
        {
            all.AddRange(await verifier.Patients.AsNoTracking().Where(p => chunk.Contains(p.Id)).ToListAsync(Ct));
        }

        Assert.Equal(ids.Count, all.Count);
        all.ForEach(AssertConsistent);
        TestContext.Current.TestOutputHelper?.WriteLine($"{ids.Count} rows, {operations.Sum()} rounds in {stopwatch.Elapsed.TotalSeconds:0.0} s");
    }
}

/// <summary>SQLite in WAL mode, so that readers run beside the single writer.</summary>
public sealed class WalSqliteFixture : SqliteFixture
{
    public override async ValueTask InitializeAsync()
    {
        await base.InitializeAsync();
        await using var db = CreateContext();
        await db.Database.ExecuteSqlRawAsync("PRAGMA journal_mode=WAL");
    }
}

public sealed class SqliteParallelLoadTests(WalSqliteFixture fixture) : ParallelLoadTests<WalSqliteFixture>(fixture);

public sealed class PostgresParallelLoadTests(PostgresFixture fixture) : ParallelLoadTests<PostgresFixture>(fixture);
