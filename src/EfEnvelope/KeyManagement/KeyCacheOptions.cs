namespace EfEnvelope.KeyManagement;

/// <summary>Bounds of the cache of unwrapped key-encryption keys.</summary>
/// <remarks>Options validate in their setters, so a bad value fails where it is configured.</remarks>
public sealed class KeyCacheOptions
{
    private int _maxEntries = 1000;
    private int _maxDataKeys = 10_000;
    private TimeSpan _timeToLive = TimeSpan.FromMinutes(5);
    private long _maxEncryptionUses = 1_000_000;
    private TimeSpan _failureMemory = TimeSpan.FromSeconds(30);
    private int _maxRememberedFailures = 1000;

    /// <summary>The most unwrapped key-encryption keys held at once for reading.</summary>
    /// <remarks>The default is 1000. Past it the least recently used keys are evicted and zeroed.</remarks>
    public int MaxEntries
    {
        get => _maxEntries;
        set => _maxEntries = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(MaxEntries), value, "Must be positive.");
    }

    /// <summary>
    /// Direct mode (<see cref="KeyWrappingMode.Direct"/>): the most records whose unwrapped data key is held at once,
    /// the working set that reads again without a provider call.
    /// </summary>
    /// <remarks>
    /// The default is 10,000 (each held record costs its 32-byte key, pinned, an AES-GCM instance and a cache entry).
    /// Reading a record whose data key is held costs no provider call until <see cref="TimeToLive"/>; past the bound
    /// the least recently used keys are evicted and zeroed, and reading their records asks the provider again, one
    /// call per record. Size it to the rows read repeatedly within <see cref="TimeToLive"/>. The default mode keeps
    /// data keys under a few key-encryption keys instead, and does not use this bound.
    /// </remarks>
    public int MaxDataKeys
    {
        get => _maxDataKeys;
        set => _maxDataKeys = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(MaxDataKeys), value, "Must be positive.");
    }

    /// <summary>How long an unwrapped key stays usable after the provider returned it.</summary>
    /// <remarks>
    /// The default is 5 minutes. This is the bound on how late a revoked master key takes effect: after it, the
    /// provider is asked again and refuses.
    /// </remarks>
    public TimeSpan TimeToLive
    {
        get => _timeToLive;
        set => _timeToLive = value > TimeSpan.Zero ? value : throw new ArgumentOutOfRangeException(nameof(TimeToLive), value, "Must be positive.");
    }

    /// <summary>How many data keys one key-encryption key wraps before a new one is generated.</summary>
    /// <remarks>The default is 1,000,000 (far below the AES-GCM random-nonce limit of 2^32 messages per key).</remarks>
    public long MaxEncryptionUses
    {
        get => _maxEncryptionUses;
        set => _maxEncryptionUses = value is > 0 and <= 1L << 32
            ? value
            : throw new ArgumentOutOfRangeException(nameof(MaxEncryptionUses), value, "Must be between 1 and 2^32.");
    }

    /// <summary>How long a stored wrapped key the provider refused is remembered as refused.</summary>
    /// <remarks>
    /// The default is 30 seconds; <see cref="TimeSpan.Zero"/> turns the memory off. Within this time a read of the
    /// same blob fails again at once with the same error instead of asking the provider, so a forged or corrupt row
    /// costs at most one provider call per period however often it is read. Only refusals are remembered (data that
    /// failed authentication, a master key the configuration does not have), never timeouts or an unreachable
    /// provider. A key that was refused and then repaired (say, added to the provider's keys) reads after this time.
    /// </remarks>
    public TimeSpan FailureMemory
    {
        get => _failureMemory;
        set => _failureMemory = value >= TimeSpan.Zero && value <= TimeSpan.FromHours(1)
            ? value
            : throw new ArgumentOutOfRangeException(nameof(FailureMemory), value, "Must be between zero and one hour.");
    }

    /// <summary>The most refused wrapped keys remembered at once (see <see cref="FailureMemory"/>).</summary>
    /// <remarks>The default is 1000. Past it the oldest are forgotten, so many forged rows cannot grow the memory.</remarks>
    public int MaxRememberedFailures
    {
        get => _maxRememberedFailures;
        set => _maxRememberedFailures = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(MaxRememberedFailures), value, "Must be positive.");
    }

    internal KeyCacheOptions Clone() => (KeyCacheOptions)MemberwiseClone();

    internal bool SameAs(KeyCacheOptions other) =>
        _maxEntries == other._maxEntries && _maxDataKeys == other._maxDataKeys && _timeToLive == other._timeToLive && _maxEncryptionUses == other._maxEncryptionUses
        && _failureMemory == other._failureMemory && _maxRememberedFailures == other._maxRememberedFailures;
}
