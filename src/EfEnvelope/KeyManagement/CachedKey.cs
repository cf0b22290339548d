using System.Collections.Concurrent;
using System.Security.Cryptography;
using EfEnvelope.Crypto;

namespace EfEnvelope.KeyManagement;

/// <summary>An unwrapped key-encryption key held by the cache, with the bytes that identify it in stored blobs.</summary>
/// <remarks>
/// The key lives in a pinned array so the GC never leaves a copy behind, and is zeroed once it has been evicted
/// <em>and</em> no reader still holds a lease: eviction can happen on any thread while another thread is halfway
/// through unwrapping a data key with it, and zeroing under that reader would turn its result into garbage.
/// </remarks>
internal sealed class CachedKey
{
    // _leases counts readers; -1 means disposed (key zeroed, ciphers disposed) and no lease can be taken any more.
    private int _leases;
    private int _evicted;
    private long _remainingUses;
    private readonly byte[] _key;
    private readonly ConcurrentBag<AesGcm> _ciphers = [];

    public CachedKey(string entity, string keyId, byte[] tail, ReadOnlySpan<byte> key, DateTimeOffset expiresAt, long maxUses)
    {
        Entity = entity;
        KeyId = keyId;
        Tail = tail;
        ExpiresAt = expiresAt;
        _remainingUses = maxUses;
        _key = GC.AllocateArray<byte>(EnvelopeFormat.KeySize, pinned: true);
        key.CopyTo(_key);
    }

    public string Entity { get; }

    public string KeyId { get; }

    /// <summary>Provider name, key id and provider-wrapped KEK, as they appear in every blob under this KEK.</summary>
    public byte[] Tail { get; }

    public DateTimeOffset ExpiresAt { get; }

    public bool IsDisposed => Volatile.Read(ref _leases) < 0;

    /// <summary>Test hook: whether the key bytes are all zero.</summary>
    internal bool IsZeroed => _key.AsSpan().IndexOfAnyExcept((byte)0) < 0;

    /// <summary>Takes a lease; false once the key has been evicted (the caller treats it as a miss).</summary>
    public bool TryAcquire()
    {
        while (true)
        {
            var leases = Volatile.Read(ref _leases);
            if (leases < 0 || Volatile.Read(ref _evicted) == 1)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _leases, leases + 1, leases) == leases)
            {
                return true;
            }
        }
    }

    /// <summary>Takes one more lease for a caller that already holds one (so the key cannot be disposed meanwhile).</summary>
    public void AddLease() => Interlocked.Increment(ref _leases);

    public void Release()
    {
        if (Interlocked.Decrement(ref _leases) == 0 && Volatile.Read(ref _evicted) == 1)
        {
            TryDispose();
        }
    }

    /// <summary>Marks the key evicted; it is zeroed now if unused, else when the last lease is released.</summary>
    public void Evict()
    {
        Interlocked.Exchange(ref _evicted, 1);
        TryDispose();
    }

    /// <summary>Reserves one more data key to wrap under this KEK; false when its budget of uses is spent.</summary>
    public bool TryReserveUses(long count) => Interlocked.Add(ref _remainingUses, -count) >= 0;

    public long RemainingUses => Math.Max(0, Interlocked.Read(ref _remainingUses));

    /// <summary>Gets an AES-GCM instance for this key; <see cref="AesGcm"/> is not thread-safe, so each is used by one thread at a time.</summary>
    /// <remarks>Only call while holding a lease.</remarks>
    public AesGcm RentCipher() => _ciphers.TryTake(out var cipher) ? cipher : new AesGcm(_key, EnvelopeFormat.TagSize);

    public void ReturnCipher(AesGcm cipher) => _ciphers.Add(cipher);

    /// <summary>Derives a sub-key with HKDF-SHA256 (blind index keys); only call while holding a lease.</summary>
    public void DeriveKey(ReadOnlySpan<byte> info, Span<byte> output) =>
        HKDF.DeriveKey(HashAlgorithmName.SHA256, _key, output, ReadOnlySpan<byte>.Empty, info);

    private void TryDispose()
    {
        // Only the transition 0 -> -1 disposes, so a concurrent Release and Evict cannot both zero (or miss) it.
        if (Interlocked.CompareExchange(ref _leases, -1, 0) != 0)
        {
            return;
        }

        CryptographicOperations.ZeroMemory(_key);
        while (_ciphers.TryTake(out var cipher))
        {
            cipher.Dispose();
        }
    }

    public override string ToString() => $"CachedKey(entity={Entity}, keyId={KeyId})";
}
