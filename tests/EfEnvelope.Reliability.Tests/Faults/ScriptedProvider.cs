using EfEnvelope.KeyManagement;

namespace EfEnvelope.Reliability.Tests.Faults;

/// <summary>What a scripted provider call does instead of (or before) answering.</summary>
public enum ProviderFault
{
    None,
    Fail,
    Throttle,
    Hang,
    Delay,
}

/// <summary>
/// Wraps a real provider and, on the call numbered <see cref="FaultOnCall"/> (1-based, counting every call), fails,
/// throttles (a non-library exception, as a KMS SDK would throw), hangs until cancelled, or delays.
/// </summary>
public sealed class ScriptedProvider(IMasterKeyProvider inner) : IMasterKeyProvider
{
    private int _calls;

    public string Name => inner.Name;

    public string PrimaryKeyId => inner.PrimaryKeyId;

    public int Calls => Volatile.Read(ref _calls);

    public int FaultOnCall { get; set; }

    public ProviderFault Fault { get; set; }

    public TimeSpan Delay { get; set; } = TimeSpan.FromMilliseconds(20);

    /// <summary>Set when the faulting call has started (the save is then in the middle of its provider calls).</summary>
    public TaskCompletionSource FaultStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public bool IsKeyConfigured(string keyId) => inner.IsKeyConfigured(keyId);

    public async Task<GeneratedDataKey> GenerateDataKeyAsync(string keyId, KeyContext context, CancellationToken cancellationToken)
    {
        await BeforeAsync(keyId, cancellationToken);
        return await inner.GenerateDataKeyAsync(keyId, context, cancellationToken);
    }

    public async Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, KeyContext context, CancellationToken cancellationToken)
    {
        await BeforeAsync(keyId, cancellationToken);
        return await inner.DecryptDataKeyAsync(keyId, wrappedKey, context, cancellationToken);
    }

    private async Task BeforeAsync(string keyId, CancellationToken cancellationToken)
    {
        var call = Interlocked.Increment(ref _calls);
        if (call != FaultOnCall)
        {
            return;
        }

        FaultStarted.TrySetResult();
        switch (Fault)
        {
            case ProviderFault.Fail:
                throw new MasterKeyException("Injected provider failure.", Name, keyId);
            case ProviderFault.Throttle:
                throw new HttpRequestException("Rate exceeded (injected throttling).");
            case ProviderFault.Hang:
                await Task.Delay(Timeout.InfiniteTimeSpan, cancellationToken);
                break;
            case ProviderFault.Delay:
                await Task.Delay(Delay, cancellationToken);
                break;
        }
    }
}
