using System.Security.Cryptography;
using EfEnvelope.Crypto;
using EfEnvelope.Infrastructure;
using EfEnvelope.KeyManagement;
using EfEnvelope.Metadata;

namespace EfEnvelope.Lifecycle;

/// <summary>Rewraps a record's data key under another key-encryption key, keeping its record id.</summary>
/// <remarks>
/// Field ciphertext is bound to the record id, entity and property, never to the KEK, so a wrapped-key blob with the
/// same record id and the same data key under a new KEK keeps every field readable: rotation rewrites one column.
/// The blob keeps its format version; a version 2 record keeps its seal, which does not cover the wrapped key.
/// </remarks>
internal static class KeyRewrap
{
    private const int StackLimit = 1024;

    /// <summary>Builds the mode 1 blob that wraps the same data key as <paramref name="blob"/> under <paramref name="to"/>.</summary>
    public static byte[] Rewrap(EncryptedEntity encrypted, in WrappedKeyBlob blob, CachedKey from, CachedKey to, IRandomSource random)
    {
        Span<byte> dataKey = stackalloc byte[EnvelopeFormat.KeySize];
        try
        {
            Unwrap(encrypted, blob, from, dataKey);

            var headerLength = EnvelopeFormat.TailOffset + to.Tail.Length;
            var trailer = blob.Trailer;
            var result = new byte[headerLength + EnvelopeFormat.WrappedDekSize + trailer.Length];
            result[0] = blob.Version;
            result[1] = EnvelopeFormat.ModeCachedKek;
            blob.RecordId.CopyTo(result.AsSpan(2));
            to.Tail.CopyTo(result, EnvelopeFormat.TailOffset);

            // A fresh nonce: the new KEK has never wrapped this data key, but nonces under a KEK must never repeat.
            var nonce = result.AsSpan(headerLength, EnvelopeFormat.NonceSize);
            random.Fill(nonce);
            var aad = EnvelopeFormat.DataKeyAssociatedData(blob.Version, result.AsSpan(0, headerLength), encrypted.BindingBytes, stackalloc byte[StackLimit]);
            var cipher = to.RentCipher();
            try
            {
                cipher.Encrypt(nonce, dataKey, result.AsSpan(headerLength + EnvelopeFormat.NonceSize, EnvelopeFormat.KeySize), result.AsSpan(headerLength + EnvelopeFormat.NonceSize + EnvelopeFormat.KeySize, EnvelopeFormat.TagSize), aad);
            }
            finally
            {
                to.ReturnCipher(cipher);
            }

            trailer.CopyTo(result.AsSpan(headerLength + EnvelopeFormat.WrappedDekSize));
            return result;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dataKey);
        }
    }

    private static void Unwrap(EncryptedEntity encrypted, in WrappedKeyBlob blob, CachedKey kek, Span<byte> dataKey)
    {
        // Same associated data as when the record was written: the whole header and the entity it belongs to.
        var aad = EnvelopeFormat.DataKeyAssociatedData(blob.Version, blob.Header, encrypted.BindingBytes, stackalloc byte[StackLimit]);
        var wrapped = blob.WrappedDek;
        var cipher = kek.RentCipher();
        try
        {
            cipher.Decrypt(
                wrapped[..EnvelopeFormat.NonceSize],
                wrapped.Slice(EnvelopeFormat.NonceSize, EnvelopeFormat.KeySize),
                wrapped[(EnvelopeFormat.NonceSize + EnvelopeFormat.KeySize)..],
                dataKey,
                aad);
        }
        catch (AuthenticationTagMismatchException ex)
        {
            throw new EnvelopeDecryptionException(
                "The record's wrapped data key failed authentication: it was tampered with, or copied from another table.",
                encrypted.Name, null, kek.KeyId, ex);
        }
        finally
        {
            kek.ReturnCipher(cipher);
        }
    }
}

/// <summary>Key-encryption keys a job generates for itself, so that re-encrypted records never share a KEK with older data.</summary>
/// <remarks>
/// The job does not borrow the shared cache's current write key: after a suspected KEK compromise, that key may be the
/// compromised one. One KEK per (entity, master key) covers the job until its use budget is spent, so provider calls
/// grow with KEKs, not rows. Keys are zeroed when the job ends.
/// </remarks>
internal sealed class JobKeyring(EnvelopeRuntime runtime) : IDisposable
{
    private readonly Dictionary<(string Entity, string KeyId), CachedKey> _keys = [];
    private readonly List<CachedKey> _all = [];
    private readonly Dictionary<string, string> _recorded = new(StringComparer.Ordinal);

    /// <summary>Provider calls this keyring made.</summary>
    public int Generated => _all.Count;

    /// <summary>A KEK with one use reserved for one new data key; the keyring keeps the lease until it is disposed.</summary>
    public async Task<CachedKey> ReserveAsync(string entity, string keyId, CancellationToken cancellationToken)
    {
        // The same bounds as the shared cache's write keys: a KEK wraps at most MaxEncryptionUses data keys and is used
        // for at most TimeToLive, so a master key disabled during a long job stops it within the documented bound.
        if (Current(entity, keyId) is not { } key || !key.TryReserveUses(1))
        {
            key = await GenerateAsync(entity, keyId, cancellationToken).ConfigureAwait(false);
            key.TryReserveUses(1);
        }

        return key;
    }

    /// <summary>
    /// The key id records wrapped under <paramref name="keyId"/> name: the one the provider returned for the job's own KEK
    /// under it. AWS KMS records the key ARN for an alias or a bare key id, so a record that a run with an alias as its
    /// target already moved names the ARN, and is recognised by this rather than moved again on every run.
    /// </summary>
    public async Task<string> RecordedKeyIdAsync(string entity, string keyId, CancellationToken cancellationToken)
    {
        if (!_recorded.TryGetValue(keyId, out var recorded))
        {
            // A KEK generated to learn the name is kept, with all its uses, for the job's next move under keyId (in
            // direct mode, which wraps each data key with the provider, it is the one call this costs). Asked only
            // for a record the provider says is under the same key by another name.
            recorded = (Current(entity, keyId) ?? await GenerateAsync(entity, keyId, cancellationToken).ConfigureAwait(false)).KeyId;
            _recorded[keyId] = recorded;
        }

        return recorded;
    }

    private CachedKey? Current(string entity, string keyId) =>
        _keys.TryGetValue((entity, keyId), out var key) && runtime.Settings.TimeProvider.GetUtcNow() < key.ExpiresAt ? key : null;

    private async Task<CachedKey> GenerateAsync(string entity, string keyId, CancellationToken cancellationToken)
    {
        if (!runtime.Provider.IsKeyConfigured(keyId))
        {
            throw new MasterKeyConfigurationException($"The lifecycle job was asked to wrap data keys of entity '{entity}' under master key '{keyId}', which provider '{runtime.Provider.Name}' is not configured to use.", runtime.Provider.Name, keyId, entity);
        }

        var now = runtime.Settings.TimeProvider.GetUtcNow();
        using var generated = await runtime.Gateway.GenerateDataKeyAsync(keyId, KeyContext.For(runtime.Cache.Application, entity), cancellationToken).ConfigureAwait(false);
        var tail = EnvelopeFormat.BuildTail(runtime.Provider.Name, generated.KeyId, entity, generated.WrappedKey);
        var key = new CachedKey(KeySlot.ForKek(entity, tail), generated.KeyId, generated.Plaintext, now + runtime.Settings.Cache.TimeToLive, runtime.Settings.Cache.MaxEncryptionUses);
        key.TryAcquire();
        _keys[(entity, keyId)] = key;
        _all.Add(key);
        return key;
    }

    public void Dispose()
    {
        foreach (var key in _all)
        {
            key.Release();
            key.Evict();
        }

        _all.Clear();
        _keys.Clear();
    }
}
