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
/// <para>
/// With or without tracking, such a projection of values loses the <c>Include</c> calls below it, which plain EF
/// ignores there (<see cref="IncludeRemover"/>).
/// </para>
/// </remarks>
internal static class ProjectionTracking
{
    private static readonly MethodInfo AsNoTrackingMethod =
        typeof(EntityFrameworkQueryableExtensions).GetMethod(nameof(EntityFrameworkQueryableExtensions.AsNoTracking))!;

    /// <summary>The query (and its projection), made not to track when its final projection reads encrypted properties and returns only values.</summary>
    /// <param name="query">The query expression, its projection already moved last (<see cref="ProjectionComposition"/>).</param>
    /// <param name="projection">The final <c>Select</c> of <paramref name="query"/>, if any.</param>
    /// <param name="context">The context compiling the query, whose default tracking behaviour applies.</param>
    /// <param name="encryptedMember">The first encrypted property ("Type.Property") an expression reads, or null.</param>
    /// <exception cref="InvalidOperationException">The projection returns tracked entities beside encrypted values.</exception>
    public static (Expression Query, MethodCallExpression? Projection) Apply(Expression query, MethodCallExpression? projection, DbContext context, Func<Expression, string?> encryptedMember)
    {
        if (projection is null || encryptedMember(projection.Arguments[1]) is not { } member)
        {
            return (query, projection);
        }

        var tracking = EffectiveTracking(query, context) == QueryTrackingBehavior.TrackAll;
        var selector = (LambdaExpression)EncryptedQueryGuard.Unquote(projection.Arguments[1]);
        if (UsedEntity(selector.Body, context.Model, encryptedMember) is { } entity)
        {
            if (!tracking)
            {
                return (query, projection);
            }

            throw new InvalidOperationException(
                $"The tracking query projects encrypted property '{member}' beside an entity of type '{entity.DisplayName()}' (returned, passed to a method, or read through a member EF does not map), which it tracks. " +
                "EfEnvelope reads an encrypted value from its entity, and in a tracking query that is the tracked instance, which may hold unsaved edits or older values than the row, " +
                "where plain EF reads the column. Read the property from the projected entity instead, or add AsNoTracking() (and attach what you edit), or project values only.");
        }

        var rewriter = new ValueProjectionRewriter(projection, tracking);
        var rewritten = rewriter.Visit(query);
        return (rewritten, rewriter.Projection);
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
    private static IEntityType? UsedEntity(Expression node, IModel model, Func<Expression, string?> encryptedMember) =>
        new EntityUses(model, encryptedMember).Find(node, readThrough: false);

    // readThrough: the node is the instance of a mapped member read, the source of a LINQ operator, the entity of
    // EF.Property, or compared (a key comparison in the database): an entity there is not materialized by that use.
    // Recursion by node rather than a visitor with a set of nodes, because a lambda's parameter is one node shared by
    // all its uses.
    private sealed class EntityUses(IModel model, Func<Expression, string?> encryptedMember)
    {
        public IEntityType? Find(Expression? node, bool readThrough)
        {
            if (node is null)
            {
                return null;
            }

            // An entity instance the projection creates (new Customer { Name = c.Name }) is a value to EF: it neither
            // materializes nor tracks it; only its arguments and bindings may use entities.
            if (!readThrough && node is not (NewExpression or MemberInitExpression) && EntityOf(node.Type) is { } entity)
            {
                return entity;
            }

            return node switch
            {
                MemberExpression member => Member(member),
                MethodCallExpression { Arguments.Count: > 0 } call when call.Method.DeclaringType == typeof(Enumerable) || call.Method.DeclaringType == typeof(Queryable)
                    || (call.Method.DeclaringType == typeof(EF) && call.Method.Name == nameof(EF.Property)) =>
                    Find(call.Arguments[0], true) ?? FindAny(call.Arguments.Skip(1)),
                // d.Lines[1]: an item of a collection navigation, read in the database (a JSON path, a subquery).
                MethodCallExpression { Method.Name: "get_Item", Object: { } list } indexer when EntityOf(list.Type) is not null && DeclaredByDotNet(indexer.Method) =>
                    Find(list, true) ?? FindAny(indexer.Arguments),
                MethodCallExpression call => Find(call.Object, false) ?? FindAny(call.Arguments),
                BinaryExpression { NodeType: ExpressionType.Equal or ExpressionType.NotEqual } comparison => Find(comparison.Left, true) ?? Find(comparison.Right, true),
                BinaryExpression binary => Find(binary.Left, false) ?? Find(binary.Right, false),
                UnaryExpression { NodeType: ExpressionType.Convert or ExpressionType.ConvertChecked or ExpressionType.TypeAs } cast => Find(cast.Operand, readThrough),
                UnaryExpression unary => Find(unary.Operand, false),
                TypeBinaryExpression test => Find(test.Expression, true),
                LambdaExpression lambda => Find(lambda.Body, false),
                NewExpression created => FindAny(created.Arguments),
                MemberInitExpression initialized => Find(initialized.NewExpression, false) ?? FindInBindings(initialized.Bindings),
                ListInitExpression list => Find(list.NewExpression, false) ?? FindAny(list.Initializers.SelectMany(i => i.Arguments)),
                NewArrayExpression array => FindAny(array.Expressions),
                ConditionalExpression condition => Find(condition.Test, false) ?? Find(condition.IfTrue, false) ?? Find(condition.IfFalse, false),
                InvocationExpression invocation => Find(invocation.Expression, false) ?? FindAny(invocation.Arguments),
                _ => null,
            };
        }

        // A member EF maps (or an encrypted one) is a column or navigation read; any other member of an entity
        // (computed, [NotMapped]) is evaluated on the client from the materialized entity, and so is a member that a
        // collection type of the application's declares (OrderList.Total). A group's Key and a .NET collection's own
        // members (Count) EF translates without materializing the entities.
        private IEntityType? Member(MemberExpression member)
        {
            if (member.Expression is not { } instance || EntityOf(instance.Type) is not { } entity)
            {
                return Find(member.Expression, true);
            }

            if (entity.ClrType != instance.Type)
            {
                return DeclaredByDotNet(member) ? Find(instance, true) : entity;
            }

            return entity.FindProperty(member.Member.Name) is null && entity.FindNavigation(member.Member.Name) is null
                && entity.FindSkipNavigation(member.Member.Name) is null && entity.FindComplexProperty(member.Member.Name) is null
                && encryptedMember(member) is null
                ? entity
                : Find(instance, true);
        }

        // IGrouping<,>.Key, List<T>.Count, an array's Length, List<T>'s indexer.
        private static bool DeclaredByDotNet(MemberExpression member) => DeclaredByDotNet(member.Member);

        private static bool DeclaredByDotNet(MemberInfo member) =>
            member.DeclaringType?.Namespace is { } name && (name == "System" || name.StartsWith("System.", StringComparison.Ordinal));

        private IEntityType? FindAny(IEnumerable<Expression> nodes) =>
            nodes.Select(n => Find(n, false)).FirstOrDefault(e => e is not null);

        private IEntityType? FindInBindings(IEnumerable<MemberBinding> bindings) =>
            bindings.Select(binding => binding switch
            {
                MemberAssignment assignment => Find(assignment.Expression, false),
                MemberListBinding list => FindAny(list.Initializers.SelectMany(i => i.Arguments)),
                MemberMemberBinding nested => FindInBindings(nested.Bindings),
                _ => null,
            }).FirstOrDefault(e => e is not null);

        // The entity type of a value: exactly an entity type's CLR type, or a collection of one.
        private IEntityType? EntityOf(Type type)
        {
            if (type != typeof(string) && type != typeof(byte[]) && type.GetInterfaces().Append(type)
                .FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IEnumerable<>)) is { } enumerable)
            {
                type = enumerable.GetGenericArguments()[0];
            }

            return model.GetEntityTypes().FirstOrDefault(t => t.ClrType == type);
        }
    }

    // A projection that returns only values: its source loses the Include calls the projection ignores, and a tracking
    // query runs without tracking.
    private sealed class ValueProjectionRewriter(MethodCallExpression projection, bool tracking) : ExpressionVisitor
    {
        /// <summary>The projection as rewritten.</summary>
        public MethodCallExpression? Projection { get; private set; }

        protected override Expression VisitMethodCall(MethodCallExpression node)
        {
            if (ReferenceEquals(node, projection))
            {
                var source = new IncludeRemover().Visit(node.Arguments[0]);
                Projection = node.Update(node.Object, [tracking ? NoTracking(source) : source, .. node.Arguments.Skip(1)]);
                return Projection;
            }

            // Above the projection: an AsTracking() would win over the AsNoTracking() below it.
            var visited = base.VisitMethodCall(node);
            return tracking && visited is MethodCallExpression { Method.Name: nameof(EntityFrameworkQueryableExtensions.AsTracking) } asTracking
                && asTracking.Method.DeclaringType == typeof(EntityFrameworkQueryableExtensions)
                ? asTracking.Arguments[0]
                : visited;
        }

        // AsNoTracking() takes a query of a reference type: the projection's source, or the first one below it (a
        // projection to int reads a query of entities).
        private static Expression NoTracking(Expression source)
        {
            var element = source.Type.GetGenericArguments()[0];
            if (!element.IsValueType)
            {
                return Expression.Call(AsNoTrackingMethod.MakeGenericMethod(element), source);
            }

            return source is MethodCallExpression { Arguments.Count: > 0 } call
                ? call.Update(call.Object, [NoTracking(call.Arguments[0]), .. call.Arguments.Skip(1)])
                : source;
        }
    }

    // A projection of values ignores the Include calls below it in plain EF (in a joined or nested query too). Here the
    // projection reads members of entities it materializes, which EF would load the included entities into; without
    // tracking, EF also refuses an Include path that cycles (c.Orders, then o.Customer) where plain EF runs the query.
    private sealed class IncludeRemover : ExpressionVisitor
    {
        protected override Expression VisitMethodCall(MethodCallExpression node) =>
            node.Method.DeclaringType == typeof(EntityFrameworkQueryableExtensions)
            && node.Method.Name is nameof(EntityFrameworkQueryableExtensions.Include) or nameof(EntityFrameworkQueryableExtensions.ThenInclude)
                ? Visit(node.Arguments[0])
                : base.VisitMethodCall(node);
    }
}
