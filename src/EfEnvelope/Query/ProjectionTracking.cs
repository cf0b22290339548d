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
/// A projection that only reads members of entities (and queries their collection navigations) tracks nothing in plain
/// EF, which reads those columns, so running it without tracking changes nothing else: such a query gets
/// <c>AsNoTracking()</c> above its projection, and any <c>AsTracking()</c> composed after the projection is dropped. A
/// projection that uses an entity otherwise (returns it, passes it to a method) makes plain EF materialize and track
/// it, and then cannot read the database's encrypted value beside it: it is refused with the alternatives.
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
        if (UsedEntity(selector.Body, context.Model) is { } entity)
        {
            throw new InvalidOperationException(
                $"The tracking query projects encrypted property '{member}' beside an entity of type '{entity.DisplayName()}' (returned or passed to a method), which it tracks. " +
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

    // The first entity type the projection uses as a value. In plain EF, reading a member of an entity (c.Name,
    // o.Customer.Ssn) or querying a collection navigation (c.Orders.Count(), c.Orders.Select(o => o.Card)) reads
    // columns; any other use (the entity projected, passed to a method, converted) materializes it, and a tracking
    // query tracks it.
    private static IEntityType? UsedEntity(Expression node, IModel model) => Find(node, readThrough: false, model);

    // readThrough: the node is the instance of a member read, the source of a LINQ operator, or compared (a key
    // comparison in the database): an entity there is not materialized by that use. Recursion by node rather than a
    // visitor with a set of nodes, because a lambda's parameter is one node shared by all its uses.
    private static IEntityType? Find(Expression? node, bool readThrough, IModel model)
    {
        if (node is null)
        {
            return null;
        }

        if (!readThrough && EntityOf(node.Type, model) is { } entity)
        {
            return entity;
        }

        return node switch
        {
            MemberExpression member => Find(member.Expression, true, model),
            MethodCallExpression { Arguments.Count: > 0 } call when call.Method.DeclaringType == typeof(Enumerable) || call.Method.DeclaringType == typeof(Queryable) =>
                Find(call.Arguments[0], true, model) ?? FindAny(call.Arguments.Skip(1), model),
            MethodCallExpression call => Find(call.Object, false, model) ?? FindAny(call.Arguments, model),
            BinaryExpression { NodeType: ExpressionType.Equal or ExpressionType.NotEqual } comparison =>
                Find(comparison.Left, true, model) ?? Find(comparison.Right, true, model),
            BinaryExpression binary => Find(binary.Left, false, model) ?? Find(binary.Right, false, model),
            UnaryExpression { NodeType: ExpressionType.Convert or ExpressionType.ConvertChecked or ExpressionType.TypeAs } cast => Find(cast.Operand, readThrough, model),
            UnaryExpression unary => Find(unary.Operand, false, model),
            TypeBinaryExpression test => Find(test.Expression, true, model),
            LambdaExpression lambda => Find(lambda.Body, false, model),
            NewExpression created => FindAny(created.Arguments, model),
            MemberInitExpression initialized => Find(initialized.NewExpression, false, model) ?? FindInBindings(initialized.Bindings, model),
            ListInitExpression list => Find(list.NewExpression, false, model) ?? FindAny(list.Initializers.SelectMany(i => i.Arguments), model),
            NewArrayExpression array => FindAny(array.Expressions, model),
            ConditionalExpression condition => Find(condition.Test, false, model) ?? Find(condition.IfTrue, false, model) ?? Find(condition.IfFalse, false, model),
            InvocationExpression invocation => Find(invocation.Expression, false, model) ?? FindAny(invocation.Arguments, model),
            _ => null,
        };
    }

    private static IEntityType? FindAny(IEnumerable<Expression> nodes, IModel model) =>
        nodes.Select(n => Find(n, false, model)).FirstOrDefault(e => e is not null);

    private static IEntityType? FindInBindings(IEnumerable<MemberBinding> bindings, IModel model) =>
        bindings.Select(binding => binding switch
        {
            MemberAssignment assignment => Find(assignment.Expression, false, model),
            MemberListBinding list => FindAny(list.Initializers.SelectMany(i => i.Arguments), model),
            MemberMemberBinding nested => FindInBindings(nested.Bindings, model),
            _ => null,
        }).FirstOrDefault(e => e is not null);

    private static IEntityType? EntityOf(Type type, IModel model)
    {
        if (type != typeof(string) && type != typeof(byte[]) && type.GetInterfaces().Append(type)
            .FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IEnumerable<>)) is { } enumerable)
        {
            type = enumerable.GetGenericArguments()[0];
        }

        return model.GetEntityTypes().FirstOrDefault(t => t.ClrType.IsAssignableFrom(type));
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
