using System.Collections.Concurrent;
using System.Linq.Expressions;
using EfEnvelope.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Query;

namespace EfEnvelope.Query;

/// <summary>
/// Runs a query that returns entities without tracking them a batch of rows ahead of its consumer, so that their
/// decryption uses a second core (<see cref="DeferredDecryptions"/>).
/// </summary>
/// <remarks>
/// <para>
/// EF materializes rows one at a time on the consumer's thread, and decrypting them is most of a read's cost. Reading
/// ahead lets a worker decrypt one batch while EF materializes the next. It must not change what anybody can see,
/// and an entity is visible to code other than the consumer's only when EF tracks it, when a materialization
/// interceptor (the application's, or the master-key selector's check) inspects it, or when EF adds it to another
/// entity's collection (a <c>HashSet</c> would hash it before its values are set). So it applies only to queries
/// that return entities with encrypted properties and track nothing, whose operators are filters, orderings, paging
/// and query options (no projection, no <c>Include</c>), on types without owned collections or automatically included
/// navigations, in contexts without materialization interceptors, and not in direct mode (where each record read
/// ahead but never consumed would cost, and audit, a provider call). Everything else decrypts as EF materializes.
/// </para>
/// <para>
/// What stays as it was: each element reaches the consumer with its values decrypted; a record that fails to decrypt
/// throws its exception when the consumer reaches it, after every element before it, as does a failure of EF's own
/// reading; an async consumer's cancellation is honoured before each element; a consumer that stops early disposes
/// the query with no work left running (every batch is finished before its first element is returned).
/// </para>
/// </remarks>
internal static class ReadAhead
{
    /// <summary>Elements per batch: enough to pay for handing work to another thread, few enough to read little ahead.</summary>
    internal const int BatchSize = 32;

    private static readonly HashSet<string> QueryableOperators =
    [
        nameof(Queryable.Where), nameof(Queryable.OrderBy), nameof(Queryable.OrderByDescending), nameof(Queryable.ThenBy),
        nameof(Queryable.ThenByDescending), nameof(Queryable.Skip), nameof(Queryable.Take), nameof(Queryable.OfType), nameof(Queryable.AsQueryable),
    ];

    private static readonly HashSet<string> QueryOptions =
    [
        nameof(EntityFrameworkQueryableExtensions.AsNoTracking), nameof(EntityFrameworkQueryableExtensions.AsNoTrackingWithIdentityResolution),
        nameof(EntityFrameworkQueryableExtensions.AsTracking), nameof(EntityFrameworkQueryableExtensions.TagWith),
        nameof(EntityFrameworkQueryableExtensions.TagWithCallSite), nameof(EntityFrameworkQueryableExtensions.IgnoreQueryFilters),
        nameof(EntityFrameworkQueryableExtensions.IgnoreAutoIncludes), nameof(RelationalQueryableExtensions.AsSplitQuery),
        nameof(RelationalQueryableExtensions.AsSingleQuery),
    ];

    private static readonly ConcurrentDictionary<Type, Func<object, object>> SyncWrappers = new();
    private static readonly ConcurrentDictionary<Type, Func<object, object>> AsyncWrappers = new();

    /// <summary>EF's result of <paramref name="query"/>, read ahead when that cannot be observed, else unchanged.</summary>
    public static TResult Apply<TResult>(TResult result, Expression query, DbContext context, IModel model, EnvelopeRuntime runtime)
    {
        if (result is null || !typeof(TResult).IsGenericType)
        {
            return result;
        }

        var definition = typeof(TResult).GetGenericTypeDefinition();
        var wrappers = definition == typeof(IEnumerable<>) ? SyncWrappers : definition == typeof(IAsyncEnumerable<>) ? AsyncWrappers : null;
        var elementType = typeof(TResult).GetGenericArguments()[0];
        if (wrappers is null || !Applies(elementType, query, context, model, runtime))
        {
            return result;
        }

        var wrap = wrappers.GetOrAdd(elementType, static (type, sync) =>
            (Func<object, object>)Delegate.CreateDelegate(
                typeof(Func<object, object>),
                typeof(ReadAhead).GetMethod(sync ? nameof(WrapSync) : nameof(WrapAsync), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!.MakeGenericMethod(type)),
            definition == typeof(IEnumerable<>));
        return (TResult)wrap(result);
    }

    private static object WrapSync<T>(object rows) => new ReadAheadEnumerable<T>((IEnumerable<T>)rows);

    private static object WrapAsync<T>(object rows) => new ReadAheadAsyncEnumerable<T>((IAsyncEnumerable<T>)rows);

    private static bool Applies(Type elementType, Expression query, DbContext context, IModel model, EnvelopeRuntime runtime)
    {
        if (runtime.Settings.Mode == KeyWrappingMode.Direct
            || model.FindEntityType(elementType) is not { } entityType
            || !entityType.GetDerivedTypesInclusive().Any(t => runtime.Find(t) is not null)
            || !entityType.GetDerivedTypesInclusive().All(HasNoSharedCollections))
        {
            return false;
        }

        var tracking = (QueryTrackingBehavior?)null;
        for (var current = query; current is not QueryRootExpression;)
        {
            if (current is not MethodCallExpression call || call.Arguments.Count == 0)
            {
                return false;
            }

            var declaring = call.Method.DeclaringType;
            var name = call.Method.Name;
            if (declaring == typeof(EntityFrameworkQueryableExtensions) || declaring == typeof(RelationalQueryableExtensions))
            {
                if (!QueryOptions.Contains(name))
                {
                    return false;
                }

                // The outermost tracking option is the one the query runs with.
                tracking ??= name switch
                {
                    nameof(EntityFrameworkQueryableExtensions.AsNoTracking) => QueryTrackingBehavior.NoTracking,
                    nameof(EntityFrameworkQueryableExtensions.AsNoTrackingWithIdentityResolution) => QueryTrackingBehavior.NoTrackingWithIdentityResolution,
                    nameof(EntityFrameworkQueryableExtensions.AsTracking) => QueryTrackingBehavior.TrackAll,
                    _ => null,
                };
            }
            else if (declaring != typeof(Queryable) || !QueryableOperators.Contains(name))
            {
                return false;
            }

            current = call.Arguments[0];
        }

        return (tracking ?? context.ChangeTracker.QueryTrackingBehavior) != QueryTrackingBehavior.TrackAll
            && !context.GetService<IEnumerable<ISingletonInterceptor>>().OfType<IMaterializationInterceptor>().Any();
    }

    // Owned collections, and navigations EF includes without being asked, are filled while the owner is materialized.
    // Ownerships are followed from owner to owned type only (the owned type's navigation back is not a load).
    private static bool HasNoSharedCollections(IEntityType entityType) =>
        !entityType.GetSkipNavigations().Any(n => n.IsEagerLoaded)
        && entityType.GetNavigations()
            .Where(n => !(n.IsOnDependent && n.ForeignKey.IsOwnership))
            .All(n => n.ForeignKey.IsOwnership ? !n.IsCollection && HasNoSharedCollections(n.TargetEntityType) : !n.IsEagerLoaded);
}
