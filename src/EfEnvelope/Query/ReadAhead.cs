using System.Collections.Concurrent;
using System.Linq.Expressions;
using System.Runtime.CompilerServices;
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
/// navigations and whose members EF sets through fields (a setter it calls could read an encrypted value), in
/// contexts without materialization interceptors, and not in direct mode (where each record read
/// ahead but never consumed would cost, and audit, a provider call). Everything else decrypts as EF materializes.
/// </para>
/// <para>
/// What stays as it was: each element reaches the consumer with its values decrypted; a record that fails to decrypt
/// throws its exception when the consumer reaches it, after every element before it, as does a failure of EF's own
/// reading (preceded, as in EF, by a decryption failure of a record of the same row), and a consumer that goes on
/// gets the elements after it; an async consumer's cancellation is honoured before each element, with EF's
/// exception; a consumer that stops early disposes the query with no work left running (every batch is finished
/// before its first element is returned); other queries that code EF calls meanwhile runs decrypt as before.
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

    // Weakly keyed: a model, and its entity types, can be collected (a context type per test, a rebuilt model).
    private static readonly ConditionalWeakTable<IEntityType, StrongBox<bool>> EligibleTypes = new();

    private static readonly ConcurrentDictionary<Type, Func<object, DbContext, object>> SyncWrappers = new();
    private static readonly ConcurrentDictionary<Type, Func<object, DbContext, object>> AsyncWrappers = new();

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
            (Func<object, DbContext, object>)Delegate.CreateDelegate(
                typeof(Func<object, DbContext, object>),
                typeof(ReadAhead).GetMethod(sync ? nameof(WrapSync) : nameof(WrapAsync), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!.MakeGenericMethod(type)),
            definition == typeof(IEnumerable<>));
        return (TResult)wrap(result, context);
    }

    private static object WrapSync<T>(object rows, DbContext context) => new ReadAheadEnumerable<T>((IEnumerable<T>)rows, context);

    private static object WrapAsync<T>(object rows, DbContext context) => new ReadAheadAsyncEnumerable<T>((IAsyncEnumerable<T>)rows, context);

    private static bool Applies(Type elementType, Expression query, DbContext context, IModel model, EnvelopeRuntime runtime)
    {
        if (runtime.Settings.Mode == KeyWrappingMode.Direct
            || model.FindEntityType(elementType) is not { } entityType
            || !IsEligible(entityType, runtime))
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

        // Without EF's thread-safety checks, a query that code EF calls during the read runs on the same context
        // (EF would otherwise refuse it), and its records could not be told apart from the batch's.
        return (tracking ?? context.ChangeTracker.QueryTrackingBehavior) != QueryTrackingBehavior.TrackAll
            && context.GetService<IDbContextOptions>().FindExtension<CoreOptionsExtension>()?.ThreadSafetyChecksEnabled != false
            && !context.GetService<IEnumerable<ISingletonInterceptor>>().OfType<IMaterializationInterceptor>().Any();
    }

    // Whether the type's hierarchy has encrypted properties and nothing sees them while EF materializes it: a property
    // of the model alone, so worked out once per entity type rather than on every query.
    private static bool IsEligible(IEntityType entityType, EnvelopeRuntime runtime)
    {
        if (!EligibleTypes.TryGetValue(entityType, out var eligible))
        {
            var hierarchy = entityType.GetDerivedTypesInclusive().ToList();
            eligible = new StrongBox<bool>(hierarchy.Exists(t => runtime.Find(t) is not null) && hierarchy.TrueForAll(t => IsUnseenWhileMaterialized(t, runtime)));
            EligibleTypes.AddOrUpdate(entityType, eligible);
        }

        return eligible.Value;
    }

    // Whether nothing of EF's materialization of the type can look at its encrypted values: EF sets the other members
    // after the decrypting binding has constructed the instance, and a setter (PropertyAccessMode.Property, a property
    // without a backing field, an indexer) could read them, or, for an encrypted property written through its setter,
    // would see other members already set; owned collections, and navigations EF includes without being asked, are
    // filled while the owner is materialized (a HashSet hashes its items). Ownerships are followed from owner to owned
    // type only, but the owned type's navigation back, which EF sets even without tracking, must be a field too.
    private static bool IsUnseenWhileMaterialized(IEntityType entityType, EnvelopeRuntime runtime) =>
        !entityType.GetSkipNavigations().Any(n => n.IsEagerLoaded)
        && !(runtime.Find(entityType)?.Properties.Any(p => p.WritesThroughSetter) ?? false)
        && entityType.GetProperties().All(IsSetThroughField)
        && entityType.GetServiceProperties().All(IsSetThroughField)
        && entityType.GetComplexProperties().All(IsUnseenWhileMaterialized)
        && entityType.GetNavigations().All(IsSetThroughField)
        && entityType.GetNavigations()
            .Where(n => !(n.IsOnDependent && n.ForeignKey.IsOwnership))
            .All(n => n.ForeignKey.IsOwnership ? !n.IsCollection && IsUnseenWhileMaterialized(n.TargetEntityType, runtime) : !n.IsEagerLoaded);

    private static bool IsUnseenWhileMaterialized(IComplexProperty complex) =>
        IsSetThroughField(complex)
        && complex.ComplexType.GetProperties().All(IsSetThroughField)
        && complex.ComplexType.GetComplexProperties().All(IsUnseenWhileMaterialized);

    // EF materializes through the backing field unless told to prefer the property; shadow values are EF's own.
    private static bool IsSetThroughField(IPropertyBase member) =>
        member.IsShadowProperty()
        || (!member.IsIndexerProperty() && member.FieldInfo is not null
            && member.GetPropertyAccessMode() is not (PropertyAccessMode.Property or PropertyAccessMode.PreferProperty));
}
