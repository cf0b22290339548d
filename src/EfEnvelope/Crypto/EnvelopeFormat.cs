using System.Buffers.Binary;
using System.Text;

namespace EfEnvelope.Crypto;

/// <summary>Layouts of the two stored blobs, format versions 1 and 2 (docs/FORMAT.md is the normative description).</summary>
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
/// <para>
/// Version 2 (every record written now) keeps the version 1 layout with version byte 0x02, labels each associated-data
/// format (<see cref="DataKeyLabel"/>, <see cref="FieldLabel"/>), binds a field to its plaintext encoding's type tag,
/// and appends a record trailer to the wrapped-key blob:
/// </para>
/// <code>
/// 1       binding flags
/// 2       N = number of entries, big-endian
/// N × 20  per property holding a value: name id (first 4 bytes of SHA-256 of its binding name), then its field's GCM
///         tag (16); with flag 0x04, also per NULL property that has a legacy plaintext column: its name id, 16 zero bytes
/// 12      seal nonce (random, fresh on every write of the record)
/// 16      record seal: GMAC under the data key over the record id, entity, this trailer and the bound row values (<see cref="RecordSeal"/>)
/// </code>
/// <para>
/// Version 1 is still read, and still written for blobs that are not records (the blind-index key, the health probe).
/// </para>
/// </remarks>
internal static class EnvelopeFormat
{
    /// <summary>Format version 1: no record seal. Read for old records; written for the blind-index key and health probe.</summary>
    public const byte Version = 0x01;

    /// <summary>Format version 2: labelled associated data, typed fields and the record seal. Every record is written in it.</summary>
    public const byte Version2 = 0x02;

    /// <summary>Size of the record seal, a GCM tag.</summary>
    public const int SealSize = TagSize;

    /// <summary>The end of a version 2 trailer: the seal's nonce and the seal.</summary>
    public const int SealWithNonceSize = NonceSize + SealSize;

    /// <summary>The fixed part of a version 2 trailer: binding flags (1), entry count (2), the seal's nonce and the seal.</summary>
    public const int TrailerFixedSize = 1 + 2 + SealWithNonceSize;

    /// <summary>One trailer entry: a property's name id (4) and its field's GCM tag (16).</summary>
    public const int TrailerEntrySize = 4 + TagSize;

    /// <summary>Binding flag: the record's key values (its primary key, or its owner's) are bound into the seal.</summary>
    public const byte FlagKeyBound = 0x01;

    /// <summary>Binding flag: the columns configured with <c>IsBoundToRecord()</c> are bound into the seal.</summary>
    public const byte FlagColumnsBound = 0x02;

    /// <summary>
    /// Binding flag: the properties that had a legacy plaintext column when the record was written are listed even when
    /// NULL, with an all-zero tag (<see cref="IsNullEntryTag"/>), so that a reader can tell a NULL the record was sealed
    /// with from a value the row is meant to take from its legacy column.
    /// </summary>
    public const byte FlagLegacyNullsListed = 0x04;

    /// <summary>Whether a trailer entry's tag is the all-zero tag that, under <see cref="FlagLegacyNullsListed"/>, lists a property as NULL.</summary>
    public static bool IsNullEntryTag(ReadOnlySpan<byte> tag) => !tag.ContainsAnyExcept((byte)0);

    /// <summary>
    /// Binding flag: an owned collection item's own key values (its primary key properties that are not its owner's
    /// key) are bound into the seal, after its owner's key values, so that two items of one owner cannot be swapped.
    /// </summary>
    public const byte FlagItemKeyBound = 0x08;

    /// <summary>Prefix of a version 2 data key's associated data (mode 1).</summary>
    public static readonly byte[] DataKeyLabel = BindingName("efenvelope/v2/data-key");

    /// <summary>Prefix of a version 2 field's associated data.</summary>
    public static readonly byte[] FieldLabel = BindingName("efenvelope/v2/field");

    /// <summary>Prefix of the message a version 2 record seal authenticates (its associated data).</summary>
    public static readonly byte[] SealLabel = BindingName("efenvelope/v2/record-seal");
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

    /// <summary>
    /// The associated data of a mode 1 record's wrapped data key: the header and the expected entity's binding name,
    /// in version 2 after <see cref="DataKeyLabel"/>.
    /// </summary>
    public static ReadOnlySpan<byte> DataKeyAssociatedData(byte version, ReadOnlySpan<byte> header, ReadOnlySpan<byte> entityBinding, Span<byte> scratch)
    {
        var label = version == Version2 ? DataKeyLabel : [];
        var length = label.Length + header.Length + entityBinding.Length;
        var aad = length <= scratch.Length ? scratch[..length] : new byte[length];
        label.CopyTo(aad);
        header.CopyTo(aad[label.Length..]);
        entityBinding.CopyTo(aad[(label.Length + header.Length)..]);
        return aad;
    }

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

    /// <summary>Format version, <see cref="EnvelopeFormat.Version"/> or <see cref="EnvelopeFormat.Version2"/>.</summary>
    public byte Version => Blob[0];

    /// <summary>Whether the blob ends in a record seal (version 2).</summary>
    public bool IsSealed => Blob[0] == EnvelopeFormat.Version2;

    /// <summary>Where the version 2 trailer starts: right after the wrapped data key (mode 1) or the provider-wrapped key (mode 2).</summary>
    private int TrailerOffset => EnvelopeFormat.TailOffset + TailLength + (Mode == EnvelopeFormat.ModeCachedKek ? EnvelopeFormat.WrappedDekSize : 0);

    /// <summary>Version 2: which row values the seal binds (<see cref="EnvelopeFormat.FlagKeyBound"/>, <see cref="EnvelopeFormat.FlagItemKeyBound"/>, <see cref="EnvelopeFormat.FlagColumnsBound"/>) and whether NULLs of legacy-mapped properties are listed (<see cref="EnvelopeFormat.FlagLegacyNullsListed"/>).</summary>
    public byte BindingFlags => Blob[TrailerOffset];

    /// <summary>Version 2: the trailer up to the seal's nonce (flags, count, entries): what the seal authenticates of it.</summary>
    public ReadOnlySpan<byte> TrailerWithoutSeal => Blob.AsSpan(TrailerOffset, Blob.Length - EnvelopeFormat.SealWithNonceSize - TrailerOffset);

    /// <summary>Version 2: the (name id, tag) entries of the properties that held a value when the record was sealed (and, with <see cref="EnvelopeFormat.FlagLegacyNullsListed"/>, of the legacy-mapped ones that were NULL).</summary>
    public ReadOnlySpan<byte> TrailerEntries => Blob.AsSpan(TrailerOffset + 3, Blob.Length - EnvelopeFormat.SealWithNonceSize - TrailerOffset - 3);

    /// <summary>Version 2: the seal's nonce, the 12 bytes before the seal.</summary>
    public ReadOnlySpan<byte> SealNonce => Blob.AsSpan(Blob.Length - EnvelopeFormat.SealWithNonceSize, EnvelopeFormat.NonceSize);

    /// <summary>Version 2: the record seal, the last 16 bytes.</summary>
    public ReadOnlySpan<byte> Seal => Blob.AsSpan(Blob.Length - EnvelopeFormat.SealSize);

    /// <summary>Everything before the version 2 trailer (the whole blob in version 1): what a re-seal copies unchanged.</summary>
    public ReadOnlySpan<byte> Unsealed => Blob.AsSpan(0, IsSealed ? TrailerOffset : Blob.Length);

    /// <summary>The version 2 trailer, copied as it is when the data key is rewrapped.</summary>
    public ReadOnlySpan<byte> Trailer => Blob.AsSpan(IsSealed ? TrailerOffset : Blob.Length);

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

        if (span[0] is not (EnvelopeFormat.Version or EnvelopeFormat.Version2))
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
        if (span[0] == EnvelopeFormat.Version2)
        {
            // The trailer: flags, entry count, entries, seal. The count is checked against the bytes present.
            var entries = span.Length >= expected + 3 ? BinaryPrimitives.ReadUInt16BigEndian(span[(expected + 1)..]) : 0;
            expected += EnvelopeFormat.TrailerFixedSize + entries * EnvelopeFormat.TrailerEntrySize;
        }

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
