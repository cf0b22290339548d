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
/// EF's change detector, taught two things about encrypted records: an edited plaintext property marks its
/// ciphertext column modified, and a ciphertext changed from outside (<c>Reload()</c>, <c>SetValues</c>) is decrypted
/// into the plaintext property.
/// </summary>
/// <remarks>
/// One instance per DbContext (a scoped EF service), reset when a pooled context is returned, so the snapshots it
/// keeps never outlive the context's tracking.
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
            _snapshots[entity] = new RecordSnapshot(snapshot.WrappedKey, snapshot.Values, storedKeyUnknown: true, bound: snapshot.Bound);
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

        for (var i = 0; i < encrypted.Properties.Length; i++)
        {
            if (encrypted.Properties[i].Differs(entry.Entity, snapshot.Values[i]))
            {
                encrypted.Properties[i].Restore(entry.Entity, snapshot.Values[i]);
            }
        }
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

    public override void PropertyChanged(IInternalEntry entry, IPropertyBase propertyBase, bool setModified)
    {
        base.PropertyChanged(entry, propertyBase, setModified);
        if (Assigning || entry is not InternalEntityEntry entityEntry || entityEntry.EntityState is EntityState.Added or EntityState.Detached)
        {
            return;
        }

        var encrypted = runtime.Find(entityEntry.EntityType);
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

        for (var i = 0; i < encrypted.Properties.Length; i++)
        {
            var property = encrypted.Properties[i];
            if (!entry.IsModified(property.Ciphertext) && property.Differs(entry.Entity, snapshot.Values[i]))
            {
                entry.SetPropertyModified(property.Ciphertext);
            }
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

    /// <summary>Clears a tracked record's plaintext and refuses to save it, for a record found not to belong where it is.</summary>
    public void Poison(InternalEntityEntry entry, EncryptedEntity encrypted, EnvelopeDecryptionException error)
    {
        _snapshots.Remove(entry.Entity);
        _poisoned.AddOrUpdate(entry.Entity, error);
        foreach (var property in encrypted.Properties)
        {
            property.Reset(entry.Entity);
        }
    }
}
