using BenchmarkDotNet.Attributes;
using EfEnvelope.Benchmarks.Workload;
using EfEnvelope.KeyManagement;
using EfEnvelope.Lifecycle;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Benchmarks;

/// <summary>Key lifecycle jobs over 10,000 patients in a local SQLite file: rows per second is 10,000 divided by the mean.</summary>
/// <remarks>
/// <para>
/// Each iteration gets a fresh database file written under master key <c>key-a</c> (outside the measurement), then
/// runs one job with a context whose configuration makes <c>key-b</c> the target. The options, and with them the key
/// cache, live for the whole run, as in a process that runs jobs.
/// </para>
/// <para>
/// <see cref="DatabaseFloor"/> is what any job that writes each row once must pay at least on this database: one
/// parameterized UPDATE of a binary column per row, all in one transaction, with no reading, no crypto and no EF.
/// </para>
/// </remarks>
[MemoryDiagnoser]
public class LifecycleJobBenchmarks
{
    private readonly InsecureInMemoryMasterKeyProvider _provider = new InsecureInMemoryMasterKeyProvider("key-a").AddKey("key-b");
    private readonly DbContextOptions _options;
    private readonly string _folder = Directory.CreateTempSubdirectory("efenvelope-jobs-").FullName;
    private string _path = "";

    public LifecycleJobBenchmarks()
    {
        _options = new DbContextOptionsBuilder()
            .UseSqlite($"Data Source={Path.Combine(_folder, "jobs.db")}")
            .UseEnvelopeEncryption(e => e.UseProvider(_provider))
            .Options;
    }

    [IterationSetup]
    public void SetUp()
    {
        SqliteConnection.ClearAllPools();
        _path = Path.Combine(_folder, "jobs.db");
        File.Delete(_path);
        _provider.SetPrimaryKey("key-a");
        using var context = new EnvelopeContext(_options);
        context.Database.EnsureCreated();
        context.Patients.AddRange(PatientData.Create());
        context.SaveChanges();
        _provider.SetPrimaryKey("key-b");
    }

    [GlobalCleanup]
    public void CleanUp()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
    }

    /// <summary>Rewraps every record's data key under <c>key-b</c>.</summary>
    [Benchmark]
    public Task<LifecycleResult> Rotate() => RunAsync(EnvelopeKeyLifecycle.RotateAsync);

    /// <summary>A fresh data key and new ciphertext for every record.</summary>
    [Benchmark]
    public Task<LifecycleResult> Reencrypt() => RunAsync(EnvelopeKeyLifecycle.ReencryptAsync);

    /// <summary>One UPDATE per row of a 100-byte value into the key column, one transaction: the database's share.</summary>
    [Benchmark(Baseline = true)]
    public int DatabaseFloor()
    {
        using var connection = new SqliteConnection($"Data Source={_path}");
        connection.Open();
        using var transaction = connection.BeginTransaction();
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE \"Patients\" SET \"EfEnvelopeKey\" = $value WHERE \"Id\" = $id";
        var value = command.Parameters.Add("$value", SqliteType.Blob);
        var id = command.Parameters.Add("$id", SqliteType.Integer);
        value.Value = new byte[100];
        var updated = 0;
        for (var row = 1; row <= PatientData.Rows; row++)
        {
            id.Value = row;
            updated += command.ExecuteNonQuery();
        }

        transaction.Commit();
        return updated;
    }

    private async Task<LifecycleResult> RunAsync(Func<DbContext, LifecycleOptions?, IProgress<LifecycleProgress>?, CancellationToken, Task<LifecycleResult>> job)
    {
        await using var context = new EnvelopeContext(_options);
        var result = await job(context, new LifecycleOptions { TargetKeyId = "key-b" }, null, CancellationToken.None);
        if (!result.Succeeded || result.RecordsChanged != PatientData.Rows)
        {
            throw new InvalidOperationException($"The job did not rewrite every row: {result}");
        }

        return result;
    }
}
