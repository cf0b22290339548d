using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;

namespace EfEnvelope.Internal;

/// <summary>Keeps the change-tracking snapshots in step with the outcome of a save (<see cref="EncryptingStateManager"/> encrypts it).</summary>
internal sealed class EncryptingSaveChangesInterceptor : SaveChangesInterceptor
{
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

    private static EncryptionChangeDetector? Detector(DbContext? context) =>
        context?.GetService<IChangeDetector>() as EncryptionChangeDetector;
}
