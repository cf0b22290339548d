using BenchmarkDotNet.Attributes;
using EfEnvelope.Benchmarks.Workload;
using EfEnvelope.KeyManagement;

namespace EfEnvelope.Benchmarks;

/// <summary>Reads 10,000 patients back, from a database each approach wrote once in the global set-up.</summary>
/// <remarks>
/// Steady state: the key cache is as warm as in a running application (default mode: one key-encryption key serves
/// every row; direct mode: every row's data key needs a provider unwrap unless cached).
/// </remarks>
[MemoryDiagnoser]
public abstract class ReadBenchmarks
{
    private readonly InsecureInMemoryMasterKeyProvider _provider = new("benchmark-key");
    private readonly CryptoFloor _floor = new();
    private Store? _store;
    private CryptoFloor.Sealed[] _sealed = [];

    protected abstract bool Tracking { get; }

    [GlobalSetup(Target = nameof(PlainEf))]
    public void SetUpPlain() => SetUp(Approach.PlainEf);

    [GlobalSetup(Target = nameof(EfEnvelope))]
    public void SetUpEnvelope() => SetUp(Approach.EfEnvelope);

    [GlobalSetup(Target = nameof(EfEnvelopeDirect))]
    public void SetUpDirect() => SetUp(Approach.EfEnvelopeDirect);

    [GlobalSetup(Target = nameof(FixedKeyConverter))]
    public void SetUpConverter() => SetUp(Approach.FixedKeyConverter);

    [GlobalSetup(Target = nameof(CryptoOnly))]
    public void SetUpCrypto() => _sealed = PatientData.Create().Select(_floor.Encrypt).ToArray();

    [GlobalCleanup]
    public void CleanUp()
    {
        _store?.Dispose();
        _floor.Dispose();
    }

    [Benchmark(Baseline = true)]
    public List<Patient> PlainEf() => _store!.Read(Tracking);

    [Benchmark]
    public List<Patient> EfEnvelope() => _store!.Read(Tracking);

    [Benchmark]
    public List<Patient> EfEnvelopeDirect() => _store!.Read(Tracking);

    [Benchmark]
    public List<Patient> FixedKeyConverter() => _store!.Read(Tracking);

    /// <summary>Per-record decryption with no EF: the floor (unwrap the data key, decrypt three fields into strings).</summary>
    [Benchmark]
    public int CryptoOnly()
    {
        var characters = 0;
        foreach (var record in _sealed)
        {
            var (ssn, diagnosis, notes) = _floor.Decrypt(record);
            characters += ssn.Length + diagnosis.Length + notes.Length;
        }

        return characters;
    }

    private void SetUp(Approach approach)
    {
        _store = new Store(approach, _provider);
        _store.Insert(PatientData.Create());

        // A benchmark of a read that does not decrypt would flatter the library: check one row first.
        var expected = PatientData.Create(1)[0];
        var first = _store.Read(Tracking).MinBy(p => p.Id)!;
        if (first.Ssn != expected.Ssn || first.Diagnosis != expected.Diagnosis || first.Notes != expected.Notes)
        {
            throw new InvalidOperationException($"{approach} did not read back the values it wrote.");
        }
    }
}

/// <summary>Tracking query: <c>context.Patients.ToList()</c>.</summary>
public class TrackingReadBenchmarks : ReadBenchmarks
{
    protected override bool Tracking => true;
}

/// <summary>No-tracking query: <c>context.Patients.AsNoTracking().ToList()</c>.</summary>
public class NoTrackingReadBenchmarks : ReadBenchmarks
{
    protected override bool Tracking => false;
}
