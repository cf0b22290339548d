using BenchmarkDotNet.Attributes;
using EfEnvelope.Benchmarks.Workload;
using EfEnvelope.KeyManagement;
using EfEnvelope.Lifecycle;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Benchmarks;

/// <summary>
/// Re-encryption of 10,000 patients by one or two workers sharing the job through the partition table, on local
/// PostgreSQL when <c>EFENVELOPE_POSTGRES</c> names a server (a database of its own is created and dropped), else on a
/// local SQLite file.
/// </summary>
/// <remarks>
/// The workers are tasks in this process with a context and connection each, so they meet only in the database, as
/// separate processes would. Every iteration gets a fresh database and a new job name.
/// </remarks>
[MemoryDiagnoser]
public class PartitionedJobBenchmarks
{
    private readonly InsecureInMemoryMasterKeyProvider _provider = new("benchmark-key");
    private readonly string? _postgres = Environment.GetEnvironmentVariable("EFENVELOPE_POSTGRES");
    private readonly string _folder = Directory.CreateTempSubdirectory("efenvelope-workers-").FullName;
    private DbContextOptions? _options;
    private int _iteration;

    /// <summary>Workers running at once.</summary>
    [Params(1, 2)]
    public int Workers { get; set; }

    [IterationSetup]
    public void SetUp()
    {
        _iteration++;
        SqliteConnection.ClearAllPools();
        var builder = new DbContextOptionsBuilder();
        if (_postgres is null)
        {
            builder.UseSqlite($"Data Source={Path.Combine(_folder, "workers.db")}");
        }
        else
        {
            builder.UseNpgsql($"{_postgres};Database=efenvelope_workers_benchmark");
        }

        _options = builder.UseEnvelopeEncryption(e => e.UseProvider(_provider)).Options;
        using var context = new EnvelopeContext(_options);
        context.Database.EnsureDeleted();
        context.Database.EnsureCreated();
        context.Patients.AddRange(PatientData.Create());
        context.SaveChanges();
    }

    [GlobalCleanup]
    public void CleanUp()
    {
        if (_options is not null)
        {
            using var context = new EnvelopeContext(_options);
            context.Database.EnsureDeleted();
        }

        SqliteConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
    }

    /// <summary>All workers until the job is done.</summary>
    [Benchmark]
    public async Task<long> Reencrypt()
    {
        var job = $"benchmark-{Workers}-{_iteration}";
        var results = await Task.WhenAll(Enumerable.Range(0, Workers).Select(async worker =>
        {
            await using var context = new EnvelopeContext(_options!);
            var options = new PartitionedJobOptions(job) { WorkerId = "worker-" + worker, Partitions = 8 };
            return await EnvelopeKeyLifecycle.RunPartitionedAsync(context, LifecycleOperation.Reencrypt, options);
        }));
        var changed = results.Sum(r => r.RecordsChanged);
        return changed == PatientData.Rows ? changed : throw new InvalidOperationException($"The workers re-encrypted {changed} records, not {PatientData.Rows}.");
    }
}
