using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;

namespace EfEnvelope.Internal;

/// <summary>Encrypts before SaveChanges builds commands, and keeps the change-tracking snapshots in step with the outcome.</summary>
internal sealed class EncryptingSaveChangesInterceptor(EnvelopeRuntime runtime) : SaveChangesInterceptor
{
    private readonly SaveEncryption _encryption = new(runtime);

    public override InterceptionResult<int> SavingChanges(DbContextEventData eventData, InterceptionResult<int> result)
    {
        if (eventData.Context is { } context)
        {
            _encryption.Run(context);
            MarkSaving(context);
        }

        return result;
    }

    public override async ValueTask<InterceptionResult<int>> SavingChangesAsync(DbContextEventData eventData, InterceptionResult<int> result, CancellationToken cancellationToken = default)
    {
        if (eventData.Context is { } context)
        {
            await _encryption.RunAsync(context, cancellationToken).ConfigureAwait(false);
            MarkSaving(context);
        }

        return result;
    }

    public override int SavedChanges(SaveChangesCompletedEventData eventData, int result)
    {
        Detector(eventData.Context)?.CommitPending();
        return result;
    }

    public override ValueTask<int> SavedChangesAsync(SaveChangesCompletedEventData eventData, int result, CancellationToken cancellationToken = default)
    {
        Detector(eventData.Context)?.CommitPending();
        return ValueTask.FromResult(result);
    }

    public override void SaveChangesFailed(DbContextErrorEventData eventData) => Detector(eventData.Context)?.DiscardPending();

    public override Task SaveChangesFailedAsync(DbContextErrorEventData eventData, CancellationToken cancellationToken = default)
    {
        Detector(eventData.Context)?.DiscardPending();
        return Task.CompletedTask;
    }

    public override void SaveChangesCanceled(DbContextEventData eventData) => Detector(eventData.Context)?.DiscardPending();

    public override Task SaveChangesCanceledAsync(DbContextEventData eventData, CancellationToken cancellationToken = default)
    {
        Detector(eventData.Context)?.DiscardPending();
        return Task.CompletedTask;
    }

    // From here on EF writes and then accepts the save; Modified to Unchanged is that acceptance, not a rejection.
    private static void MarkSaving(DbContext context)
    {
        if (Detector(context) is { } detector)
        {
            detector.Saving = true;
        }
    }

    private static EncryptionChangeDetector? Detector(DbContext? context) =>
        context?.GetService<IChangeDetector>() as EncryptionChangeDetector;
}
