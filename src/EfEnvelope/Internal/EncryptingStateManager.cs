using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;
using Microsoft.EntityFrameworkCore.Infrastructure;

namespace EfEnvelope.Internal;

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
    private readonly SaveEncryption _encryption = new(runtime);

    public override int SaveChanges(bool acceptAllChangesOnSuccess)
    {
        try
        {
            using var keyBinding = _encryption.Run(Context);
            MarkSaving();
            return keyBinding is null
                ? base.SaveChanges(acceptAllChangesOnSuccess)
                : keyBinding.Save(() => base.SaveChanges(acceptAllChangesOnSuccess: false), acceptAllChangesOnSuccess, AcceptAllChanges);
        }
        catch
        {
            // Any failure, cancellation or concurrency conflict (for which EF raises no SaveChangesFailed event):
            // the assigned ciphertext goes back, so that a retry encrypts from the current plaintext.
            Detector?.DiscardPending();
            throw;
        }
    }

    public override async Task<int> SaveChangesAsync(bool acceptAllChangesOnSuccess, CancellationToken cancellationToken = default)
    {
        try
        {
            using var keyBinding = await _encryption.RunAsync(Context, cancellationToken).ConfigureAwait(false);
            MarkSaving();
            return keyBinding is null
                ? await base.SaveChangesAsync(acceptAllChangesOnSuccess, cancellationToken).ConfigureAwait(false)
                : await keyBinding.SaveAsync(token => base.SaveChangesAsync(acceptAllChangesOnSuccess: false, token), acceptAllChangesOnSuccess, AcceptAllChanges, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Detector?.DiscardPending();
            throw;
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
        base.AcceptAllChanges();
        if (Detector is not { } detector)
        {
            return;
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
