using EfEnvelope.ChangeTracking;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;

namespace EfEnvelope.Update;

/// <summary>
/// Takes the baselines of a saved record once EF reports the save succeeded (<see cref="EncryptingStateManager"/> encrypts
/// the save, and puts the assigned ciphertext back when it fails).
/// </summary>
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

    private static EncryptionChangeDetector? Detector(DbContext? context) =>
        context?.GetService<IChangeDetector>() as EncryptionChangeDetector;
}
