using BenchmarkDotNet.Attributes;
using EfEnvelope.KeyManagement;

namespace EfEnvelope.Benchmarks;

/// <summary>Raw provider rates: one generate-data-key (wrap) and one decrypt-data-key (unwrap) call.</summary>
[MemoryDiagnoser]
public class ProviderBenchmarks
{
    private readonly InsecureInMemoryMasterKeyProvider _inMemory = new("benchmark-key");
    private readonly KeyContext _context = KeyContext.For("efenvelope", "Patient");
    private byte[] _wrapped = [];

    [GlobalSetup]
    public async Task SetUp()
    {
        using var key = await _inMemory.GenerateDataKeyAsync(_inMemory.PrimaryKeyId, _context, CancellationToken.None);
        _wrapped = key.WrappedKey;
    }

    [Benchmark]
    public async Task<int> InMemoryWrap()
    {
        using var key = await _inMemory.GenerateDataKeyAsync(_inMemory.PrimaryKeyId, _context, CancellationToken.None);
        return key.WrappedKey.Length;
    }

    [Benchmark]
    public async Task<int> InMemoryUnwrap()
    {
        var plaintext = await _inMemory.DecryptDataKeyAsync(_inMemory.PrimaryKeyId, _wrapped, _context, CancellationToken.None);
        return plaintext.Length;
    }
}
