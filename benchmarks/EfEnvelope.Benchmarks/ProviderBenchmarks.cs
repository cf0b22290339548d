using BenchmarkDotNet.Attributes;
using Amazon.KeyManagementService.Model;
using EfEnvelope.AwsKms;
using EfEnvelope.AwsKms.Tests.LocalKms;
using EfEnvelope.KeyManagement;
using EfEnvelope.Pkcs11;

namespace EfEnvelope.Benchmarks;

/// <summary>Raw provider rates: one generate-data-key (wrap) and one decrypt-data-key (unwrap) call.</summary>
/// <remarks>
/// <para>
/// AWS KMS is the real SDK client against the local KMS endpoint of the provider's tests, on this machine: the figure
/// is the client's and the HTTP stack's cost, without the network round trip to a Region (add that for real KMS).
/// </para>
/// PKCS#11 runs when a SoftHSM2 token is set up (<c>source tests/scripts/softhsm.sh &amp;&amp; softhsm_setup DIR</c>
/// exports EFENVELOPE_PKCS11_MODULE, _TOKEN and _PIN); the benchmark creates its own key on that token.
/// </remarks>
[MemoryDiagnoser]
public class ProviderBenchmarks
{
    // Calls per invocation, so that one invocation lasts long enough to time on its own (the quick job invokes once per iteration).
    private const int Calls = 1000;

    private readonly KeyContext _context = KeyContext.For("efenvelope", "Patient");
    private IMasterKeyProvider? _provider;
    private LocalKmsServer? _kms;
    private Amazon.KeyManagementService.AmazonKeyManagementServiceClient? _kmsClient;
    private byte[] _wrapped = [];

    public static IEnumerable<string> Providers =>
        Pkcs11Token() is null
            ? ["in-memory", AwsKmsMasterKeyProvider.ProviderName]
            : ["in-memory", AwsKmsMasterKeyProvider.ProviderName, Pkcs11MasterKeyProvider.ProviderName];

    [ParamsSource(nameof(Providers))]
    public string Provider { get; set; } = "in-memory";

    [GlobalSetup]
    public async Task SetUp()
    {
        if (Provider == AwsKmsMasterKeyProvider.ProviderName)
        {
            _kms = LocalKmsServer.Start();
            _kms.RecordRequests = false;
            _kmsClient = _kms.CreateClient();
            var created = await _kmsClient.CreateKeyAsync(new CreateKeyRequest { Description = "benchmarks" });
            _provider = new AwsKmsMasterKeyProvider(new AwsKmsOptions { Client = _kmsClient, KeyId = created.KeyMetadata.Arn });
        }
        else if (Provider == Pkcs11MasterKeyProvider.ProviderName)
        {
            var options = Pkcs11Token()!;
            await Pkcs11KeySetup.EnsureKeyAsync(options, options.KeyLabel!);
            _provider = new Pkcs11MasterKeyProvider(options);
        }
        else
        {
            _provider = new InsecureInMemoryMasterKeyProvider("benchmark-key");
        }

        using var key = await _provider.GenerateDataKeyAsync(_provider.PrimaryKeyId, _context, CancellationToken.None);
        _wrapped = key.WrappedKey;
    }

    [GlobalCleanup]
    public async Task CleanUp()
    {
        (_provider as IDisposable)?.Dispose();
        _kmsClient?.Dispose();
        if (_kms is not null)
        {
            await _kms.DisposeAsync();
        }
    }

    [Benchmark(OperationsPerInvoke = Calls)]
    public async Task<int> Wrap()
    {
        var bytes = 0;
        for (var i = 0; i < Calls; i++)
        {
            using var key = await _provider!.GenerateDataKeyAsync(_provider.PrimaryKeyId, _context, CancellationToken.None);
            bytes += key.WrappedKey.Length;
        }

        return bytes;
    }

    [Benchmark(OperationsPerInvoke = Calls)]
    public async Task<int> Unwrap()
    {
        var bytes = 0;
        for (var i = 0; i < Calls; i++)
        {
            var plaintext = await _provider!.DecryptDataKeyAsync(_provider.PrimaryKeyId, _wrapped, _context, CancellationToken.None);
            bytes += plaintext.Length;
        }

        return bytes;
    }

    private static Pkcs11Options? Pkcs11Token()
    {
        var module = Environment.GetEnvironmentVariable("EFENVELOPE_PKCS11_MODULE");
        var token = Environment.GetEnvironmentVariable("EFENVELOPE_PKCS11_TOKEN");
        var pin = Environment.GetEnvironmentVariable("EFENVELOPE_PKCS11_PIN");
        return string.IsNullOrEmpty(module) || string.IsNullOrEmpty(token) || string.IsNullOrEmpty(pin)
            ? null
            : new Pkcs11Options { LibraryPath = module, TokenLabel = token, Pin = pin, KeyLabel = "efenvelope-benchmarks" };
    }
}
