using System.Diagnostics;
using EfEnvelope.KeyManagement;
using Net.Pkcs11Interop.Common;

namespace EfEnvelope.Pkcs11.Tests;

/// <summary>
/// One short measurement of wrap and unwrap rates on SoftHSM for each stored form, written to the test output (not a
/// benchmark): C_WrapKey for a key with CKA_WRAP and CKA_UNWRAP, C_Encrypt with AES-GCM for a key with only
/// CKA_ENCRYPT and CKA_DECRYPT.
/// </summary>
public sealed class ThroughputTests
{
    private const int Operations = 500;

    public ThroughputTests() => SoftHsm.Require();

    [Theory]
    [InlineData("key wrap", true)]
    [InlineData("GCM encryption", false)]
    public async Task Wrap_and_unwrap_rates_are_reported(string form, bool keyWrap)
    {
        var ct = TestContext.Current.CancellationToken;
        var label = SoftHsm.GenerateKey("throughput",
            (CKA.CKA_WRAP, keyWrap), (CKA.CKA_UNWRAP, keyWrap), (CKA.CKA_ENCRYPT, !keyWrap), (CKA.CKA_DECRYPT, !keyWrap));
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(label));
        var context = KeyContext.For("pkcs11-tests", "Clinic.Patient");
        using (await provider.GenerateDataKeyAsync(label, context, ct))
        {
        }

        var keys = new GeneratedDataKey[Operations];
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < Operations; i++)
        {
            keys[i] = await provider.GenerateDataKeyAsync(label, context, ct);
        }

        var wrap = clock.Elapsed;
        clock.Restart();
        var matches = 0;
        foreach (var key in keys)
        {
            var unwrapped = await provider.DecryptDataKeyAsync(label, key.WrappedKey, context, ct);
            matches += key.Plaintext.AsSpan().SequenceEqual(unwrapped) ? 1 : 0;
        }

        var unwrap = clock.Elapsed;
        foreach (var key in keys)
        {
            key.Dispose();
        }

        Assert.Equal(Operations, matches);
        Assert.All(keys, key => Assert.Equal(keyWrap ? 73 : 60, key.WrappedKey.Length));
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"SoftHSM, {form}, one caller: wrap {Operations / wrap.TotalSeconds:F0}/s ({wrap.TotalMicroseconds / Operations:F0} µs), "
            + $"unwrap {Operations / unwrap.TotalSeconds:F0}/s ({unwrap.TotalMicroseconds / Operations:F0} µs)");

        const int callers = 4;
        clock.Restart();
        var roundTrips = await Task.WhenAll(Enumerable.Range(0, callers).Select(_ => Task.Run(async () =>
        {
            var ok = 0;
            for (var i = 0; i < Operations / callers; i++)
            {
                using var key = await provider.GenerateDataKeyAsync(label, context, ct);
                var unwrapped = await provider.DecryptDataKeyAsync(label, key.WrappedKey, context, ct);
                ok += key.Plaintext.AsSpan().SequenceEqual(unwrapped) ? 1 : 0;
            }

            return ok;
        }, ct)));
        var parallel = clock.Elapsed;

        Assert.Equal(Operations, roundTrips.Sum());
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"SoftHSM, {form}, {callers} callers on {Environment.ProcessorCount} cores: {2 * Operations / parallel.TotalSeconds:F0} wrap+unwrap operations/s");
    }
}
