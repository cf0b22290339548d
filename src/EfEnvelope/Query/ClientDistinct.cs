using System.Linq.Expressions;
using System.Runtime.CompilerServices;
using EfEnvelope.Metadata;

namespace EfEnvelope.Query;

/// <summary>
/// Applies <c>Distinct</c> to a projection that reads encrypted properties on the decrypted values, after loading, where
/// that gives the answer the database gives for plaintext.
/// </summary>
/// <remarks>
/// <para>
/// In the database, <c>Distinct</c> would compare random ciphertext and keep equal values apart, so the query runs
/// without it and the rows are made distinct as they are read: <c>Select(c =&gt; c.Notes).Distinct()</c>, its
/// <c>Count()</c>, <c>LongCount()</c> and <c>Any()</c>. Row order is not defined by <c>Distinct</c> in either case.
/// </para>
/// <para>
/// Only where .NET equality is the database's: values of the plain types (strings compared ordinally, as SQLite's and
/// PostgreSQL's default collations do) and anonymous types made of them. Other element types (a class without value
/// equality would keep every row), other operators composed after <c>Distinct</c>, and SQL Server (whose default
/// collations ignore case) stay refused by the query guard, with the advice <c>AsEnumerable().Distinct()</c>.
/// </para>
/// </remarks>
internal static class ClientDistinct
{
    private static readonly HashSet<string> Terminals = [nameof(Queryable.Count), nameof(Queryable.LongCount), nameof(Queryable.Any)];

    /// <summary>The query without its <c>Distinct</c>, the terminal operator over it if any, and the element type; null when it does not apply.</summary>
    /// <param name="query">The query about to be executed.</param>
    /// <param name="encryptedMember">The first encrypted property an expression reads, or null.</param>
    public static (Expression Source, string? Terminal, Type ElementType)? Split(Expression query, Func<Expression, string?> encryptedMember)
    {
        string? terminal = null;
        var current = query;
        if (current is MethodCallExpression { Arguments.Count: 1 } top && top.Method.DeclaringType == typeof(Queryable) && Terminals.Contains(top.Method.Name))
        {
            terminal = top.Method.Name;
            current = top.Arguments[0];
        }

        if (current is not MethodCallExpression { Method.Name: nameof(Queryable.Distinct), Arguments.Count: 1 } distinct
            || distinct.Method.DeclaringType != typeof(Queryable))
        {
            return null;
        }

        var source = distinct.Arguments[0];
        var elementType = distinct.Method.GetGenericArguments()[0];
        return EncryptedQueryGuard.FindProjection(source) is { } projection && encryptedMember(projection.Arguments[1]) is not null && HasValueEquality(elementType)
            ? (source, terminal, elementType)
            : null;
    }

    /// <summary>The distinct rows, or the terminal operator's answer over them.</summary>
    public static TResult Apply<T, TResult>(IEnumerable<T> rows, string? terminal) => terminal switch
    {
        null => (TResult)(object)rows.Distinct(Equality<T>()),
        nameof(Queryable.Count) => (TResult)(object)rows.Distinct(Equality<T>()).Count(),
        nameof(Queryable.LongCount) => (TResult)(object)rows.Distinct(Equality<T>()).LongCount(),
        _ => (TResult)(object)rows.Any(),
    };

    /// <summary>The distinct rows of an asynchronous query, streamed.</summary>
    public static async IAsyncEnumerable<T> DistinctAsync<T>(IAsyncEnumerable<T> rows, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var seen = new HashSet<T>(Equality<T>());
        await foreach (var row in rows.WithCancellation(cancellationToken).ConfigureAwait(false))
        {
            if (seen.Add(row))
            {
                yield return row;
            }
        }
    }

    /// <summary>The terminal operator's answer over the distinct rows of an asynchronous query.</summary>
    public static async Task<TResult> TerminalAsync<T, TResult>(IAsyncEnumerable<T> rows, string terminal, CancellationToken cancellationToken)
    {
        // Apply makes the rows distinct, once.
        var all = new List<T>();
        await foreach (var row in rows.WithCancellation(cancellationToken).ConfigureAwait(false))
        {
            all.Add(row);
        }

        return Apply<T, TResult>(all, terminal);
    }

    // A DateTimeOffset only as the element itself, compared by instant and offset as SQLite compares its text (and as
    // PostgreSQL, which returns offset 0 only, cannot tell apart); an anonymous type's equality would compare its
    // DateTimeOffset members by instant only.
    private static bool HasValueEquality(Type type, bool member = false)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        if (type.IsPrimitive || type.IsEnum || type == typeof(string) || type == typeof(decimal) || type == typeof(Guid)
            || type == typeof(DateTime) || type == typeof(DateOnly) || type == typeof(TimeOnly) || type == typeof(TimeSpan)
            || (type == typeof(DateTimeOffset) && !member))
        {
            return true;
        }

        // An anonymous type compares its members.
        return Attribute.IsDefined(type, typeof(CompilerGeneratedAttribute)) && type.Name.Contains("AnonymousType", StringComparison.Ordinal)
            && type.GetProperties().All(p => HasValueEquality(p.PropertyType, member: true));
    }

    private static IEqualityComparer<T> Equality<T>() =>
        typeof(T) == typeof(DateTimeOffset) || typeof(T) == typeof(DateTimeOffset?)
            ? (IEqualityComparer<T>)(object)ExactDateTimeOffsets.Instance
            : EqualityComparer<T>.Default;
}
