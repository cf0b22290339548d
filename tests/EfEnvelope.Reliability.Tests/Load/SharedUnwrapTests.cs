using EfEnvelope.Crypto;
using EfEnvelope.KeyManagement;
using Microsoft.Extensions.Logging.Abstractions;

namespace EfEnvelope.Reliability.Tests.Load;

/// <summary>Concurrent misses on one key share a provider call; one caller giving up must not fail the others.</summary>
public sealed class SharedUnwrapTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Answers unwraps only when released, honouring the token it is given.</summary>
    private sealed class GatedProvider(InsecureInMemoryMasterKeyProvider inner) : IMasterKeyProvider
    {
        private int _calls;

        public TaskCompletionSource Release { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Entered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Calls => Volatile.Read(ref _calls);

        public string Name => inner.Name;

        public string PrimaryKeyId => inner.PrimaryKeyId;

        public bool IsKeyConfigured(string keyId) => inner.IsKeyConfigured(keyId);

        public Task<GeneratedDataKey> GenerateDataKeyAsync(string keyId, KeyContext context, CancellationToken cancellationToken) =>
            inner.GenerateDataKeyAsync(keyId, context, cancellationToken);

        public async Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, KeyContext context, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _calls);
            Entered.TrySetResult();
            await Release.Task.WaitAsync(cancellationToken);
            return await inner.DecryptDataKeyAsync(keyId, wrappedKey, context, cancellationToken);
        }
    }

    [Fact]
    public async Task One_callers_cancellation_does_not_fail_another_caller_waiting_for_the_same_key()
    {
        var inner = new InsecureInMemoryMasterKeyProvider("shared");
        var provider = new GatedProvider(inner);
        using var cache = new KeyCache(new ProviderGateway(provider, TimeSpan.FromSeconds(30), NullLogger.Instance), new KeyCacheOptions(), TimeProvider.System, "app");

        using var generated = await inner.GenerateDataKeyAsync("shared", KeyContext.For("app", "Entity"), Ct);
        var tail = EnvelopeFormat.BuildTail(inner.Name, "shared", "Entity", generated.WrappedKey);
        var bytes = new byte[EnvelopeFormat.TailOffset + tail.Length + EnvelopeFormat.WrappedDekSize];
        bytes[0] = EnvelopeFormat.Version;
        bytes[1] = EnvelopeFormat.ModeCachedKek;
        tail.CopyTo(bytes, EnvelopeFormat.TailOffset);
        Assert.True(WrappedKeyBlob.TryParse(bytes, out var blob, out _));

        using var impatient = new CancellationTokenSource();
        var first = cache.GetAsync("Entity", blob, null, impatient.Token);
        await provider.Entered.Task.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        var second = cache.GetAsync("Entity", blob, null, Ct);

        // The first caller gives up (a request aborted); the second still wants the key.
        await impatient.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => first.WaitAsync(TimeSpan.FromSeconds(10), Ct));

        provider.Release.SetResult();
        var key = await second.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        Assert.False(key.IsZeroed);
        key.Release();
        Assert.InRange(provider.Calls, 1, 2);
    }
}
