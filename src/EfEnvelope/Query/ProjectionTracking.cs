using System.Linq.Expressions;
using System.Reflection;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Query;

/// <summary>Makes a tracking query's projection of encrypted properties read the database, as plain EF's does.</summary>
/// <remarks>
/// <para>
/// EF reads an encrypted property in the final projection by materializing its entity and running the selector on the
/// decrypted instance. In a tracking query that entity is tracked, and a row already tracked resolves to the tracked
/// instance: <c>Select(c =&gt; new { c.Name, c.Notes })</c> would return an unsaved local edit of <c>Notes</c> (or a
/// value older than the row) beside the database's <c>Name</c>, and leave every row's entity tracked, where plain EF
/// reads both columns and tracks nothing.
/// </para>
/// <para>
/// A projection that returns only values (no entity, no collection of entities) tracks nothing in plain EF, so running
/// it without tracking changes nothing else: such a query gets <c>AsNoTracking()</c> above its projection, and any
/// <c>AsTracking()</c> composed after the projection is dropped. A projection that also returns entities must track
/// them, and then cannot read the database's encrypted value beside them: it is refused with the alternatives.
/// </para>
/// </remarks>
internal static class ProjectionTracking
{
    private static readonly MethodInfo AsNoTrackingMethod =
        typeof(EntityFrameworkQueryableExtensions).GetMethod(nameof(EntityFrameworkQueryableExtensions.AsNoTracking))!;

    /// <summary>The query, made not to track when its final projection reads encrypted properties and returns only values.</summary>
    /// <param name="query">The query expression, its projection already moved last (<see cref="ProjectionComposition"/>).</param>
    /// <param name="projection">The final <c>Select</c> of <paramref name="query"/>, if any.</param>
    /// <param name="context">The context compiling the query, whose default tracking behaviour applies.</param>
    /// <param name="encryptedMember">The first encrypted property ("Type.Property") an expression reads, or null.</param>
    /// <exception cref="InvalidOperationException">The projection returns tracked entities beside encrypted values.</exception>
    public static Expression Apply(Expression query, MethodCallExpression? projection, DbContext context, Func<Expression, string?> encryptedMember)
    {
        if (projection is null || EffectiveTracking(query, context) != QueryTrackingBehavior.TrackAll
            || encryptedMember(projection.Arguments[1]) is not { } member)
        {
            return query;
        }

        var selector = (LambdaExpression)EncryptedQueryGuard.Unquote(projection.Arguments[1]);
        if (ReturnedEntity(selector.Body, context.Model) is { } entity)
        {
            throw new InvalidOperationException(
                $"The tracking query projects encrypted property '{member}' beside entities of type '{entity.DisplayName()}', which it tracks. " +
                "EfEnvelope reads an encrypted value from its entity, and in a tracking query that is the tracked instance, which may hold unsaved edits or older values than the row, " +
                "where plain EF reads the column. Read the property from the projected entity instead, or add AsNoTracking() (and attach what you edit), or project values only.");
        }

        return new NoTrackingRewriter(projection).Visit(query);
    }

    // EF applies the outermost AsTracking/AsNoTracking/AsNoTrackingWithIdentityResolution of a query, else the context's default.
    private static QueryTrackingBehavior EffectiveTracking(Expression query, DbContext context)
    {
        var current = query;
        while (current is MethodCallExpression call && call.Arguments.Count > 0)
        {
            if (call.Method.DeclaringType == typeof(EntityFrameworkQueryableExtensions))
            {
                switch (call.Method.Name)
                {
                    case nameof(EntityFrameworkQueryableExtensions.AsTracking):
                        return call.Arguments.Count == 2 && call.Arguments[1] is ConstantExpression { Value: QueryTrackingBehavior behavior } ? behavior : QueryTrackingBehavior.TrackAll;
                    case nameof(EntityFrameworkQueryableExtensions.AsNoTracking):
                        return QueryTrackingBehavior.NoTracking;
                    case nameof(EntityFrameworkQueryableExtensions.AsNoTrackingWithIdentityResolution):
                        return QueryTrackingBehavior.NoTrackingWithIdentityResolution;
                }
            }

            current = call.Arguments[0];
        }

        return context.ChangeTracker.QueryTrackingBehavior;
    }

    // The first entity type a projected value has (an entity, or a collection of entities), looking through the
    // anonymous types, DTO initializers and arrays that only carry values into the result.
    private static IEntityType? ReturnedEntity(Expression expression, IModel model)
    {
        switch (EncryptedQueryGuard.Strip(expression))
        {
            case NewExpression created:
                return created.Arguments.Select(a => ReturnedEntity(a, model)).FirstOrDefault(e => e is not null);
            case MemberInitExpression initialized:
                return ReturnedEntity(initialized.NewExpression, model)
                    ?? initialized.Bindings.OfType<MemberAssignment>().Select(b => ReturnedEntity(b.Expression, model)).FirstOrDefault(e => e is not null);
            case NewArrayExpression array:
                return array.Expressions.Select(a => ReturnedEntity(a, model)).FirstOrDefault(e => e is not null);
            case ConditionalExpression condition:
                return ReturnedEntity(condition.IfTrue, model) ?? ReturnedEntity(condition.IfFalse, model);
            case var value:
                return EntityOf(value.Type, model);
        }
    }

    private static IEntityType? EntityOf(Type type, IModel model)
    {
        if (type != typeof(string) && type != typeof(byte[]) && type.GetInterfaces().Append(type)
            .FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IEnumerable<>)) is { } enumerable)
        {
            type = enumerable.GetGenericArguments()[0];
        }

        return model.GetEntityTypes().FirstOrDefault(t => t.ClrType == type);
    }

    private sealed class NoTrackingRewriter(MethodCallExpression projection) : ExpressionVisitor
    {
        protected override Expression VisitMethodCall(MethodCallExpression node)
        {
            if (ReferenceEquals(node, projection))
            {
                return Expression.Call(AsNoTrackingMethod.MakeGenericMethod(node.Type.GetGenericArguments()[0]), node);
            }

            // Above the projection: an AsTracking() would win over the AsNoTracking() below it.
            var visited = base.VisitMethodCall(node);
            return visited is MethodCallExpression { Method.Name: nameof(EntityFrameworkQueryableExtensions.AsTracking) } tracking
                && tracking.Method.DeclaringType == typeof(EntityFrameworkQueryableExtensions)
                ? tracking.Arguments[0]
                : visited;
        }
    }
}
