using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Query;

/// <summary>The wrapped data keys of the items of one JSON-mapped owned collection read so far, to refuse a repeated item.</summary>
/// <remarks>
/// An item of a JSON collection is sealed to its owner's key but not to its position, since its position changes
/// whenever an earlier item is removed. A writer could therefore copy one item, with its ciphertexts and wrapped key,
/// into a second place of the same document and have it read twice. Every record gets a fresh data key, so no saved
/// document holds one wrapped key twice: an item whose key an earlier item of the document had is refused. EF gives
/// the items of a document the ordinals 1, 2, 3... as it reads them, one after another, so an ordinal that does not
/// follow the previous one starts the next document.
/// </remarks>
internal sealed class JsonCollectionItems
{
    private readonly HashSet<byte[]> _keys = new(WrappedKeyComparer.Instance);
    private int _last;

    /// <summary>The ordinal key property of an item of a JSON-mapped owned collection, or null for any other type.</summary>
    public static IProperty? OrdinalOf(IEntityType entityType) =>
        entityType.IsMappedToJson() && entityType.FindOwnership() is { IsUnique: false } && entityType.FindPrimaryKey() is { } key
            ? key.Properties[^1]
            : null;

    /// <summary>Records the item at <paramref name="ordinal"/>; throws when an earlier item of its document had the same wrapped key.</summary>
    public void Check(string entity, int ordinal, byte[]? wrappedKey)
    {
        if (ordinal <= _last)
        {
            _keys.Clear();
        }

        _last = ordinal;
        if (wrappedKey is not null && !_keys.Add(wrappedKey))
        {
            throw new EnvelopeDecryptionException(
                $"Item {ordinal} of a JSON-mapped collection repeats an earlier item of the same document (the same wrapped data key): every item is saved under its own data key, so the document was altered by a writer, and it is refused.",
                entity);
        }
    }

    // Wrapped keys of different records differ in their last bytes (the wrapped key and its tag are random).
    private sealed class WrappedKeyComparer : IEqualityComparer<byte[]>
    {
        public static readonly WrappedKeyComparer Instance = new();

        public bool Equals(byte[]? x, byte[]? y) => x.AsSpan().SequenceEqual(y);

        public int GetHashCode(byte[] obj) => obj.Length >= sizeof(int) ? BitConverter.ToInt32(obj, obj.Length - sizeof(int)) : obj.Length;
    }
}
