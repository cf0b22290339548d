using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Query;

/// <summary>The wrapped data keys of the items of one JSON-mapped owned collection type read so far from one document, to refuse a repeated item.</summary>
/// <remarks>
/// <para>
/// An item of a JSON collection is sealed to its owner's key but not to its position, since its position changes
/// whenever an earlier item is removed. A writer could therefore copy one item, with its ciphertexts and wrapped key,
/// into a second place of the same document (also into the collection of another item it is nested in) and have it
/// read twice. Every record gets a fresh data key, so no saved document holds one wrapped key twice: an item whose
/// key an earlier item of the document had is refused.
/// </para>
/// <para>
/// An item's position is its ordinals: the one EF gives it in its collection, after those of the collection items
/// it is nested in. EF reads a document's items in document order, so positions rise; a position that does not
/// follow the previous one starts the next document (or the same one read again), and so does another context. Only
/// the items a query reads are compared: an item read by index (<c>p.Contacts[2]</c>) is not compared with the
/// others. The keys are kept per thread and context between queries, so one context that reads an item by index,
/// then (after another writer moved the item to a later position) the same item again at its new index with the same
/// query, is refused as a repeat.
/// </para>
/// </remarks>
internal sealed class JsonCollectionItems
{
    private readonly HashSet<byte[]> _keys = new(WrappedKeyComparer.Instance);
    private int[] _last = [];
    private DbContextId _context;

    /// <summary>
    /// The ordinal key properties of an item of a JSON-mapped owned collection, outermost first (the key properties
    /// after those of the root owner), or none for any other type.
    /// </summary>
    public static IReadOnlyList<IProperty> PositionOf(IEntityType entityType)
    {
        if (!entityType.IsMappedToJson() || entityType.FindOwnership() is not { IsUnique: false } || entityType.FindPrimaryKey() is not { } key)
        {
            return [];
        }

        var root = entityType;
        while (root.FindOwnership() is { } ownership)
        {
            root = ownership.PrincipalEntityType;
        }

        return [.. key.Properties.Skip(root.FindPrimaryKey()!.Properties.Count)];
    }

    /// <summary>Records the item at <paramref name="position"/> read by <paramref name="context"/>; throws when an earlier item of its document had the same wrapped key.</summary>
    public void Check(string entity, DbContextId context, int[] position, byte[]? wrappedKey)
    {
        if (context != _context || !Follows(position, _last))
        {
            _keys.Clear();
        }

        _context = context;
        _last = position;
        if (wrappedKey is not null && !_keys.Add(wrappedKey))
        {
            throw new EnvelopeDecryptionException(
                $"The item at position {string.Join('.', position)} of a JSON-mapped collection repeats an earlier item of the same document (the same wrapped data key): every item is saved under its own data key, so the document was altered by a writer, and it is refused.",
                entity);
        }
    }

    // Whether position comes after last in document order (lexicographic order of the ordinals).
    private static bool Follows(int[] position, int[] last)
    {
        for (var i = 0; i < Math.Min(position.Length, last.Length); i++)
        {
            if (position[i] != last[i])
            {
                return position[i] > last[i];
            }
        }

        return position.Length > last.Length;
    }

    // Wrapped keys of different records differ in their last bytes (the wrapped key and its tag are random).
    private sealed class WrappedKeyComparer : IEqualityComparer<byte[]>
    {
        public static readonly WrappedKeyComparer Instance = new();

        public bool Equals(byte[]? x, byte[]? y) => x.AsSpan().SequenceEqual(y);

        public int GetHashCode(byte[] obj) => obj.Length >= sizeof(int) ? BitConverter.ToInt32(obj, obj.Length - sizeof(int)) : obj.Length;
    }
}
