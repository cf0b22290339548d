using System.Linq.Expressions;
using System.Reflection;
using EfEnvelope.Infrastructure;
using EfEnvelope.Metadata;
using EfEnvelope.Query;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Query;
using Microsoft.EntityFrameworkCore.Query.Internal;
using Microsoft.EntityFrameworkCore.Storage;

namespace EfEnvelope.Search;

/// <summary>
/// EF's query compiler, with two duties for searchable encrypted properties before a query runs (and two more:
/// <c>Distinct</c> over decrypted values, <see cref="ClientDistinct"/>, and the explanation of SQL that leaves out
/// EfEnvelope's columns, <see cref="FromSqlColumns"/>).
/// </summary>
/// <remarks>
/// <para>
/// A constant compared with a searchable property becomes a parameter: EF logs the LINQ expression (constants
/// included) when it compiles a query, and parameters are logged by name only, so the plaintext stays out of logs.
/// </para>
/// <para>
/// A truncated blind index matches more than one value, so a query comparing one may return false positives. When
/// the query returns the entities it filters (a list, or First/Single/Count/Any and the like), the results are
/// checked against the decrypted values here and false positives are dropped. Other shapes (projections, OR,
/// not-equal) are refused with a reason rather than answered wrongly.
/// </para>
/// <para>
/// A full-length index matches one value only, so a returned entity whose decrypted value differs from the searched
/// one had its index column copied from another row: that is tampering, and the query throws an
/// <see cref="EnvelopeDecryptionException"/> naming entity, property and row rather than return it. This check runs
/// where the query returns the entities it compared (lists, First, Single and the like, sync and async); Count and
/// Any, projections and compiled queries do not decrypt the rows they count or project, and are not checked.
/// </para>
/// </remarks>
internal sealed class SearchQueryCompiler(
    IQueryContextFactory queryContextFactory,
    ICompiledQueryCache compiledQueryCache,
    ICompiledQueryCacheKeyGenerator compiledQueryCacheKeyGenerator,
    IDatabase database,
    IDiagnosticsLogger<DbLoggerCategory.Query> logger,
    ICurrentDbContext currentContext,
    IEvaluatableExpressionFilter evaluatableExpressionFilter,
#pragma warning disable CS9107 // The model is both EF's and ours: the same immutable instance.
    IModel model,
#pragma warning restore CS9107
    EnvelopeRuntime runtime)
    : QueryCompiler(queryContextFactory, compiledQueryCache, compiledQueryCacheKeyGenerator, database, logger, currentContext, evaluatableExpressionFilter, model)
{
    /// <summary>Result operators a truncated-index query may end with: applied again after the false positives are dropped.</summary>
    internal static readonly string[] Terminals = ["First", "FirstOrDefault", "Single", "SingleOrDefault", "Count", "LongCount", "Any"];

    private static readonly MethodInfo SequenceMethod = typeof(SearchQueryCompiler).GetMethod(nameof(FilterSequence), BindingFlags.NonPublic | BindingFlags.Static)!;
    private static readonly MethodInfo AsyncSequenceMethod = typeof(SearchQueryCompiler).GetMethod(nameof(FilterAsyncSequence), BindingFlags.NonPublic | BindingFlags.Static)!;
    private static readonly MethodInfo TerminalMethod = typeof(SearchQueryCompiler).GetMethod(nameof(ApplyTerminal), BindingFlags.NonPublic | BindingFlags.Static)!;
    private static readonly MethodInfo AfterKeyTaskMethod = typeof(SearchQueryCompiler).GetMethod(nameof(AfterKeyTaskAsync), BindingFlags.NonPublic | BindingFlags.Instance)!;
    private static readonly MethodInfo AfterKeySequenceMethod = typeof(SearchQueryCompiler).GetMethod(nameof(AfterKeySequenceAsync), BindingFlags.NonPublic | BindingFlags.Instance)!;
    private static readonly MethodInfo BaseExecuteMethod = typeof(SearchQueryCompiler).GetMethod(nameof(BaseExecute), BindingFlags.NonPublic | BindingFlags.Instance)!;
    private static readonly MethodInfo BaseExecuteAsyncMethod = typeof(SearchQueryCompiler).GetMethod(nameof(BaseExecuteAsync), BindingFlags.NonPublic | BindingFlags.Instance)!;
    private static readonly MethodInfo VerifySequenceMethod = typeof(SearchQueryCompiler).GetMethod(nameof(VerifySequence), BindingFlags.NonPublic | BindingFlags.Static)!;
    private static readonly MethodInfo VerifyAsyncSequenceMethod = typeof(SearchQueryCompiler).GetMethod(nameof(VerifyAsyncSequence), BindingFlags.NonPublic | BindingFlags.Static)!;
    private static readonly MethodInfo VerifyTaskMethod = typeof(SearchQueryCompiler).GetMethod(nameof(VerifyTaskAsync), BindingFlags.NonPublic | BindingFlags.Static)!;
    private static readonly MethodInfo ClientDistinctMethod = typeof(SearchQueryCompiler).GetMethod(nameof(ExecuteDistinct), BindingFlags.NonPublic | BindingFlags.Instance)!;
    private static readonly MethodInfo ClientDistinctAsyncMethod = typeof(SearchQueryCompiler).GetMethod(nameof(ExecuteDistinctAsync), BindingFlags.NonPublic | BindingFlags.Instance)!;
    private static readonly MethodInfo ClientDistinctTerminalAsyncMethod = typeof(SearchQueryCompiler).GetMethod(nameof(ExecuteDistinctTerminalAsync), BindingFlags.NonPublic | BindingFlags.Instance)!;
    private static readonly MethodInfo AsyncTerminalMethod = typeof(SearchQueryCompiler).GetMethod(nameof(ApplyTerminalAsync), BindingFlags.NonPublic | BindingFlags.Static)!;

    public override TResult Execute<TResult>(Expression query) =>
        FromSqlColumns.Find(runtime, _model, query) is { } expected
            ? FromSqlColumns.Explained(() => ExecuteChecked<TResult>(query), expected)
            : ExecuteChecked<TResult>(query);

    public override TResult ExecuteAsync<TResult>(Expression query, CancellationToken cancellationToken = default) =>
        FromSqlColumns.Find(runtime, _model, query) is { } expected
            ? FromSqlColumns.Explained(() => ExecuteCheckedAsync<TResult>(query, cancellationToken), expected)
            : ExecuteCheckedAsync<TResult>(query, cancellationToken);

    private TResult ExecuteChecked<TResult>(Expression query)
    {
        if (DistinctOnClient(query) is { } distinct)
        {
            return (TResult)ClientDistinctMethod.MakeGenericMethod(distinct.ElementType, typeof(TResult)).Invoke(this, [distinct.Source, distinct.Terminal])!;
        }

        var plan = Prepare(query);
        if (plan?.Filters is not { Count: > 0 } filters)
        {
            var result = ReadAhead.Apply(base.Execute<TResult>(plan?.Query ?? query), plan?.Query ?? query, _currentContext.Context, _model, runtime);
            return plan?.Checks is { Count: > 0 } checks ? Verified(result, Verifier(checks)) : result;
        }

        var (source, terminal, elementType) = Split(plan.Query, typeof(TResult), async: false);
        var predicate = Predicate(filters, plan.Checks);
        if (terminal is null)
        {
            var rows = ExecuteSequence(source, elementType);
            return (TResult)SequenceMethod.MakeGenericMethod(elementType).Invoke(null, [rows, predicate])!;
        }

        var all = ExecuteSequence(source, elementType);
        return (TResult)TerminalMethod.MakeGenericMethod(elementType, typeof(TResult)).Invoke(null, [all, predicate, terminal])!;
    }

    private TResult ExecuteCheckedAsync<TResult>(Expression query, CancellationToken cancellationToken)
    {
        if (DistinctOnClient(query) is { } distinct)
        {
            return distinct.Terminal is null
                ? (TResult)ClientDistinctAsyncMethod.MakeGenericMethod(distinct.ElementType).Invoke(this, [distinct.Source, cancellationToken])!
                : (TResult)ClientDistinctTerminalAsyncMethod.MakeGenericMethod(distinct.ElementType, typeof(TResult).GetGenericArguments()[0]).Invoke(this, [distinct.Source, distinct.Terminal, cancellationToken])!;
        }

        var plan = Prepare(query);
        if (plan is { UsesIndex: true } && !runtime.BlindIndexer.IsCached())
        {
            // EF computes the searched value's index synchronously while binding parameters: fetch the index key
            // asynchronously first, so an async query never blocks on the provider.
            return (TResult)(typeof(TResult).IsGenericType && typeof(TResult).GetGenericTypeDefinition() == typeof(Task<>)
                ? AfterKeyTaskMethod.MakeGenericMethod(typeof(TResult).GetGenericArguments()[0]).Invoke(this, [query, cancellationToken])!
                : AfterKeySequenceMethod.MakeGenericMethod(typeof(TResult).GetGenericArguments()[0]).Invoke(this, [query, cancellationToken])!);
        }

        return ExecutePlannedAsync<TResult>(plan, query, cancellationToken);
    }

    private async Task<T> AfterKeyTaskAsync<T>(Expression query, CancellationToken cancellationToken)
    {
        await runtime.BlindIndexer.EnsureAsync(cancellationToken).ConfigureAwait(false);
        return await ExecuteAsync<Task<T>>(query, cancellationToken).ConfigureAwait(false);
    }

    private async IAsyncEnumerable<T> AfterKeySequenceAsync<T>(Expression query, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await runtime.BlindIndexer.EnsureAsync(cancellationToken).ConfigureAwait(false);
        await foreach (var row in ExecuteAsync<IAsyncEnumerable<T>>(query, cancellationToken).WithCancellation(cancellationToken).ConfigureAwait(false))
        {
            yield return row;
        }
    }

    private TResult ExecutePlannedAsync<TResult>(SearchPlan? plan, Expression query, CancellationToken cancellationToken)
    {
        if (plan?.Filters is not { Count: > 0 } filters)
        {
            var result = ReadAhead.Apply(base.ExecuteAsync<TResult>(plan?.Query ?? query, cancellationToken), plan?.Query ?? query, _currentContext.Context, _model, runtime);
            return plan?.Checks is { Count: > 0 } checks ? Verified(result, Verifier(checks)) : result;
        }

        var (source, terminal, elementType) = Split(plan.Query, typeof(TResult), async: true);
        var predicate = Predicate(filters, plan.Checks);
        var rows = BaseExecuteAsyncMethod
            .MakeGenericMethod(typeof(IAsyncEnumerable<>).MakeGenericType(elementType))
            .Invoke(this, [source, cancellationToken]);
        return terminal is null
            ? (TResult)AsyncSequenceMethod.MakeGenericMethod(elementType).Invoke(null, [rows, predicate, cancellationToken])!
            : (TResult)AsyncTerminalMethod.MakeGenericMethod(elementType, typeof(TResult).GetGenericArguments()[0]).Invoke(null, [rows, predicate, terminal, cancellationToken])!;
    }

    public override Func<QueryContext, TResult> CreateCompiledQuery<TResult>(Expression query) =>
        base.CreateCompiledQuery<TResult>(RefuseTruncated(query));

    public override Func<QueryContext, TResult> CreateCompiledAsyncQuery<TResult>(Expression query) =>
        base.CreateCompiledAsyncQuery<TResult>(RefuseTruncated(query));

    private Expression RefuseTruncated(Expression query)
    {
        var plan = Prepare(query);
        if (plan?.Filters is { Count: > 0 } filters)
        {
            throw new InvalidOperationException(
                $"A compiled query compares '{filters[0].Property.EntityName}.{filters[0].Property.Name}', whose blind index is truncated; compiled queries cannot remove its false positives. Use a regular query.");
        }

        return plan?.Query ?? query;
    }

    private readonly IModel _model = model;
    private readonly ICurrentDbContext _currentContext = currentContext;

    // Composition after a projection is undone first (as the query guard will), so that a constant compared with a
    // searchable property there becomes a parameter too.
    private SearchPlan? Prepare(Expression query) =>
        runtime.HasSearchableProperties(_model) ? new SearchPlanner(runtime, _model).Plan(EncryptedQueryGuard.Compose(runtime, _model, query)) : null;

    private object ExecuteSequence(Expression source, Type elementType) =>
        BaseExecuteMethod.MakeGenericMethod(typeof(IEnumerable<>).MakeGenericType(elementType)).Invoke(this, [source])!;

    // Distinct over a projection of encrypted values, applied after loading (Query/ClientDistinct.cs); not on SQL
    // Server, whose default collations compare strings without case.
    private (Expression Source, string? Terminal, Type ElementType)? DistinctOnClient(Expression query) =>
        _currentContext.Context.Database.ProviderName?.Contains("SqlServer", StringComparison.Ordinal) == true
            ? null
            : ClientDistinct.Split(query, e => EncryptedQueryGuard.FindEncryptedMember(runtime, _model, e));

    // The source without Distinct goes through this compiler again, so its own search plan applies.
    private TResult ExecuteDistinct<T, TResult>(Expression source, string? terminal) =>
        ClientDistinct.Apply<T, TResult>(Execute<IEnumerable<T>>(source), terminal);

    private IAsyncEnumerable<T> ExecuteDistinctAsync<T>(Expression source, CancellationToken cancellationToken) =>
        ClientDistinct.DistinctAsync(ExecuteAsync<IAsyncEnumerable<T>>(source, cancellationToken), cancellationToken);

    private Task<TResult> ExecuteDistinctTerminalAsync<T, TResult>(Expression source, string terminal, CancellationToken cancellationToken) =>
        ClientDistinct.TerminalAsync<T, TResult>(ExecuteAsync<IAsyncEnumerable<T>>(source, cancellationToken), terminal, cancellationToken);

    // Non-virtual calls to EF's own execution (reflection on the base method would dispatch back to the overrides).
    private TResult BaseExecute<TResult>(Expression query) => base.Execute<TResult>(query);

    private TResult BaseExecuteAsync<TResult>(Expression query, CancellationToken cancellationToken) => base.ExecuteAsync<TResult>(query, cancellationToken);

    private static Func<object, bool> Predicate(IReadOnlyList<SearchFilter> filters, IReadOnlyList<SearchFilter> checks)
    {
        // Values are evaluated once per execution (they may be captured variables).
        var values = filters.Select(f => f.Values()).ToList();
        var verify = Verifier(checks);
        return entity =>
        {
            verify(entity);
            for (var i = 0; i < filters.Count; i++)
            {
                if (!values[i].Any(value => filters[i].Property.MatchesSearch(entity, value)))
                {
                    return false;
                }
            }

            return true;
        };
    }

    /// <summary>Returns a check that throws when a returned entity fails a full-length index comparison.</summary>
    private static Action<object?> Verifier(IReadOnlyList<SearchFilter> checks)
    {
        var values = checks.Select(c => c.Values()).ToList();
        return entity =>
        {
            if (entity is null)
            {
                return;
            }

            for (var i = 0; i < checks.Count; i++)
            {
                if (checks[i].Entity.EntityType.ClrType.IsInstanceOfType(entity) && !values[i].Any(value => checks[i].Property.MatchesSearch(entity, value)))
                {
                    throw new EnvelopeDecryptionException(
                        $"A search on the full-length blind index of this property returned {RowOf(checks[i].Entity, entity)}, whose value is another: its index column was copied from another row.",
                        checks[i].Entity.Name, checks[i].Property.Name);
                }
            }
        };
    }

    // The primary key of a returned row, for the message (read from the row: truncated and escaped).
    private static string RowOf(EncryptedEntity encrypted, object entity)
    {
        var key = encrypted.EntityType.FindPrimaryKey();
        var parts = key?.Properties
            .Where(p => p.PropertyInfo is not null || p.FieldInfo is not null)
            .Select(p => $"{p.Name} = {Convert.ToString(p.PropertyInfo?.GetValue(entity) ?? p.FieldInfo!.GetValue(entity), System.Globalization.CultureInfo.InvariantCulture)}")
            .ToList();
        return parts is { Count: > 0 } ? $"the row with {Diagnostics.UntrustedText.Escape(string.Join(", ", parts))}" : "a row";
    }

    /// <summary>Applies <paramref name="verify"/> to what a query returns: each entity of a sequence, or the one entity.</summary>
    private static TResult Verified<TResult>(TResult result, Action<object?> verify)
    {
        var type = typeof(TResult);
        if (type.IsGenericType)
        {
            var definition = type.GetGenericTypeDefinition();
            var element = type.GetGenericArguments()[0];
            var wrapper = definition == typeof(IEnumerable<>) ? VerifySequenceMethod
                : definition == typeof(IAsyncEnumerable<>) ? VerifyAsyncSequenceMethod
                : definition == typeof(Task<>) ? VerifyTaskMethod
                : null;
            if (wrapper is not null)
            {
                // The async sequence's token comes from whoever enumerates it ([EnumeratorCancellation]).
                object?[] arguments = wrapper == VerifyAsyncSequenceMethod ? [result, verify, CancellationToken.None] : [result, verify];
                return (TResult)wrapper.MakeGenericMethod(element).Invoke(null, arguments)!;
            }
        }

        // First, Single and the like return the entity itself; Count and Any a number or a flag, left alone.
        verify(result);
        return result;
    }

    private static IEnumerable<T> VerifySequence<T>(IEnumerable<T> rows, Action<object?> verify)
    {
        foreach (var row in rows)
        {
            verify(row);
            yield return row;
        }
    }

    private static async IAsyncEnumerable<T> VerifyAsyncSequence<T>(IAsyncEnumerable<T> rows, Action<object?> verify, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var row in rows.WithCancellation(cancellationToken).ConfigureAwait(false))
        {
            verify(row);
            yield return row;
        }
    }

    private static async Task<T> VerifyTaskAsync<T>(Task<T> result, Action<object?> verify)
    {
        var value = await result.ConfigureAwait(false);
        verify(value);
        return value;
    }

    // Splits Terminal(source[, predicate]) into a sequence query and the terminal to apply after filtering.
    private static (Expression Source, string? Terminal, Type ElementType) Split(Expression query, Type resultType, bool async)
    {
        if (query is MethodCallExpression call && call.Method.DeclaringType == typeof(Queryable) && Terminals.Contains(call.Method.Name))
        {
            var source = call.Arguments[0];
            var elementType = source.Type.GetGenericArguments()[0];
            if (call.Arguments.Count == 2)
            {
                source = Expression.Call(typeof(Queryable), nameof(Queryable.Where), [elementType], source, call.Arguments[1]);
            }

            if (call.Method.Name is "Count" or "LongCount" or "Any")
            {
                // Counting loads the candidates only to check them: they must not end up tracked.
                source = Expression.Call(typeof(EntityFrameworkQueryableExtensions), nameof(EntityFrameworkQueryableExtensions.AsNoTracking), [elementType], source);
            }

            return (source, call.Method.Name, elementType);
        }

        var sequenceType = async ? typeof(IAsyncEnumerable<>) : typeof(IEnumerable<>);
        var element = resultType.IsGenericType && resultType.GetGenericTypeDefinition() == sequenceType
            ? resultType.GetGenericArguments()[0]
            : throw new InvalidOperationException("A query comparing a truncated blind index must return the entities it filters.");
        return (query, null, element);
    }

    private static IEnumerable<T> FilterSequence<T>(IEnumerable<T> rows, Func<object, bool> predicate) =>
        rows.Where(row => row is not null && predicate(row));

    private static async IAsyncEnumerable<T> FilterAsyncSequence<T>(IAsyncEnumerable<T> rows, Func<object, bool> predicate, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var row in rows.WithCancellation(cancellationToken).ConfigureAwait(false))
        {
            if (row is not null && predicate(row))
            {
                yield return row;
            }
        }
    }

    private static TResult ApplyTerminal<T, TResult>(IEnumerable<T> rows, Func<object, bool> predicate, string terminal) =>
        Terminal<T, TResult>(FilterSequence(rows, predicate), terminal);

    private static async Task<TResult> ApplyTerminalAsync<T, TResult>(IAsyncEnumerable<T> rows, Func<object, bool> predicate, string terminal, CancellationToken cancellationToken)
    {
        var kept = new List<T>();
        await foreach (var row in FilterAsyncSequence(rows, predicate, cancellationToken).ConfigureAwait(false))
        {
            kept.Add(row);
        }

        return Terminal<T, TResult>(kept, terminal);
    }

    private static TResult Terminal<T, TResult>(IEnumerable<T> rows, string terminal) => terminal switch
    {
        "First" => (TResult)(object)rows.First()!,
        "FirstOrDefault" => (TResult)(object?)rows.FirstOrDefault()!,
        "Single" => (TResult)(object)rows.Single()!,
        "SingleOrDefault" => (TResult)(object?)rows.SingleOrDefault()!,
        "Count" => (TResult)(object)rows.Count(),
        "LongCount" => (TResult)(object)rows.LongCount(),
        "Any" => (TResult)(object)rows.Any(),
        _ => throw new InvalidOperationException($"Unexpected terminal operator {terminal}."),
    };
}
