using System.Security.Cryptography;
using EfEnvelope.ChangeTracking;
using EfEnvelope.Crypto;
using EfEnvelope.Infrastructure;
using EfEnvelope.KeyManagement;
using EfEnvelope.Lifecycle;
using EfEnvelope.Metadata;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Storage;

namespace EfEnvelope.Update;

/// <summary>
/// With <c>BindStoreGeneratedKeys()</c>: seals the records of a save whose key the database generates again once the
/// inserts have returned it, and writes their key column in the same transaction (docs/FORMAT.md, "Record seal").
/// </summary>
/// <remarks>
/// <para>
/// A record is encrypted and sealed before EF builds its <c>INSERT</c>, when an identity key is still a temporary value:
/// its seal then leaves the key out (binding flag bit 0, or bit 3 for an owned collection item, is 0). After the
/// inserts, this re-seals each such record over its generated key with the data key it was encrypted under (held
/// since: a second unwrap would cost a provider call in direct mode) and updates only its key column with the
/// lifecycle jobs' compare-and-swap write (<see cref="RecordTable.ReplaceKey"/>: by primary key and the blob just
/// inserted, so that a row changed in between is not overwritten; batched where the provider has ADO.NET batches).
/// The fields and entries stay as they are.
/// </para>
/// <para>
/// Atomicity: the inserts and the updates share one transaction (the application's when one is open, else one begun
/// here inside the execution strategy, so that a retrying strategy retries the whole save). If anything fails, the
/// transaction is rolled back and the generated key values are discarded as EF discards them on a failed save, so the
/// entries can be saved again. JSON-mapped owned records live inside their owner's document and are not updated here:
/// they are bound to their owner's key on their next write (docs/SECURITY.md).
/// </para>
/// </remarks>
#pragma warning disable EF1001 // InternalEntityEntry: the entries EF saved, as SaveEncryption sees them
internal sealed class GeneratedKeyBinding : IDisposable
{
    private readonly EnvelopeRuntime _runtime;
    private readonly DbContext _context;
    private const string SavepointName = "EfEnvelopeBindKeys";

    private readonly List<Record> _records;
    private (byte[] Inserted, byte[] Resealed)[]? _assigned;

    /// <param name="runtime">The configuration's runtime.</param>
    /// <param name="context">The context saving.</param>
    /// <param name="records">The records to bind; their keys are released by <see cref="Dispose"/>.</param>
    public GeneratedKeyBinding(EnvelopeRuntime runtime, DbContext context, List<Record> records)
    {
        _runtime = runtime;
        _context = context;
        _records = records;
    }

    /// <summary>A record sealed without its generated key, with the key its data key is opened with.</summary>
    /// <param name="Entry">The record's entry.</param>
    /// <param name="Encrypted">Its encrypted type.</param>
    /// <param name="Table">Where its key column is updated.</param>
    /// <param name="Kek">A lease on the KEK that wrapped its data key (default mode).</param>
    /// <param name="DirectKey">Its data key as the provider generated it (direct mode).</param>
    /// <param name="Captured">The plaintext it was encrypted from, for the change detector's snapshot.</param>
    internal sealed record Record(InternalEntityEntry Entry, EncryptedEntity Encrypted, RecordTable Table, CachedKey? Kek, GeneratedDataKey? DirectKey, object?[] Captured);

    /// <summary>Where a type's key column is updated; checked before anything is assigned or written.</summary>
    /// <exception cref="InvalidOperationException">No transaction can hold the inserts and the updates, or the type's key column is not in one table with its primary key.</exception>
    public static RecordTable TableFor(DbContext context, EncryptedEntity encrypted)
    {
        if (context.Database.AutoTransactionBehavior == AutoTransactionBehavior.Never && context.Database.CurrentTransaction is null
            && System.Transactions.Transaction.Current is null)
        {
            throw new InvalidOperationException(
                $"'{encrypted.Name}' has a key the database generates, and BindStoreGeneratedKeys() seals it in the same transaction as its insert, but this context's AutoTransactionBehavior is Never and no transaction is open. Open a transaction around SaveChanges, or use another AutoTransactionBehavior.");
        }

        // A column the database sets on every update (a row version, PostgreSQL's xmin) would change under the seal
        // update after EF read it back from the insert: the entity would hold a stale concurrency token.
        if (encrypted.EntityType.GetProperties().FirstOrDefault(p => (p.ValueGenerated & (ValueGenerated.OnUpdate | ValueGenerated.OnUpdateSometimes)) != 0) is { } updated)
        {
            throw Refusal(encrypted, $"its property '{updated.Name}' is set by the database on every update (a row version), and the seal update after the insert would leave the inserted entity holding a stale value.");
        }

        if (encrypted.EntityType.GetUpdateStoredProcedure() is not null)
        {
            throw Refusal(encrypted, "it is updated through a stored procedure, which the seal update would bypass.");
        }

        try
        {
            return RecordTable.ForKeyColumn(encrypted, context.GetService<ISqlGenerationHelper>());
        }
        catch (NotSupportedException ex)
        {
            throw Refusal(encrypted, ex.Message, ex);
        }
    }

    private static InvalidOperationException Refusal(EncryptedEntity encrypted, string reason, Exception? inner = null) =>
        new($"BindStoreGeneratedKeys() cannot bind the generated key of '{encrypted.Name}': {reason} Give the type a key set on the client (a Guid, a sequence or HiLo), which is bound at insert, or configure this context without the option.", inner);

    /// <summary>Runs EF's save and the binding updates as one unit, then accepts the save if asked.</summary>
    public int Save(Func<int> save, bool acceptAllChangesOnSuccess, Action acceptAllChanges)
    {
        // With async false every await in RunAsync is on a completed task: this never blocks on one.
        var rows = OwnsTransaction(_context.Database)
            ? _context.Database.CreateExecutionStrategy().Execute(
                (Binding: this, Save: save),
                (_, state) => state.Binding.InOwnTransactionAsync(_ => Task.FromResult(state.Save()), async: false, CancellationToken.None).GetAwaiter().GetResult(),
                verifySucceeded: null)
            : InApplicationTransactionAsync(_ => Task.FromResult(save()), async: false, CancellationToken.None).GetAwaiter().GetResult();
        if (acceptAllChangesOnSuccess)
        {
            acceptAllChanges();
        }

        return rows;
    }

    /// <summary>The async form of <see cref="Save"/>.</summary>
    public async Task<int> SaveAsync(Func<CancellationToken, Task<int>> save, bool acceptAllChangesOnSuccess, Action acceptAllChanges, CancellationToken cancellationToken)
    {
        var rows = OwnsTransaction(_context.Database)
            ? await _context.Database.CreateExecutionStrategy().ExecuteAsync(
                (Binding: this, Save: save),
                (_, state, token) => state.Binding.InOwnTransactionAsync(state.Save, async: true, token),
                verifySucceeded: null,
                cancellationToken).ConfigureAwait(false)
            : await InApplicationTransactionAsync(save, async: true, cancellationToken).ConfigureAwait(false);
        if (acceptAllChangesOnSuccess)
        {
            acceptAllChanges();
        }

        return rows;
    }

    public void Dispose()
    {
        foreach (var record in _records)
        {
            record.Kek?.Release();
            record.DirectKey?.Dispose();
        }
    }

    private static bool OwnsTransaction(DatabaseFacade database) =>
        database.CurrentTransaction is null && System.Transactions.Transaction.Current is null;

    // A failure anywhere up to the commit (the inserts, the updates, the commit itself) leaves the entries as EF
    // leaves them after a failed save: generated key values discarded, so that a retry or a later save generates
    // them again instead of sending them as explicit values, and the blobs as encrypted (Failed).
    private async Task<int> InOwnTransactionAsync(Func<CancellationToken, Task<int>> save, bool async, CancellationToken cancellationToken)
    {
        try
        {
            var database = _context.Database;
            var transaction = async ? await database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false) : database.BeginTransaction();
            try
            {
                var rows = await SaveAndBindAsync(save, async, cancellationToken).ConfigureAwait(false);
                await StepAsync(transaction, (t, token) => t.CommitAsync(token), t => t.Commit(), async, cancellationToken).ConfigureAwait(false);
                return rows;
            }
            finally
            {
                if (async)
                {
                    await transaction.DisposeAsync().ConfigureAwait(false);
                }
                else
                {
                    transaction.Dispose();
                }
            }
        }
        catch
        {
            Failed();
            throw;
        }
    }

    // In the application's transaction, which it commits or rolls back. EF rolls a failed save back to a savepoint of
    // its own; the inserts and the updates get one around both, so that a failed update does not leave the inserts
    // behind in the application's transaction.
    private async Task<int> InApplicationTransactionAsync(Func<CancellationToken, Task<int>> save, bool async, CancellationToken cancellationToken)
    {
        var savepoint = _context.Database.CurrentTransaction is { SupportsSavepoints: true } transaction ? transaction : null;
        await StepAsync(savepoint, (t, token) => t.CreateSavepointAsync(SavepointName, token), t => t.CreateSavepoint(SavepointName), async, cancellationToken).ConfigureAwait(false);
        try
        {
            var rows = await SaveAndBindAsync(save, async, cancellationToken).ConfigureAwait(false);
            await StepAsync(savepoint, (t, token) => t.ReleaseSavepointAsync(SavepointName, token), t => t.ReleaseSavepoint(SavepointName), async, cancellationToken).ConfigureAwait(false);
            return rows;
        }
        catch
        {
            await StepAsync(savepoint, (t, token) => t.RollbackToSavepointAsync(SavepointName, token), t => t.RollbackToSavepoint(SavepointName), async, CancellationToken.None).ConfigureAwait(false);
            Failed();
            throw;
        }
    }

    // One step on a transaction, as the async flag says (commit, or a savepoint's create, release or rollback).
    private static async Task StepAsync(
        IDbContextTransaction? transaction, Func<IDbContextTransaction, CancellationToken, Task> asyncStep, Action<IDbContextTransaction> step, bool async, CancellationToken cancellationToken)
    {
        if (transaction is null)
        {
            return;
        }

        if (async)
        {
            await asyncStep(transaction, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            step(transaction);
        }
    }

    private async Task<int> SaveAndBindAsync(Func<CancellationToken, Task<int>> save, bool async, CancellationToken cancellationToken)
    {
        var rows = await save(cancellationToken).ConfigureAwait(false);
        var blobs = Reseal();
        var writes = Writes(blobs);
        Check(async ? await RecordWrite.ExecuteAsync(_context, writes, cancellationToken).ConfigureAwait(false) : RecordWrite.Execute(_context, writes));
        Assign(blobs);
        return rows;
    }

    // Each record's new blob, sealed over the key values the database has now generated.
    private (byte[] Inserted, byte[] Resealed)[] Reseal()
    {
        var blobs = new (byte[], byte[])[_records.Count];
        for (var i = 0; i < _records.Count; i++)
        {
            var (entry, encrypted, _, kek, directKey, _) = _records[i];
            var stored = (byte[])entry[encrypted.KeyProperty]!;
            if (!WrappedKeyBlob.TryParse(stored, out var blob, out var error))
            {
                throw new EnvelopeDecryptionException(error!, encrypted.Name);
            }

            var binding = encrypted.BindingOf(p => entry[p], known: p => !entry.HasTemporaryValue(p));
            if (encrypted.LeavesKeyUnbound(binding.Flags))
            {
                throw new InvalidOperationException($"The key of a '{encrypted.Name}' record was not generated by its insert, so its seal cannot bind it.");
            }

            var dataKey = directKey is not null ? new AesGcm(directKey.Plaintext, EnvelopeFormat.TagSize) : encrypted.OpenDataKey(blob, kek!);
            using (dataKey)
            {
                blobs[i] = (stored, encrypted.Reseal(blob, dataKey, _runtime.Random, binding));
            }
        }

        return blobs;
    }

    // Each record's compare-and-swap write: its entry still holds the key values and the blob its insert wrote.
    private List<RecordWrite> Writes((byte[] Inserted, byte[] Resealed)[] blobs)
    {
        var writes = new List<RecordWrite>(_records.Count);
        for (var i = 0; i < _records.Count; i++)
        {
            writes.Add(_records[i].Table.ReplaceKey(_context.Entry(_records[i].Entry.Entity), blobs[i].Resealed));
        }

        return writes;
    }

    private void Check(int[] affected)
    {
        // Each write matches its row by key and by the blob the insert just wrote: anything else means the row was
        // changed or removed in between (a trigger), and the save must not commit a record sealed elsewhere.
        var missed = Array.FindIndex(affected, rows => rows != 1);
        if (missed >= 0)
        {
            throw new DbUpdateConcurrencyException(
                $"Binding its generated key into the seal of an inserted '{_records[missed].Encrypted.Name}' record updated {affected[missed]} rows instead of 1: the row was changed or removed between its insert and its seal. The save was rolled back.",
                [_records[missed].Entry]);
        }
    }

    // The new blobs are the stored ones now, in the entries and in the change detector's snapshots, which must name
    // them or the next save would take the tracked record for one changed outside.
    private void Assign((byte[] Inserted, byte[] Resealed)[] blobs)
    {
        _assigned = blobs;
        SetKeys(blobs, resealed: true);
    }

    private void SetKeys((byte[] Inserted, byte[] Resealed)[] blobs, bool resealed)
    {
        var detector = (EncryptionChangeDetector)_context.GetService<IChangeDetector>();
        detector.Assigning = true;
        try
        {
            for (var i = 0; i < _records.Count; i++)
            {
                var record = _records[i];
                var blob = resealed ? blobs[i].Resealed : blobs[i].Inserted;
                record.Entry[record.Encrypted.KeyProperty] = blob;
                if (resealed)
                {
                    detector.RememberAfterSave(record.Entry.Entity, new RecordSnapshot(blob, record.Captured, bound: RecordSnapshot.BoundOf(record.Entry, record.Encrypted)));
                }
            }
        }
        finally
        {
            detector.Assigning = false;
        }
    }

    // A blob sealed over key values the failed save generated must not stay in the entries: a retry would insert it
    // again, and a later insert can be given the same key values. The inserted blob (whose seal is void) goes back.
    private void Failed()
    {
        if (_assigned is { } blobs)
        {
            SetKeys(blobs, resealed: false);
            _assigned = null;
        }

        DiscardGeneratedValues();
    }

    // What EF does for the entries of a save that failed: the next attempt generates the keys again.
    private void DiscardGeneratedValues()
    {
        foreach (var entry in _context.GetService<IStateManager>().Entries)
        {
            if (entry.EntityState is EntityState.Added or EntityState.Modified or EntityState.Deleted)
            {
                entry.DiscardStoreGeneratedValues();
            }
        }
    }
}
#pragma warning restore EF1001
