using System.Linq.Expressions;
using System.Reflection;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Query;

/// <summary>Moves a projection that reads encrypted properties after the operators composed on it, where that keeps the query's meaning.</summary>
/// <remarks>
/// <para>
/// EF reads an encrypted property in the final projection by materializing the entity and running the selector on
/// the decrypted instance. An operator composed after that projection (<c>Select(c =&gt; new { c.Name, c.Notes
/// }).Where(x =&gt; x.Name != "a").OrderBy(x =&gt; x.Name).Skip(10)</c>) would have to run in the database over the
/// projected values, which EF cannot do for a value only the client knows. A projection maps rows one to one, so
/// <c>Where</c>, ordering, paging and counting give the same answer when they run on the source rows with the
/// selector substituted into their lambdas: <c>Where(c =&gt; c.Name != "a").OrderBy(c =&gt; c.Name).Skip(10).Select(c =&gt;
/// new { c.Name, c.Notes })</c>. What the substituted lambdas then read is checked like any other filter: plain
/// members translate, a searchable member compares its blind index, anything else is refused by the guard.
/// </para>
/// <para>
/// Operators that compare projected values with each other (<c>Distinct</c>, <c>Union</c>, <c>Intersect</c>,
/// <c>Except</c>) cannot move: the database would compare random ciphertext (or whole rows, key included) and keep
/// equal values apart. They are refused here with the client-side alternative.
/// </para>
/// </remarks>
internal static class ProjectionComposition
{
    // Operators that keep, drop or reorder rows without looking at anything but their own lambda: the projection can
    // move above them. Their first generic argument is the element type.
    private static readonly HashSet<string> Movable =
    [
        nameof(Queryable.Where), nameof(Queryable.OrderBy), nameof(Queryable.OrderByDescending), nameof(Queryable.ThenBy),
        nameof(Queryable.ThenByDescending), nameof(Queryable.Skip), nameof(Queryable.Take),
        nameof(EntityFrameworkQueryableExtensions.AsNoTracking), nameof(EntityFrameworkQueryableExtensions.AsTracking),
        nameof(EntityFrameworkQueryableExtensions.AsNoTrackingWithIdentityResolution), nameof(EntityFrameworkQueryableExtensions.TagWith),
        nameof(EntityFrameworkQueryableExtensions.IgnoreQueryFilters),
    ];

    // Operators that end the query with one projected row: the projection stays directly under them.
    private static readonly HashSet<string> RowTerminals =
    [
        nameof(Queryable.First), nameof(Queryable.FirstOrDefault), nameof(Queryable.Single), nameof(Queryable.SingleOrDefault),
        nameof(Queryable.Last), nameof(Queryable.LastOrDefault), nameof(Queryable.ElementAt), nameof(Queryable.ElementAtOrDefault),
    ];

    // Operators whose answer does not depend on the projected values (a projection keeps the number of rows): the
    // projection is dropped, and a predicate runs on the source rows.
    private static readonly HashSet<string> CountingTerminals =
    [
        nameof(Queryable.Count), nameof(Queryable.LongCount), nameof(Queryable.Any), nameof(Queryable.All),
    ];

    private static readonly HashSet<string> SetOperators =
    [
        nameof(Queryable.Distinct), nameof(Queryable.Union), nameof(Queryable.Intersect), nameof(Queryable.Except),
        nameof(Queryable.Concat), nameof(Queryable.UnionBy), nameof(Queryable.IntersectBy), nameof(Queryable.ExceptBy), nameof(Queryable.DistinctBy),
    ];

    /// <summary>The query with its projection moved last (or dropped under a count), or the query itself when nothing needs to move.</summary>
    /// <param name="query">The query expression EF is about to compile.</param>
    /// <param name="encryptedMember">The first encrypted property an expression reads ("Type.Property"), or null.</param>
    public static Expression Compose(Expression query, Func<Expression, string?> encryptedMember)
    {
        var operators = new List<MethodCallExpression>();
        var current = query;
        while (current is MethodCallExpression call && IsQueryOperator(call) && call.Arguments.Count > 0)
        {
            if (call.Method.Name == nameof(Queryable.Select) && operators.Count > 0 && Lambda(call, 1) is { Parameters.Count: 1 } selector)
            {
                return encryptedMember(selector.Body) is { } property ? Rebuild(call, selector, operators, property) ?? query : query;
            }

            if (SetOperators.Contains(call.Method.Name) && call.Arguments.Count > 1 && ProjectedMember(call.Arguments[1], encryptedMember) is { } other)
            {
                throw SetOperatorRefused(call.Method.Name, other);
            }

            operators.Insert(0, call);
            current = call.Arguments[0];
        }

        return query;
    }

    // The encrypted property read by the last projection of a query given as an argument (the other side of a Union).
    private static string? ProjectedMember(Expression query, Func<Expression, string?> encryptedMember)
    {
        while (query is MethodCallExpression call && IsQueryOperator(call) && call.Arguments.Count > 0)
        {
            if (call.Method.Name == nameof(Queryable.Select) && Lambda(call, 1) is { } selector)
            {
                return encryptedMember(selector.Body);
            }

            query = call.Arguments[0];
        }

        return null;
    }

    private static InvalidOperationException SetOperatorRefused(string name, string property) =>
        new($"The query applies {name} to a projection that reads encrypted property '{property}'. {name} would compare or combine the values in the database, where they are random ciphertext (equal values look different). "
            + $"Call AsEnumerable() before {name} to apply it to the decrypted values after loading.");

    // Null when an operator cannot move: the query then stays as written.
    private static Expression? Rebuild(MethodCallExpression select, LambdaExpression selector, List<MethodCallExpression> operators, string property)
    {
        var source = select.Arguments[0];
        var sourceType = selector.Parameters[0].Type;
        for (var i = 0; i < operators.Count; i++)
        {
            var op = operators[i];
            var name = op.Method.Name;
            var last = i == operators.Count - 1;
            if (SetOperators.Contains(name))
            {
                throw SetOperatorRefused(name, property);
            }

            if (Movable.Contains(name) && op.Arguments.Skip(1).All(a => Lambda(a) is null or { Parameters.Count: 1 }))
            {
                source = Reapply(op, source, sourceType, selector);
            }
            else if (last && RowTerminals.Contains(name))
            {
                // A predicate moves below the projection as a Where; any other argument (ElementAt's index, a
                // default value) stays with the terminal, whose element type is still the projected one.
                var predicate = Lambda(op, 1);
                if (predicate is not null)
                {
                    source = Call(nameof(Queryable.Where), [sourceType], source, Substitute(predicate, selector));
                }

                var projected = Expression.Call(typeof(Queryable), nameof(Queryable.Select), [sourceType, selector.Body.Type], source, Expression.Quote(selector));
                return predicate is null ? op.Update(null, [projected, .. op.Arguments.Skip(1)]) : Call(name, [selector.Body.Type], projected);
            }
            else if (last && CountingTerminals.Contains(name) && (op.Arguments.Count == 1 || Lambda(op, 1) is not null))
            {
                return op.Arguments.Count == 2
                    ? Call(name, [sourceType], source, Substitute(Lambda(op, 1)!, selector))
                    : Call(name, [sourceType], source);
            }
            else
            {
                // Anything else (GroupBy, Join, a second Select, an aggregate of the values, an indexed Where) stays
                // as written; the guard refuses what of it would run over ciphertext.
                return null;
            }
        }

        return Expression.Call(typeof(Queryable), nameof(Queryable.Select), [sourceType, selector.Body.Type], source, Expression.Quote(selector));
    }

    private static Expression Reapply(MethodCallExpression op, Expression source, Type sourceType, LambdaExpression selector)
    {
        var definition = op.Method.GetGenericMethodDefinition();
        var typeArguments = op.Method.GetGenericArguments();
        typeArguments[0] = sourceType;
        var arguments = op.Arguments.Skip(1).Select(a => Lambda(a) is { Parameters.Count: 1 } lambda && lambda.Parameters[0].Type == selector.Body.Type
            ? Substitute(lambda, selector)
            : a);
        return Expression.Call(definition.MakeGenericMethod(typeArguments), [source, .. arguments]);
    }

    /// <summary><paramref name="lambda"/> over the projected value, rewritten over the source row: the selector's body replaces its parameter.</summary>
    private static UnaryExpression Substitute(LambdaExpression lambda, LambdaExpression selector)
    {
        var body = new Inliner(lambda.Parameters[0], selector.Body).Visit(lambda.Body);
        return Expression.Quote(Expression.Lambda(body, selector.Parameters));
    }

    private static MethodCallExpression Call(string name, Type[] typeArguments, params Expression[] arguments) =>
        Expression.Call(typeof(Queryable), name, typeArguments, arguments);

    private static bool IsQueryOperator(MethodCallExpression call) =>
        call.Method.DeclaringType == typeof(Queryable) || call.Method.DeclaringType == typeof(EntityFrameworkQueryableExtensions);

    private static LambdaExpression? Lambda(MethodCallExpression call, int index) =>
        call.Arguments.Count > index ? Lambda(call.Arguments[index]) : null;

    private static LambdaExpression? Lambda(Expression argument) =>
        EncryptedQueryGuard.Unquote(argument) as LambdaExpression;

    /// <summary>Replaces a parameter by an expression, reading members of a constructed value (<c>new { c.Name }.Name</c>) as the expression that initialised them.</summary>
    private sealed class Inliner(ParameterExpression parameter, Expression replacement) : ExpressionVisitor
    {
        protected override Expression VisitParameter(ParameterExpression node) => node == parameter ? replacement : node;

        protected override Expression VisitMember(MemberExpression node)
        {
            var instance = Visit(node.Expression);
            return Initializer(instance, node.Member) ?? node.Update(instance);
        }

        private static Expression? Initializer(Expression? instance, MemberInfo member)
        {
            switch (instance)
            {
                case NewExpression { Members: { } members } created:
                    for (var i = 0; i < members.Count; i++)
                    {
                        if (SameMember(members[i], member))
                        {
                            return created.Arguments[i];
                        }
                    }

                    return null;
                case MemberInitExpression initialized:
                    return initialized.Bindings.OfType<MemberAssignment>().FirstOrDefault(b => SameMember(b.Member, member))?.Expression;
                default:
                    return null;
            }
        }

        // An anonymous type's constructor parameters are matched to its properties through their get methods.
        private static bool SameMember(MemberInfo declared, MemberInfo read) =>
            declared == read
            || (declared is MethodInfo getter && read is PropertyInfo property && property.GetMethod == getter)
            || (declared.Name == read.Name && declared.DeclaringType == read.DeclaringType);
    }
}
