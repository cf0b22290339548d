using System.Collections;
using EfEnvelope.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;
using Microsoft.EntityFrameworkCore.Metadata;

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
/// whole, from the list. The collections nested in an edited record are put in order too: EF writes them with the
/// record, numbering their items by list position, and a reordered nested list then clashed with the ordinals its
/// tracked items hold ("cannot be tracked because another instance with the same key value"). EF does not detect
/// changes again within the save, and it compares collections by membership, not order, so the change tracker sees
/// nothing of this.
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
        try
        {
            AlignEdited(stateManager, runtime, ref order);
        }
        catch
        {
            // Lists reordered before the failure go back to the application's order.
            order?.Dispose();
            throw;
        }

        return order?._reordered.Count > 0 ? order : null;
    }

    private static void AlignEdited(IStateManager stateManager, EnvelopeRuntime runtime, ref JsonCollectionOrder? order)
    {
        HashSet<IList>? seen = null;
        foreach (var entry in stateManager.Entries)
        {
            if (entry.EntityState != EntityState.Modified || !entry.EntityType.IsMappedToJson() || runtime.Find(entry.EntityType) is null)
            {
                continue;
            }

            order ??= new JsonCollectionOrder();
            seen ??= new HashSet<IList>(ReferenceEqualityComparer.Instance);

            // The list the edited record is an item of, and, since EF rewrites the record whole (with the collections
            // nested in it, numbering their items by list position), every collection nested in it.
            if (entry.EntityType.FindOwnership() is { IsUnique: false, PrincipalToDependent: { } navigation } ownership
                && stateManager.FindPrincipal(entry, ownership) is { } owner && owner.GetCurrentValue(navigation) is IList list)
            {
                order.Restore(stateManager, list, entry.EntityType, seen);
            }

            order.RestoreNested(stateManager, entry, seen);
        }
    }

    private void RestoreNested(IStateManager stateManager, InternalEntityEntry entry, HashSet<IList> seen)
    {
        foreach (var navigation in entry.EntityType.GetNavigations().Where(n => n.ForeignKey.IsOwnership && n.TargetEntityType.IsMappedToJson()))
        {
            var value = entry.GetCurrentValue(navigation);
            if (navigation.IsCollection && value is IList list)
            {
                Restore(stateManager, list, navigation.TargetEntityType, seen);
            }

            IEnumerable<object> children = value switch
            {
                IEnumerable items when navigation.IsCollection => items.Cast<object>(),
                { } child => [child],
                _ => [],
            };
            foreach (var child in children)
            {
                if (stateManager.TryGetEntry(child, navigation.TargetEntityType) is { } childEntry)
                {
                    RestoreNested(stateManager, childEntry, seen);
                }
            }
        }
    }

    // Puts a reordered list of items back in ordinal order. Reordered only: the ordinals are 1 to n, out of order;
    // anything else (an item removed or added) makes EF write the collection whole, from the list.
    private void Restore(IStateManager stateManager, IList list, IEntityType itemType, HashSet<IList> seen)
    {
        if (list.IsReadOnly || !seen.Add(list) || Ordinals(stateManager, list, itemType) is not { } ordinals
            || ordinals.Select((ordinal, i) => ordinal == i + 1).All(inPlace => inPlace)
            || !ordinals.Order().SequenceEqual(Enumerable.Range(1, ordinals.Length)))
        {
            return;
        }

        var original = new object?[list.Count];
        list.CopyTo(original, 0);
        _reordered.Add((list, original));
        var byOrdinal = original.Zip(ordinals).OrderBy(item => item.Second).Select(item => item.First).ToArray();
        for (var i = 0; i < byOrdinal.Length; i++)
        {
            list[i] = byOrdinal[i];
        }
    }

    // The ordinal of each item of the list, or null when an item is not tracked as unchanged or modified.
    private static int[]? Ordinals(IStateManager stateManager, IList list, IEntityType itemType)
    {
        var ordinal = itemType.FindPrimaryKey()!.Properties[^1];
        var ordinals = new int[list.Count];
        for (var i = 0; i < ordinals.Length; i++)
        {
            if (list[i] is not { } item || stateManager.TryGetEntry(item, itemType) is not { EntityState: EntityState.Unchanged or EntityState.Modified } entry)
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
