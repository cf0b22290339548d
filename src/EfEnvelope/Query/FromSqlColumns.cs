using System.Data.Common;
using System.Linq.Expressions;
using System.Reflection;
using System.Runtime.CompilerServices;
using EfEnvelope.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Query;
using Microsoft.EntityFrameworkCore.Query.Internal;

namespace EfEnvelope.Query;

/// <summary>
/// Turns the failure of a <c>FromSql</c> query whose SQL leaves out a column EfEnvelope maps into an
/// <see cref="InvalidOperationException"/> that names the entity and the column and says what the SQL must return.
/// </summary>
/// <remarks>
/// SQL written for the plain model selects the application's columns only. Without the record's key column (or a blind
/// index column) nothing can be decrypted, and the query fails: with EF's "required column was not present", or, where
/// EF composes over the SQL, with the database's "no such column", a raw database error that says nothing about
/// EfEnvelope. The SQL cannot be checked before it runs (it is the application's text), so the failure is recognised
/// afterwards: an exception from the database or from EF whose message names one of those columns, raised by a query
/// that starts from <c>FromSql</c> over an entity that maps them. Only such queries pay for the wrapping.
/// </remarks>
internal static class FromSqlColumns
{
    private static readonly MethodInfo SequenceMethod = typeof(FromSqlColumns).GetMethod(nameof(Sequence), BindingFlags.NonPublic | BindingFlags.Static)!;
    private static readonly MethodInfo AsyncSequenceMethod = typeof(FromSqlColumns).GetMethod(nameof(AsyncSequence), BindingFlags.NonPublic | BindingFlags.Static)!;
    private static readonly MethodInfo TaskMethod = typeof(FromSqlColumns).GetMethod(nameof(TaskAsync), BindingFlags.NonPublic | BindingFlags.Static)!;

    /// <summary>The columns EfEnvelope maps in the tables of the entities <paramref name="query"/> reads through <c>FromSql</c>; null when it reads none.</summary>
    public static Expected? Find(EnvelopeRuntime runtime, IModel model, Expression query)
    {
        var roots = new RootFinder();
        roots.Visit(query);
        if (roots.EntityTypes is null)
        {
            return null;
        }

        var tables = roots.EntityTypes
            .SelectMany(t => t.GetDerivedTypesInclusive())
            .SelectMany(t => t.GetTableMappings())
            .Select(m => m.Table)
            .ToHashSet();
        var columns = new List<(string Entity, string Column, string Properties)>();
        foreach (var entityType in model.GetEntityTypes())
        {
            if (runtime.Find(entityType) is not { } encrypted)
            {
                continue;
            }

            var mapped = encrypted.Properties.Where(p => p.Index is not null).Select(p => p.Index!).Prepend(encrypted.KeyProperty);
            foreach (var column in mapped.SelectMany(p => p.GetTableColumnMappings()).Where(m => tables.Contains(m.TableMapping.Table)))
            {
                var entity = entityType.DisplayName();
                columns.Add((entity, column.Column.Name, string.Join(", ", encrypted.Properties.Select(p => $"'{entity}.{p.Name}'"))));
            }
        }

        return columns.Count > 0 ? new Expected([.. columns.Distinct()]) : null;
    }

    /// <summary>The result of <paramref name="execute"/>, whose failures (now or while it is enumerated or awaited) are explained by <paramref name="expected"/>.</summary>
    public static TResult Explained<TResult>(Func<TResult> execute, Expected expected)
    {
        TResult result;
        try
        {
            result = execute();
        }
        catch (Exception error) when (expected.Explain(error) is { } explained)
        {
            throw explained;
        }

        var type = typeof(TResult);
        if (!type.IsGenericType)
        {
            return result;
        }

        var definition = type.GetGenericTypeDefinition();
        var element = type.GetGenericArguments()[0];
        return definition == typeof(IEnumerable<>) ? (TResult)SequenceMethod.MakeGenericMethod(element).Invoke(null, [result, expected])!
            // The async sequence's token comes from whoever enumerates it ([EnumeratorCancellation]).
            : definition == typeof(IAsyncEnumerable<>) ? (TResult)AsyncSequenceMethod.MakeGenericMethod(element).Invoke(null, [result, expected, CancellationToken.None])!
            : definition == typeof(Task<>) ? (TResult)TaskMethod.MakeGenericMethod(element).Invoke(null, [result, expected])!
            : result;
    }

    private static IEnumerable<T> Sequence<T>(IEnumerable<T> rows, Expected expected)
    {
        using var enumerator = Explained(rows.GetEnumerator, expected);
        while (Explained(enumerator.MoveNext, expected))
        {
            yield return enumerator.Current;
        }
    }

    private static async IAsyncEnumerable<T> AsyncSequence<T>(IAsyncEnumerable<T> rows, Expected expected, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var enumerator = rows.GetAsyncEnumerator(cancellationToken);
        await using var _ = enumerator.ConfigureAwait(false);
        while (true)
        {
            bool more;
            try
            {
                more = await enumerator.MoveNextAsync().ConfigureAwait(false);
            }
            catch (Exception error) when (expected.Explain(error) is { } explained)
            {
                throw explained;
            }

            if (!more)
            {
                yield break;
            }

            yield return enumerator.Current;
        }
    }

    private static async Task<T> TaskAsync<T>(Task<T> result, Expected expected)
    {
        try
        {
            return await result.ConfigureAwait(false);
        }
        catch (Exception error) when (expected.Explain(error) is { } explained)
        {
            throw explained;
        }
    }

    /// <summary>The columns a <c>FromSql</c> query's SQL must return for EfEnvelope, by entity.</summary>
    internal sealed class Expected((string Entity, string Column, string Properties)[] columns)
    {
        /// <summary>The refusal that explains <paramref name="error"/>, or null when it is not about one of these columns.</summary>
        public InvalidOperationException? Explain(Exception error)
        {
            // The database's own error, or EF's "required column ... was not present"; never one of EfEnvelope's.
            if (error is not (DbException or InvalidOperationException) || error.Source?.StartsWith("EfEnvelope", StringComparison.Ordinal) == true)
            {
                return null;
            }

            foreach (var (entity, column, properties) in columns)
            {
                if (error.Message.Contains(column, StringComparison.OrdinalIgnoreCase))
                {
                    return new InvalidOperationException(
                        $"The query reads '{entity}' through FromSql, and its SQL does not return column '{column}', which EfEnvelope maps beside the application's columns (the record's wrapped data key, or a blind index); without it the encrypted properties {properties} cannot be decrypted. "
                        + $"Add \"{column}\" to the SQL's column list, or use SELECT * (if the SQL already returns it, the table may lack it: apply the migration that adds it). {error.GetType().Name}: {error.Message}",
                        error);
                }
            }

            return null;
        }
    }

    private sealed class RootFinder : ExpressionVisitor
    {
        public List<IEntityType>? EntityTypes { get; private set; }

        protected override Expression VisitExtension(Expression node)
        {
            if (node is FromSqlQueryRootExpression root)
            {
                (EntityTypes ??= []).Add(root.EntityType);
                return node;
            }

            return node.CanReduce ? base.VisitExtension(node) : node;
        }
    }
}
