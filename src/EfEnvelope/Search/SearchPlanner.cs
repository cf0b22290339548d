using System.Linq.Expressions;
using System.Runtime.CompilerServices;
using EfEnvelope.Infrastructure;
using EfEnvelope.Metadata;
using EfEnvelope.Query;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Search;

/// <summary>A query prepared for execution, and the checks its results need after decryption.</summary>
/// <param name="Query">The query to run (constants compared with searchable properties turned into parameters).</param>
/// <param name="Filters">Checks on results, one per comparison with a truncated index: rows that fail are dropped.</param>
/// <param name="Checks">Checks on results, one per equality with a full-length index: a row that fails is tampering.</param>
/// <param name="UsesIndex">Whether the query compares any blind index (its key must be at hand).</param>
internal sealed record SearchPlan(Expression Query, IReadOnlyList<SearchFilter> Filters, IReadOnlyList<SearchFilter> Checks, bool UsesIndex);

/// <summary>A comparison with a blind index: a result row must hold one of the searched values.</summary>
internal sealed record SearchFilter(EncryptedProperty Property, EncryptedEntity Entity, Func<IReadOnlyList<object?>> Values);

/// <summary>Finds comparisons with searchable encrypted properties in a LINQ query (before EF parameterizes it).</summary>
internal sealed class SearchPlanner(EnvelopeRuntime runtime, IModel model) : ExpressionVisitor
{
    private static readonly HashSet<string> FilteringOperators = ["Where", .. SearchQueryCompiler.Terminals];

    // Operators between a truncated comparison and the query's result that keep "drop the rows that fail it" exact:
    // they neither limit nor reshape the rows (Take or Skip would have chosen rows before the false positives go).
    private static readonly HashSet<string> RowPreservingOperators =
        ["Where", "OrderBy", "OrderByDescending", "ThenBy", "ThenByDescending", "AsNoTracking", "AsTracking",
         "AsNoTrackingWithIdentityResolution", "Include", "ThenInclude", "AsSplitQuery", "AsSingleQuery", "TagWith",
         "TagWithCallSite", "IgnoreQueryFilters", "IgnoreAutoIncludes", .. SearchQueryCompiler.Terminals];

    // Operators between a full-length comparison and the query's result that keep the result made of the entities the
    // comparison filtered, so that each returned entity can be checked against it: Take and Skip choose among them.
    private static readonly HashSet<string> EntityReturningOperators = [.. RowPreservingOperators, "Take", "Skip", "Distinct", "Reverse"];

    private readonly List<SearchFilter> _filters = [];
    private readonly List<SearchFilter> _checks = [];
    private readonly HashSet<MethodCallExpression> _rootChain = [];
    private bool _rootChainPreservesRows = true;
    private bool _rootChainReturnsEntities = true;
    private bool _usesIndex;
    private MethodCallExpression? _projection;

    // The lambda parameter whose predicate is being visited, while the current node is on its top-level AND chain:
    // only there does dropping a row that fails the comparison equal filtering by it.
    private ParameterExpression? _conjunctOf;

    public SearchPlan Plan(Expression query)
    {
        _projection = EncryptedQueryGuard.FindProjection(query);
        for (var node = query as MethodCallExpression; node is not null && node.Arguments.Count > 0; node = node.Arguments[0] as MethodCallExpression)
        {
            _rootChain.Add(node);
            _rootChainPreservesRows &= RowPreservingOperators.Contains(node.Method.Name);
            _rootChainReturnsEntities &= EntityReturningOperators.Contains(node.Method.Name);
        }

        var prepared = Visit(query);
        return new SearchPlan(prepared, _filters, _checks, _usesIndex);
    }

    protected override Expression VisitMethodCall(MethodCallExpression node)
    {
        if (ReferenceEquals(node, _projection))
        {
            // The final projection runs on decrypted entities; nothing in it reaches the database.
            return node.Update(node.Object, [Visit(node.Arguments[0]), .. node.Arguments.Skip(1)]);
        }

        if (node.Method.DeclaringType == typeof(Queryable) && FilteringOperators.Contains(node.Method.Name) && node.Arguments.Count == 2
            && EncryptedQueryGuard.Unquote(node.Arguments[1]) is LambdaExpression predicate)
        {
            var source = Visit(node.Arguments[0]);
            var outer = _conjunctOf;

            // Only a predicate of the query's own chain filters the rows it returns; one in a subquery does not.
            _conjunctOf = _rootChain.Contains(node) ? predicate.Parameters[0] : null;
            var body = Visit(predicate.Body);
            _conjunctOf = outer;
            return node.Update(node.Object, [source, Expression.Quote(Expression.Lambda(body, predicate.Parameters))]);
        }

        if (node.Method.Name == nameof(Enumerable.Contains) && node.Arguments.Count > 0 && node.Object?.Type != typeof(string))
        {
            var itemIndex = node.Object is null ? node.Arguments.Count - 1 : 0;
            if (Searchable(node.Arguments[itemIndex]) is { } item)
            {
                _usesIndex = true;
                var list = node.Object ?? node.Arguments[0];
                if (Inline(list) is { } inline)
                {
                    // An inline list of constants would be logged with the query expression: make it a parameter.
                    var box = Activator.CreateInstance(typeof(StrongBox<>).MakeGenericType(inline.Type), Evaluate(inline)())!;
                    list = ReplaceWithin(list, inline, Expression.Field(Expression.Constant(box), nameof(StrongBox<object>.Value)));
                    node = node.Object is null
                        ? node.Update(null, [list, .. node.Arguments.Skip(1)])
                        : node.Update(list, node.Arguments);
                }

                var truncated = IsTruncated(item.Property);
                if (truncated)
                {
                    Require(item, "Contains");
                }

                if (truncated || (Verifiable(item) && IsClientValue(list)))
                {
                    var values = Evaluate(Unspan(list));
                    (truncated ? _filters : _checks).Add(new SearchFilter(item.Property, item.Entity, () => ((System.Collections.IEnumerable?)values() ?? Array.Empty<object>()).Cast<object?>().ToList()));
                }

                return node;
            }
        }

        if (node.Method.Name == nameof(Equals) && node.Method.ReturnType == typeof(bool))
        {
            var (left, right) = node.Object is not null && node.Arguments.Count == 1
                ? (node.Object, node.Arguments[0])
                : node.Object is null && node.Arguments.Count == 2 ? (node.Arguments[0], node.Arguments[1]) : (null, null);
            if (left is not null && right is not null && (Searchable(left) is not null || Searchable(right) is not null))
            {
                var comparison = Comparison(ExpressionType.Equal, left, right);
                return comparison ?? node;
            }
        }

        // Any other call: its arguments are not on a predicate's AND chain.
        var saved = _conjunctOf;
        _conjunctOf = null;
        var result = base.VisitMethodCall(node);
        _conjunctOf = saved;
        return result;
    }

    protected override Expression VisitBinary(BinaryExpression node)
    {
        if (node.NodeType == ExpressionType.AndAlso)
        {
            return base.VisitBinary(node);
        }

        if (node.NodeType is ExpressionType.Equal or ExpressionType.NotEqual && Comparison(node.NodeType, node.Left, node.Right) is { } rewritten)
        {
            return rewritten;
        }

        var saved = _conjunctOf;
        _conjunctOf = null;
        var result = base.VisitBinary(node);
        _conjunctOf = saved;
        return result;
    }

    protected override Expression VisitUnary(UnaryExpression node)
    {
        var saved = _conjunctOf;
        _conjunctOf = node.NodeType is ExpressionType.Quote or ExpressionType.Convert ? saved : null;
        var result = base.VisitUnary(node);
        _conjunctOf = saved;
        return result;
    }

    protected override Expression VisitConditional(ConditionalExpression node)
    {
        var saved = _conjunctOf;
        _conjunctOf = null;
        var result = base.VisitConditional(node);
        _conjunctOf = saved;
        return result;
    }

    private Expression? Comparison(ExpressionType comparison, Expression left, Expression right)
    {
        var leftMember = Searchable(left);
        var rightMember = Searchable(right);
        if (leftMember is null && rightMember is null)
        {
            return null;
        }

        if (leftMember is not null && rightMember is not null)
        {
            return Expression.MakeBinary(comparison, left, right);
        }

        _usesIndex = true;
        var (member, value) = leftMember is not null ? (leftMember.Value, right) : (rightMember!.Value, left);
        var stripped = EncryptedQueryGuard.Strip(value);
        if (stripped is ConstantExpression { Value: null })
        {
            return Expression.MakeBinary(comparison, left, right);
        }

        if (stripped is ConstantExpression constant)
        {
            // A parameter instead of a constant: EF logs query expressions with constants, parameters by name only.
            var box = Activator.CreateInstance(typeof(StrongBox<>).MakeGenericType(constant.Type), constant.Value)!;
            value = ReplaceWithin(value, stripped, Expression.Field(Expression.Constant(box), nameof(StrongBox<object>.Value)));
        }

        if (IsTruncated(member.Property))
        {
            if (comparison != ExpressionType.Equal)
            {
                throw new InvalidOperationException(
                    $"The query tests '{member.Property.EntityName}.{member.Property.Name}' for inequality, but its blind index is truncated: rows sharing the index with the value would be missed. Compare for equality, or keep the full index.");
            }

            Require(member, "==");
            _filters.Add(new SearchFilter(member.Property, member.Entity, Single(Evaluate(value))));
        }
        else if (comparison == ExpressionType.Equal && Verifiable(member) && IsClientValue(value))
        {
            // A full-length index matches one value only, so a returned row holding another value cannot be a
            // collision: its index column was copied from another row. Checked after decryption (issue 12, item 4).
            _checks.Add(new SearchFilter(member.Property, member.Entity, Single(Evaluate(value))));
        }

        return leftMember is not null ? Expression.MakeBinary(comparison, left, value) : Expression.MakeBinary(comparison, value, right);
    }

    private void Require((MemberExpression Member, EncryptedProperty Property, EncryptedEntity Entity) found, string what)
    {
        if (!Checkable(found))
        {
            throw new InvalidOperationException(
                $"The query compares '{found.Property.EntityName}.{found.Property.Name}' ({what}), whose blind index is truncated, where its false positives cannot be removed after decryption. "
                + "Such a comparison must be a top-level AND condition of a Where (or First, Single, Count, Any) over the entities the query returns: no projection, subquery, join, Take or Skip.");
        }
    }

    // Whether the comparison filters the very entities the query returns (a top-level AND condition of the query's own
    // Where, no projection, nothing that limits or reshapes rows): only then can each result be checked against it.
    private bool Checkable((MemberExpression Member, EncryptedProperty Property, EncryptedEntity Entity) found) =>
        _projection is null && _rootChainPreservesRows && _conjunctOf is not null && EncryptedQueryGuard.Strip(found.Member.Expression!) == _conjunctOf;

    // Whether each entity the query returns passed the comparison (a top-level AND condition of the query's own Where,
    // no projection; Take and Skip allowed): then a returned entity whose decrypted value fails it had its full-length
    // index copied from another row.
    private bool Verifiable((MemberExpression Member, EncryptedProperty Property, EncryptedEntity Entity) found) =>
        _projection is null && _rootChainReturnsEntities && _conjunctOf is not null && EncryptedQueryGuard.Strip(found.Member.Expression!) == _conjunctOf;

    // A value the client knows before the query runs (a constant or captured variable), not a column or a compiled
    // query's parameter: only such a value can be compared with the decrypted results.
    private static bool IsClientValue(Expression value) => !ParameterFinder.Finds(value);

    private static Func<IReadOnlyList<object?>> Single(Func<object?> value) => () => [value()];

    // The literal list under conversions (C# 14 binds array.Contains to MemoryExtensions through op_Implicit).
    private static Expression? Inline(Expression list)
    {
        var inner = EncryptedQueryGuard.Strip(list);
        while (inner is MethodCallExpression { Method.Name: "op_Implicit", Arguments: [var argument] })
        {
            inner = EncryptedQueryGuard.Strip(argument);
        }

        return inner is ConstantExpression { Value: not null } or NewArrayExpression or ListInitExpression ? inner : null;
    }

    // The list itself, not the span C# 14 converts it to for MemoryExtensions.Contains (a span cannot be boxed).
    private static Expression Unspan(Expression list)
    {
        var inner = EncryptedQueryGuard.Strip(list);
        while (inner is MethodCallExpression { Method.Name: "op_Implicit", Arguments: [var argument] })
        {
            inner = EncryptedQueryGuard.Strip(argument);
        }

        return inner;
    }

    private static Func<object?> Evaluate(Expression expression)
    {
        var lambda = Expression.Lambda<Func<object?>>(Expression.Convert(expression, typeof(object)));
        return lambda.Compile(preferInterpretation: true);
    }

    private static bool IsTruncated(EncryptedProperty property) => property.Search?.IsTruncated == true;

    private (MemberExpression Member, EncryptedProperty Property, EncryptedEntity Entity)? Searchable(Expression expression) =>
        EncryptedQueryGuard.Resolve(runtime, model, EncryptedQueryGuard.PropertyByName(runtime, model, expression) ?? expression) is { Property.Index: not null } found ? found : null;

    private static Expression ReplaceWithin(Expression root, Expression target, Expression replacement) =>
        ReferenceEquals(root, target) ? replacement : new Replacer(target, replacement).Visit(root)!;

    private sealed class ParameterFinder : ExpressionVisitor
    {
        private bool _found;

        public static bool Finds(Expression expression)
        {
            var finder = new ParameterFinder();
            finder.Visit(expression);
            return finder._found;
        }

        protected override Expression VisitParameter(ParameterExpression node)
        {
            _found = true;
            return node;
        }

        // EF's own nodes (a compiled query's parameters) are known only when the query runs.
        protected override Expression VisitExtension(Expression node)
        {
            _found = true;
            return node;
        }
    }

    private sealed class Replacer(Expression target, Expression replacement) : ExpressionVisitor
    {
        public override Expression? Visit(Expression? node) => node is not null && ReferenceEquals(node, target) ? replacement : base.Visit(node);
    }
}
