using System.Diagnostics;
using EfEnvelope.KeyManagement;

namespace EfEnvelope.Pkcs11.Tests;

/// <summary>One short measurement of wrap and unwrap rates on SoftHSM, written to the test output (not a benchmark).</summary>
public sealed class ThroughputTests
{
    private const int Operations = 500;

    public ThroughputTests() => SoftHsm.Require();

    [Fact]
    public async Task Wrap_and_unwrap_rates_are_reported()
    {
        var ct = TestContext.Current.CancellationToken;
        var label = await SoftHsm.CreateKeyAsync("throughput");
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
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"SoftHSM, one caller: wrap {Operations / wrap.TotalSeconds:F0}/s ({wrap.TotalMicroseconds / Operations:F0} µs), "
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
            $"SoftHSM, {callers} callers on {Environment.ProcessorCount} cores: {2 * Operations / parallel.TotalSeconds:F0} wrap+unwrap operations/s");
    }
}
