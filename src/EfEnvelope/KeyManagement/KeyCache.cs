using System.Collections.Concurrent;
using System.Security.Cryptography;
using EfEnvelope.Crypto;
using EfEnvelope.Diagnostics;
using Microsoft.Extensions.Caching.Memory;

namespace EfEnvelope.KeyManagement;

/// <summary>The bounded cache of unwrapped keys shared by every context of one configuration.</summary>
/// <remarks>
/// <para>
/// Two kinds of entries: the current key-encryption key per (entity, master key) for writing, and unwrapped keys
/// found in stored blobs for reading, keyed by their <see cref="KeySlot"/>: what the key is for (domain and mode),
/// the entity it is bound to, the bytes that identify it and, for a data key the provider wrapped, its record. Both
/// expire after <see cref="KeyCacheOptions.TimeToLive"/>; the read side holds at most
/// <see cref="KeyCacheOptions.MaxEntries"/> key-encryption keys and, apart from them so that a large direct-mode working
/// set cannot push the few KEKs out, at most <see cref="KeyCacheOptions.MaxDataKeys"/> per-record data keys. Evicted
/// keys are zeroed once no reader holds them.
/// </para>
/// <para>
/// Concurrent misses on the same key share one provider call, so a burst of parallel reads after expiry costs one
/// call, not one per thread.
/// </para>
/// <para>
/// Refusals are remembered too, for <see cref="KeyCacheOptions.FailureMemory"/> and at most
/// <see cref="KeyCacheOptions.MaxRememberedFailures"/> of them: a forged row read again and again (or once by the
/// async prefetch and once more by EF's synchronous materializer) costs one provider call per period, not one per
/// read, and the synchronous read that follows a failed prefetch fails at once instead of blocking a thread.
/// </para>
/// </remarks>
internal sealed class KeyCache : IDisposable
{
    private readonly ProviderGateway _gateway;
    private readonly KeyCacheOptions _options;
    private readonly TimeProvider _time;
    private readonly string _application;
    private readonly MemoryCache _readKeys;
    private readonly MemoryCache _dataKeys;
    private readonly ConcurrentDictionary<(string Entity, string KeyId), CachedKey> _writeKeys = new();
    private readonly ConcurrentDictionary<KeySlot, Lazy<Task<CachedKey>>> _pendingReads = new();
    private readonly ConcurrentDictionary<(string Entity, string KeyId), SemaphoreSlim> _writeKeyLocks = new();
    private readonly ConcurrentDictionary<KeySlot, Refusal> _refused = new();
    private readonly ITimer _sweeper;
    private long _hits;
    private long _misses;
    private long _synchronousMisses;
    private long _refusalsRepeated;

    public KeyCache(ProviderGateway gateway, KeyCacheOptions options, TimeProvider time, string application)
    {
        _gateway = gateway;
        _options = options;
        _time = time;
        _application = application;
        _readKeys = new MemoryCache(new MemoryCacheOptions { SizeLimit = options.MaxEntries, CompactionPercentage = 0.1 });
        _dataKeys = new MemoryCache(new MemoryCacheOptions { SizeLimit = options.MaxDataKeys, CompactionPercentage = 0.1 });

        // Expired keys are otherwise dropped only when the cache is next used; an idle application would keep
        // key bytes in memory long after their time to live. The sweep evicts (and so zeroes) them on time.
        var period = options.TimeToLive < TimeSpan.FromMinutes(1) ? options.TimeToLive : TimeSpan.FromMinutes(1);
        _sweeper = time.CreateTimer(static state => ((KeyCache)state!).Sweep(), this, period, period);
    }

    /// <summary>Evicts every expired key now (called periodically).</summary>
    internal void Sweep()
    {
        var now = _time.GetUtcNow();
        foreach (var (slot, key) in _writeKeys)
        {
            if (now >= key.ExpiresAt && _writeKeys.TryRemove(new KeyValuePair<(string, string), CachedKey>(slot, key)))
            {
                key.Evict();
            }
        }

        // Compacting by 0 % removes just the entries that have expired.
        _readKeys.Compact(0);
        _dataKeys.Compact(0);
        foreach (var (slot, refusal) in _refused)
        {
            if (now >= refusal.Until)
            {
                _refused.TryRemove(new KeyValuePair<KeySlot, Refusal>(slot, refusal));
            }
        }
    }

    public long Hits => Interlocked.Read(ref _hits);

    public long Misses => Interlocked.Read(ref _misses);

    /// <summary>Misses served on a synchronous EF path, each of which blocked a thread on the provider.</summary>
    public long SynchronousMisses => Interlocked.Read(ref _synchronousMisses);

    /// <summary>Unwrapped keys held for reading: key-encryption keys and direct-mode data keys.</summary>
    public int Count => _readKeys.Count + _dataKeys.Count;

    /// <summary>Refused blobs remembered now (bounded by <see cref="KeyCacheOptions.MaxRememberedFailures"/>).</summary>
    public int RememberedRefusals => _refused.Count;

    /// <summary>Reads failed at once from a remembered refusal, without asking the provider.</summary>
    public long RefusalsRepeated => Interlocked.Read(ref _refusalsRepeated);

    public string Application => _application;

    public KeyContext ContextFor(string entity, ReadOnlySpan<byte> recordId, bool direct, byte version = EnvelopeFormat.Version2) =>
        KeyContext.For(
            _application,
            entity,
            direct ? Convert.ToHexStringLower(recordId) : null,
            // The provider binds a version 2 record's data key to its format, so the blob cannot be passed off as a
            // version 1 record (which has no seal: its values could then be erased unnoticed).
            direct && version == EnvelopeFormat.Version2 ? "2" : null);

    /// <summary>Finds a cached key for a stored blob and leases it; false on a miss.</summary>
    public bool TryGet(string entity, in WrappedKeyBlob blob, CachedKey? hint, out CachedKey key)
    {
        if (hint is not null && Usable(hint) && hint.Slot.Matches(entity, blob) && hint.TryAcquire())
        {
            Hit();
            key = hint;
            return true;
        }

        var cacheKey = KeySlot.For(entity, blob);
        var cache = CacheFor(cacheKey);
        if (cache.TryGetValue(cacheKey, out CachedKey? found) && found is not null)
        {
            if (Usable(found) && found.TryAcquire())
            {
                Hit();
                key = found;
                return true;
            }

            cache.Remove(cacheKey);
        }

        key = null!;
        return false;
    }

    /// <summary>Returns the leased key for a stored blob, asking the provider on a miss.</summary>
    public async Task<CachedKey> GetAsync(string entity, WrappedKeyBlob blob, CachedKey? hint, CancellationToken cancellationToken)
    {
        if (TryGet(entity, blob, hint, out var key))
        {
            return key;
        }

        ThrowIfRefused(entity, blob);
        while (true)
        {
            key = await UnwrapSharedAsync(entity, blob, cancellationToken).ConfigureAwait(false);
            if (key.TryAcquire())
            {
                return key;
            }
        }
    }

    /// <summary>The synchronous form of <see cref="GetAsync"/>, for EF's synchronous paths; a miss blocks on the provider.</summary>
    public CachedKey Get(string entity, WrappedKeyBlob blob, CachedKey? hint)
    {
        if (TryGet(entity, blob, hint, out var key))
        {
            return key;
        }

        ThrowIfRefused(entity, blob);
        Interlocked.Increment(ref _synchronousMisses);
        return ProviderGateway.RunSynchronously(() => GetAsync(entity, blob, null, CancellationToken.None));
    }

    /// <summary>Makes sure a current write key exists for (entity, master key), generating one if needed.</summary>
    public async Task WarmWriteKeyAsync(string entity, string keyId, CancellationToken cancellationToken)
    {
        var key = await CurrentWriteKeyAsync(entity, keyId, cancellationToken).ConfigureAwait(false);
        key.Release();
    }

    /// <summary>Leases write keys covering <paramref name="records"/> new data keys under one master key.</summary>
    /// <returns>Keys and how many records each may wrap; usually one key.</returns>
    public async Task<List<(CachedKey Key, int Records)>> ReserveWriteKeysAsync(string entity, string keyId, int records, CancellationToken cancellationToken)
    {
        var allotments = new List<(CachedKey, int)>(1);
        try
        {
            while (records > 0)
            {
                var key = await CurrentWriteKeyAsync(entity, keyId, cancellationToken).ConfigureAwait(false);
                var taken = TakeUses(key, records);
                if (taken > 0)
                {
                    allotments.Add((key, taken));
                    records -= taken;
                }
                else
                {
                    key.Release();
                }
            }
        }
        catch
        {
            foreach (var (key, _) in allotments)
            {
                key.Release();
            }

            throw;
        }

        return allotments;
    }

    /// <summary>Drops every key (they are zeroed as soon as no reader holds them).</summary>
    public void Clear()
    {
        // Compact alone would leave the zeroing to eviction callbacks that MemoryCache runs later on the thread pool;
        // until then a key held as a hint still passes TryAcquire. Evicting each key here makes it unusable before
        // Clear returns, so the next use asks the provider (and notices a master key disabled meanwhile).
        foreach (var cache in new[] { _readKeys, _dataKeys })
        {
            foreach (var slot in cache.Keys)
            {
                if (cache.TryGetValue(slot, out CachedKey? key))
                {
                    key?.Evict();
                }
            }

            cache.Compact(1.0);
        }

        _refused.Clear();
        foreach (var key in _writeKeys.Keys)
        {
            if (_writeKeys.TryRemove(key, out var removed))
            {
                removed.Evict();
            }
        }
    }

    public void Dispose()
    {
        _sweeper.Dispose();
        Clear();
        _readKeys.Dispose();
        _dataKeys.Dispose();
        foreach (var semaphore in _writeKeyLocks.Values)
        {
            semaphore.Dispose();
        }
    }

    private static int TakeUses(CachedKey key, int wanted)
    {
        // Reserve what is left of the key's budget, up to what is wanted, without ever going below zero for others.
        var remaining = key.RemainingUses;
        var take = (int)Math.Min(remaining, wanted);
        while (take > 0 && !key.TryReserveUses(take))
        {
            key.TryReserveUses(-take);
            remaining = key.RemainingUses;
            take = (int)Math.Min(remaining, wanted);
        }

        return take;
    }

    private async Task<CachedKey> CurrentWriteKeyAsync(string entity, string keyId, CancellationToken cancellationToken)
    {
        var writeSlot = (entity, keyId);
        if (_writeKeys.TryGetValue(writeSlot, out var current) && Usable(current) && current.RemainingUses > 0 && current.TryAcquire())
        {
            Hit();
            return current;
        }

        // One generation at a time per (entity, master key): the first caller asks the provider, the others find
        // its key when they get in; other entities and keys are not held up by a slow call.
        var writeKeyLock = _writeKeyLocks.GetOrAdd(writeSlot, _ => new SemaphoreSlim(1, 1));
        await writeKeyLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_writeKeys.TryGetValue(writeSlot, out current) && Usable(current) && current.RemainingUses > 0 && current.TryAcquire())
            {
                Hit();
                return current;
            }

            Miss();
            using var generated = await _gateway.GenerateDataKeyAsync(keyId, KeyContext.For(_application, entity), cancellationToken).ConfigureAwait(false);
            var tail = EnvelopeFormat.BuildTail(_gateway.Provider.Name, generated.KeyId, entity, generated.WrappedKey);
            var slot = KeySlot.ForKek(entity, tail);
            var fresh = new CachedKey(slot, generated.KeyId, generated.Plaintext, _time.GetUtcNow() + _options.TimeToLive, _options.MaxEncryptionUses);
            fresh.TryAcquire();
            if (_writeKeys.TryGetValue(writeSlot, out var replaced))
            {
                replaced.Evict();
            }

            _writeKeys[writeSlot] = fresh;

            // Reads of rows just written find the key without asking the provider again.
            AddReadKey(slot, fresh);
            return fresh;
        }
        finally
        {
            writeKeyLock.Release();
        }
    }

    /// <summary>
    /// Direct mode: holds the data key just generated for a record written, so that reading the record back within
    /// <see cref="KeyCacheOptions.TimeToLive"/> asks the provider nothing, as reads of rows written under a cached KEK do.
    /// </summary>
    /// <param name="entity">The record's entity.</param>
    /// <param name="wrappedKey">The record's new wrapped-key blob (mode 2).</param>
    /// <param name="dataKey">The data key the provider generated for it.</param>
    public void RememberWrittenDataKey(string entity, byte[] wrappedKey, GeneratedDataKey dataKey)
    {
        if (WrappedKeyBlob.TryParse(wrappedKey, out var blob, out _) && blob.Mode == EnvelopeFormat.ModeDirect)
        {
            var slot = KeySlot.For(entity, blob);
            AddReadKey(slot, new CachedKey(slot, dataKey.KeyId, dataKey.Plaintext, _time.GetUtcNow() + _options.TimeToLive, maxUses: 0));
        }
    }

    private Task<CachedKey> UnwrapSharedAsync(string entity, WrappedKeyBlob blob, CancellationToken cancellationToken)
    {
        // The shared call must not die with the first caller's token (one aborted request would fail every reader
        // waiting for the same key); it is bounded by the provider timeout, and each caller waits with its own token.
        var cacheKey = KeySlot.For(entity, blob);
        var pending = _pendingReads.GetOrAdd(cacheKey, k => new Lazy<Task<CachedKey>>(() => UnwrapAsync(k, blob, CancellationToken.None)));
        return pending.Value.WaitAsync(cancellationToken);
    }

    private async Task<CachedKey> UnwrapAsync(KeySlot cacheKey, WrappedKeyBlob blob, CancellationToken cancellationToken)
    {
        try
        {
            // A caller that missed the cache just before another caller's shared unwrap finished (it caches the key,
            // then stops being pending) starts a new shared call: the key is in the cache by then.
            if (CacheFor(cacheKey).TryGetValue(cacheKey, out CachedKey? cached) && cached is not null && Usable(cached))
            {
                return cached;
            }

            Miss();
            var keyId = blob.KeyId;
            var providerName = blob.ProviderName;
            if (providerName != _gateway.Provider.Name)
            {
                var otherProvider = new MasterKeyException(
                    $"The stored data was wrapped by provider '{UntrustedText.Escape(providerName)}', but this configuration uses '{_gateway.Provider.Name}'.",
                    _gateway.Provider.Name, keyId, cacheKey.Entity);
                Remember(cacheKey, otherProvider);
                throw otherProvider;
            }

            if (blob.Entity != cacheKey.Entity)
            {
                throw new EnvelopeDecryptionException(
                    $"The record's wrapped data key was written for entity '{UntrustedText.Escape(blob.Entity)}': it was copied from another table.",
                    cacheKey.Entity, null, keyId);
            }

            var context = ContextFor(cacheKey.Entity, blob.RecordId, blob.Mode == EnvelopeFormat.ModeDirect, blob.Version);
            var plaintext = await _gateway.DecryptDataKeyAsync(keyId, blob.ProviderWrapped, context, cancellationToken).ConfigureAwait(false);
            try
            {
                if (plaintext.Length != EnvelopeFormat.KeySize)
                {
                    throw new EnvelopeDecryptionException($"The provider returned a {plaintext.Length}-byte key where 32 were expected.", cacheKey.Entity, null, keyId);
                }

                var key = new CachedKey(cacheKey, keyId, plaintext, _time.GetUtcNow() + _options.TimeToLive, maxUses: 0);
                AddReadKey(cacheKey, key);
                return key;
            }
            finally
            {
                CryptographicOperations.ZeroMemory(plaintext);
            }
        }
        catch (EnvelopeDecryptionException ex)
        {
            var located = ex.WithLocation(cacheKey.Entity, null, null);
            Remember(cacheKey, located);
            throw located;
        }
        catch (MasterKeyConfigurationException ex)
        {
            Remember(cacheKey, ex);
            throw;
        }
        finally
        {
            _pendingReads.TryRemove(cacheKey, out _);
        }
    }

    /// <summary>Rethrows (as a new instance) the refusal remembered for this blob, if it is still remembered.</summary>
    private void ThrowIfRefused(string entity, in WrappedKeyBlob blob)
    {
        if (_refused.IsEmpty || !_refused.TryGetValue(KeySlot.For(entity, blob), out var refusal))
        {
            return;
        }

        if (_time.GetUtcNow() >= refusal.Until)
        {
            return;
        }

        Interlocked.Increment(ref _refusalsRepeated);

        // A new instance per throw: one exception object rethrown on many threads at once would share its stack trace.
        throw refusal.Error switch
        {
            EnvelopeDecryptionException tamper => tamper.WithLocation(null, null, null),
            MasterKeyConfigurationException configuration => new MasterKeyConfigurationException(configuration.Message, configuration.Provider, configuration.KeyId, configuration.Entity, configuration.InnerException),
            MasterKeyException otherProvider => new MasterKeyException(otherProvider.Message, otherProvider.Provider, otherProvider.KeyId, otherProvider.Entity, otherProvider.InnerException),
            var other => other,
        };
    }

    private void Remember(KeySlot slot, Exception error)
    {
        if (_options.FailureMemory == TimeSpan.Zero)
        {
            return;
        }

        var now = _time.GetUtcNow();
        if (_refused.Count >= _options.MaxRememberedFailures)
        {
            // Full: forget what has expired, and if that is not enough the refusal that expires first. O(n) with n
            // bounded by the option, and only while rows keep failing.
            KeyValuePair<KeySlot, Refusal>? oldest = null;
            foreach (var pair in _refused)
            {
                if (now >= pair.Value.Until)
                {
                    _refused.TryRemove(pair);
                }
                else if (oldest is null || pair.Value.Until < oldest.Value.Value.Until)
                {
                    oldest = pair;
                }
            }

            if (_refused.Count >= _options.MaxRememberedFailures && oldest is { } drop)
            {
                _refused.TryRemove(drop);
            }
        }

        _refused[slot] = new Refusal(now + _options.FailureMemory, error);
    }

    // A slot that names a record holds that record's own data key (direct mode, the blind-index root): those are as
    // many as the rows read, and live in their own bounded cache.
    private MemoryCache CacheFor(KeySlot slot) => slot.RecordId is null ? _readKeys : _dataKeys;

    private void AddReadKey(KeySlot cacheKey, CachedKey key)
    {
        using var entry = CacheFor(cacheKey).CreateEntry(cacheKey);
        entry.Value = key;
        entry.Size = 1;
        entry.AbsoluteExpirationRelativeToNow = _options.TimeToLive;
        entry.RegisterPostEvictionCallback(static (_, value, _, _) => ((CachedKey)value!).Evict());
    }

    private bool Usable(CachedKey key) => !key.IsDisposed && _time.GetUtcNow() < key.ExpiresAt;

    private void Hit()
    {
        Interlocked.Increment(ref _hits);
        EnvelopeTelemetry.CacheHitCounter.Add(1);
    }

    private void Miss()
    {
        Interlocked.Increment(ref _misses);
        EnvelopeTelemetry.CacheMissCounter.Add(1);
    }

    /// <summary>A refusal of one blob and until when it is repeated without asking the provider.</summary>
    private sealed record Refusal(DateTimeOffset Until, Exception Error);
}
