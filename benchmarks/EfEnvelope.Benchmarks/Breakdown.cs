using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using EfEnvelope.Benchmarks.Workload;
using EfEnvelope.KeyManagement;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace EfEnvelope.Benchmarks;

/// <summary>
/// A Stopwatch and allocation breakdown (<c>--breakdown</c>), for finding where EfEnvelope's time goes without a
/// profiler: the same operations as the benchmarks, plus the pieces they are made of, each timed on its own.
/// </summary>
/// <remarks>
/// "StoredForm" reads and writes the very table shape EfEnvelope stores (three varbinary columns and the key column)
/// through plain EF with no interceptor: the cost EF itself charges for moving ciphertext instead of text.
/// </remarks>
public static class Breakdown
{
    private const int Runs = 7;
    private const long NoGcBudget = 240L * 1024 * 1024;

    public static void Print()
    {
        Console.WriteLine($"Breakdown, {PatientData.Rows:N0} rows, median of {Runs} runs (allocations: all threads, per row)");
        Console.WriteLine("CPU ms is the process's processor time (all threads, GC included): less disturbed than wall time when other jobs share the cores.");
        Console.WriteLine();
        Console.WriteLine("| What | Median wall ms | Median CPU ms | Bytes/row | Gen0/1/2 per run |");
        Console.WriteLine("|---|---:|---:|---:|---|");

        var provider = new InsecureInMemoryMasterKeyProvider("benchmark-key");
        foreach (var approach in Enum.GetValues<Approach>())
        {
            Measure($"{approach}: insert", () => new Store(approach, provider), (store, _) => store.Insert(PatientData.Create()), prepareEachRun: true);
            using var store = new Store(approach, provider);
            store.Insert(PatientData.Create());
            Measure($"{approach}: tracking read", () => store, (s, _) => s.Read(tracking: true));
            Measure($"{approach}: no-tracking read", () => store, (s, _) => s.Read(tracking: false));
            if (approach == Approach.PlainEf)
            {
                Measure("PlainEf + a no-op IMaterializationInterceptor: tracking read", () => store, (s, _) => NoOpInterception.Read(s.Connection, tracking: true));
                Measure("PlainEf + a no-op IMaterializationInterceptor: no-tracking read", () => store, (s, _) => NoOpInterception.Read(s.Connection, tracking: false));
            }

            if (approach == Approach.EfEnvelope)
            {
                Measure("StoredForm (EF, binary columns, no interceptor): tracking read", () => store, (s, _) => StoredForm.Read(s.Connection, tracking: true));
                Measure("StoredForm (EF, binary columns, no interceptor): no-tracking read", () => store, (s, _) => StoredForm.Read(s.Connection, tracking: false));
                var copies = StoredForm.Read(store.Connection, tracking: false);
                Measure("StoredForm (EF, binary columns, no interceptor): insert", StoredForm.EmptyDatabase, (connection, _) => StoredForm.Insert(connection, copies), prepareEachRun: true);
            }
        }

        using var floor = new CryptoFloor();
        var patients = PatientData.Create();
        var sealedRecords = patients.Select(floor.Encrypt).ToArray();
        Measure("Crypto only: encrypt 10k records", () => patients, (p, _) => p.ForEach(x => floor.Encrypt(x)));
        Measure("Crypto only: decrypt 10k records", () => sealedRecords, (r, _) => Array.ForEach(r, x => floor.Decrypt(x)));

        var key = RandomNumberGenerator.GetBytes(32);
        Measure("Piece: new AesGcm(key) + Dispose, 10k times", () => key, (k, _) =>
        {
            for (var i = 0; i < PatientData.Rows; i++)
            {
                using var cipher = new AesGcm(k, 16);
            }
        });
        Measure("Piece: ConditionalWeakTable.AddOrUpdate of 10k new objects", () => patients, (p, _) =>
        {
            var table = new ConditionalWeakTable<object, object>();
            foreach (var patient in p)
            {
                table.AddOrUpdate(patient, patient.Name);
            }
        });
        Measure("Piece: Dictionary (reference keys) add of 10k objects", () => patients, (p, _) =>
        {
            var table = new Dictionary<object, object>(ReferenceEqualityComparer.Instance);
            foreach (var patient in p)
            {
                table[patient] = patient.Name;
            }
        });
    }

    private static void Measure<T>(string name, Func<T> prepare, Action<T, int> run, bool prepareEachRun = false)
    {
        Measure(name, prepare, run, prepareEachRun, withoutGc: false);
        Measure(name + ", no GC", prepare, run, prepareEachRun, withoutGc: true);
    }

    /// <param name="withoutGc">Runs inside a no-GC region: the time left is the CPU cost, the difference is what collections cost.</param>
    private static void Measure<T>(string name, Func<T> prepare, Action<T, int> run, bool prepareEachRun, bool withoutGc)
    {
        var times = new double[Runs];
        var cpu = new double[Runs];
        long bytes = 0;
        int gen0 = 0, gen1 = 0, gen2 = 0;
        var shared = prepareEachRun ? default : prepare();
        var warmUp = prepareEachRun ? prepare() : shared!;
        run(warmUp, -1);
        if (prepareEachRun)
        {
            (warmUp as IDisposable)?.Dispose();
        }

        for (var i = 0; i < Runs; i++)
        {
            var state = prepareEachRun ? prepare() : shared!;
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            var noGc = withoutGc && GC.TryStartNoGCRegion(NoGcBudget);
            var (c0, c1, c2) = (GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2));
            var before = GC.GetTotalAllocatedBytes(precise: true);
            var cpuBefore = Environment.CpuUsage.TotalTime;
            var watch = Stopwatch.StartNew();
            run(state, i);
            watch.Stop();
            cpu[i] = (Environment.CpuUsage.TotalTime - cpuBefore).TotalMilliseconds;
            if (noGc && System.Runtime.GCSettings.LatencyMode == System.Runtime.GCLatencyMode.NoGCRegion)
            {
                GC.EndNoGCRegion();
            }

            bytes += GC.GetTotalAllocatedBytes(precise: true) - before;
            gen0 += GC.CollectionCount(0) - c0;
            gen1 += GC.CollectionCount(1) - c1;
            gen2 += GC.CollectionCount(2) - c2;
            times[i] = watch.Elapsed.TotalMilliseconds;
            if (prepareEachRun)
            {
                (state as IDisposable)?.Dispose();
            }
        }

        Array.Sort(times);
        Array.Sort(cpu);
        Console.WriteLine($"| {name} | {times[Runs / 2]:F1} | {cpu[Runs / 2]:F0} | {bytes / Runs / PatientData.Rows:N0} | {gen0 / (double)Runs:F1}/{gen1 / (double)Runs:F1}/{gen2 / (double)Runs:F1} |");
    }

    /// <summary>The table as EfEnvelope stores it, mapped by plain EF with no encryption: binary columns in, binary columns out.</summary>
    private static class StoredForm
    {
        public static List<StoredPatient> Read(SqliteConnection connection, bool tracking)
        {
            using var context = new StoredContext(connection);
            var query = context.Patients.AsQueryable();
            return (tracking ? query.AsTracking() : query.AsNoTracking()).ToList();
        }

        public static SqliteConnection EmptyDatabase()
        {
            var connection = new SqliteConnection("Data Source=:memory:");
            connection.Open();
            using var context = new StoredContext(connection);
            context.Database.EnsureCreated();
            return connection;
        }

        /// <summary>Inserts fresh copies of <paramref name="rows"/> (ciphertext included), as new entities.</summary>
        public static void Insert(SqliteConnection connection, List<StoredPatient> rows)
        {
            using var context = new StoredContext(connection);
            context.Patients.AddRange(rows.Select(r => new StoredPatient
            {
                Name = r.Name, Ssn = r.Ssn, Diagnosis = r.Diagnosis, Notes = r.Notes, EfEnvelopeKey = r.EfEnvelopeKey,
            }));
            context.SaveChanges();
        }
    }

    /// <summary>
    /// Plain EF with an interceptor that does nothing: what EF itself charges per row once any
    /// <see cref="IMaterializationInterceptor"/> is registered (it then builds a property-accessor dictionary per entity).
    /// </summary>
    private static class NoOpInterception
    {
        private static readonly NoOpInterceptor Interceptor = new();

        public static List<Patient> Read(SqliteConnection connection, bool tracking)
        {
            using var context = new PlainContext(new DbContextOptionsBuilder().UseSqlite(connection).AddInterceptors(Interceptor).Options);
            var query = context.Patients.AsQueryable();
            return (tracking ? query.AsTracking() : query.AsNoTracking()).ToList();
        }

        private sealed class NoOpInterceptor : IMaterializationInterceptor;
    }

    private sealed class StoredPatient
    {
        public int Id { get; set; }

        public string Name { get; set; } = "";

        public byte[] Ssn { get; set; } = [];

        public byte[] Diagnosis { get; set; } = [];

        public byte[] Notes { get; set; } = [];

        public byte[]? EfEnvelopeKey { get; set; }
    }

    private sealed class StoredContext(SqliteConnection connection) : DbContext(new DbContextOptionsBuilder().UseSqlite(connection).Options)
    {
        public DbSet<StoredPatient> Patients => Set<StoredPatient>();

        protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.Entity<StoredPatient>().ToTable("Patients");
    }
}
