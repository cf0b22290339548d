using BenchmarkDotNet.Attributes;
using EfEnvelope.Benchmarks.Workload;
using EfEnvelope.KeyManagement;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Benchmarks;

/// <summary>
/// 1,000 single-row lookups, each in a fresh context (a request per lookup), from a database each approach wrote once
/// in the global set-up: the per-query and per-context cost, where a read of 10,000 rows measures the per-row cost.
/// </summary>
[MemoryDiagnoser]
public class LookupBenchmarks
{
    private const int Lookups = 1_000;

    private readonly InsecureInMemoryMasterKeyProvider _provider = new("benchmark-key");
    private readonly int[] _ids = [.. Enumerable.Range(0, Lookups).Select(i => 1 + (i * 7919 % PatientData.Rows))];
    private Store? _store;

    [GlobalSetup(Target = nameof(PlainEf))]
    public void SetUpPlain() => _store = Workloads.Filled(Approach.PlainEf, _provider);

    [GlobalSetup(Target = nameof(EfEnvelope))]
    public void SetUpEnvelope() => _store = Workloads.Filled(Approach.EfEnvelope, _provider);

    [GlobalSetup(Target = nameof(FixedKeyConverter))]
    public void SetUpConverter() => _store = Workloads.Filled(Approach.FixedKeyConverter, _provider);

    [GlobalCleanup]
    public void CleanUp() => _store?.Dispose();

    [Benchmark(Baseline = true)]
    public int PlainEf() => _store!.Lookup(_ids);

    [Benchmark]
    public int EfEnvelope() => _store!.Lookup(_ids);

    [Benchmark]
    public int FixedKeyConverter() => _store!.Lookup(_ids);
}

/// <summary>
/// One encrypted property edited on each of 1,000 tracked rows, then one <c>SaveChanges</c>. The rows are queried
/// into a fresh context before each iteration, outside the measurement.
/// </summary>
[MemoryDiagnoser]
public class EditBenchmarks
{
    private const int Edits = 1_000;

    private readonly InsecureInMemoryMasterKeyProvider _provider = new("benchmark-key");
    private Store? _store;
    private DbContext? _tracked;
    private int _iteration;

    [GlobalSetup(Target = nameof(PlainEf))]
    public void SetUpPlain() => _store = Workloads.Filled(Approach.PlainEf, _provider);

    [GlobalSetup(Target = nameof(EfEnvelope))]
    public void SetUpEnvelope() => _store = Workloads.Filled(Approach.EfEnvelope, _provider);

    [GlobalSetup(Target = nameof(FixedKeyConverter))]
    public void SetUpConverter() => _store = Workloads.Filled(Approach.FixedKeyConverter, _provider);

    [IterationSetup]
    public void Track() => _tracked = _store!.Track(Edits);

    [IterationCleanup]
    public void Untrack() => _tracked?.Dispose();

    [GlobalCleanup]
    public void CleanUp() => _store?.Dispose();

    [Benchmark(Baseline = true)]
    public int PlainEf() => Store.EditNotes(_tracked!, Suffix());

    [Benchmark]
    public int EfEnvelope() => Store.EditNotes(_tracked!, Suffix());

    [Benchmark]
    public int FixedKeyConverter() => Store.EditNotes(_tracked!, Suffix());

    // A different last character each iteration, so that every edit changes the value.
    private string Suffix() => (_iteration++ % 10).ToString(System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>Set-up shared by the benchmarks that need a filled database.</summary>
internal static class Workloads
{
    /// <summary>A store of <paramref name="approach"/> holding the 10,000 benchmark patients.</summary>
    public static Store Filled(Approach approach, IMasterKeyProvider provider)
    {
        var store = new Store(approach, provider);
        store.Insert(PatientData.Create());
        return store;
    }
}
