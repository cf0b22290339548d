using BenchmarkDotNet.Attributes;
using EfEnvelope.Benchmarks.Workload;
using EfEnvelope.KeyManagement;

namespace EfEnvelope.Benchmarks;

/// <summary>10,000 new patients, one SaveChanges, into an empty in-memory SQLite database.</summary>
/// <remarks>
/// Each iteration gets a fresh database and fresh entity instances (set up outside the measurement); the options, and
/// with them EfEnvelope's key cache, live for the whole run as they would in an application.
/// </remarks>
[MemoryDiagnoser]
public class InsertBenchmarks
{
    private readonly InsecureInMemoryMasterKeyProvider _provider = new("benchmark-key");
    private readonly CryptoFloor _floor = new();
    private Store? _store;
    private List<Patient> _patients = [];

    [IterationSetup(Target = nameof(PlainEf))]
    public void SetUpPlain() => SetUp(Approach.PlainEf);

    [IterationSetup(Target = nameof(EfEnvelope))]
    public void SetUpEnvelope() => SetUp(Approach.EfEnvelope);

    [IterationSetup(Target = nameof(EfEnvelopeDirect))]
    public void SetUpDirect() => SetUp(Approach.EfEnvelopeDirect);

    [IterationSetup(Target = nameof(EfEnvelopeBoundKeys))]
    public void SetUpBoundKeys() => SetUp(Approach.EfEnvelopeBoundKeys);

    [IterationSetup(Target = nameof(FixedKeyConverter))]
    public void SetUpConverter() => SetUp(Approach.FixedKeyConverter);

    [IterationSetup(Target = nameof(CryptoOnly))]
    public void SetUpCrypto() => _patients = PatientData.Create();

    [IterationCleanup]
    public void CleanUp()
    {
        _store?.Dispose();
        _store = null;
    }

    [Benchmark(Baseline = true)]
    public void PlainEf() => _store!.Insert(_patients);

    [Benchmark]
    public void EfEnvelope() => _store!.Insert(_patients);

    [Benchmark]
    public void EfEnvelopeDirect() => _store!.Insert(_patients);

    /// <summary>The identity keys bound by the inserting save: one more UPDATE per row, in the save's transaction.</summary>
    [Benchmark]
    public void EfEnvelopeBoundKeys() => _store!.Insert(_patients);

    [Benchmark]
    public void FixedKeyConverter() => _store!.Insert(_patients);

    /// <summary>Per-record crypto with no EF: the floor.</summary>
    [Benchmark]
    public CryptoFloor.Sealed[] CryptoOnly()
    {
        var sealedRecords = new CryptoFloor.Sealed[_patients.Count];
        for (var i = 0; i < sealedRecords.Length; i++)
        {
            sealedRecords[i] = _floor.Encrypt(_patients[i]);
        }

        return sealedRecords;
    }

    private void SetUp(Approach approach)
    {
        _store = new Store(approach, _provider);
        _patients = PatientData.Create();
    }
}
