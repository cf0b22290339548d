using System.Linq.Expressions;
using EfEnvelope.Infrastructure;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;
using Microsoft.EntityFrameworkCore.Infrastructure;

// Declared in EF's namespace so that no extra using is needed where the context is used.
namespace Microsoft.EntityFrameworkCore;

/// <summary>Maintenance of blind indexes.</summary>
public static class BlindIndexDbContextExtensions
{
    /// <summary>Recomputes the blind indexes of every <typeparamref name="TEntity"/> (and its owned records) under the configured index key.</summary>
    /// <param name="context">A context configured with the new index key.</param>
    /// <param name="batchSize">Records per batch; each batch is loaded, re-indexed and saved in its own transaction.</param>
    /// <param name="cancellationToken">Stops between batches; finished batches stay done, so running it again completes the work.</param>
    /// <returns>The number of records re-indexed.</returns>
    /// <remarks>
    /// Run it after changing the index key (<c>UseBlindIndexKey</c>): until a record is rebuilt, searches under the new
    /// key do not find it. Ciphertext and data keys are not touched. The context's change tracker is cleared between batches.
    /// </remarks>
    public static async Task<int> RebuildBlindIndexesAsync<TEntity>(this DbContext context, int batchSize = 500, CancellationToken cancellationToken = default)
        where TEntity : class
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        var runtime = context.GetService<EnvelopeRuntime>();
        var entityType = context.Model.FindEntityType(typeof(TEntity))
            ?? throw new InvalidOperationException($"'{typeof(TEntity).Name}' is not an entity type of '{context.GetType().Name}'.");
        var key = entityType.FindPrimaryKey()?.Properties is [var keyProperty]
            ? keyProperty
            : throw new NotSupportedException($"Rebuilding blind indexes of '{entityType.DisplayName()}' needs a single-column primary key.");

        // The key list is small next to the rows; each batch then loads its rows by key.
        var keys = await context.Set<TEntity>().AsNoTracking()
            .Select(e => EF.Property<object>(e, key.Name))
            .ToListAsync(cancellationToken).ConfigureAwait(false);

        var rebuilt = 0;
        foreach (var chunk in keys.Chunk(batchSize))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var parameter = Expression.Parameter(typeof(TEntity), "e");
            var typedKeys = Array.CreateInstance(key.ClrType, chunk.Length);
            Array.Copy(chunk, typedKeys, chunk.Length);
            var contains = Expression.Call(
                typeof(Enumerable), nameof(Enumerable.Contains), [key.ClrType],
                Expression.Constant(typedKeys),
                Expression.Call(typeof(EF), nameof(EF.Property), [key.ClrType], parameter, Expression.Constant(key.Name)));
            var batch = await context.Set<TEntity>()
                .Where(Expression.Lambda<Func<TEntity, bool>>(contains, parameter))
                .ToListAsync(cancellationToken).ConfigureAwait(false);

            foreach (var entry in context.GetService<IStateManager>().Entries.ToList())
            {
                var encrypted = runtime.Find(entry.EntityType);
                if (encrypted is null || !encrypted.HasSearchableProperties)
                {
                    continue;
                }

                foreach (var property in encrypted.Properties)
                {
                    if (property.Index is { } index)
                    {
                        entry[index] = property.Capture(entry.Entity);
                        entry.SetPropertyModified(index);
                    }
                }

                rebuilt += ReferenceEquals(entry.EntityType, entityType) ? 1 : 0;
            }

            await runtime.BlindIndexer.EnsureAsync(cancellationToken).ConfigureAwait(false);
            await context.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
            context.ChangeTracker.Clear();
        }

        return rebuilt;
    }
}
