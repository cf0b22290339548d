using EfEnvelope.ChangeTracking;
using EfEnvelope.Crypto;
using EfEnvelope.Diagnostics;
using EfEnvelope.Infrastructure;
using EfEnvelope.KeyManagement;
using EfEnvelope.Lifecycle;
using EfEnvelope.Metadata;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Update;

/// <summary>Encrypts what a SaveChanges is about to write, before EF builds any command.</summary>
/// <remarks>
/// Four phases, so that a failure anywhere leaves the context exactly as it was and nothing reaches the database:
/// find the records to encrypt; get their keys (the only phase that may call the provider, and the only async one);
/// encrypt into new arrays (in parallel for large saves: records are independent); and only then assign the
/// ciphertext to EF's shadow properties.
/// </remarks>
internal sealed class SaveEncryption(EnvelopeRuntime runtime)
{
    private const int ParallelThreshold = 256;

    /// <summary>Encrypts the save's records.</summary>
    /// <returns>With <c>BindStoreGeneratedKeys()</c>, the records to seal again once the database has generated their keys; else null.</returns>
    public GeneratedKeyBinding? Run(DbContext context)
    {
        var work = Collect(context);
        if (work.Count == 0)
        {
            return null;
        }

        RefuseMisfits(work);

        GeneratedKeyBinding? binding;
        try
        {
            ProviderGateway.RunSynchronously(async () =>
            {
                await AcquireKeysAsync(work, CancellationToken.None).ConfigureAwait(false);
                return true;
            });
            Encrypt(work);
            binding = TakeKeysForBinding(context, work);
        }
        finally
        {
            ReleaseKeys(work);
        }

        AssignOrRelease(context, work, binding);
        return binding;
    }

    /// <summary>The async form of <see cref="Run"/>.</summary>
    public async Task<GeneratedKeyBinding?> RunAsync(DbContext context, CancellationToken cancellationToken)
    {
        var work = Collect(context);
        if (work.Count == 0)
        {
            return null;
        }

        RefuseMisfits(work);

        GeneratedKeyBinding? binding;
        try
        {
            await AcquireKeysAsync(work, cancellationToken).ConfigureAwait(false);
            if (work.Exists(w => w.Encrypted.HasSearchableProperties))
            {
                // EF computes blind indexes synchronously (a value converter) while building commands: have the
                // index key cached before, so an async save never blocks on the provider.
                await runtime.BlindIndexer.EnsureAsync(cancellationToken).ConfigureAwait(false);
            }

            Encrypt(work);
            binding = TakeKeysForBinding(context, work);
        }
        finally
        {
            ReleaseKeys(work);
        }

        AssignOrRelease(context, work, binding);
        return binding;
    }

    private List<RecordWork> Collect(DbContext context)
    {
        // Added records reachable only through a navigation are tracked by change detection: find them first.
        if (context.ChangeTracker.AutoDetectChangesEnabled)
        {
            context.ChangeTracker.DetectChanges();
        }

        var detector = Detector(context);
        var work = new List<RecordWork>();
        foreach (var entry in context.GetService<IStateManager>().Entries)
        {
            var state = entry.EntityState;
            if (state is not (EntityState.Added or EntityState.Modified or EntityState.Unchanged))
            {
                continue;
            }

            var encrypted = runtime.Find(entry.EntityType);
            if (encrypted is null)
            {
                continue;
            }

            if (state != EntityState.Added && detector.Poisoned(entry.Entity) is { } poisoned)
            {
                throw new EnvelopeDecryptionException("The record was reloaded from stored data that failed authentication; it cannot be saved until it is read or replaced again. " + poisoned.Reason, poisoned.Entity, poisoned.Property, poisoned.KeyId, poisoned);
            }

            var wrappedKey = (byte[]?)entry[encrypted.KeyProperty];
            var snapshot = state == EntityState.Added ? null : detector.Find(entry.Entity, wrappedKey);
            var absent = state != EntityState.Unchanged && StoredAsAbsent(entry, encrypted);
            if (state == EntityState.Added || snapshot?.ReplacesStored == true)
            {
                // New, or Update() of a detached instance: every encrypted property under a fresh data key.
                work.Add(new RecordWork(entry, encrypted, changed: absent ? AllChanged(encrypted) : null) { SetsEveryValue = true, Absent = absent });
                continue;
            }

            // Read in this context, or attached (compared with the baseline taken at Attach; its stored key is
            // fetched if an encrypted value changed). Without either, nothing is known to have changed.
            if (snapshot is null)
            {
                continue;
            }

            if (snapshot.Bound is { } verified && StoredBoundChanged(entry, encrypted, verified) is { } column)
            {
                // The record was verified with other bound values than EF now holds as stored: Reload() or SetValues
                // brought in a bound column (a tenant id, say) the seal does not cover. Sealing the record over it,
                // partly or under a fresh key, would make that change authentic. This also refuses EF's "client
                // wins" resolution over another save that changed a bound column (its originals are that save's
                // values): saving over it would leave the record under that save's data key in a row whose bound
                // values it was not sealed with.
                throw new EnvelopeDecryptionException(
                    $"The stored value of '{column}', bound to the record (IsBoundToRecord), is not the value the record was read and verified with: " +
                    "it changed in the database and reached this context through Reload() or SetValues, and the record's seal does not cover it, so the record cannot be saved. " +
                    "Reload() it, or read it in a new context (a query refuses the row if it was tampered with), and apply the edit again.",
                    encrypted.Name);
            }

            if (!absent && wrappedKey is not null && snapshot.WrappedKey is not null && MovedBySelector(entry, encrypted, wrappedKey))
            {
                // An edit made the master-key selector choose another key for this record (its tenant column changed),
                // or it is still under a previous selector's key during a move. Read in this context, the instance
                // holds all its values: it gets a fresh data key under the chosen key and every value is written, so
                // the read check accepts it where it now belongs (keeping the data key would leave it under the old key).
                work.Add(new RecordWork(entry, encrypted, changed: null));
                continue;
            }

            bool[]? changed = null;
            for (var i = 0; i < encrypted.Properties.Length; i++)
            {
                // A ciphertext already marked modified may hold what an earlier SaveChanges encrypted before the
                // database failed; if the plaintext was since edited back, writing that ciphertext would store the
                // abandoned value. Re-encrypting from the current plaintext is always right. A value still in its
                // legacy plaintext column is encrypted on this save too (and the column emptied).
                //
                // Like EF, an edit is saved only once change detection has seen it (the detector then marks its
                // ciphertext modified): before every save, or when the application calls DetectChanges with
                // AutoDetectChangesEnabled off.
                var ciphertext = encrypted.Properties[i].Ciphertext;
                if ((entry.IsModified(ciphertext) && encrypted.Properties[i].Differs(entry.Entity, snapshot.Values[i]))
                    || (entry.IsModified(ciphertext) && !snapshot.Wrote(i, entry[ciphertext]))
                    || (encrypted.Properties[i].LegacyPlaintext is { } legacy && entry[legacy] is not null))
                {
                    changed ??= new bool[encrypted.Properties.Length];
                    changed[i] = true;
                }
            }

            if (absent && (snapshot.StoredWithoutKey ? changed is not null : wrappedKey is not null && !snapshot.StoredKeyUnknown))
            {
                // Every value of a record read (or saved) in this context became null: an encrypted one, or a plain one
                // beside encrypted nulls. Only then are all its stored values known to be null; an attached instance
                // may lack values the row holds, and takes the path below (which loads and verifies the stored row).
                // The update still compares the key column it read, so a concurrent save that gave the record a value
                // is reported as a conflict instead of being left keyless.
                work.Add(new RecordWork(entry, encrypted, AllChanged(encrypted)) { Absent = true, StoredKey = wrappedKey, Snapshot = snapshot });
                continue;
            }

            if (changed is null && Array.Exists(encrypted.BoundColumns, c => entry.IsModified(c.Property)))
            {
                // Only a bound column changed: the record keeps its values and gets a new seal over the new value.
                changed = new bool[encrypted.Properties.Length];
            }

            // An optional record stored as absent that a plain value makes present again: sealed now, with its encrypted
            // nulls, as it would have been had it never been empty (left without a key, it would read unsealed, and
            // RequireSealedRecords would refuse its row).
            var madePresent = snapshot.StoredWithoutKey && !absent && state == EntityState.Modified && encrypted.SharesRowOptionally;
            if ((changed is not null && (snapshot.StoredWithoutKey || wrappedKey is [EnvelopeFormat.Version, ..])) || madePresent)
            {
                // A row stored without a data key (its encrypted columns were added by a migration), or a version 1
                // record read in this context (the instance holds all its values): the edit gives it a fresh data key
                // and every encrypted value is written under it, in version 2 with a seal.
                work.Add(new RecordWork(entry, encrypted, changed: null) { ReadWithoutKey = snapshot.StoredWithoutKey });
            }
            else if (changed is not null)
            {
                work.Add(new RecordWork(entry, encrypted, changed) { StoredKey = snapshot.StoredKeyUnknown ? null : wrappedKey, Snapshot = snapshot });
            }
        }

        return work;
    }

    /// <summary>
    /// Whether the record is optional, shares its principal's row (an owned type, or table splitting) and holds no value
    /// at all. Plain EF stores NULL in each of its columns and reads the principal back without it (a null navigation);
    /// the record's key column is one of those columns, so such a record is stored without a key or ciphertext, and
    /// reads as absent too.
    /// </summary>
    /// <remarks>
    /// Nothing is lost: there is no value to protect. That a writer can make a present optional record read as absent
    /// by setting its columns to NULL is true of plain EF's columns as well (docs/SECURITY.md, "owned records that
    /// vanish"). A record that other records share the row with in turn is left as it was (EF's rule for it looks deeper):
    /// <see cref="EncryptedEntity.SharesRowOptionally"/>.
    /// </remarks>
    private static bool StoredAsAbsent(InternalEntityEntry entry, EncryptedEntity encrypted)
    {
        // A record with a legacy plaintext column keeps its key and seal: the seal lists the properties that are NULL,
        // which is what refuses a value written into the legacy column afterwards (docs/SECURITY.md, item 5).
        if (!encrypted.SharesRowOptionally || encrypted.HasLegacyPlaintext)
        {
            return false;
        }

        if (Array.Exists(encrypted.Properties, p => p.Capture(entry.Entity) is not null))
        {
            return false;
        }

        foreach (var property in entry.EntityType.GetProperties())
        {
            if (!property.IsPrimaryKey() && !IsEncryptionColumn(encrypted, property) && entry[property] is not null)
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsEncryptionColumn(EncryptedEntity encrypted, IProperty property) =>
        property == encrypted.KeyProperty
        || Array.Exists(encrypted.Properties, p => p.Ciphertext == property || p.Index == property || p.LegacyPlaintext == property);

    private static bool[] AllChanged(EncryptedEntity encrypted) => [.. encrypted.Properties.Select(_ => true)];

    /// <summary>
    /// Refuses a value the save would write that does not fit the facets configured for the plain column (a maximum
    /// length, a decimal's precision and scale): the database checks them for a plain column (refusing, or rounding a
    /// decimal) and cannot for ciphertext. Before any key is fetched or value encrypted, so nothing is written.
    /// </summary>
    private static void RefuseMisfits(List<RecordWork> work)
    {
        foreach (var item in work)
        {
            var properties = item.Encrypted.Properties;
            for (var i = 0; i < properties.Length; i++)
            {
                // A value the save writes as the application set it: every value of a new record or of Update(), an
                // edited one otherwise. A record re-keyed whole (a selector move, an upgrade) also writes values nobody
                // edited, which may predate these checks: plain EF would not write those.
                var written = item.SetsEveryValue
                    || (item.Changed is { } changed ? changed[i] : item.Entry.IsModified(properties[i].Ciphertext));
                if (written && properties[i].Misfit(item.Entry.Entity) is { } misfit)
                {
                    var key = item.Entry.EntityState == EntityState.Added ? null : item.Entry.EntityType.FindPrimaryKey()?.Properties;
                    var row = key is null ? "a new record" : $"the record with key ({Diagnostics.UntrustedText.Escape(string.Join(", ", key.Select(p => $"{p.Name}={item.Entry[p]}")))})";
                    throw new InvalidOperationException(
                        $"The value of encrypted property '{item.Entry.EntityType.DisplayName()}.{properties[i].Name}' in {row} {misfit}. The database checks this for a plain column and cannot for ciphertext, so EfEnvelope refuses the save; nothing was written. Use a value that fits, or change the configuration.");
                }
            }
        }
    }

    private async Task AcquireKeysAsync(List<RecordWork> work, CancellationToken cancellationToken)
    {
        var direct = runtime.Settings.Mode == KeyWrappingMode.Direct;
        var selector = runtime.Settings.KeySelector;

        // New records: one KEK per (entity, master key) covers them all in the default mode.
        var groups = new Dictionary<(string Entity, string KeyId), List<RecordWork>>();
        foreach (var item in work)
        {
            if (item.Absent)
            {
                continue;
            }

            if (item.IsNew)
            {
                var keyId = (selector is null ? null : selector(SelectorSubject(item.Entry))) ?? runtime.Provider.PrimaryKeyId;
                if (!groups.TryGetValue((item.Encrypted.Name, keyId), out var members))
                {
                    groups[(item.Encrypted.Name, keyId)] = members = [];
                }

                members.Add(item);
            }
            else
            {
                // An attached record whose plaintext was edited: its data key and other fields are only in the
                // database, and are checked against the record's seal before the key is reused (EncryptOne).
                if (item.StoredKey is null)
                {
                    item.StoredRow = await StoredKeys.LoadAsync(item.Entry, item.Encrypted, cancellationToken).ConfigureAwait(false);
                    item.StoredKey = (byte[])item.StoredRow[0]!;
                }

                if (!WrappedKeyBlob.TryParse(item.StoredKey, out var blob, out var error))
                {
                    throw new EnvelopeDecryptionException(error!, item.Encrypted.Name);
                }

                if (!blob.IsSealed)
                {
                    throw new InvalidOperationException(
                        $"An encrypted property of '{item.Encrypted.Name}' was edited on an attached instance whose stored record is in format version 1, which has no seal to check the stored values against. Read the record in this context before editing it, use Update() to replace all of its encrypted values, or upgrade the table with EnvelopeKeyLifecycle.ReencryptAsync.");
                }

                item.StoredBlob = blob;
                item.Key = await runtime.Cache.GetAsync(item.Encrypted.Name, blob, item.Encrypted.LastKey, cancellationToken).ConfigureAwait(false);
            }
        }

        foreach (var ((entity, keyId), members) in groups)
        {
            if (!runtime.Provider.IsKeyConfigured(keyId))
            {
                throw new MasterKeyException($"The master-key selector chose key '{keyId}' for entity '{entity}', which provider '{runtime.Provider.Name}' is not configured to use.", runtime.Provider.Name, keyId, entity);
            }

            if (direct)
            {
                foreach (var item in members)
                {
                    var recordId = new byte[EnvelopeFormat.RecordIdSize];
                    runtime.Random.Fill(recordId);
                    item.RecordId = recordId;
                    item.DirectKey = await runtime.Gateway.GenerateDataKeyAsync(keyId, runtime.Cache.ContextFor(entity, recordId, direct: true), cancellationToken).ConfigureAwait(false);
                }

                continue;
            }

            var allotments = await runtime.Cache.ReserveWriteKeysAsync(entity, keyId, members.Count, cancellationToken).ConfigureAwait(false);
            var next = 0;
            foreach (var (key, records) in allotments)
            {
                // Each record holds its own lease so that releasing them one by one balances the reservation.
                for (var i = 0; i < records; i++)
                {
                    if (i > 0)
                    {
                        key.AddLease();
                    }

                    members[next++].Key = key;
                }
            }
        }
    }

    // The first bound column ("Type.Property") whose value EF holds as stored is not the one the record was verified with.
    private static string? StoredBoundChanged(InternalEntityEntry entry, EncryptedEntity encrypted, object?[] verified)
    {
        for (var i = 0; i < encrypted.BoundColumns.Length; i++)
        {
            var property = encrypted.BoundColumns[i].Property;
            if (!System.Collections.StructuralComparisons.StructuralEqualityComparer.Equals(entry.GetOriginalValue(property), verified[i]))
            {
                return $"{entry.EntityType.DisplayName()}.{property.Name}";
            }
        }

        return null;
    }

    /// <summary>Whether a modified record (or one whose root owner is modified) is under another key than the selector now chooses.</summary>
    /// <remarks>Only with a selector, and only for modified aggregates: a save does not move records it does not write.</remarks>
    private bool MovedBySelector(InternalEntityEntry entry, EncryptedEntity encrypted, byte[] wrappedKey)
    {
        if (runtime.Settings.KeySelector is not { } selector || !WrappedKeyBlob.TryParse(wrappedKey, out var blob, out _))
        {
            return false;
        }

        var root = entry;
        var modified = entry.EntityState == EntityState.Modified;
        while (root.EntityType.FindOwnership() is { } ownership && root.StateManager.FindPrincipal(root, ownership) is { } owner)
        {
            root = owner;
            modified |= owner.EntityState == EntityState.Modified;
        }

        return modified && !runtime.KeyNames.IsSame(blob.KeyId, selector(root.Entity) ?? runtime.Provider.PrimaryKeyId, encrypted.Name);
    }

    /// <summary>What the master-key selector is asked about: the entity itself, or for an owned record its root owner.</summary>
    /// <remarks>
    /// An owned record belongs to its owner's data subject: asking about the owner puts an address under the same
    /// per-subject key as its patient, so destroying that key (crypto-shredding) covers the owned records too.
    /// </remarks>
    internal static object SelectorSubject(InternalEntityEntry entry)
    {
        while (entry.EntityType.FindOwnership() is { } ownership && entry.StateManager.FindPrincipal(entry, ownership) is { } owner)
        {
            entry = owner;
        }

        return entry.Entity;
    }

    private void Encrypt(List<RecordWork> work)
    {
        if (work.Count >= ParallelThreshold && Environment.ProcessorCount > 1)
        {
            try
            {
                Parallel.ForEach(System.Collections.Concurrent.Partitioner.Create(0, work.Count), range =>
                {
                    for (var i = range.Item1; i < range.Item2; i++)
                    {
                        EncryptOne(work[i]);
                    }
                });
            }
            catch (AggregateException ex)
            {
                // Parallel.ForEach wraps what a record's encryption threw; a large save reports the same exception
                // as a small (serial) one.
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex.InnerExceptions[0]).Throw();
            }
        }
        else
        {
            foreach (var item in work)
            {
                EncryptOne(item);
            }
        }
    }

    private void EncryptOne(RecordWork item)
    {
        var encrypted = item.Encrypted;
        var entity = item.Entry.Entity;
        item.Fields = new byte[]?[encrypted.Properties.Length];
        if (item.Absent)
        {
            // Stored as NULLs, without a key (StoredAsAbsent).
            item.Captured = new object?[encrypted.Properties.Length];
            return;
        }

        var entry = item.Entry;
        // A value the database generates in this save is not known yet: a temporary value, or, on a record still to be
        // inserted, the value an earlier save that did not accept its changes got back (EF discards it and has the
        // database generate a new one).
        var binding = encrypted.BindingOf(p => entry[p],
            known: p => !entry.HasTemporaryValue(p) && !(entry.EntityState == EntityState.Added && entry.HasStoreGeneratedValue(p)));
        item.Flags = binding.Flags;
        if (item.IsNew)
        {
            if (item.DirectKey is { } directKey)
            {
                item.NewWrappedKey = encrypted.EncryptNewDirect(entity, directKey, item.RecordId!, runtime.Provider.Name, runtime.Random, item.Fields, binding);
                runtime.Cache.RememberWrittenDataKey(encrypted.Name, item.NewWrappedKey, directKey);
            }
            else
            {
                item.NewWrappedKey = encrypted.EncryptNew(entity, item.Key!, runtime.Random, item.Fields, binding);
            }
        }
        else
        {
            var blob = item.StoredBlob;
            var cipher = EnvelopeRuntime.OpenDataKey(encrypted, blob, item.Key!);
            try
            {
                object?[] storedFields;
                if (item.StoredRow is { } row)
                {
                    // Attached: the row just loaded must be the record its key was sealed with, or an edit would
                    // re-encrypt under a data key moved in from another record (and the result would read clean there).
                    EnvelopeRuntime.VerifySeal(encrypted, blob, cipher, row, item.Key!.KeyId);
                    storedFields = row[1..(1 + encrypted.Properties.Length)];
                    item.TokensHeld = TokensHeld(encrypted, blob, cipher, row, item.Key!.KeyId, item.Snapshot!.Values);
                }
                else
                {
                    // Read in this context: the ciphertexts in the entry are the ones verified when it was read.
                    storedFields = [.. encrypted.Properties.Select(p => entry[p.Ciphertext])];
                }

                item.NewWrappedKey = encrypted.EncryptChanged(entity, cipher, blob, runtime.Random, item.Fields, item.Changed!, storedFields, binding);
            }
            finally
            {
                EnvelopeRuntime.CloseDataKey(blob, item.Key!, cipher);
            }
        }

        var values = new object?[encrypted.Properties.Length];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = item.IsNew || item.Changed![i] ? encrypted.Properties[i].Capture(entity) : item.Snapshot!.Values[i];
        }

        item.Captured = values;
    }

    /// <summary>
    /// For an attached record, which encrypted concurrency tokens still hold in the stored row the value the instance
    /// was attached with (null when the entity type has none). Plain EF compares the attached value in its update; the
    /// update here compares ciphertext, so the stored token is decrypted and compared once, before the save.
    /// </summary>
    private static bool[]? TokensHeld(EncryptedEntity encrypted, in WrappedKeyBlob blob, System.Security.Cryptography.AesGcm cipher, object?[] row, string keyId, object?[] attached)
    {
        bool[]? held = null;
        for (var i = 0; i < encrypted.Properties.Length; i++)
        {
            if (encrypted.Properties[i].Ciphertext.IsConcurrencyToken)
            {
                held ??= new bool[encrypted.Properties.Length];
                held[i] = encrypted.Properties[i].StoredValueEquals((byte[]?)row[1 + i], cipher, blob.RecordId, keyId, blob.Version, attached[i]);
            }
        }

        return held;
    }

    /// <summary>
    /// The records sealed without a key the database generates, when <c>BindStoreGeneratedKeys()</c> asks for them to
    /// be bound after their insert: they keep their keys (the binding releases them), and the statements that will
    /// update them are known now, before anything is assigned or written.
    /// </summary>
    private GeneratedKeyBinding? TakeKeysForBinding(DbContext context, List<RecordWork> work)
    {
        if (!runtime.Settings.BindStoreGeneratedKeys)
        {
            return null;
        }

        List<GeneratedKeyBinding.Record>? records = null;
        Dictionary<EncryptedEntity, RecordTable>? tables = null;
        foreach (var item in work)
        {
            // A JSON-mapped owned record is a part of its owner's document, not a row: it is bound on its next write.
            if (!item.IsNew || !item.Encrypted.LeavesKeyUnbound(item.Flags) || item.Entry.EntityType.IsMappedToJson())
            {
                continue;
            }

            tables ??= [];
            if (!tables.TryGetValue(item.Encrypted, out var table))
            {
                tables[item.Encrypted] = table = GeneratedKeyBinding.TableFor(context, item.Encrypted);
            }

            // The blob the INSERT writes is sealed without the key, so it would verify in any row of the table; it can
            // outlive the save in an audit table, a temporal history or a replication log. Its seal is voided here
            // (zeros, which GMAC gives with probability 2^-128): it verifies nowhere, and only the blob the binding
            // writes in the same transaction is a record.
            item.NewWrappedKey.AsSpan(item.NewWrappedKey!.Length - EnvelopeFormat.SealSize).Clear();
            (records ??= []).Add(new(item.Entry, item.Encrypted, table, item.Key, item.DirectKey, item.Captured!));
        }

        if (records is null)
        {
            return null;
        }

        // Taken only once every statement is known, so that a refusal above leaves every key to ReleaseKeys.
        foreach (var item in work)
        {
            if (records.Exists(r => ReferenceEquals(r.Entry, item.Entry)))
            {
                item.Key = null;
                item.DirectKey = null;
            }
        }

        return new GeneratedKeyBinding(runtime, context, records);
    }

    // The binding holds keys from here on: if assigning fails, nothing will dispose it but this.
    private static void AssignOrRelease(DbContext context, List<RecordWork> work, GeneratedKeyBinding? binding)
    {
        try
        {
            Assign(context, work);
        }
        catch
        {
            binding?.Dispose();
            throw;
        }
    }

    private static void ReleaseKeys(List<RecordWork> work)
    {
        foreach (var item in work)
        {
            item.Key?.Release();
            item.Key = null;
            item.DirectKey?.Dispose();
            item.DirectKey = null;
        }
    }

    private static void Assign(DbContext context, List<RecordWork> work)
    {
        var detector = Detector(context);
        detector.Assigning = true;
        try
        {
            foreach (var item in work)
            {
                var entry = item.Entry;
                var encrypted = item.Encrypted;
                detector.RememberForRestore(entry, encrypted.KeyProperty);
                if (item.StoredRow is { } row)
                {
                    // The key and ciphertext fetched for an attached record become its known stored values (the new
                    // seal replaces the key). The ciphertext this save does not rewrite must be in the entry too: the
                    // record's next edit in this context seals over the entry's ciphertext, and an attached instance
                    // has none (or, after a failed insert, not the stored row's).
                    entry.SetOriginalValue(encrypted.KeyProperty, item.StoredKey);
                    for (var i = 0; i < encrypted.Properties.Length; i++)
                    {
                        if (!item.Changed![i])
                        {
                            var ciphertext = encrypted.Properties[i].Ciphertext;
                            detector.RememberForRestore(entry, ciphertext);
                            entry[ciphertext] = row[1 + i];
                            entry.SetOriginalValue(ciphertext, row[1 + i]);
                            entry.SetPropertyModified(ciphertext, changeState: true, isModified: false);
                        }
                    }
                }

                entry[encrypted.KeyProperty] = item.NewWrappedKey;

                for (var i = 0; i < encrypted.Properties.Length; i++)
                {
                    if (item.IsNew || item.Changed![i])
                    {
                        var property = encrypted.Properties[i];
                        detector.RememberForRestore(entry, property.Ciphertext);
                        entry[property.Ciphertext] = item.Fields![i];
                        if (property.Index is { } index)
                        {
                            detector.RememberForRestore(entry, index);
                            detector.RememberIndexValue(entry, index);
                            // The plaintext goes into the index property in memory only; its converter stores the HMAC.
                            // Marked modified explicitly: a value changed to null must clear the old index too.
                            entry[index] = item.Captured![i];
                            entry.SetPropertyModified(index);
                        }

                        // Migration from plaintext: once the value is encrypted, its plaintext copy goes.
                        if (property.LegacyPlaintext is { } legacy && entry[legacy] is not null)
                        {
                            entry[legacy] = null;
                        }
                    }
                }

                if (item.ReadWithoutKey)
                {
                    // A value null when the row was read is not written again (EF writes only what changed), so the seal
                    // is valid only while the row is still without a key: a concurrent save that gave the record a
                    // value (and a key) would otherwise keep its ciphertext beside a seal saying NULL, lost for good.
                    // The update requires the key column to be NULL still, and reports a conflict otherwise.
                    entry.SetOriginalValue(encrypted.KeyProperty, null);
                    detector.RequireStoredKey(entry);
                }

                if (!item.IsNew && item.StoredKey is not null)
                {
                    // Sealed over ciphertext this save does not write: only valid while the row still holds the key
                    // column it was sealed against, which the update compares (KeyConditionModificationCommand). Set
                    // last: on an attached entry, the assignments above can replace the original EF keeps for the key
                    // column with its new value (seen with EF Core 10: the update then compared the new key).
                    entry.SetOriginalValue(encrypted.KeyProperty, item.StoredKey);
                    detector.RequireStoredKey(entry);
                    if (item.TokensHeld is { } held)
                    {
                        // An encrypted concurrency token of an attached record: the update compares the stored
                        // ciphertext when it holds the attached value, and a value never stored when it does not, so
                        // that EF reports the conflict as it would for the plaintext token.
                        for (var i = 0; i < held.Length; i++)
                        {
                            if (encrypted.Properties[i].Ciphertext.IsConcurrencyToken)
                            {
                                entry.SetOriginalValue(encrypted.Properties[i].Ciphertext, held[i] ? item.StoredRow![1 + i] : StaleToken);
                            }
                        }
                    }
                }

                detector.RememberAfterSave(entry.Entity, new RecordSnapshot(item.NewWrappedKey, item.Captured!, storedWithoutKey: item.Absent, bound: RecordSnapshot.BoundOf(entry, encrypted)));
                if (EnvelopeTelemetry.RecordsEncryptedCounter.Enabled && !item.Absent)
                {
                    EnvelopeTelemetry.RecordsEncryptedCounter.Add(1, encrypted.EntityTag);
                }
            }
        }
        finally
        {
            detector.Assigning = false;
        }
    }

    private static EncryptionChangeDetector Detector(DbContext context) =>
        context.GetService<IChangeDetector>() as EncryptionChangeDetector
        ?? throw new InvalidOperationException("EfEnvelope's change detector is not installed: another extension replaced IChangeDetector.");

    // One byte: never a stored value (a ciphertext is at least 29 bytes long, a migration's default is empty).
    private static readonly byte[] StaleToken = [0xFF];

    private sealed class RecordWork(InternalEntityEntry entry, EncryptedEntity encrypted, bool[]? changed)
    {
        public InternalEntityEntry Entry { get; } = entry;

        public EncryptedEntity Encrypted { get; } = encrypted;

        /// <summary>Null for a record that gets a fresh data key; else which properties to re-encrypt.</summary>
        public bool[]? Changed { get; } = changed;

        public bool IsNew => Changed is null;

        /// <summary>A record read without a data key, now sealed under a fresh one: its update requires the key column to be NULL still.</summary>
        public bool ReadWithoutKey { get; init; }

        /// <summary>An optional record sharing its principal's row without any value, stored as NULLs without a key (<see cref="StoredAsAbsent"/>).</summary>
        public bool Absent { get; init; }

        /// <summary>A new record, or Update() of a detached instance: the application set every value the save writes.</summary>
        public bool SetsEveryValue { get; init; }

        public byte[]? StoredKey { get; set; }

        /// <summary>An attached record's stored columns, loaded to reuse its key (<see cref="EnvelopeRuntime.StoredProperties"/> order).</summary>
        public object?[]? StoredRow { get; set; }

        public RecordSnapshot? Snapshot { get; init; }

        public WrappedKeyBlob StoredBlob { get; set; }

        public CachedKey? Key { get; set; }

        public GeneratedDataKey? DirectKey { get; set; }

        public byte[]? RecordId { get; set; }

        public byte[]? NewWrappedKey { get; set; }

        public byte[]?[]? Fields { get; set; }

        /// <summary>For an attached record, which encrypted concurrency tokens the stored row still holds (<see cref="TokensHeld"/>).</summary>
        public bool[]? TokensHeld { get; set; }

        public object?[]? Captured { get; set; }

        /// <summary>The binding flags the record was sealed with.</summary>
        public byte Flags { get; set; }
    }
}
