using System.Linq.Expressions;
using System.Reflection;
using EfEnvelope.Query;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Metadata;

/// <summary>
/// Rewrites the global query filters (<c>HasQueryFilter</c>) that read encrypted properties, once the model knows
/// which properties are encrypted; refuses what a filter cannot do over ciphertext.
/// </summary>
/// <remarks>
/// EF inlines a query filter after the query interceptors have run, so the query guard never sees it: a filter that
/// names an encrypted property reached EF's translator as a member it does not map, and every query of the entity type
/// (<c>Find</c> included) failed with EF's "could not be translated". A null test needs no plaintext (nullness is stored
/// in the clear), so <c>x.Notes != null</c> and <c>x.Score.HasValue</c> become tests of the ciphertext column; anything
/// else would compare ciphertext, and is refused when the model is built.
/// </remarks>
internal static class EncryptedQueryFilters
{
    private static readonly MethodInfo PropertyMethod = typeof(EF).GetMethod(nameof(EF.Property))!.MakeGenericMethod(typeof(byte[]));

    /// <summary>Rewrites the null tests of encrypted properties in every query filter of <paramref name="model"/>.</summary>
    /// <exception cref="InvalidOperationException">A filter uses an encrypted property other than in a null test.</exception>
    public static void Rewrite(IConventionModel model)
    {
        var encrypted = model.GetEntityTypes()
            .Where(t => t.FindAnnotation(EncryptionAnnotations.EncryptedProperties)?.Value is string[])
            .Select(t => (t.ClrType, Names: (string[])t.FindAnnotation(EncryptionAnnotations.EncryptedProperties)!.Value!))
            .ToList();
        if (encrypted.Count == 0)
        {
            return;
        }

        foreach (var entityType in model.GetEntityTypes())
        {
            foreach (var filter in entityType.GetDeclaredQueryFilters().ToList())
            {
                var named = new ByName(encrypted).Visit(filter.Expression)!;
                var rewritten = (LambdaExpression)new Rewriter(encrypted, entityType).Visit(named)!;
                if (ReferenceEquals(rewritten, filter.Expression))
                {
                    continue;
                }

                var mutable = (IMutableEntityType)entityType;
                if (filter.IsAnonymous)
                {
                    mutable.SetQueryFilter(rewritten);
                }
                else
                {
                    mutable.SetQueryFilter(filter.Key, rewritten);
                }
            }
        }
    }

    // EF.Property<string>(x, "Text") names an encrypted property as x.Text does; as that member it is rewritten or refused.
    private sealed class ByName(List<(Type ClrType, string[] Names)> encrypted) : ExpressionVisitor
    {
        protected override Expression VisitMethodCall(MethodCallExpression node)
        {
            if (node.Method is { Name: nameof(EF.Property), IsGenericMethod: true } && node.Method.DeclaringType == typeof(EF)
                && node.Arguments[1] is ConstantExpression { Value: string name }
                && EncryptedQueryGuard.Strip(node.Arguments[0]) is var instance
                && encrypted.Exists(e => e.ClrType.IsAssignableFrom(instance.Type) && e.Names.Contains(name))
                && instance.Type.GetProperty(name, BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance) is { } property)
            {
                var member = Expression.Property(Visit(instance), property);
                return member.Type == node.Type ? member : Expression.Convert(member, node.Type);
            }

            return base.VisitMethodCall(node);
        }
    }

    private sealed class Rewriter(List<(Type ClrType, string[] Names)> encrypted, IConventionEntityType filtered) : ExpressionVisitor
    {
        protected override Expression VisitBinary(BinaryExpression node)
        {
            if (node.NodeType is ExpressionType.Equal or ExpressionType.NotEqual)
            {
                if (IsNull(node.Right) && Find(node.Left) is { } left)
                {
                    return Expression.MakeBinary(node.NodeType, Ciphertext(left), Expression.Constant(null, typeof(byte[])));
                }

                if (IsNull(node.Left) && Find(node.Right) is { } right)
                {
                    return Expression.MakeBinary(node.NodeType, Ciphertext(right), Expression.Constant(null, typeof(byte[])));
                }
            }

            return base.VisitBinary(node);
        }

        protected override Expression VisitMember(MemberExpression node)
        {
            if (node is { Member.Name: nameof(Nullable<int>.HasValue), Expression: { } nullable } && Find(nullable) is { } tested)
            {
                return Expression.NotEqual(Ciphertext(tested), Expression.Constant(null, typeof(byte[])));
            }

            if (Find(node) is { } used)
            {
                throw new InvalidOperationException(
                    $"The query filter of entity type '{filtered.DisplayName()}' uses encrypted property '{used.Expression!.Type.Name}.{used.Member.Name}' other than in a null test. " +
                    "The database holds random ciphertext, so the filter cannot compare it: filter on a plain property (or on whether the value is null), or apply the condition after loading.");
            }

            return base.VisitMember(node);
        }

        private static bool IsNull(Expression expression) => EncryptedQueryGuard.Strip(expression) is ConstantExpression { Value: null };

        // The encrypted member a (possibly converted) expression reads.
        private MemberExpression? Find(Expression expression) =>
            EncryptedQueryGuard.Strip(expression) is MemberExpression { Member: PropertyInfo property, Expression: { } instance } member
            && encrypted.Exists(e => e.ClrType.IsAssignableFrom(instance.Type) && e.Names.Contains(property.Name))
                ? member
                : null;

        private MethodCallExpression Ciphertext(MemberExpression member) =>
            Expression.Call(
                PropertyMethod,
                Expression.Convert(Visit(member.Expression!)!, typeof(object)),
                Expression.Constant(EncryptionAnnotations.CiphertextPropertyName(member.Member.Name)));
    }
}
