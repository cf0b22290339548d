using System.Diagnostics;
using System.Security.Cryptography;
using EfEnvelope.Crypto;
using EfEnvelope.KeyManagement;
using Microsoft.Extensions.Logging.Abstractions;

namespace EfEnvelope.Reliability.Tests.Load;

/// <summary>Runs alone: it measures the process's managed memory, which tests running beside it would inflate.</summary>
[CollectionDefinition(nameof(MemoryMeasurement), DisableParallelization = true)]
public sealed class MemoryMeasurement;

/// <summary>A million distinct keys pass through the key cache: it stays within its bound, memory stays flat, evicted keys are zeroed.</summary>
[Collection(nameof(MemoryMeasurement))]
public sealed class CacheBoundTests
{
    private const string Entity = "Bound.Entity";

    private static int Keys => int.TryParse(Environment.GetEnvironmentVariable("EFENVELOPE_CACHE_KEYS"), out var keys) ? keys : 1_000_000;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>
    /// A provider whose "wrapped" key is the key itself: the cache, not the provider, is under test, and a million
    /// real unwraps would only add time. Counts calls so that repeated asks for one key show.
    /// </summary>
    private sealed class TransparentProvider : IMasterKeyProvider
    {
        private long _decryptCalls;

        public string Name => "transparent-test";

        public string PrimaryKeyId => "k";

        public long DecryptCalls => Interlocked.Read(ref _decryptCalls);

        public bool IsKeyConfigured(string keyId) => keyId == "k";

        public Task<GeneratedDataKey> GenerateDataKeyAsync(string keyId, KeyContext context, CancellationToken cancellationToken) =>
            throw new NotSupportedException("Reads only.");

        public Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, KeyContext context, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _decryptCalls);
            return Task.FromResult(wrappedKey.ToArray());
        }
    }

    /// <summary>A mode 1 blob whose provider-wrapped part (the cache key) is a 32-byte key derived from <paramref name="n"/>.</summary>
    private static byte[] Blob(long n)
    {
        var key = ExpectedKey(n);
        var tail = EnvelopeFormat.BuildTail("transparent-test", "k", Entity, key);
        var blob = new byte[EnvelopeFormat.TailOffset + tail.Length + EnvelopeFormat.WrappedDekSize];
        blob[0] = EnvelopeFormat.Version;
        blob[1] = EnvelopeFormat.ModeCachedKek;
        tail.CopyTo(blob, EnvelopeFormat.TailOffset);
        return blob;
    }

    [Fact]
    public async Task A_million_distinct_keys_stay_within_the_bound_and_every_evicted_key_is_zeroed()
    {
        const int maxEntries = 1000;
        var provider = new TransparentProvider();
        using var cache = new KeyCache(
            new ProviderGateway(provider, Timeout.InfiniteTimeSpan, NullLogger.Instance),
            new KeyCacheOptions { MaxEntries = maxEntries, TimeToLive = TimeSpan.FromHours(1) },
            TimeProvider.System,
            "bound-test");

        // A reader holds one key for the whole run: eviction must not zero it under the reader.
        WrappedKeyBlob.TryParse(Blob(-1), out var heldBlob, out _);
        var held = await cache.GetAsync(Entity, heldBlob, null, Ct);

        GC.Collect();
        GC.WaitForPendingFinalizers();
        // Memory is measured once the cache is full (steady state) and at the end: a cache that kept evicted keys
        // would grow by hundreds of bytes per key between the two, hundreds of MB over the run.
        long memoryBefore = 0;
        long workingSetBefore = 0;
        var samples = new List<CachedKey>();
        var stopwatch = Stopwatch.StartNew();
        var keys = Keys;
        for (var n = 0; n < keys; n++)
        {
            WrappedKeyBlob.TryParse(Blob(n), out var blob, out _);
            var key = await cache.GetAsync(Entity, blob, null, Ct);
            try
            {
                // A sample of keys is checked to be the key its blob names (no mix-up between cache entries).
                Assert.True(n % 97 != 0 || Is(key, ExpectedKey(n)), $"key {n} is not the key its blob names");
            }
            finally
            {
                key.Release();
            }

            if (n == keys / 10)
            {
                memoryBefore = GC.GetTotalMemory(forceFullCollection: true);
                workingSetBefore = Environment.WorkingSet;
            }

            if (n % 1000 == 0)
            {
                samples.Add(key);
                Assert.True(cache.Count <= maxEntries, $"{cache.Count} entries after {n} keys");
            }
        }

        var elapsed = stopwatch.Elapsed;

        // MemoryCache runs compactions and eviction callbacks (which zero the keys) on the thread pool: let the ones
        // still queued finish before measuring what the cache retains.
        var drain = Stopwatch.StartNew();
        while (samples.Any(s => !s.IsZeroed && !InCache(cache, s)) && drain.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(10, Ct);
        }

        var memoryAfter = GC.GetTotalMemory(forceFullCollection: true);
        var growth = memoryAfter - memoryBefore;
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"{keys} keys in {elapsed.TotalSeconds:0.0} s; {provider.DecryptCalls} provider calls; {cache.Count} cached; " +
            $"managed heap {memoryBefore / 1024} KB -> {memoryAfter / 1024} KB; working set {workingSetBefore / 1048576} MB -> {Environment.WorkingSet / 1048576} MB");

        Assert.True(cache.Count <= maxEntries);

        // Each distinct key was asked for once: a full cache must not make the provider be asked again and again.
        Assert.True(provider.DecryptCalls <= keys + (keys / 100), $"{provider.DecryptCalls} provider calls for {keys} distinct keys");

        // The bound leaves room for the rest of the process (thread-pool work queued by MemoryCache, other test
        // classes' leftovers being collected); keeping the 900,000 keys evicted since the first measurement would
        // add several hundred MB.
        Assert.True(growth < 64 * 1024 * 1024, $"managed memory grew by {growth / 1024} KB");

        // Every sampled key that has left the cache is zeroed.
        var notZeroed = samples.Where(s => !s.IsZeroed).ToList();
        Assert.True(notZeroed.All(s => InCache(cache, s)), $"{notZeroed.Count(s => !InCache(cache, s))} evicted keys were not zeroed");
        Assert.True(samples.Take(samples.Count / 2).All(s => s.IsZeroed), "early keys, long evicted, were not zeroed");

        // The held key survived every eviction intact, and is zeroed when its reader lets go.
        Assert.False(held.IsZeroed);
        Assert.True(Is(held, ExpectedKey(-1)));
        cache.Clear();
        Assert.False(held.IsZeroed);
        held.Release();
        Assert.True(held.IsZeroed);

        // Clear() evicts at once, but MemoryCache runs eviction callbacks on the thread pool: allow them to run.
        var deadline = Stopwatch.StartNew();
        while (!samples.All(s => s.IsZeroed) && deadline.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(10, Ct);
        }

        Assert.All(samples, s => Assert.True(s.IsZeroed));
    }

    /// <summary>Whether the cache still holds <paramref name="key"/> (looked up by a mode 1 blob with its tail; the lease taken is given back).</summary>
    private static bool InCache(KeyCache cache, CachedKey key)
    {
        var stored = new byte[EnvelopeFormat.TailOffset + key.Tail.Length + EnvelopeFormat.WrappedDekSize];
        stored[0] = EnvelopeFormat.Version;
        stored[1] = EnvelopeFormat.ModeCachedKek;
        key.Tail.CopyTo(stored, EnvelopeFormat.TailOffset);
        Assert.True(WrappedKeyBlob.TryParse(stored, out var blob, out _));
        if (!cache.TryGet(Entity, blob, null, out var found))
        {
            return false;
        }

        found.Release();
        return ReferenceEquals(found, key);
    }

    private static byte[] ExpectedKey(long n)
    {
        var key = new byte[32];
        key.AsSpan().Fill(0xA5);
        BitConverter.TryWriteBytes(key, n);
        return key;
    }

    /// <summary>Whether the cached key is <paramref name="expected"/>, seen through the only door the cache offers: its cipher.</summary>
    private static bool Is(CachedKey key, byte[] expected)
    {
        Span<byte> nonce = stackalloc byte[12];
        Span<byte> actualOutput = stackalloc byte[16];
        Span<byte> expectedOutput = stackalloc byte[16];
        Span<byte> tag = stackalloc byte[16];
        var cipher = key.RentCipher();
        try
        {
            cipher.Encrypt(nonce, stackalloc byte[16], actualOutput, tag);
        }
        finally
        {
            key.ReturnCipher(cipher);
        }

        using var check = new AesGcm(expected, 16);
        check.Encrypt(nonce, stackalloc byte[16], expectedOutput, tag);
        return actualOutput.SequenceEqual(expectedOutput);
    }
}
