using EfEnvelope.Crypto;

namespace EfEnvelope.KeyManagement;

/// <summary>What a cached key is, as the cache looks it up: domain, mode, entity and the bytes that identify it.</summary>
/// <remarks>
/// <para>
/// A cached key-encryption key (mode 1), a data key the provider wrapped for one record (direct mode) and the blind
/// index root key are all 32 random bytes, and their blobs can share the same provider-wrapped bytes. Keying the cache
/// by those bytes alone let a blob whose mode byte was flipped to direct find the KEK and use it as a data key. The
/// slot therefore carries a domain label per use (<see cref="KekDomain"/>, <see cref="DataKeyDomain"/>,
/// <see cref="IndexRootDomain"/>), the mode byte and, in direct mode, the record id: a key cached for one use is never
/// found for another, and a forged blob costs a provider call (which refuses it) instead.
/// </para>
/// </remarks>
internal sealed class KeySlot : IEquatable<KeySlot>
{
    /// <summary>A key-encryption key: wraps the data keys of many records (mode 1).</summary>
    public const string KekDomain = "efenvelope/kek";

    /// <summary>One record's data key, wrapped by the provider (direct mode).</summary>
    public const string DataKeyDomain = "efenvelope/data-key";

    /// <summary>One record's data key in a format version 2 record, wrapped by the provider under a context naming the version.</summary>
    public const string DataKeyV2Domain = "efenvelope/data-key/v2";

    /// <summary>The root key blind indexes are derived from (a direct-mode blob of its own entity name).</summary>
    public const string IndexRootDomain = "efenvelope/blind-index-root";

    private readonly int _hash;

    private KeySlot(string domain, byte mode, string entity, byte[]? recordId, byte[] tail)
    {
        Domain = domain;
        Mode = mode;
        Entity = entity;
        RecordId = recordId;
        Tail = tail;
        var hash = new HashCode();
        hash.Add(domain);
        hash.Add(mode);
        hash.Add(entity);
        hash.AddBytes(recordId);
        hash.AddBytes(tail);
        _hash = hash.ToHashCode();
    }

    public string Domain { get; }

    public byte Mode { get; }

    /// <summary>The entity the key is bound to (the one the caller expects, never the name read from a blob).</summary>
    public string Entity { get; }

    /// <summary>The record id of a direct-mode data key; null for a KEK, which many records share.</summary>
    public byte[]? RecordId { get; }

    /// <summary>Provider name, key id, entity and provider-wrapped key, as they appear in the blob.</summary>
    public byte[] Tail { get; }

    /// <summary>The slot of a freshly generated KEK (its blobs' tail).</summary>
    public static KeySlot ForKek(string entity, byte[] tail) => new(KekDomain, EnvelopeFormat.ModeCachedKek, entity, null, tail);

    /// <summary>The slot of the key a stored blob needs, read as a blob of <paramref name="entity"/>.</summary>
    public static KeySlot For(string entity, in WrappedKeyBlob blob) =>
        blob.Mode == EnvelopeFormat.ModeCachedKek
            ? new(KekDomain, blob.Mode, entity, null, blob.Tail.ToArray())
            : new(DomainOf(entity, blob.Version), blob.Mode, entity, blob.RecordId.ToArray(), blob.Tail.ToArray());

    /// <summary>Whether this slot is the one <see cref="For"/> would build, without allocating.</summary>
    public bool Matches(string entity, in WrappedKeyBlob blob) =>
        Mode == blob.Mode
        && Entity == entity
        && Domain == (blob.Mode == EnvelopeFormat.ModeCachedKek ? KekDomain : DomainOf(entity, blob.Version))
        && (RecordId is null ? blob.Mode == EnvelopeFormat.ModeCachedKek : RecordId.AsSpan().SequenceEqual(blob.RecordId))
        && Tail.AsSpan().SequenceEqual(blob.Tail);

    public bool Equals(KeySlot? other) =>
        other is not null && _hash == other._hash && Mode == other.Mode && Domain == other.Domain && Entity == other.Entity
        && RecordId.AsSpan().SequenceEqual(other.RecordId) && Tail.AsSpan().SequenceEqual(other.Tail);

    public override bool Equals(object? obj) => Equals(obj as KeySlot);

    public override int GetHashCode() => _hash;

    // A version 2 direct-mode data key is unwrapped under a context naming the version; a blob downgraded to version 1
    // (trailer and seal cut off) must not find it in the cache either.
    private static string DomainOf(string entity, byte version) =>
        entity == BlindIndexKey.EntityName ? IndexRootDomain : version == EnvelopeFormat.Version2 ? DataKeyV2Domain : DataKeyDomain;
}
