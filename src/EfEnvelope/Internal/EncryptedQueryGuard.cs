using System.Linq.Expressions;
using System.Reflection;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Query;

namespace EfEnvelope.Internal;

/// <summary>Refuses queries that would make the database compare, order, search or set encrypted values.</summary>
/// <remarks>
/// The database holds random ciphertext, so such a query could only return wrong results; EF's own error for an
/// unmapped member does not say why. Reading an encrypted property in the final projection is allowed: EF
/// materializes the entity and the projection runs on the decrypted instance.
/// </remarks>
internal sealed class EncryptedQueryGuard(EnvelopeRuntime runtime) : IQueryExpressionInterceptor
{
    private static readonly HashSet<string> ResultOperators =
    [
        "First", "FirstOrDefault", "Single", "SingleOrDefault", "Last", "LastOrDefault", "ElementAt", "ElementAtOrDefault",
        "Take", "Skip", "Distinct", "AsNoTracking", "AsTracking", "AsNoTrackingWithIdentityResolution", "AsSplitQuery",
        "AsSingleQuery", "TagWith", "TagWithCallSite", "IgnoreQueryFilters", "IgnoreAutoIncludes",
    ];

    public Expression QueryCompilationStarting(Expression queryExpression, QueryExpressionEventData eventData)
    {
        if (eventData.Context is { } context)
        {
            new Visitor(runtime, context, FindProjection(queryExpression)).Visit(queryExpression);
        }

        return queryExpression;
    }

    // The last Select of the query, under operators that only pick rows of its result: its selector may read
    // encrypted properties.
    private static MethodCallExpression? FindProjection(Expression expression)
    {
        while (expression is MethodCallExpression call && call.Arguments.Count > 0)
        {
            if (call.Method.Name == nameof(Queryable.Select) && call.Method.DeclaringType == typeof(Queryable))
            {
                return call;
            }

            if (!ResultOperators.Contains(call.Method.Name) || call.Arguments.Count > 2 || (call.Arguments.Count == 2 && Unquote(call.Arguments[1]) is LambdaExpression))
            {
                return null;
            }

            expression = call.Arguments[0];
        }

        return null;
    }

    private static Expression Unquote(Expression expression) =>
        expression is UnaryExpression { NodeType: ExpressionType.Quote } quote ? quote.Operand : expression;

    private sealed class Visitor(EnvelopeRuntime runtime, DbContext context, MethodCallExpression? projection) : ExpressionVisitor
    {
        private bool _inProjection;
        private string _operator = "the query";

        protected override Expression VisitMethodCall(MethodCallExpression node)
        {
            var outerProjection = _inProjection;
            var outerOperator = _operator;
            if (ReferenceEquals(node, projection))
            {
                Visit(node.Arguments[0]);
                _inProjection = true;
                Visit(node.Arguments[1]);
                _inProjection = outerProjection;
                return node;
            }

            // Inside the projection, a nested query operator (a filtered collection, a count) runs in the database.
            var isQueryOperator = node.Method.DeclaringType is { } declaring
                && (declaring == typeof(Queryable) || declaring == typeof(Enumerable) || declaring.Name.Contains("EntityFrameworkQueryableExtensions", StringComparison.Ordinal));
            var isDatabaseFunction = node.Method.DeclaringType == typeof(string) || node.Method.DeclaringType == typeof(DbFunctionsExtensions);
            if (isQueryOperator || isDatabaseFunction || node.Method.Name.StartsWith("SetProperty", StringComparison.Ordinal))
            {
                _inProjection = false;
                _operator = node.Method.Name;
            }

            var result = base.VisitMethodCall(node);
            _inProjection = outerProjection;
            _operator = outerOperator;
            return result;
        }

        protected override Expression VisitBinary(BinaryExpression node)
        {
            var outer = _operator;
            if (!_inProjection)
            {
                _operator = $"a comparison ({node.NodeType})";
            }

            var result = base.VisitBinary(node);
            _operator = outer;
            return result;
        }

        protected override Expression VisitMember(MemberExpression node)
        {
            if (!_inProjection && node.Member is PropertyInfo property && node.Expression is not null && IsEncrypted(node.Expression.Type, property))
            {
                throw new InvalidOperationException(Explain(node.Expression.Type, property.Name));
            }

            return base.VisitMember(node);
        }

        private string Explain(Type type, string property)
        {
            var name = $"'{type.Name}.{property}'";
            var why = _operator switch
            {
                "OrderBy" or "OrderByDescending" or "ThenBy" or "ThenByDescending" or "Min" or "Max" =>
                    "The database holds random ciphertext, which has no order. Order after loading, or by another property.",
                "StartsWith" or "EndsWith" or "Contains" or "Like" or "IndexOf" or "ToUpper" or "ToLower" or "Trim" or "Substring" =>
                    "The database holds random ciphertext, so patterns cannot match it. Search after loading.",
                "ExecuteUpdate" or "ExecuteUpdateAsync" or "SetProperty" =>
                    "The database cannot encrypt, so ExecuteUpdate would store plaintext or garbage. Load the entities, set the property and call SaveChanges.",
                "GroupBy" or "Join" or "GroupJoin" or "Distinct" =>
                    "The database holds random ciphertext: equal values do not look equal. Group or join after loading.",
                _ =>
                    "The database holds random ciphertext: equal values do not look equal, so comparing it cannot find anything. Equality search through a blind index is planned; until then filter after loading.",
            };
            return $"The query uses encrypted property {name} in {_operator}, which EfEnvelope cannot translate. {why}";
        }

        private bool IsEncrypted(Type type, PropertyInfo property)
        {
            foreach (var entityType in context.Model.GetEntityTypes())
            {
                if (entityType.ClrType.IsAssignableFrom(type) || type.IsAssignableFrom(entityType.ClrType))
                {
                    var encrypted = runtime.Find(entityType);
                    if (encrypted is not null && Array.Exists(encrypted.Properties, p => p.Name == property.Name))
                    {
                        return true;
                    }
                }
            }

            return false;
        }
    }
}
