using System.Linq.Expressions;
using System.Reflection;
using EfEnvelope.Metadata;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;

namespace EfEnvelope.Internal;

/// <summary>Reads a record's wrapped data key from the database, for a record attached without it.</summary>
/// <remarks>
/// Re-encrypting one edited property needs the record's data key; an attached instance carries only plaintext.
/// Fetching the stored key keeps the other encrypted columns as they are (a stub must not overwrite them).
/// </remarks>
internal static class StoredKeys
{
    private static readonly MethodInfo LoadMethod = typeof(StoredKeys).GetMethod(nameof(LoadFor), BindingFlags.NonPublic | BindingFlags.Static)!;

    public static async Task<byte[]> LoadAsync(InternalEntityEntry entry, EncryptedEntity encrypted, CancellationToken cancellationToken)
    {
        var entityType = entry.EntityType;
        var key = entityType.FindPrimaryKey();
        if (entityType.IsOwned() || entityType.HasSharedClrType || key is null)
        {
            throw new InvalidOperationException(
                $"An encrypted property of '{entityType.DisplayName()}' was edited on an instance attached to the context, and EfEnvelope cannot read that record's data key from the database by itself (owned or keyless type). Load the owner in this context before editing, or use Update() to replace all of its encrypted values.");
        }

        var values = key.Properties.Select(p => entry[p]).ToArray();
        var task = (Task<byte[]?>)LoadMethod.MakeGenericMethod(entityType.ClrType).Invoke(null, [entry.Context, key.Properties, values, encrypted.KeyProperty.Name, cancellationToken])!;
        return await task.ConfigureAwait(false)
            ?? throw new InvalidOperationException(
                $"An encrypted property of '{entityType.DisplayName()}' was edited on an attached instance whose record has no data key in the database (the row is missing, or was written before encryption). Use Update() to write all of its encrypted values.");
    }

    private static Task<byte[]?> LoadFor<TEntity>(DbContext context, IReadOnlyList<Microsoft.EntityFrameworkCore.Metadata.IProperty> keyProperties, object?[] keyValues, string keyColumn, CancellationToken cancellationToken)
        where TEntity : class
    {
        var row = Expression.Parameter(typeof(TEntity), "row");
        Expression? match = null;
        for (var i = 0; i < keyProperties.Count; i++)
        {
            var property = keyProperties[i];
            var equal = Expression.Equal(
                Expression.Call(typeof(EF), nameof(EF.Property), [property.ClrType], row, Expression.Constant(property.Name)),
                Expression.Constant(keyValues[i], property.ClrType));
            match = match is null ? equal : Expression.AndAlso(match, equal);
        }

        return context.Set<TEntity>()
            .IgnoreQueryFilters()
            .AsNoTracking()
            .Where(Expression.Lambda<Func<TEntity, bool>>(match!, row))
            .Select(e => EF.Property<byte[]?>(e, keyColumn))
            .FirstOrDefaultAsync(cancellationToken);
    }
}
