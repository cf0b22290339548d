using System.Runtime.CompilerServices;
using EfEnvelope.Infrastructure;
using EfEnvelope.Metadata;
using EfEnvelope.Query;
using EfEnvelope.Update;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Update;

namespace EfEnvelope.ChangeTracking;

/// <summary>
/// EF's change detector, taught three things about encrypted records: an edited plaintext property marks its
/// ciphertext column modified, a ciphertext changed from outside (<c>Reload()</c>, <c>SetValues</c>) is decrypted
/// into the plaintext property, and stored values copied over an unsaved edit (<c>CurrentValues.SetValues</c> with
/// <c>OriginalValues</c> or <c>GetDatabaseValues()</c>) take the edit back, as they do for a plain property.
/// </summary>
/// <remarks>
/// <para>
/// One instance per DbContext (a scoped EF service), reset when a pooled context is returned, so the snapshots it
/// keeps never outlive the context's tracking.
/// </para>
/// <para>
/// Stored values copied over an edit: an edit changes only the plaintext (encryption waits for the save), so the
/// columns EF tracks still hold the stored bytes, and EF neither writes nor reports an assignment of equal bytes
/// (<c>InternalEntryBase.SetProperty</c> compares with the column's comparer first). Once change detection sees an
/// edit, the record's key column therefore gets a copy of its stored bytes and EF's "unknown" flag, which makes EF
/// write and report the next assignment of that column whatever its bytes (<see cref="MarkPendingEdit"/>). The
/// assigned array then says where the values come from (<see cref="PendingKeyAssigned"/>): the copy itself, from
/// values taken after the edit (a <c>CurrentValues.Clone()</c>), keeps the edit; the array EF holds as the column's
/// original (<c>OriginalValues</c>, EF's own rejection on <c>State = Unchanged</c>), while it is still the key the
/// snapshot was taken with, restores the snapshot's plaintext, which is what EfEnvelope holds as the original values;
/// any other array (<c>GetDatabaseValues()</c>) is decrypted and verified against the record's seal, as any stored
/// value brought in from outside is. No bytes the database or the application supplies are accepted unverified: the
/// first two cases accept only arrays the entry already holds for a key whose record was verified or written here.
/// </para>
/// </remarks>
internal sealed class EncryptionChangeDetector(
    IDiagnosticsLogger<DbLoggerCategory.ChangeTracking> logger,
    ILoggingOptions loggingOptions,
    EnvelopeRuntime runtime) : ChangeDetector(logger, loggingOptions)
{
    // Keyed by instance; an entry leaves when its entity stops being tracked (Forget) or the context is reset.
    // A plain dictionary: a ConditionalWeakTable entry per tracked row cost ~8 % of a tracking read (measured).
    private readonly Dictionary<object, RecordSnapshot> _snapshots = new(ReferenceEqualityComparer.Instance);
    private readonly List<(object Entity, RecordSnapshot Snapshot)> _pending = [];
    private readonly List<(InternalEntityEntry Entry, IProperty Property, object? Value, object? Original, bool Modified)> _restore = [];
    private readonly List<(InternalEntityEntry Entry, IProperty Index)> _indexValues = [];
    private ConditionalWeakTable<object, EnvelopeDecryptionException> _poisoned = new();

    // The key column assignment EF is making while a pending edit holds the column's "unknown" flag, with the original
    // value EF held before it (EF replaces the original with the assigned value for an unknown column).
    private (InternalEntityEntry Entry, object? Original)? _pendingKeyAssignment;

    // Records this save rewrites in part, under the data key and seal basis of the key column they were read with:
    // their UPDATE must match that key column (KeyConditionModificationCommand).
    // Created on the first partial rewrite: most contexts (a read per request) never save one.
    private HashSet<InternalEntityEntry>? _partialRewrites;

    /// <summary>The encryption configuration of this context.</summary>
    public EnvelopeRuntime Runtime => runtime;

    /// <summary>True while the library itself writes shadow values, which are not outside changes.</summary>
    public bool Assigning { get; set; }

    /// <summary>True from the end of encryption until the save completes: state changes to Unchanged then accept the save.</summary>
    public bool Saving { get; set; }

    /// <summary>True while <c>ChangeTracker.AcceptAllChanges()</c> runs: state changes to Unchanged then accept, not reject.</summary>
    public bool Accepting { get; set; }

    public void Remember(object entity, RecordSnapshot snapshot) => _snapshots[entity] = snapshot;

    /// <summary>Drops what is known of an entity that is no longer tracked.</summary>
    public void Forget(object entity) => _snapshots.Remove(entity);

    public RecordSnapshot? Find(object entity, byte[]? currentWrappedKey) =>
        _snapshots.TryGetValue(entity, out var snapshot) && snapshot.IsFor(currentWrappedKey) ? snapshot : null;

    /// <summary>Queues a snapshot to take effect only if the save succeeds.</summary>
    public void RememberAfterSave(object entity, RecordSnapshot snapshot) => _pending.Add((entity, snapshot));

    /// <summary>Records a shadow value the save is about to replace, so that a failed save can put it back.</summary>
    /// <remarks>Added records need none: a retry encrypts them afresh whatever their shadow values hold.</remarks>
    public void RememberForRestore(InternalEntityEntry entry, IProperty property)
    {
        if (entry.EntityState != EntityState.Added)
        {
            _restore.Add((entry, property, entry[property], entry.GetOriginalValue(property), entry.IsModified(property)));
        }
    }

    /// <summary>Marks a record this save rewrites in part: its update must still find the key column it was sealed against.</summary>
    public void RequireStoredKey(InternalEntityEntry entry) => (_partialRewrites ??= []).Add(entry);

    /// <summary>Whether this save rewrites the record of <paramref name="entry"/> in part (see <see cref="RequireStoredKey"/>).</summary>
    public bool RequiresStoredKey(IUpdateEntry entry) => entry is InternalEntityEntry tracked && _partialRewrites?.Contains(tracked) == true;

    /// <summary>The records this save rewrites in part that EfEnvelope can read again by key (not owned types).</summary>
    public List<InternalEntityEntry> PartialRewrites() => _partialRewrites is null ? [] : [.. _partialRewrites.Where(e => !e.EntityType.IsOwned())];

    /// <summary>
    /// After a concurrency conflict on a partial rewrite: the next save of <paramref name="entity"/> reads the record's
    /// stored key and ciphertext again (checked against their seal), as for an attached record, and seals over them.
    /// </summary>
    public void ForgetStoredKey(object entity)
    {
        if (_snapshots.TryGetValue(entity, out var snapshot))
        {
            // The edit is still pending (the failed save put the copied key column back): keep recognising it.
            _snapshots[entity] = new RecordSnapshot(snapshot.WrappedKey, snapshot.Values, storedKeyUnknown: true, bound: snapshot.Bound) { PendingKey = snapshot.PendingKey };
        }
    }

    /// <summary>Remembers a newly tracked record's plaintext as its baseline: later edits are compared with it.</summary>
    /// <remarks>From a query, the values were just decrypted from the stored ciphertext; from Attach, they are the instance's.</remarks>
    public void RememberBaseline(InternalEntityEntry entry, bool replacesStored, bool fromQuery, bool storedKeyUnknown = false)
    {
        // Called as the entity starts being tracked: anything known of it before is stale, and is replaced.
        var encrypted = runtime.Find(entry.EntityType);
        if (encrypted is null)
        {
            return;
        }

        var values = new object?[encrypted.Properties.Length];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = encrypted.Properties[i].Capture(entry.Entity);
        }

        EndPendingEdit(entry, encrypted);

        // A row read from its legacy plaintext columns has no data key: its next save writes all of it afresh.
        var wrappedKey = (byte[]?)entry[encrypted.KeyProperty];
        replacesStored |= fromQuery && wrappedKey is null && encrypted.HasLegacyPlaintext;
        _snapshots[entry.Entity] = new RecordSnapshot(wrappedKey, values, replacesStored, storedWithoutKey: fromQuery && wrappedKey is null, storedKeyUnknown: storedKeyUnknown,
            bound: fromQuery ? RecordSnapshot.BoundOf(entry, encrypted) : null);
    }

    /// <summary>Records a blind index property given plaintext for this save, to be emptied once it is saved.</summary>
    public void RememberIndexValue(InternalEntityEntry entry, IProperty index) => _indexValues.Add((entry, index));

    /// <summary>The tamper error of a tracked record whose stored data failed to decrypt on Reload, if any.</summary>
    public EnvelopeDecryptionException? Poisoned(object entity) => _poisoned.TryGetValue(entity, out var error) ? error : null;

    /// <summary>
    /// A tracked record went from Modified to Unchanged outside a save (<c>State = Unchanged</c>, <c>Reload()</c>):
    /// EF rejects the pending edits of its own properties, so the plaintext ones go back to their baseline too.
    /// </summary>
    public void RejectEdits(InternalEntityEntry entry)
    {
        var encrypted = runtime.Find(entry.EntityType);
        if (encrypted is null || Find(entry.Entity, (byte[]?)entry[encrypted.KeyProperty]) is not { } snapshot)
        {
            return;
        }

        RestoreSnapshot(entry, encrypted, snapshot);
    }

    private static void RestoreSnapshot(InternalEntityEntry entry, EncryptedEntity encrypted, RecordSnapshot snapshot)
    {
        for (var i = 0; i < encrypted.Properties.Length; i++)
        {
            if (encrypted.Properties[i].Differs(entry.Entity, snapshot.Values[i]))
            {
                encrypted.Properties[i].Restore(entry.Entity, snapshot.Values[i]);
            }
        }
    }

    /// <summary>
    /// Ends the pending edit of a tracked record (see <see cref="MarkPendingEdit"/>): EF's "unknown" flag comes off its
    /// key column, so that EF again ignores an assignment of equal bytes.
    /// </summary>
    /// <remarks>
    /// Called when EfEnvelope takes a new baseline for the record, and before EF rejects a Modified entry's changes
    /// (<c>State = Unchanged</c>): EF rejects by copying the original values over the current ones while the entry is
    /// still Modified, after clearing every modified flag, so an assignment it reported there would leave the key
    /// column marked modified on the Unchanged entry, and the next save of one of its plain columns would write the
    /// key column as this context holds it, over whatever another save has sealed there since.
    /// <see cref="RejectEdits"/> restores the plaintext then, as before.
    /// </remarks>
    public void EndPendingEdit(InternalEntityEntry entry)
    {
        if (runtime.Find(entry.EntityType) is { } encrypted)
        {
            EndPendingEdit(entry, encrypted);
        }
    }

    private void EndPendingEdit(InternalEntityEntry entry, EncryptedEntity encrypted)
    {
        if (!_snapshots.TryGetValue(entry.Entity, out var snapshot) || snapshot.PendingKey is null)
        {
            return;
        }

        snapshot.PendingKey = null;
        var key = encrypted.KeyProperty;
        if (entry.EntityState is EntityState.Unchanged or EntityState.Modified && entry.IsUnknown(key))
        {
            // SetPropertyModified takes the flag off; without a state change EF also copies the current value into the
            // original, which is put back (the copy holds the same bytes, but it is this entry's mark of the edit).
            var original = entry.GetOriginalValue(key);
            Assigning = true;
            try
            {
                entry.SetPropertyModified(key, changeState: false, isModified: false);
                entry.SetOriginalValue(key, original);
            }
            finally
            {
                Assigning = false;
            }
        }
    }

    /// <summary>
    /// Change detection has just seen an unsaved edit of a record read or saved in this context: its key column gets a
    /// copy of its stored bytes, and EF's "unknown" flag, so that EF reports the next assignment of the column even of
    /// equal bytes (<see cref="PendingKeyAssigned"/> decides what it means).
    /// </summary>
    /// <remarks>
    /// <para>
    /// Why the key column: every copy of a stored row's values carries it (<c>OriginalValues</c>,
    /// <c>GetDatabaseValues()</c>, a clone of either), it is one column per record whatever properties were edited, and
    /// it is non-null for every record read or saved under encryption, whereas an edited property's ciphertext may be
    /// NULL (a NULL cannot be copied into a distinct instance). Why a copy: EF's current and original values share the
    /// stored array, so only a distinct array can tell values copied from the entry after the edit (they hold the copy)
    /// from the stored ones. Why the flag: EF compares the assigned bytes with the column's comparer and, when they are
    /// equal, neither writes them nor tells the change detector. A flagged column is not "modified" for EF
    /// (<c>IsModified</c> is false), so nothing in EF's update pipeline changes; EfEnvelope's save replaces the
    /// column anyway, as for any edited record.
    /// </para>
    /// <para>
    /// Not for records whose stored values EfEnvelope does not hold (attached instances, <c>Update()</c>, a failed
    /// insert declared stored, a row without a data key) nor JSON-mapped owned types, whose columns EF serialises
    /// itself: there a copy of stored values over an edit stays as it was (the documented difference).
    /// </para>
    /// </remarks>
    private void MarkPendingEdit(InternalEntityEntry entry, EncryptedEntity encrypted, RecordSnapshot snapshot)
    {
        // A key column EF holds as modified belongs to a save that ran without accepting its changes
        // (SaveChanges(false)): it is still to be written, and EF would put its original back where the flag comes off.
        var key = encrypted.KeyProperty;
        if (snapshot.ReplacesStored || snapshot.StoredWithoutKey || snapshot.StoredKeyUnknown
            || entry[key] is not byte[] stored || entry.EntityType.IsMappedToJson() || entry.IsModified(key))
        {
            return;
        }

        var copy = stored.AsSpan().ToArray();
        var original = entry.GetOriginalValue(key);
        Assigning = true;
        try
        {
            // EF writes a value into an unknown column whatever its bytes, also as the original, and marks the column
            // modified: the original and the flag are put back, then the column is made unknown again.
            entry.MarkUnknown(key);
            entry[key] = copy;
            entry.SetOriginalValue(key, original);
            entry.SetPropertyModified(key, changeState: true, isModified: false);
            entry.MarkUnknown(key);
        }
        finally
        {
            Assigning = false;
        }

        snapshot.PendingKey = copy;
    }

    /// <summary>
    /// EF assigned the key column of a record with a pending edit (<see cref="MarkPendingEdit"/>), which EF reports
    /// whatever the bytes. Returns true when the assignment is fully handled here; false when the record must be read
    /// from the stored values now in the entry (<see cref="RefreshFromStore"/>), which decrypts and verifies them.
    /// </summary>
    private bool PendingKeyAssigned(InternalEntityEntry entry, EncryptedEntity encrypted, object? originalBefore)
    {
        var key = encrypted.KeyProperty;
        var assigned = entry[key];
        if (!_snapshots.TryGetValue(entry.Entity, out var snapshot) || snapshot.PendingKey is null)
        {
            return false;
        }

        var ownCopy = ReferenceEquals(assigned, snapshot.PendingKey);
        var fromOriginals = !ownCopy && ReferenceEquals(assigned, originalBefore) && snapshot.IsFor(assigned as byte[]);
        var sameBytes = StoredBytes.Comparer.Equals(assigned as byte[], originalBefore as byte[]);

        Assigning = true;
        try
        {
            // What EF did because the column was unknown, undone: the assigned value taken as the original, and the
            // column marked modified when its bytes did not change (EF would not have assigned them at all).
            entry.SetOriginalValue(key, originalBefore);
            if (sameBytes)
            {
                entry.SetPropertyModified(key, changeState: true, isModified: false);
            }

            if (ownCopy)
            {
                // Values taken from this entry after the edit (CurrentValues.Clone(), or the entry's own values): in
                // plain EF they carry the edited value, and the plaintext holds it here. The edit stays pending.
                entry.MarkUnknown(key);
                return true;
            }
        }
        finally
        {
            Assigning = false;
        }

        snapshot.PendingKey = null;
        if (fromOriginals)
        {
            // The original values (OriginalValues, or a clone of them) while EF's original key column is still the one
            // the snapshot was taken with: EfEnvelope's original values are the snapshot's plaintext, which it read
            // and verified, or wrote, under that key. No new bytes come in here; a ciphertext column whose bytes do
            // differ is reported on its own and decrypted with the record.
            RestoreSnapshot(entry, encrypted, snapshot);
            return true;
        }

        // Values from anywhere else (GetDatabaseValues(), another context's row): read and verify them, as for Reload().
        return false;
    }

    public void CommitPending()
    {
        Saving = false;
        foreach (var (entity, snapshot) in _pending)
        {
            _snapshots[entity] = snapshot;
        }

        // The index properties held plaintext only so that their converter could hash it; once saved, it is
        // removed from the change tracker (where DebugView or OriginalValues would show it).
        Assigning = true;
        try
        {
            foreach (var (entry, index) in _indexValues)
            {
                if (entry.EntityState is EntityState.Unchanged or EntityState.Modified)
                {
                    var empty = index.ClrType.IsValueType && Nullable.GetUnderlyingType(index.ClrType) is null ? Activator.CreateInstance(index.ClrType) : null;
                    entry[index] = empty;
                    entry.SetOriginalValue(index, empty);
                    // changeState: true, so that EF also takes back the Modified state that clearing the property
                    // gave the entry; otherwise the next SaveChanges sends the cleared (NULL) index to the database
                    // and the row can no longer be found (BlindIndexRetentionTests).
                    entry.SetPropertyModified(index, changeState: true, isModified: false);
                }
            }
        }
        finally
        {
            Assigning = false;
        }

        _indexValues.Clear();
        _pending.Clear();
        _restore.Clear();
        _partialRewrites?.Clear();
    }

    /// <summary>After a failed or cancelled save: the ciphertext it assigned is taken back, so the next save starts from the stored state.</summary>
    public void DiscardPending()
    {
        Saving = false;
        _pending.Clear();
        _indexValues.Clear();
        _partialRewrites?.Clear();
        Assigning = true;
        try
        {
            for (var i = _restore.Count - 1; i >= 0; i--)
            {
                var (entry, property, value, original, modified) = _restore[i];
                if (entry.EntityState == EntityState.Detached)
                {
                    continue;
                }

                entry[property] = value;
                entry.SetOriginalValue(property, original);
                // changeState: true, or EF leaves the flag as it is (with false it only clears temporary values).
                entry.SetPropertyModified(property, changeState: true, isModified: modified);
            }
        }
        finally
        {
            Assigning = false;
            _restore.Clear();
        }
    }

    public override void DetectChanges(IStateManager stateManager)
    {
        foreach (var entry in stateManager.Entries)
        {
            MarkEditedPlaintext(entry);
        }

        base.DetectChanges(stateManager);
    }

    public override void DetectChanges(InternalEntityEntry entry)
    {
        MarkEditedPlaintext(entry);
        base.DetectChanges(entry);
    }

    public override void PropertyChanging(IInternalEntry entry, IPropertyBase propertyBase)
    {
        base.PropertyChanging(entry, propertyBase);
        if (!Assigning
            && propertyBase.Name == EncryptionAnnotations.KeyPropertyName
            && entry is InternalEntityEntry { EntityState: EntityState.Unchanged or EntityState.Modified } entityEntry
            && _snapshots.TryGetValue(entityEntry.Entity, out var snapshot) && snapshot.PendingKey is not null
            && runtime.Find(entityEntry.EntityType) is { } encrypted && ReferenceEquals(propertyBase, encrypted.KeyProperty)
            && entityEntry.IsUnknown(encrypted.KeyProperty))
        {
            // EF is about to replace the original of this unknown column with the value it assigns: keep it to put back.
            _pendingKeyAssignment = (entityEntry, entityEntry.GetOriginalValue(encrypted.KeyProperty));
        }
    }

    public override void PropertyChanged(IInternalEntry entry, IPropertyBase propertyBase, bool setModified)
    {
        base.PropertyChanged(entry, propertyBase, setModified);
        var pendingKey = _pendingKeyAssignment;
        _pendingKeyAssignment = null;
        if (Assigning || entry is not InternalEntityEntry entityEntry || entityEntry.EntityState is EntityState.Added or EntityState.Detached)
        {
            return;
        }

        var encrypted = runtime.Find(entityEntry.EntityType);
        if (encrypted is not null && pendingKey is { } assignment && ReferenceEquals(assignment.Entry, entityEntry)
            && ReferenceEquals(propertyBase, encrypted.KeyProperty) && PendingKeyAssigned(entityEntry, encrypted, assignment.Original))
        {
            return;
        }

        if (encrypted is not null
            && (IsEncryptionColumn(encrypted, propertyBase) || (IsBoundColumn(encrypted, propertyBase) && _poisoned.TryGetValue(entityEntry.Entity, out _))))
        {
            // A bound column is re-checked only while the record does not verify: Reload() sets the key column and
            // ciphertexts before a bound column that sorts after them, so a record another context re-sealed over a
            // changed bound value verifies only once that value is in. An application's own edit of a bound column is
            // not a stored change, and is sealed by the next save.
            RefreshFromStore(entityEntry, encrypted);
        }
    }

    public override void ResetState()
    {
        base.ResetState();
        Saving = false;
        Accepting = false;
        _pendingKeyAssignment = null;
        _snapshots.Clear();
        _poisoned = new ConditionalWeakTable<object, EnvelopeDecryptionException>();
        _pending.Clear();
        _restore.Clear();
        _indexValues.Clear();
    }

    private void MarkEditedPlaintext(InternalEntityEntry entry)
    {
        if (entry.EntityState is not (EntityState.Unchanged or EntityState.Modified))
        {
            return;
        }

        var encrypted = runtime.Find(entry.EntityType);
        if (encrypted is null)
        {
            return;
        }

        var snapshot = Find(entry.Entity, (byte[]?)entry[encrypted.KeyProperty]);
        if (snapshot is null)
        {
            return;
        }

        var pending = snapshot.PendingKey is { } pendingKey && ReferenceEquals(entry[encrypted.KeyProperty], pendingKey);
        var edited = false;
        for (var i = 0; i < encrypted.Properties.Length; i++)
        {
            var property = encrypted.Properties[i];
            if (!entry.IsModified(property.Ciphertext))
            {
                if (property.Differs(entry.Entity, snapshot.Values[i]))
                {
                    entry.SetPropertyModified(property.Ciphertext);
                    edited = true;
                }
            }
            else if (!pending && !edited && property.Differs(entry.Entity, snapshot.Values[i]))
            {
                // Already marked (by an earlier edit whose stored values were then copied back, or by a failed save):
                // still an edit that such a copy must take back.
                edited = true;
            }
        }

        if (pending)
        {
            // A failed save puts the key column back through EF, which takes its "unknown" flag off.
            if (!entry.IsUnknown(encrypted.KeyProperty))
            {
                entry.MarkUnknown(encrypted.KeyProperty);
            }
        }
        else if (edited)
        {
            MarkPendingEdit(entry, encrypted, snapshot);
        }
    }

    private static bool IsBoundColumn(EncryptedEntity encrypted, IPropertyBase property) =>
        Array.Exists(encrypted.BoundColumns, column => ReferenceEquals(column.Property, property));

    private static bool IsEncryptionColumn(EncryptedEntity encrypted, IPropertyBase property)
    {
        if (ReferenceEquals(property, encrypted.KeyProperty))
        {
            return true;
        }

        foreach (var candidate in encrypted.Properties)
        {
            if (ReferenceEquals(candidate.Ciphertext, property) || ReferenceEquals(candidate.LegacyPlaintext, property))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// With a master-key selector, refuses a tracked record under another master key than the selector chooses for its
    /// root owner: what the materialization check does for entities, for owned records (checked once EF tracks them
    /// beside their owner) and for values that <c>Reload()</c> or <c>SetValues</c> bring in.
    /// </summary>
    /// <exception cref="EnvelopeDecryptionException">The record is under another master key than its row's.</exception>
    public void VerifySelectorKey(InternalEntityEntry entry, EncryptedEntity encrypted)
    {
        if (runtime.Settings.KeySelector is not null && entry[encrypted.KeyProperty] is byte[] stored)
        {
            SelectorKeyCheck.Verify(runtime, encrypted, SaveEncryption.SelectorSubject(entry), stored,
                () => entry.EntityType.FindPrimaryKey()?.Properties.Select(p => entry[p]) ?? []);
        }
    }

    // Reload() and SetValues write the stored values property by property, so the key column and the ciphertext
    // columns change one notification at a time. Until the last one, the record may be a mix of old and new blobs
    // that does not decrypt; each notification tries again and the last one leaves the record consistent.
    private void RefreshFromStore(InternalEntityEntry entry, EncryptedEntity encrypted)
    {
        // Stored values came in: an edit pending until now is replaced by them (or the record is refused).
        EndPendingEdit(entry, encrypted);
        if (entry.EntityType.IsMappedToJson())
        {
            TakeJsonTextAsBytes(entry, encrypted);
        }

        var stored = EnvelopeRuntime.StoredProperties(encrypted).Select(p => entry[p]).ToArray();

        try
        {
            var snapshot = runtime.Decrypt(encrypted, entry.Entity, stored)!;
            VerifySelectorKey(entry, encrypted);
            _snapshots[entry.Entity] = snapshot;
            _poisoned.Remove(entry.Entity);
        }
        catch (EnvelopeDecryptionException error)
        {
            // Possibly a half-written state of the reload; if it is the last one, the stored data is bad: the stale
            // plaintext is cleared (never shown as if current) and saving this record is refused.
            Poison(entry, encrypted, error);
        }
    }

    // EF reloads a JSON-mapped record (Reload) with one JSON path per property, and on SQLite reads
    // a byte[] path as the bytes of its JSON text: the record read as tampered with, and the next save would have
    // written that text back as the key column. The entry gets the stored bytes, as after a query.
    private void TakeJsonTextAsBytes(InternalEntityEntry entry, EncryptedEntity encrypted)
    {
        foreach (var property in EnvelopeRuntime.EncryptionColumns(encrypted))
        {
            if (entry[property] is not byte[] text || Storage.JsonBlobText.Decode(text) is not { } bytes)
            {
                continue;
            }

            var modified = entry.IsModified(property);
            Assigning = true;
            try
            {
                entry[property] = bytes;
                entry.SetOriginalValue(property, bytes);
                entry.SetPropertyModified(property, changeState: false, isModified: modified);
            }
            finally
            {
                Assigning = false;
            }
        }
    }

    /// <summary>Clears a tracked record's plaintext and refuses to save it, for a record found not to belong where it is.</summary>
    public void Poison(InternalEntityEntry entry, EncryptedEntity encrypted, EnvelopeDecryptionException error)
    {
        EndPendingEdit(entry, encrypted);
        _snapshots.Remove(entry.Entity);
        _poisoned.AddOrUpdate(entry.Entity, error);
        foreach (var property in encrypted.Properties)
        {
            property.Reset(entry.Entity);
        }
    }
}
