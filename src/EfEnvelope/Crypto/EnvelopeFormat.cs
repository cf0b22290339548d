using System.Buffers.Binary;
using System.Text;

namespace EfEnvelope.Crypto;

/// <summary>Layouts of the two stored blobs, format version 1 (docs/FORMAT.md is the normative description).</summary>
/// <remarks>
/// <para>Wrapped-key blob (one per record, in the record's key column):</para>
/// <code>
/// offset  size  field
/// 0       1     version = 0x01
/// 1       1     mode: 0x01 data key wrapped under a cached KEK, 0x02 data key wrapped by the provider (direct)
/// 2       16    record id (random)
/// 18      1     P = length of the provider name
/// 19      P     provider name, ASCII
/// ..      2     K = length of the master key id, big-endian
/// ..      K     master key id, UTF-8
/// ..      2     E = length of the entity binding name, big-endian
/// ..      E     entity binding name, UTF-8 (the context the provider bound the wrapped key to)
/// ..      2     W = length of the provider-wrapped key, big-endian
/// ..      W     provider-wrapped key: the KEK (mode 1) or the data key (mode 2), opaque
/// mode 1 only:
/// ..      12    nonce
/// ..      32    data key encrypted with AES-256-GCM under the KEK
/// ..      16    tag; associated data = every byte before the nonce, then the expected entity's binding name (below)
/// </code>
/// <para>Field blob (one per encrypted property value; NULL stays NULL):</para>
/// <code>
/// 0       1     version = 0x01
/// 1       12    nonce
/// 13      n     AES-256-GCM ciphertext of the value's plaintext encoding, under the record's data key
/// 13+n    16    tag; associated data = version byte, record id (16), binding name of entity, binding name of property
/// </code>
/// <para>A binding name is a big-endian uint16 length followed by UTF-8 bytes.</para>
/// </remarks>
internal static class EnvelopeFormat
{
    public const byte Version = 0x01;
    public const byte ModeCachedKek = 0x01;
    public const byte ModeDirect = 0x02;
    public const int KeySize = 32;
    public const int NonceSize = 12;
    public const int TagSize = 16;
    public const int RecordIdSize = 16;

    /// <summary>Offset of the provider-name length: where the per-master-key "tail" starts.</summary>
    public const int TailOffset = 2 + RecordIdSize;

    /// <summary>Overhead of a field blob beyond the plaintext.</summary>
    public const int FieldOverhead = 1 + NonceSize + TagSize;

    /// <summary>The wrapped DEK part of a mode 1 blob: nonce, encrypted key, tag.</summary>
    public const int WrappedDekSize = NonceSize + KeySize + TagSize;

    public const int MaxKeyIdBytes = 1024;
    public const int MaxProviderWrappedBytes = 8192;

    /// <summary>Writes a binding name (uint16 length + UTF-8) as used in associated data.</summary>
    public static byte[] BindingName(string name)
    {
        var bytes = Encoding.UTF8.GetBytes(name);
        if (bytes.Length > ushort.MaxValue)
        {
            throw new ArgumentException($"The name '{name[..40]}...' is too long to bind.", nameof(name));
        }

        var result = new byte[2 + bytes.Length];
        BinaryPrimitives.WriteUInt16BigEndian(result, (ushort)bytes.Length);
        bytes.CopyTo(result, 2);
        return result;
    }

    /// <summary>
    /// Builds the part of a wrapped-key blob that is the same for every record under one provider-wrapped key:
    /// provider name, key id, entity and provider-wrapped key, each with its length.
    /// </summary>
    /// <remarks>
    /// The entity is stored so that a reader can unwrap the key from the blob alone (the provider's context names it)
    /// before it knows which entity the row will become; the binding to the expected entity is still checked when
    /// the data key is opened.
    /// </remarks>
    public static byte[] BuildTail(string providerName, string keyId, string entity, ReadOnlySpan<byte> providerWrapped)
    {
        var provider = Encoding.ASCII.GetBytes(providerName);
        var key = Encoding.UTF8.GetBytes(keyId);
        var entityBinding = BindingName(entity);
        if (provider.Length is 0 or > 255 || providerName.Any(c => c > 127))
        {
            throw new ArgumentException($"Provider name '{providerName}' must be 1 to 255 ASCII characters.", nameof(providerName));
        }

        if (key.Length is 0 or > MaxKeyIdBytes)
        {
            throw new ArgumentException($"Master key id '{keyId}' must be 1 to {MaxKeyIdBytes} UTF-8 bytes.", nameof(keyId));
        }

        if (providerWrapped.Length is 0 or > MaxProviderWrappedBytes)
        {
            throw new MasterKeyException($"Provider '{providerName}' returned a wrapped key of {providerWrapped.Length} bytes; 1 to {MaxProviderWrappedBytes} are supported.", providerName, keyId);
        }

        var tail = new byte[1 + provider.Length + 2 + key.Length + entityBinding.Length + 2 + providerWrapped.Length];
        var span = tail.AsSpan();
        span[0] = (byte)provider.Length;
        provider.CopyTo(span[1..]);
        span = span[(1 + provider.Length)..];
        BinaryPrimitives.WriteUInt16BigEndian(span, (ushort)key.Length);
        key.CopyTo(span[2..]);
        span = span[(2 + key.Length)..];
        entityBinding.CopyTo(span);
        span = span[entityBinding.Length..];
        BinaryPrimitives.WriteUInt16BigEndian(span, (ushort)providerWrapped.Length);
        providerWrapped.CopyTo(span[2..]);
        return tail;
    }
}

/// <summary>The parsed view of a wrapped-key blob: offsets into the stored bytes, no copies.</summary>
internal readonly struct WrappedKeyBlob
{
    private WrappedKeyBlob(byte[] blob, byte mode, int tailLength, int keyIdOffset, int keyIdLength, int providerNameLength, int entityOffset, int entityLength, int wrappedOffset, int wrappedLength)
    {
        EntityOffset = entityOffset;
        EntityLength = entityLength;
        Blob = blob;
        Mode = mode;
        TailLength = tailLength;
        KeyIdOffset = keyIdOffset;
        KeyIdLength = keyIdLength;
        ProviderNameLength = providerNameLength;
        ProviderWrappedOffset = wrappedOffset;
        ProviderWrappedLength = wrappedLength;
    }

    public byte[] Blob { get; }

    public byte Mode { get; }

    public int TailLength { get; }

    private int KeyIdOffset { get; }

    private int KeyIdLength { get; }

    private int ProviderNameLength { get; }

    private int EntityOffset { get; }

    private int EntityLength { get; }

    private int ProviderWrappedOffset { get; }

    private int ProviderWrappedLength { get; }

    public ReadOnlySpan<byte> RecordId => Blob.AsSpan(2, EnvelopeFormat.RecordIdSize);

    /// <summary>Provider name, key id and provider-wrapped key: what identifies the KEK (mode 1).</summary>
    public ReadOnlySpan<byte> Tail => Blob.AsSpan(EnvelopeFormat.TailOffset, TailLength);

    /// <summary>Every byte before the wrapped data key: the associated data of the data key (mode 1).</summary>
    public ReadOnlySpan<byte> Header => Blob.AsSpan(0, EnvelopeFormat.TailOffset + TailLength);

    public ReadOnlyMemory<byte> ProviderWrapped => Blob.AsMemory(ProviderWrappedOffset, ProviderWrappedLength);

    public ReadOnlySpan<byte> WrappedDek => Blob.AsSpan(EnvelopeFormat.TailOffset + TailLength, EnvelopeFormat.WrappedDekSize);

    public string KeyId => Encoding.UTF8.GetString(Blob, KeyIdOffset, KeyIdLength);

    public string ProviderName => Encoding.ASCII.GetString(Blob, EnvelopeFormat.TailOffset + 1, ProviderNameLength);

    /// <summary>The entity the wrapped key was bound to when written.</summary>
    public string Entity => Encoding.UTF8.GetString(Blob, EntityOffset, EntityLength);

    /// <summary>Parses a blob, checking every length against the bytes actually present (a forged length cannot make it allocate).</summary>
    public static bool TryParse(byte[] blob, out WrappedKeyBlob parsed, out string? error)
    {
        parsed = default;
        var span = blob.AsSpan();
        if (span.Length < EnvelopeFormat.TailOffset + 1)
        {
            error = "The wrapped key is truncated.";
            return false;
        }

        if (span[0] != EnvelopeFormat.Version)
        {
            error = $"The wrapped key has unknown format version {span[0]}.";
            return false;
        }

        var mode = span[1];
        if (mode is not (EnvelopeFormat.ModeCachedKek or EnvelopeFormat.ModeDirect))
        {
            error = $"The wrapped key has unknown mode {mode}.";
            return false;
        }

        var position = EnvelopeFormat.TailOffset;
        var providerLength = span[position];
        position += 1 + providerLength;
        if (providerLength == 0 || span.Length < position + 2)
        {
            error = "The wrapped key is truncated.";
            return false;
        }

        int keyIdLength = BinaryPrimitives.ReadUInt16BigEndian(span[position..]);
        var keyIdOffset = position + 2;
        position = keyIdOffset + keyIdLength;
        if (keyIdLength == 0 || span.Length < position + 2)
        {
            error = "The wrapped key is truncated.";
            return false;
        }

        int entityLength = BinaryPrimitives.ReadUInt16BigEndian(span[position..]);
        var entityOffset = position + 2;
        position = entityOffset + entityLength;
        if (entityLength == 0 || span.Length < position + 2)
        {
            error = "The wrapped key is truncated.";
            return false;
        }

        int wrappedLength = BinaryPrimitives.ReadUInt16BigEndian(span[position..]);
        var wrappedOffset = position + 2;
        position = wrappedOffset + wrappedLength;
        var expected = position + (mode == EnvelopeFormat.ModeCachedKek ? EnvelopeFormat.WrappedDekSize : 0);
        if (wrappedLength == 0 || span.Length != expected)
        {
            error = span.Length < expected ? "The wrapped key is truncated." : "The wrapped key has trailing bytes.";
            return false;
        }

        parsed = new WrappedKeyBlob(blob, mode, position - EnvelopeFormat.TailOffset, keyIdOffset, keyIdLength, providerLength, entityOffset, entityLength, wrappedOffset, wrappedLength);
        error = null;
        return true;
    }
}
