using EfEnvelope.Crypto;
using EfEnvelope.KeyManagement;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace EfEnvelope.Tests.KeyManagement;

/// <summary>The key cache's memory of refused blobs (issue 12, item 10): short, bounded, and only for refusals.</summary>
public sealed class RefusalMemoryTests
{
    private const string Entity = "Entity";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A mode 1 blob under the provider's primary key whose provider-wrapped KEK is garbage.</summary>
    private static WrappedKeyBlob Forged(IMasterKeyProvider provider, byte seed)
    {
        var tail = EnvelopeFormat.BuildTail(provider.Name, provider.PrimaryKeyId, Entity, Enumerable.Repeat(seed, 60).ToArray());
        var bytes = new byte[EnvelopeFormat.TailOffset + tail.Length + EnvelopeFormat.WrappedDekSize];
        bytes[0] = EnvelopeFormat.Version;
        bytes[1] = EnvelopeFormat.ModeCachedKek;
        tail.CopyTo(bytes, EnvelopeFormat.TailOffset);
        Assert.True(WrappedKeyBlob.TryParse(bytes, out var blob, out _));
        return blob;
    }

    private static (KeyCache Cache, InsecureInMemoryMasterKeyProvider Provider, FakeTimeProvider Time) Create(Action<KeyCacheOptions> configure)
    {
        var provider = new InsecureInMemoryMasterKeyProvider("primary");
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var options = new KeyCacheOptions();
        configure(options);
        return (new KeyCache(new ProviderGateway(provider, TimeSpan.FromSeconds(30), NullLogger.Instance), options, time, "tests"), provider, time);
    }

    [Fact]
    public async Task A_refusal_is_repeated_without_the_provider_until_the_period_ends()
    {
        var (cache, provider, time) = Create(o => o.FailureMemory = TimeSpan.FromSeconds(5));
        using var _ = cache;
        var blob = Forged(provider, 1);

        var first = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => cache.GetAsync(Entity, blob, null, Ct));
        var again = Assert.Throws<EnvelopeDecryptionException>(() => cache.Get(Entity, blob, null));
        Assert.Equal(1, provider.DecryptDataKeyCalls);
        Assert.Equal(first.Message, again.Message);
        Assert.NotSame(first, again);
        Assert.Equal(0, cache.SynchronousMisses);
        Assert.Equal(1, cache.RefusalsRepeated);

        time.Advance(TimeSpan.FromSeconds(6));
        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => cache.GetAsync(Entity, blob, null, Ct));
        Assert.Equal(2, provider.DecryptDataKeyCalls);
    }

    [Fact]
    public async Task The_memory_holds_at_most_the_configured_count_forgetting_the_oldest()
    {
        var (cache, provider, time) = Create(o => o.MaxRememberedFailures = 2);
        using var _ = cache;
        var blobs = new[] { Forged(provider, 1), Forged(provider, 2), Forged(provider, 3) };
        foreach (var blob in blobs)
        {
            await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => cache.GetAsync(Entity, blob, null, Ct));
            time.Advance(TimeSpan.FromMilliseconds(10));
        }

        Assert.Equal(2, cache.RememberedRefusals);
        Assert.Equal(3, provider.DecryptDataKeyCalls);

        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => cache.GetAsync(Entity, blobs[2], null, Ct));
        Assert.Equal(3, provider.DecryptDataKeyCalls);
        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => cache.GetAsync(Entity, blobs[0], null, Ct));
        Assert.Equal(4, provider.DecryptDataKeyCalls);
    }

    [Fact]
    public async Task A_zero_period_remembers_nothing_and_an_unreachable_provider_is_never_remembered()
    {
        var (cache, provider, _) = Create(o => o.FailureMemory = TimeSpan.Zero);
        using (cache)
        {
            var blob = Forged(provider, 1);
            await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => cache.GetAsync(Entity, blob, null, Ct));
            await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => cache.GetAsync(Entity, blob, null, Ct));
            Assert.Equal(2, provider.DecryptDataKeyCalls);
            Assert.Equal(0, cache.RememberedRefusals);
        }

        var unreachable = new UnreachableProvider();
        using var other = new KeyCache(new ProviderGateway(unreachable, TimeSpan.FromSeconds(30), NullLogger.Instance), new KeyCacheOptions(), TimeProvider.System, "tests");
        var stored = Forged(unreachable, 1);
        await Assert.ThrowsAsync<MasterKeyException>(() => other.GetAsync(Entity, stored, null, Ct));
        await Assert.ThrowsAsync<MasterKeyException>(() => other.GetAsync(Entity, stored, null, Ct));
        Assert.Equal(2, unreachable.Calls);
        Assert.Equal(0, other.RememberedRefusals);
    }

    [Fact]
    public void The_options_refuse_a_negative_or_overlong_period_and_a_zero_count()
    {
        var options = new KeyCacheOptions();
        Assert.Throws<ArgumentOutOfRangeException>(() => options.FailureMemory = TimeSpan.FromSeconds(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => options.FailureMemory = TimeSpan.FromHours(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => options.MaxRememberedFailures = 0);
        Assert.Equal((TimeSpan.FromSeconds(30), 1000), (options.FailureMemory, options.MaxRememberedFailures));
    }

    /// <summary>A provider whose every unwrap fails as a network outage would (not a refusal).</summary>
    private sealed class UnreachableProvider : IMasterKeyProvider
    {
        private int _calls;

        public int Calls => _calls;

        public string Name => "unreachable";

        public string PrimaryKeyId => "primary";

        public bool IsKeyConfigured(string keyId) => keyId == PrimaryKeyId;

        public Task<GeneratedDataKey> GenerateDataKeyAsync(string keyId, KeyContext context, CancellationToken cancellationToken) =>
            throw new MasterKeyException("The provider cannot be reached.", Name, keyId, context.Entity);

        public Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, KeyContext context, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _calls);
            throw new MasterKeyException("The provider cannot be reached.", Name, keyId, context.Entity);
        }
    }
}
