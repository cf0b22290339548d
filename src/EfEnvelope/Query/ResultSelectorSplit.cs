using System.Linq.Expressions;
using Microsoft.EntityFrameworkCore.Query;

namespace EfEnvelope.Query;

/// <summary>Turns the result selector of a join or a <c>SelectMany</c> that reads encrypted properties into a <c>Select</c>.</summary>
/// <remarks>
/// <c>Join(orders, c =&gt; c.Id, o =&gt; o.CustomerId, (c, o) =&gt; new { c.Email, o.CardNumber })</c> (and query syntax
/// without anything between the join and its select) projects in the join itself, where EfEnvelope cannot read an
/// encrypted value: the value exists only once EF has materialized and decrypted the entity. The same query written
/// as <c>Join(..., (c, o) =&gt; new Pair { First = c, Second = o }).Select(p =&gt; new { p.First.Email, p.Second.CardNumber })</c>
/// means the same rows in the same order, and its projection is an ordinary one that EfEnvelope reads (and composes,
/// tracks or refuses) as every other. GroupJoin's result selector sees a group, not a row, and is left as written.
/// </remarks>
internal static class ResultSelectorSplit
{
    // Operator name and the number of arguments of the overload whose last argument is the result selector (no comparer).
    private static readonly Dictionary<string, int> Splittable = new(StringComparer.Ordinal)
    {
        [nameof(Queryable.Join)] = 5,
        [nameof(Queryable.LeftJoin)] = 5,
        [nameof(Queryable.RightJoin)] = 5,
        [nameof(Queryable.SelectMany)] = 3,
    };

    /// <summary>The query with every such result selector that reads an encrypted property moved into a <c>Select</c>.</summary>
    /// <param name="query">The query expression EF is about to compile.</param>
    /// <param name="encryptedMember">The first encrypted property an expression reads ("Type.Property"), or null.</param>
    public static Expression Split(Expression query, Func<Expression, string?> encryptedMember) => new Splitter(encryptedMember).Visit(query);

    private sealed class Splitter(Func<Expression, string?> encryptedMember) : ExpressionVisitor
    {
        protected override Expression VisitMethodCall(MethodCallExpression node)
        {
            node = (MethodCallExpression)base.VisitMethodCall(node);
            if (node.Method.DeclaringType != typeof(Queryable) || !Splittable.TryGetValue(node.Method.Name, out var count) || node.Arguments.Count != count
                || EncryptedQueryGuard.Unquote(node.Arguments[^1]) is not LambdaExpression { Parameters: [var first, var second] } selector
                || (node.Method.Name == nameof(Queryable.SelectMany) && EncryptedQueryGuard.Unquote(node.Arguments[1]) is LambdaExpression { Parameters.Count: not 1 })
                || encryptedMember(selector.Body) is null)
            {
                return node;
            }

            var pairType = typeof(Pair<,>).MakeGenericType(first.Type, second.Type);
            var pairing = Expression.Lambda(
                Expression.MemberInit(
                    Expression.New(pairType),
                    Expression.Bind(pairType.GetProperty(nameof(Pair<int, int>.First))!, first),
                    Expression.Bind(pairType.GetProperty(nameof(Pair<int, int>.Second))!, second)),
                first,
                second);
            var generic = node.Method.GetGenericArguments();
            generic[^1] = pairType;
            var paired = Expression.Call(node.Method.GetGenericMethodDefinition().MakeGenericMethod(generic), [.. node.Arguments.SkipLast(1), Expression.Quote(pairing)]);

            var pair = Expression.Parameter(pairType, "pair");
            var body = ReplacingExpressionVisitor.Replace(
                [first, second],
                [Expression.Property(pair, nameof(Pair<int, int>.First)), Expression.Property(pair, nameof(Pair<int, int>.Second))],
                selector.Body);
            return Expression.Call(
                typeof(Queryable), nameof(Queryable.Select), [pairType, selector.ReturnType], paired, Expression.Quote(Expression.Lambda(body, pair)));
        }
    }

    /// <summary>The two rows a join or SelectMany pairs, before the projection reads them.</summary>
    internal sealed class Pair<TFirst, TSecond>
    {
        public TFirst First { get; init; } = default!;

        public TSecond Second { get; init; } = default!;
    }
}
