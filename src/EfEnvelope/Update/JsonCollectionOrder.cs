using System.Collections;
using EfEnvelope.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;

namespace EfEnvelope.Update;

/// <summary>
/// Puts the items of a JSON-mapped owned collection back in the order of their ordinals for the duration of a save,
/// when an edited item with encrypted properties sits elsewhere in the application's list, and restores the list after.
/// </summary>
/// <remarks>
/// <para>
/// EF does not save a new order of a JSON collection's items: each item keeps its ordinal, its position in the
/// document. An edit of one property of an item is written to that property at the item's ordinal
/// (<c>json_set(..., '$[1].Note', ...)</c>). An edit of several properties rewrites the whole item at its ordinal, but
/// EF (10.0) serializes the element found at that position of the <em>list</em> (<c>ModificationCommand</c>), which
/// after a reorder is another item: that item is written twice and the edited one is lost. An edit of an encrypted
/// property always changes two properties (its ciphertext and the record's key column), so with EfEnvelope a single
/// edit after a reorder lost an item, and the document was then refused as tampered with on every read.
/// </para>
/// <para>
/// With the list in ordinal order, EF writes each edited item at its own ordinal, which is what plain EF's single
/// property edit saves: the edits, not the new order. Only lists (<see cref="IList"/>) whose items are all tracked,
/// unchanged or modified, and hold ordinals 1 to n are reordered; EF writes a collection with added or removed items
/// whole, from the list.
/// EF does not detect changes again within the save, and it compares collections by membership, not order, so the
/// change tracker sees nothing of this.
/// </para>
/// </remarks>
internal sealed class JsonCollectionOrder : IDisposable
{
    private readonly List<(IList List, object?[] Order)> _reordered = [];

    private JsonCollectionOrder()
    {
    }

    /// <summary>Reorders what the save needs reordered; dispose to restore the application's order.</summary>
    /// <returns>Null when nothing needed reordering.</returns>
    public static JsonCollectionOrder? Align(IStateManager stateManager, EnvelopeRuntime runtime)
    {
        JsonCollectionOrder? order = null;
        var seen = new HashSet<IList>(ReferenceEqualityComparer.Instance);
        foreach (var entry in stateManager.Entries)
        {
            if (entry.EntityState != EntityState.Modified || !entry.EntityType.IsMappedToJson()
                || entry.EntityType.FindOwnership() is not { IsUnique: false, PrincipalToDependent: { } navigation } ownership
                || runtime.Find(entry.EntityType) is null
                || stateManager.FindPrincipal(entry, ownership) is not { } owner
                || owner.GetCurrentValue(navigation) is not IList list || !seen.Add(list))
            {
                continue;
            }

            // Reordered only: the ordinals are 1 to n, out of order. Anything else (an item removed or added) makes EF
            // write the collection whole, from the list.
            if (Ordinals(stateManager, list, entry) is not { } ordinals || ordinals.Select((ordinal, i) => ordinal == i + 1).All(inPlace => inPlace)
                || !ordinals.Order().SequenceEqual(Enumerable.Range(1, ordinals.Length)))
            {
                continue;
            }

            order ??= new JsonCollectionOrder();
            var original = new object?[list.Count];
            list.CopyTo(original, 0);
            order._reordered.Add((list, original));
            var byOrdinal = original.Zip(ordinals).OrderBy(item => item.Second).Select(item => item.First).ToArray();
            for (var i = 0; i < byOrdinal.Length; i++)
            {
                list[i] = byOrdinal[i];
            }
        }

        return order;
    }

    // The ordinal of each item of the list, or null when an item is not tracked as unchanged or modified.
    private static int[]? Ordinals(IStateManager stateManager, IList list, InternalEntityEntry edited)
    {
        var ordinal = edited.EntityType.FindPrimaryKey()!.Properties[^1];
        var ordinals = new int[list.Count];
        for (var i = 0; i < ordinals.Length; i++)
        {
            if (list[i] is not { } item || stateManager.TryGetEntry(item, edited.EntityType) is not { EntityState: EntityState.Unchanged or EntityState.Modified } entry)
            {
                return null;
            }

            ordinals[i] = (int)entry.GetCurrentValue(ordinal)!;
        }

        return ordinals;
    }

    /// <summary>Restores the application's order of every list reordered.</summary>
    public void Dispose()
    {
        foreach (var (list, order) in _reordered)
        {
            for (var i = 0; i < order.Length; i++)
            {
                list[i] = order[i];
            }
        }
    }
}
