using System.Diagnostics;
using System.Globalization;
using EfEnvelope.Benchmarks.Workload;
using EfEnvelope.KeyManagement;

namespace EfEnvelope.Benchmarks;

/// <summary>
/// The issue-14 comparison (<c>--interleaved</c>): every operation for every approach once per round, the approaches in
/// a different order each round, medians over the rounds and ratios to plain EF Core. Noise from other jobs on the
/// machine then falls on all approaches alike instead of on whichever BenchmarkDotNet happened to run during it.
/// </summary>
/// <remarks>Not a BenchmarkDotNet run: a check of the same workload that is robust on shared cores. Allocations are all threads'.</remarks>
public static class Interleaved
{
    private const int Lookups = 1_000;
    private const int Edits = 1_000;

    private static readonly Approach[] Approaches = [Approach.PlainEf, Approach.EfEnvelope, Approach.FixedKeyConverter];

    private static readonly string[] Operations = ["insert, one SaveChanges", "tracking read", "no-tracking read", $"{Lookups:N0} single-row lookups, fresh context", $"edit one property on {Edits:N0} tracked rows"];

    public static void Print(int rounds)
    {
        var provider = new InsecureInMemoryMasterKeyProvider("benchmark-key");
        var stores = Approaches.ToDictionary(a => a, a =>
        {
            var store = new Store(a, provider);
            store.Insert(PatientData.Create());
            return store;
        });
        var ids = Enumerable.Range(0, Lookups).Select(i => 1 + (i * 7919 % PatientData.Rows)).ToArray();
        var samples = new Dictionary<(string, Approach), List<(double Ms, double Bytes)>>();
        var load = new List<string> { Load() };

        for (var round = 0; round < rounds; round++)
        {
            // Rotate the order: in round r the approaches start at a different one.
            var order = Approaches.Skip(round % Approaches.Length).Concat(Approaches.Take(round % Approaches.Length)).ToArray();
            foreach (var approach in order)
            {
                var store = stores[approach];
                var patients = PatientData.Create();
                using (var fresh = new Store(approach, provider))
                {
                    Record(samples, Operations[0], approach, PatientData.Rows, () => fresh.Insert(patients));
                }

                Record(samples, Operations[1], approach, PatientData.Rows, () => store.Read(tracking: true));
                Record(samples, Operations[2], approach, PatientData.Rows, () => store.Read(tracking: false));
                Record(samples, Operations[3], approach, Lookups, () => store.Lookup(ids));
                using var tracked = store.Track(Edits);
                var suffix = (round % 10).ToString(CultureInfo.InvariantCulture);
                Record(samples, Operations[4], approach, Edits, () => Store.EditNotes(tracked, suffix));
            }

            load.Add(Load());
        }

        foreach (var store in stores.Values)
        {
            store.Dispose();
        }

        Console.WriteLine($"Interleaved: {rounds} rounds, medians; ratios to PlainEf in the same rounds. Load average (1 min) before and after each round: {string.Join(", ", load)}");
        Console.WriteLine();
        Console.WriteLine("| operation | PlainEf | EfEnvelope | FixedKeyConverter | EfEnvelope bytes/row (ratio) | converter bytes/row (ratio) |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|");
        foreach (var operation in Operations)
        {
            var plain = Median(samples[(operation, Approach.PlainEf)]);
            var envelope = Median(samples[(operation, Approach.EfEnvelope)]);
            var converter = Median(samples[(operation, Approach.FixedKeyConverter)]);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {operation} | {plain.Ms:F1} ms | {envelope.Ms:F1} ms ({envelope.Ms / plain.Ms:F2}×) | {converter.Ms:F1} ms ({converter.Ms / plain.Ms:F2}×) | {envelope.Bytes:N0} ({envelope.Bytes / plain.Bytes:F2}×) | {converter.Bytes:N0} ({converter.Bytes / plain.Bytes:F2}×) |"));
        }
    }

    private static void Record(Dictionary<(string, Approach), List<(double, double)>> samples, string operation, Approach approach, int rows, Action run)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var allocated = GC.GetTotalAllocatedBytes(precise: true);
        var clock = Stopwatch.StartNew();
        run();
        clock.Stop();
        var bytes = (GC.GetTotalAllocatedBytes(precise: true) - allocated) / (double)rows;
        if (!samples.TryGetValue((operation, approach), out var list))
        {
            samples[(operation, approach)] = list = [];
        }

        list.Add((clock.Elapsed.TotalMilliseconds, bytes));
    }

    private static (double Ms, double Bytes) Median(List<(double Ms, double Bytes)> values)
    {
        var ms = values.Select(v => v.Ms).Order().ToList();
        var bytes = values.Select(v => v.Bytes).Order().ToList();
        return (ms[ms.Count / 2], bytes[bytes.Count / 2]);
    }

    private static string Load() => File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "n/a";
}
