using EfEnvelope.Metadata;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.ChangeTracking;

/// <summary>EF's entry notifier, which also tells EfEnvelope when an instance is attached (not read from a query).</summary>
/// <remarks>
/// EF snapshots a property's original value when an entity is attached, which is how it sees later edits; encrypted
/// properties are not in the model, so EfEnvelope takes the same baseline here.
/// </remarks>
internal sealed class EncryptionEntryNotifier : InternalEntityEntryNotifier
{
    private readonly EncryptionChangeDetector? _detector;

    public EncryptionEntryNotifier(ILocalViewListener localViewListener, IChangeDetector changeDetector, INavigationFixer navigationFixer)
        : base(localViewListener, changeDetector, navigationFixer) =>
        _detector = changeDetector as EncryptionChangeDetector;

    public override void StateChanging(InternalEntityEntry entry, EntityState newState)
    {
        if (entry.EntityState == EntityState.Modified && newState == EntityState.Unchanged && _detector is { Saving: false, Accepting: false } detector)
        {
            // EF is about to reject the entry's changes by copying its original values over the current ones; a pending
            // encrypted edit is rejected after it (RejectEdits), and must not make EF mark the key column modified.
            detector.EndPendingEdit(entry);
        }

        base.StateChanging(entry, newState);
    }

    public override void StateChanged(InternalEntityEntry entry, EntityState oldState, bool fromQuery)
    {
        base.StateChanged(entry, oldState, fromQuery);
        if (entry.EntityState is EntityState.Unchanged or EntityState.Modified
            && (oldState == EntityState.Detached || (oldState == EntityState.Added && _detector is { Saving: false })))
        {
            // Straight to Modified is Update(): the instance replaces the stored row. Added to Modified or Unchanged
            // outside a save (a save's Added to Unchanged is its acceptance) says the same of an instance EF was
            // to insert: it is the stored row now.
            _detector?.RememberBaseline(entry, replacesStored: !fromQuery && entry.EntityState == EntityState.Modified, fromQuery, storedKeyUnknown: oldState == EntityState.Added);
            if (fromQuery && entry.EntityType.IsOwned() && _detector?.Runtime.Find(entry.EntityType) is { } encrypted)
            {
                // Materialization checks an entity's record against the master-key selector but cannot see an owned
                // record's owner; here, tracked beside it, it can. EF tracks the record already: its plaintext is
                // cleared and saving it refused, so that a second query in this context does not return it.
                try
                {
                    _detector.VerifySelectorKey(entry, encrypted);
                }
                catch (EnvelopeDecryptionException error)
                {
                    _detector.Poison(entry, encrypted, error);
                    throw;
                }
            }
        }
        else if (oldState == EntityState.Unchanged && entry.EntityState == EntityState.Modified && _detector is { Saving: false } detector
            && detector.Runtime.Find(entry.EntityType) is not null && MarkedWhole(entry))
        {
            // State = Modified on a tracked entity (Attach, then Modified): EF marks every property modified and
            // writes every column, as Update() does. The instance replaces the stored row: every encrypted value is
            // written under a fresh data key. Without this, the values attached with the instance were its baseline,
            // nothing counted as changed, and they were silently not saved.
            detector.RememberBaseline(entry, replacesStored: true, fromQuery: false);
        }
        else if (entry.EntityState == EntityState.Detached)
        {
            _detector?.Forget(entry.Entity);
        }
        else if (oldState == EntityState.Modified && entry.EntityState == EntityState.Unchanged && _detector is { Saving: false, Accepting: false })
        {
            // Outside a save, Modified to Unchanged is EF rejecting the changes (its own properties go back to
            // their original values); a save's acceptance happens while Saving is set and keeps the new values, and
            // AcceptAllChanges() while Accepting is.
            _detector.RejectEdits(entry);
        }
    }

    // Whether EF marked the whole entry modified (State = Modified, Update() of a tracked entity) rather than one
    // property (IsModified = true, an edit DetectChanges finds, a value SetValues brings in). EF flags every saved
    // property before it changes the state in the first case; in the second it flags the one property that turns the
    // entry Modified, and the next ones only after the state changed. An entity with encrypted properties saves at least
    // two columns (a ciphertext and the key column), so two flags here mean the first case. The flags are read beneath
    // EF's "value unknown" mark, which hides them on the shadow columns of an attached instance (ModifiedFlags). Whether
    // a flagged value equals its original says nothing: IsModified = true on an attached stub's plain property flags a
    // value equal to its original, and that column alone is to be written.
    private static bool MarkedWhole(InternalEntityEntry entry)
    {
        var flagged = 0;
        foreach (var property in entry.EntityType.GetProperties())
        {
            if (!property.IsPrimaryKey() && ModifiedFlags.IsFlagged(entry, property.GetIndex()) && ++flagged == 2)
            {
                return true;
            }
        }

        return false;
    }
}
