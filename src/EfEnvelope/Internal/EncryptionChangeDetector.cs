using System.Runtime.CompilerServices;
using EfEnvelope.Metadata;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Internal;

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
    private ConditionalWeakTable<object, RecordSnapshot> _snapshots = new();
    private readonly List<(object Entity, RecordSnapshot Snapshot)> _pending = [];

    /// <summary>True while the library itself writes shadow values, which are not outside changes.</summary>
    public bool Assigning { get; set; }

    public void Remember(object entity, RecordSnapshot snapshot) => _snapshots.AddOrUpdate(entity, snapshot);

    public RecordSnapshot? Find(object entity, byte[]? currentWrappedKey) =>
        _snapshots.TryGetValue(entity, out var snapshot) && snapshot.IsFor(currentWrappedKey) ? snapshot : null;

    /// <summary>Queues a snapshot to take effect only if the save succeeds.</summary>
    public void RememberAfterSave(object entity, RecordSnapshot snapshot) => _pending.Add((entity, snapshot));

    public void CommitPending()
    {
        foreach (var (entity, snapshot) in _pending)
        {
            _snapshots.AddOrUpdate(entity, snapshot);
        }

        _pending.Clear();
    }

    public void DiscardPending() => _pending.Clear();

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
        if (encrypted is not null && IsEncryptionColumn(encrypted, propertyBase))
        {
            RefreshFromStore(entityEntry, encrypted);
        }
    }

    public override void ResetState()
    {
        base.ResetState();
        _snapshots = new ConditionalWeakTable<object, RecordSnapshot>();
        _pending.Clear();
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

    private static bool IsEncryptionColumn(EncryptedEntity encrypted, IPropertyBase property)
    {
        if (ReferenceEquals(property, encrypted.KeyProperty))
        {
            return true;
        }

        foreach (var candidate in encrypted.Properties)
        {
            if (ReferenceEquals(candidate.Ciphertext, property))
            {
                return true;
            }
        }

        return false;
    }

    // Reload() and SetValues write the stored values property by property, so the key column and the ciphertext
    // columns change one notification at a time. Until the last one, the record may be a mix of old and new blobs
    // that does not decrypt; each notification tries again and the last one leaves the record consistent.
    private void RefreshFromStore(InternalEntityEntry entry, EncryptedEntity encrypted)
    {
        var wrappedKey = (byte[]?)entry[encrypted.KeyProperty];
        var blobs = new byte[]?[encrypted.Properties.Length];
        for (var i = 0; i < blobs.Length; i++)
        {
            blobs[i] = (byte[]?)entry[encrypted.Properties[i].Ciphertext];
        }

        try
        {
            var snapshot = runtime.Decrypt(encrypted, entry.Entity, wrappedKey, blobs)!;
            _snapshots.AddOrUpdate(entry.Entity, snapshot);
        }
        catch (EnvelopeDecryptionException)
        {
            _snapshots.Remove(entry.Entity);
        }
    }
}
