using System.Security.Cryptography;
using System.Text;
using EfEnvelope.Crypto;
using EfEnvelope.KeyManagement;
using EfEnvelope.Metadata;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Storage;

namespace EfEnvelope.Internal;

/// <summary>
/// With <c>BindStoreGeneratedKeys()</c>: seals the records of a save whose key the database generates again once the
/// inserts have returned it, and writes their key column in the same transaction (docs/FORMAT.md, "Record seal").
/// </summary>
/// <remarks>
/// <para>
/// A record is encrypted and sealed before EF builds its <c>INSERT</c>, when an identity key is still a temporary value:
/// its seal then leaves the key out (binding flag bit 0, or bit 3 for an owned collection item, is 0). After the
/// inserts, this re-seals each such record over its generated key with the data key it was encrypted under (held
/// since: a second unwrap would cost a provider call in direct mode) and updates only its key column, comparing the
/// blob just inserted so that a row changed in between is not overwritten. The fields and entries stay as they are.
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
    // Statements per command: bounded so that a command stays well under every provider's parameter limit
    // (SQL Server: 2,100) with composite keys.
    private const int StatementsPerCommand = 100;

    private readonly EnvelopeRuntime _runtime;
    private readonly DbContext _context;
    private readonly List<Record> _records;

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
    /// <param name="Statement">Where its key column is updated.</param>
    /// <param name="Kek">A lease on the KEK that wrapped its data key (default mode).</param>
    /// <param name="DirectKey">Its data key as the provider generated it (direct mode).</param>
    /// <param name="Captured">The plaintext it was encrypted from, for the change detector's snapshot.</param>
    internal sealed record Record(InternalEntityEntry Entry, EncryptedEntity Encrypted, KeyColumnUpdate Statement, CachedKey? Kek, GeneratedDataKey? DirectKey, object?[] Captured);

    /// <summary>The statement that updates a type's key column; checked before anything is encrypted or written.</summary>
    /// <exception cref="InvalidOperationException">No transaction can hold the inserts and the updates, or the type's key column cannot be updated by its key.</exception>
    public static KeyColumnUpdate StatementFor(DbContext context, EncryptedEntity encrypted)
    {
        if (context.Database.AutoTransactionBehavior == AutoTransactionBehavior.Never && context.Database.CurrentTransaction is null
            && System.Transactions.Transaction.Current is null)
        {
            throw new InvalidOperationException(
                $"'{encrypted.Name}' has a key the database generates, and BindStoreGeneratedKeys() seals it in the same transaction as its insert, but this context's AutoTransactionBehavior is Never and no transaction is open. Open a transaction around SaveChanges, or use another AutoTransactionBehavior.");
        }

        return KeyColumnUpdate.For(encrypted, context.GetService<ISqlGenerationHelper>());
    }

    /// <summary>Runs EF's save and the binding updates as one unit, then accepts the save if asked.</summary>
    public int Save(Func<int> save, bool acceptAllChangesOnSuccess, Action acceptAllChanges)
    {
        var database = _context.Database;
        var rows = OwnsTransaction(database)
            ? database.CreateExecutionStrategy().Execute(this, (_, binding) => binding.SaveInOwnTransaction(save), verifySucceeded: null)
            : SaveAndBind(save);
        if (acceptAllChangesOnSuccess)
        {
            acceptAllChanges();
        }

        return rows;
    }

    /// <summary>The async form of <see cref="Save"/>.</summary>
    public async Task<int> SaveAsync(Func<CancellationToken, Task<int>> save, bool acceptAllChangesOnSuccess, Action acceptAllChanges, CancellationToken cancellationToken)
    {
        var database = _context.Database;
        var rows = OwnsTransaction(database)
            ? await database.CreateExecutionStrategy().ExecuteAsync(
                (Binding: this, Save: save),
                (_, state, token) => state.Binding.SaveInOwnTransactionAsync(state.Save, token),
                verifySucceeded: null,
                cancellationToken).ConfigureAwait(false)
            : await SaveAndBindAsync(save, cancellationToken).ConfigureAwait(false);
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

    private int SaveInOwnTransaction(Func<int> save)
    {
        using var transaction = _context.Database.BeginTransaction();
        var rows = SaveAndBind(save);
        transaction.Commit();
        return rows;
    }

    private async Task<int> SaveInOwnTransactionAsync(Func<CancellationToken, Task<int>> save, CancellationToken cancellationToken)
    {
        var transaction = await _context.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        await using (transaction.ConfigureAwait(false))
        {
            var rows = await SaveAndBindAsync(save, cancellationToken).ConfigureAwait(false);
            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
            return rows;
        }
    }

    private int SaveAndBind(Func<int> save)
    {
        try
        {
            var rows = save();
            var blobs = Reseal();
            foreach (var (sql, parameters, expected) in Commands(blobs))
            {
                Check(_context.Database.ExecuteSqlRaw(sql, parameters), expected);
            }

            Assign(blobs);
            return rows;
        }
        catch
        {
            DiscardGeneratedValues();
            throw;
        }
    }

    private async Task<int> SaveAndBindAsync(Func<CancellationToken, Task<int>> save, CancellationToken cancellationToken)
    {
        try
        {
            var rows = await save(cancellationToken).ConfigureAwait(false);
            var blobs = Reseal();
            foreach (var (sql, parameters, expected) in Commands(blobs))
            {
                Check(await _context.Database.ExecuteSqlRawAsync(sql, parameters, cancellationToken).ConfigureAwait(false), expected);
            }

            Assign(blobs);
            return rows;
        }
        catch
        {
            DiscardGeneratedValues();
            throw;
        }
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

    private IEnumerable<(string Sql, object[] Parameters, int Expected)> Commands((byte[] Inserted, byte[] Resealed)[] blobs)
    {
        for (var start = 0; start < _records.Count; start += StatementsPerCommand)
        {
            var sql = new StringBuilder();
            var parameters = new List<object>();
            var end = Math.Min(start + StatementsPerCommand, _records.Count);
            for (var i = start; i < end; i++)
            {
                var record = _records[i];
                record.Statement.Append(sql, parameters, record.Entry, blobs[i].Inserted, blobs[i].Resealed);
            }

            yield return (sql.ToString(), parameters.ToArray(), end - start);
        }
    }

    private void Check(int affected, int expected)
    {
        // Each statement matches its row by key and by the blob the insert just wrote: anything else means the row
        // was changed or removed in between (a trigger), and the save must not commit a record sealed elsewhere.
        if (affected != expected)
        {
            var names = string.Join(", ", _records.Select(r => r.Encrypted.Name).Distinct());
            throw new DbUpdateConcurrencyException(
                $"Binding generated keys into the seals of the inserted records ({names}) updated {affected} rows instead of {expected}: a row was changed or removed between its insert and its seal. The save was rolled back.");
        }
    }

    // The new blobs are the stored ones now, in the entries and in the change detector's snapshots, which must name
    // them or the next save would take the tracked record for one changed outside.
    private void Assign((byte[] Inserted, byte[] Resealed)[] blobs)
    {
        var detector = (EncryptionChangeDetector)_context.GetService<IChangeDetector>();
        detector.Assigning = true;
        try
        {
            for (var i = 0; i < _records.Count; i++)
            {
                var record = _records[i];
                record.Entry[record.Encrypted.KeyProperty] = blobs[i].Resealed;
                detector.RememberAfterSave(record.Entry.Entity, new RecordSnapshot(blobs[i].Resealed, record.Captured));
            }
        }
        finally
        {
            detector.Assigning = false;
        }
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
