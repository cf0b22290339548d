using System.Security.Cryptography;
using EfEnvelope.Crypto;
using EfEnvelope.KeyManagement;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Metadata;

/// <summary>An entity type with encrypted properties: its binding name, its key column and its encrypted properties.</summary>
internal sealed class EncryptedEntity
{
    private const int StackLimit = 1024;

    // The KEK that the last record of this type was read with. Rows written in the same period share a KEK, so
    // comparing against it avoids building a cache key (an allocation) for nearly every row.
    private CachedKey? _lastKey;

    public EncryptedEntity(IEntityType entityType, IReadOnlyList<EncryptedProperty> properties, byte[] bindingBytes)
    {
        EntityType = entityType;
        Name = EncryptionAnnotations.EntityBindingName(entityType);
        BindingBytes = bindingBytes;
        KeyProperty = entityType.FindProperty(EncryptionAnnotations.KeyPropertyName)!;
        Properties = properties.ToArray();
        HasSearchableProperties = Array.Exists(Properties, p => p.Index is not null);
        EntityTag = new("entity", Name);
        HasLegacyPlaintext = Properties.Any(p => p.LegacyPlaintext is not null);
    }

    /// <summary>The metric tag naming this entity, built once rather than per record.</summary>
    public KeyValuePair<string, object?> EntityTag { get; }

    public bool HasSearchableProperties { get; }

    public IEntityType EntityType { get; }

    /// <summary>The stable name bound into every blob of this type (the root entity type's name).</summary>
    public string Name { get; }

    /// <summary><see cref="Name"/> as a binding name (uint16 length + UTF-8).</summary>
    public byte[] BindingBytes { get; }

    /// <summary>The shadow property holding the wrapped data key.</summary>
    public IProperty KeyProperty { get; }

    public EncryptedProperty[] Properties { get; }

    /// <summary>Whether any property still maps a legacy plaintext column (a migration to encryption is under way).</summary>
    public bool HasLegacyPlaintext { get; }

    public CachedKey? LastKey
    {
        get => Volatile.Read(ref _lastKey);
        set => Volatile.Write(ref _lastKey, value);
    }

    /// <summary>Creates a record's wrapped-key blob (mode 1) and encrypts every property under its fresh data key.</summary>
    /// <param name="entity">The entity whose plaintext properties are encrypted.</param>
    /// <param name="kek">A leased key-encryption key with a use reserved for this record.</param>
    /// <param name="random">The source of the data key, record id and nonces.</param>
    /// <param name="fields">Receives one ciphertext (or null) per property, in <see cref="Properties"/> order.</param>
    public byte[] EncryptNew(object entity, CachedKey kek, IRandomSource random, byte[]?[] fields)
    {
        // One call to the random source for everything this record needs: each call costs about a microsecond.
        Span<byte> randomness = stackalloc byte[EnvelopeFormat.KeySize + EnvelopeFormat.RecordIdSize + EnvelopeFormat.NonceSize * (1 + Properties.Length)];
        random.Fill(randomness);
        var dataKey = randomness[..EnvelopeFormat.KeySize];
        var recordId = randomness.Slice(EnvelopeFormat.KeySize, EnvelopeFormat.RecordIdSize);
        var nonces = randomness[(EnvelopeFormat.KeySize + EnvelopeFormat.RecordIdSize)..];
        try
        {
            var blob = new byte[EnvelopeFormat.TailOffset + kek.Tail.Length + EnvelopeFormat.WrappedDekSize];
            blob[0] = EnvelopeFormat.Version;
            blob[1] = EnvelopeFormat.ModeCachedKek;
            recordId.CopyTo(blob.AsSpan(2));
            kek.Tail.CopyTo(blob, EnvelopeFormat.TailOffset);
            var headerLength = EnvelopeFormat.TailOffset + kek.Tail.Length;
            var nonce = blob.AsSpan(headerLength, EnvelopeFormat.NonceSize);
            nonces[..EnvelopeFormat.NonceSize].CopyTo(nonce);

            var aadLength = headerLength + BindingBytes.Length;
            var aad = aadLength <= StackLimit ? stackalloc byte[aadLength] : new byte[aadLength];
            blob.AsSpan(0, headerLength).CopyTo(aad);
            BindingBytes.CopyTo(aad[headerLength..]);

            var kekCipher = kek.RentCipher();
            try
            {
                kekCipher.Encrypt(nonce, dataKey, blob.AsSpan(headerLength + EnvelopeFormat.NonceSize, EnvelopeFormat.KeySize), blob.AsSpan(blob.Length - EnvelopeFormat.TagSize), aad);
            }
            finally
            {
                kek.ReturnCipher(kekCipher);
            }

            using var cipher = new AesGcm(dataKey, EnvelopeFormat.TagSize);
            EncryptFields(entity, cipher, recordId, nonces[EnvelopeFormat.NonceSize..], fields, null);
            return blob;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dataKey);
        }
    }

    /// <summary>Creates a record's wrapped-key blob (mode 2, direct) around a provider-wrapped data key.</summary>
    public byte[] EncryptNewDirect(object entity, GeneratedDataKey dataKey, ReadOnlySpan<byte> recordId, string providerName, IRandomSource random, byte[]?[] fields)
    {
        var tail = EnvelopeFormat.BuildTail(providerName, dataKey.KeyId, Name, dataKey.WrappedKey);
        var blob = new byte[EnvelopeFormat.TailOffset + tail.Length];
        blob[0] = EnvelopeFormat.Version;
        blob[1] = EnvelopeFormat.ModeDirect;
        recordId.CopyTo(blob.AsSpan(2));
        tail.CopyTo(blob, EnvelopeFormat.TailOffset);

        Span<byte> nonces = stackalloc byte[EnvelopeFormat.NonceSize * Properties.Length];
        random.Fill(nonces);
        using var cipher = new AesGcm(dataKey.Plaintext, EnvelopeFormat.TagSize);
        EncryptFields(entity, cipher, recordId, nonces, fields, null);
        return blob;
    }

    /// <summary>Re-encrypts the chosen properties under the record's existing data key, with fresh nonces.</summary>
    public void EncryptChanged(object entity, AesGcm dataKey, ReadOnlySpan<byte> recordId, IRandomSource random, byte[]?[] fields, bool[] changed)
    {
        Span<byte> nonces = stackalloc byte[EnvelopeFormat.NonceSize * Properties.Length];
        random.Fill(nonces);
        EncryptFields(entity, dataKey, recordId, nonces, fields, changed);
    }

    /// <summary>Opens a mode 1 record's data key with its (leased) KEK.</summary>
    public AesGcm OpenDataKey(in WrappedKeyBlob blob, CachedKey kek)
    {
        var header = blob.Header;
        var aadLength = header.Length + BindingBytes.Length;
        var aad = aadLength <= StackLimit ? stackalloc byte[aadLength] : new byte[aadLength];
        header.CopyTo(aad);
        BindingBytes.CopyTo(aad[header.Length..]);

        var wrapped = blob.WrappedDek;
        Span<byte> dataKey = stackalloc byte[EnvelopeFormat.KeySize];
        var kekCipher = kek.RentCipher();
        try
        {
            kekCipher.Decrypt(
                wrapped[..EnvelopeFormat.NonceSize],
                wrapped.Slice(EnvelopeFormat.NonceSize, EnvelopeFormat.KeySize),
                wrapped[(EnvelopeFormat.NonceSize + EnvelopeFormat.KeySize)..],
                dataKey,
                aad);
            return new AesGcm(dataKey, EnvelopeFormat.TagSize);
        }
        catch (AuthenticationTagMismatchException ex)
        {
            throw new EnvelopeDecryptionException(
                "The record's wrapped data key failed authentication: it was tampered with, or copied from another table.",
                Name, null, kek.KeyId, ex);
        }
        finally
        {
            kek.ReturnCipher(kekCipher);
            CryptographicOperations.ZeroMemory(dataKey);
        }
    }

    public override string ToString() => $"EncryptedEntity({Name}, {Properties.Length} properties)";

    private void EncryptFields(object entity, AesGcm cipher, ReadOnlySpan<byte> recordId, ReadOnlySpan<byte> nonces, byte[]?[] fields, bool[]? only)
    {
        for (var i = 0; i < Properties.Length; i++)
        {
            if (only is null || only[i])
            {
                fields[i] = Properties[i].Encrypt(entity, cipher, recordId, nonces.Slice(i * EnvelopeFormat.NonceSize, EnvelopeFormat.NonceSize));
            }
        }
    }
}
