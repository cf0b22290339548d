using System.Linq.Expressions;
using System.Reflection;
using System.Runtime.CompilerServices;
using EfEnvelope.Infrastructure;
using EfEnvelope.Metadata;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;

namespace EfEnvelope.Update;

/// <summary>Reads a record's stored columns (wrapped data key, ciphertexts, bound values) for a record attached without them.</summary>
/// <remarks>
/// Re-encrypting one edited property needs the record's data key; an attached instance carries only plaintext.
/// Fetching the stored key keeps the other encrypted columns as they are (a stub must not overwrite them). The
/// ciphertexts and bound values come along because the key column alone cannot be trusted: the record seal over
/// all of them is checked before the key is reused, and the new seal covers the unchanged ciphertexts.
/// </remarks>
internal static class StoredKeys
{
    private static readonly MethodInfo LoadMethod = typeof(StoredKeys).GetMethod(nameof(LoadFor), BindingFlags.NonPublic | BindingFlags.Static)!;

    /// <summary>The record's stored columns in <see cref="EnvelopeRuntime.StoredProperties"/> order; the first, the wrapped key, is never null.</summary>
    public static async Task<object?[]> LoadAsync(InternalEntityEntry entry, EncryptedEntity encrypted, CancellationToken cancellationToken)
    {
        var entityType = entry.EntityType;
        var key = entityType.FindPrimaryKey();
        if (entityType.IsOwned() || entityType.HasSharedClrType || key is null)
        {
            throw new InvalidOperationException(
                $"An encrypted property of '{entityType.DisplayName()}' was edited on an instance attached to the context, and EfEnvelope cannot read that record's data key from the database by itself (owned or keyless type). Load the owner in this context before editing, or use Update() to replace all of its encrypted values.");
        }

        var row = await LoadColumnsAsync(entry, EnvelopeRuntime.StoredProperties(encrypted).ToArray(), cancellationToken).ConfigureAwait(false);
        if (row is null)
        {
            // Plain EF's update would find no row and report a concurrency conflict: so does this save, before writing.
            throw new DbUpdateConcurrencyException(
                $"An encrypted property of '{entityType.DisplayName()}' was edited on an attached instance whose row is not in the database (deleted since, or never inserted): the update would affect no row. Reload or re-insert the record, then apply the edit again.",
                [entry]);
        }

        return row[0] is not null ? row : throw new InvalidOperationException(
                $"An encrypted property of '{entityType.DisplayName()}' was edited on an attached instance whose record has no data key in the database (it was written before encryption). Use Update() to write all of its encrypted values.");
    }

    /// <summary>The record's stored columns as <see cref="LoadAsync"/> reads them, or null when the row is missing or has no data key.</summary>
    public static async Task<object?[]?> TryLoadAsync(InternalEntityEntry entry, EncryptedEntity encrypted, CancellationToken cancellationToken) =>
        await LoadColumnsAsync(entry, EnvelopeRuntime.StoredProperties(encrypted).ToArray(), cancellationToken).ConfigureAwait(false) is [not null, ..] row ? row : null;

    /// <summary>The stored values of <paramref name="columns"/> in the row of <paramref name="entry"/> (a non-owned entity type), or null when the row is missing.</summary>
    public static Task<object?[]?> LoadColumnsAsync(InternalEntityEntry entry, Microsoft.EntityFrameworkCore.Metadata.IProperty[] columns, CancellationToken cancellationToken)
    {
        var key = entry.EntityType.FindPrimaryKey()!;
        var values = key.Properties.Select(p => entry[p]).ToArray();
        return (Task<object?[]?>)LoadMethod.MakeGenericMethod(entry.EntityType.ClrType).Invoke(null, [entry.Context, key.Properties, values, columns, cancellationToken])!;
    }

    private static Task<object?[]?> LoadFor<TEntity>(DbContext context, IReadOnlyList<Microsoft.EntityFrameworkCore.Metadata.IProperty> keyProperties, object?[] keyValues, Microsoft.EntityFrameworkCore.Metadata.IProperty[] columns, CancellationToken cancellationToken)
        where TEntity : class
    {
        var row = Expression.Parameter(typeof(TEntity), "row");
        Expression? match = null;
        for (var i = 0; i < keyProperties.Count; i++)
        {
            var property = keyProperties[i];
            // The key value as a query parameter, as the closure of a hand-written query would give it: a constant
            // becomes a literal in the SQL (which SQLite cannot take for a string holding NUL) and a query per key.
            var box = Activator.CreateInstance(typeof(StrongBox<>).MakeGenericType(property.ClrType), keyValues[i])!;
            var equal = Expression.Equal(
                Expression.Call(typeof(EF), nameof(EF.Property), [property.ClrType], row, Expression.Constant(property.Name)),
                Expression.Field(Expression.Constant(box), nameof(StrongBox<object>.Value)));
            match = match is null ? equal : Expression.AndAlso(match, equal);
        }

        return context.Set<TEntity>()
            .IgnoreQueryFilters()
            .AsNoTracking()
            .Where(Expression.Lambda<Func<TEntity, bool>>(match!, row))
            .Select(Expression.Lambda<Func<TEntity, object?[]>>(
                Expression.NewArrayInit(typeof(object), columns.Select(c => Expression.Convert(
                    Expression.Call(typeof(EF), nameof(EF.Property), [c.ClrType], row, Expression.Constant(c.Name)), typeof(object)))),
                row))
            .FirstOrDefaultAsync(cancellationToken);
    }
}
