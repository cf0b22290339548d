using EfEnvelope.Infrastructure;
using EfEnvelope.KeyManagement;
using EfEnvelope.Update;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.ChangeTracking;

/// <summary>
/// Encrypts a save where EF hands it to the state manager: after every <c>SavingChanges</c> interceptor and EF's own
/// change detection, before EF collects the entries to write.
/// </summary>
/// <remarks>
/// A <c>SavingChanges</c> interceptor cannot do this: EF calls the interceptors a library registers before those the
/// application adds with <c>AddInterceptors</c>, so an application interceptor that stamps a value (an audit column, a
/// version, a tenant id) would change it after the record was encrypted and sealed. An encrypted value set there
/// would be lost, and a bound column set there would no longer match the seal, leaving a row that can never be read.
/// Here every change the application makes during <c>SaveChanges</c> has been made. EF calls these methods once per
/// <c>SaveChanges</c>, outside the execution strategy, so a retried save sends the ciphertext of its first attempt.
/// </remarks>
#pragma warning disable EF1001 // StateManager is EF's internal service; replacing it is the hook that runs last
internal sealed class EncryptingStateManager(StateManagerDependencies dependencies, EnvelopeRuntime runtime) : StateManager(dependencies)
{
    // A save that conflicts only because another context rewrote a record it rewrites in part runs again, each time
    // after reading every such record again; at most this many attempts in all, then the conflict is reported.
    private const int ConflictAttempts = 10;

    // Before running again the save waits a random time of up to 4 * 2^attempt ms (at most 250 ms). Contexts that
    // retried at once kept colliding on the same rows: sixteen of them editing the same few records for 30 s
    // (ParallelLoadTests on PostgreSQL) used up all ten attempts in two runs of three, and so did waits of up to
    // 2^attempt ms, shorter than one save on a loaded machine. Random waits that grow ("full jitter" backoff) spread the
    // retries apart and thin out the writers that collide; all three 30-second runs then passed. A save waits 1.25 s
    // at most in all, and only while other contexts keep rewriting its records.
    private const int MaxConflictPauseMilliseconds = 250;

    private readonly SaveEncryption _encryption = new(runtime);

    public override int SaveChanges(bool acceptAllChangesOnSuccess)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                using var keyBinding = _encryption.Run(Context);
                using var order = JsonCollectionOrder.Align(this, runtime);
                MarkSaving();
                return keyBinding is null
                    ? base.SaveChanges(acceptAllChangesOnSuccess)
                    : keyBinding.Save(() => base.SaveChanges(acceptAllChangesOnSuccess: false), acceptAllChangesOnSuccess, AcceptAllChanges);
            }
            catch (DbUpdateConcurrencyException conflict) when (attempt < ConflictAttempts && MergeableRewrites(conflict) is { } rewrites)
            {
                var detector = Detector!;
                var all = detector.PartialRewrites();
                detector.DiscardPending();
                if (!ProviderGateway.RunSynchronously(() => ConflictIsOnlyTheKeyAsync(conflict, rewrites, CancellationToken.None)))
                {
                    throw;
                }

                ReadAgain(detector, all);
                Thread.Sleep(ConflictPause(attempt));
            }
            catch
            {
                // Any failure, cancellation or concurrency conflict (for which EF raises no SaveChangesFailed event):
                // the assigned ciphertext goes back, so that a retry encrypts from the current plaintext.
                Detector?.DiscardPending();
                throw;
            }
        }
    }

    public override async Task<int> SaveChangesAsync(bool acceptAllChangesOnSuccess, CancellationToken cancellationToken = default)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                using var keyBinding = await _encryption.RunAsync(Context, cancellationToken).ConfigureAwait(false);
                using var order = JsonCollectionOrder.Align(this, runtime);
                MarkSaving();
                return keyBinding is null
                    ? await base.SaveChangesAsync(acceptAllChangesOnSuccess, cancellationToken).ConfigureAwait(false)
                    : await keyBinding.SaveAsync(token => base.SaveChangesAsync(acceptAllChangesOnSuccess: false, token), acceptAllChangesOnSuccess, AcceptAllChanges, cancellationToken).ConfigureAwait(false);
            }
            catch (DbUpdateConcurrencyException conflict) when (attempt < ConflictAttempts && MergeableRewrites(conflict) is { } rewrites)
            {
                var detector = Detector!;
                var all = detector.PartialRewrites();
                detector.DiscardPending();
                if (!await ConflictIsOnlyTheKeyAsync(conflict, rewrites, cancellationToken).ConfigureAwait(false))
                {
                    throw;
                }

                ReadAgain(detector, all);
                await Task.Delay(ConflictPause(attempt), cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                Detector?.DiscardPending();
                throw;
            }
        }
    }

    /// <summary>
    /// The records whose partial rewrite may alone have made the save conflict, when the save may run again; else null.
    /// </summary>
    /// <remarks>
    /// An edit rewrites only the columns that changed, plus a key column whose seal covers the record's other stored
    /// ciphertexts as this context read them, so its update requires the key column it read
    /// (<see cref="KeyConditionModificationCommand"/>). When another context has rewritten the record since, plain EF
    /// would have merged the two partial updates. The same happens here: the save runs again after reading each such
    /// record's stored key and ciphertext (checked against their seal), and seals this context's edits over what the
    /// other context wrote. Only where the failed attempt left nothing behind (<see cref="AttemptWasUndone"/>), and only
    /// for records EfEnvelope can read by key (not owned types); whether the application's own concurrency tokens and
    /// the record's bound columns still match is checked next (<see cref="ConflictIsOnlyTheKeyAsync"/>).
    /// </remarks>
    private List<InternalEntityEntry>? MergeableRewrites(DbUpdateConcurrencyException conflict)
    {
        if (Detector is not { } detector || !AttemptWasUndone() || conflict.Entries.Count == 0)
        {
            return null;
        }

        var rewrites = new List<InternalEntityEntry>();
        foreach (var entry in ConflictEntries(conflict))
        {
            var rewritten = detector.RequiresStoredKey(entry);
            // A row shared with other entries (an owned type split from the table) reports them all; a conflicting
            // delete is one plain EF reports too.
            if (entry.EntityState is not (EntityState.Modified or EntityState.Unchanged)
                || ((rewritten || Tokens(entry).Length > 0) && (entry.EntityType.IsOwned() || entry.EntityType.FindPrimaryKey() is null)))
            {
                return null;
            }

            if (rewritten)
            {
                rewrites.Add(entry);
            }
        }

        return rewrites.Count > 0 ? rewrites : null;
    }

    /// <summary>
    /// Whether the statements the conflicting attempt ran before the conflict are undone, so that running the save again
    /// does not run them twice: EF's own transaction around the save was rolled back, or, inside the application's
    /// transaction, EF rolled the save back to the savepoint it creates before the save (<c>AutoSavepointsEnabled</c>,
    /// on a provider with savepoints). An enlisted or ambient transaction gets no savepoint, and with
    /// <c>AutoTransactionBehavior.Never</c> nothing is undone.
    /// </summary>
    /// <remarks>
    /// A save after a rolled-back transaction is the common case inside the application's transaction: the context still
    /// holds the key column of the save that was rolled back as stored, so its next edit conflicts with the row that
    /// the rollback restored; reading the record again makes that edit succeed as plain EF's does.
    /// </remarks>
    private bool AttemptWasUndone()
    {
        var database = Context.Database;
        if (database.AutoTransactionBehavior == AutoTransactionBehavior.Never || System.Transactions.Transaction.Current is not null
            || Context.GetService<Microsoft.EntityFrameworkCore.Storage.IDbContextTransactionManager>() is Microsoft.EntityFrameworkCore.Storage.ITransactionEnlistmentManager { EnlistedTransaction: not null })
        {
            return false;
        }

        return database.CurrentTransaction is not { } transaction || (transaction.SupportsSavepoints && database.AutoSavepointsEnabled);
    }

    /// <summary>
    /// Whether the conflict can only be the key columns' that EfEnvelope compares: every row still exists (a row deleted
    /// meanwhile is a conflict plain EF reports too), every concurrency token of the application's still holds the
    /// original value the save compared (else plain EF would report this conflict as well), and every bound column the
    /// save does not write still holds the value the new seal binds.
    /// </summary>
    private async Task<bool> ConflictIsOnlyTheKeyAsync(DbUpdateConcurrencyException conflict, List<InternalEntityEntry> rewrites, CancellationToken cancellationToken)
    {
        foreach (var entry in rewrites)
        {
            var encrypted = runtime.Find(entry.EntityType)!;
            if (await StoredKeys.TryLoadAsync(entry, encrypted, cancellationToken).ConfigureAwait(false) is null)
            {
                return false;
            }

            // The new seal binds the entry's values of the bound columns; one this save does not write must still
            // hold that value in the row, or the row would end up under a seal it does not match.
            var bound = encrypted.BoundColumns.Select(c => c.Property).Where(p => !entry.IsModified(p)).ToArray();
            if (bound.Length > 0 && !Same(await StoredKeys.LoadColumnsAsync(entry, bound, cancellationToken).ConfigureAwait(false), bound, p => entry[p]))
            {
                return false;
            }
        }

        foreach (var entry in ConflictEntries(conflict))
        {
            var tokens = Tokens(entry);
            if (tokens.Length == 0)
            {
                continue;
            }

            if (!Same(await StoredKeys.LoadColumnsAsync(entry, tokens, cancellationToken).ConfigureAwait(false), tokens, entry.GetOriginalValue))
            {
                return false;
            }
        }

        return true;
    }

    private static TimeSpan ConflictPause(int attempt) =>
        TimeSpan.FromMilliseconds(Random.Shared.Next(Math.Min(4 << attempt, MaxConflictPauseMilliseconds) + 1));

    private static bool Same(object?[]? stored, IProperty[] properties, Func<IProperty, object?> expected)
    {
        for (var i = 0; i < properties.Length; i++)
        {
            if (stored is null || !properties[i].GetValueComparer().Equals(stored[i], expected(properties[i])))
            {
                return false;
            }
        }

        return true;
    }

    private static IEnumerable<InternalEntityEntry> ConflictEntries(DbUpdateConcurrencyException conflict) =>
        conflict.Entries.Select(e => (InternalEntityEntry)((IInfrastructure<InternalEntityEntry>)e).Instance);

    private static IProperty[] Tokens(InternalEntityEntry entry) => [.. entry.EntityType.GetProperties().Where(p => p.IsConcurrencyToken)];

    // Every record the save rewrote in part is read again, not only the one that conflicted: EF stops at the first
    // conflicting command, and the others may be as stale.
    private static void ReadAgain(EncryptionChangeDetector detector, List<InternalEntityEntry> rewrites)
    {
        foreach (var entry in rewrites)
        {
            detector.ForgetStoredKey(entry.Entity);
        }
    }

    /// <summary>
    /// <c>ChangeTracker.AcceptAllChanges()</c>: EF now takes the tracked values of every added, modified or deleted entry
    /// as what the database holds. The plaintext baselines the change detector compares encrypted edits with must say
    /// the same, or the next save would write edits EF has just accepted (plain EF writes nothing).
    /// </summary>
    public override void AcceptAllChanges()
    {
        var accepted = Entries.Where(e => e.EntityState is EntityState.Added or EntityState.Modified).ToList();
        if (Detector is not { } detector)
        {
            base.AcceptAllChanges();
            return;
        }

        // EF accepts an entry by moving it from Modified to Unchanged, the same transition as State = Unchanged, which
        // rejects: without this, the entry notifier restored the old plaintext (RejectEdits) just before it was to be
        // taken as the new baseline, and the instance lost the edit EF had accepted.
        detector.Accepting = true;
        try
        {
            base.AcceptAllChanges();
        }
        finally
        {
            detector.Accepting = false;
        }

        foreach (var entry in accepted)
        {
            if (entry.EntityState == EntityState.Unchanged)
            {
                detector.RememberBaseline(entry, replacesStored: false, fromQuery: false);
            }
        }
    }

    private EncryptionChangeDetector? Detector => Context.GetService<IChangeDetector>() as EncryptionChangeDetector;

    // From here on EF writes and then accepts the save; Modified to Unchanged is that acceptance, not a rejection.
    private void MarkSaving()
    {
        if (Detector is { } detector)
        {
            detector.Saving = true;
        }
    }
}
#pragma warning restore EF1001
