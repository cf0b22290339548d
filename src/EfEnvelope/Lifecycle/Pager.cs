using System.Linq.Expressions;
using System.Reflection;
using System.Runtime.CompilerServices;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Lifecycle;

/// <summary>Reads one root entity type in primary-key order, a batch at a time (keyset pagination, never OFFSET).</summary>
internal interface IPager
{
    IReadOnlyList<IProperty> KeyProperties { get; }

    Task<long> CountAsync(CancellationToken cancellationToken);

    /// <summary>Rows after a key, in the paging order.</summary>
    Task<long> CountAfterAsync(object?[] after, CancellationToken cancellationToken);

    /// <summary>The next <paramref name="take"/> entities after <paramref name="after"/> (null: from the start), tracked.</summary>
    Task<List<object>> LoadBatchAsync(object?[]? after, int take, CancellationToken cancellationToken);

    /// <summary>The primary keys of that same batch, read without materializing (so without decrypting) any entity.</summary>
    Task<List<object?[]>> LoadKeysAsync(object?[]? after, int take, CancellationToken cancellationToken);

    /// <summary>One entity by primary key, tracked; null when it no longer exists.</summary>
    Task<object?> LoadOneAsync(object?[] key, CancellationToken cancellationToken);

    /// <summary>The primary key of the row at <paramref name="offset"/> in the paging order (0 is the first); null past the end.</summary>
    Task<object?[]?> LoadKeyAtAsync(long offset, CancellationToken cancellationToken);
}

internal static class Pager
{
    /// <summary>A pager over every row of <paramref name="root"/>, or only over the rows of <paramref name="range"/>.</summary>
    public static IPager Create(DbContext context, IEntityType root, KeyRange? range = null) =>
        (IPager)Activator.CreateInstance(typeof(Pager<>).MakeGenericType(root.ClrType), context, root, range)!;
}

internal sealed class Pager<T> : IPager
    where T : class
{
    private static readonly MethodInfo PropertyMethod = typeof(EF).GetMethod(nameof(EF.Property))!;
    private static readonly MethodInfo OrderBy = typeof(Queryable).GetMethods().Single(m => m.Name == nameof(Queryable.OrderBy) && m.GetParameters().Length == 2);
    private static readonly MethodInfo ThenBy = typeof(Queryable).GetMethods().Single(m => m.Name == nameof(Queryable.ThenBy) && m.GetParameters().Length == 2);
    private static readonly MethodInfo StringCompare = typeof(string).GetMethod(nameof(string.Compare), [typeof(string), typeof(string)])!;

    private readonly DbContext _context;
    private readonly IProperty[] _key;
    private readonly KeyRange? _range;

    public Pager(DbContext context, IEntityType root, KeyRange? range)
    {
        _range = range;
        _context = context;
        _key = [.. root.FindPrimaryKey()?.Properties
            ?? throw new NotSupportedException($"Entity type '{root.DisplayName()}' has no primary key: lifecycle jobs page by primary key.")];
        foreach (var property in _key)
        {
            if (!IsOrdered(property.ClrType))
            {
                throw new NotSupportedException(
                    $"Primary key property '{root.DisplayName()}.{property.Name}' has type '{property.ClrType.Name}', which lifecycle jobs cannot page by: use a key of a numeric, string, Guid or date type.");
            }
        }
    }

    public IReadOnlyList<IProperty> KeyProperties => _key;

    // Query filters would hide rows (soft-deleted ones, other tenants) that hold encrypted data all the same.
    private IQueryable<T> Source
    {
        get
        {
            var query = _context.Set<T>().IgnoreQueryFilters();
            if (_range?.After is { } after)
            {
                query = query.Where(After(after));
            }

            // A partition's upper key is its own: NOT (key > upTo), in the paging order.
            return _range?.UpTo is { } upTo ? query.Where(Not(After(upTo))) : query;
        }
    }

    public Task<long> CountAsync(CancellationToken cancellationToken) => Source.LongCountAsync(cancellationToken);

    public Task<long> CountAfterAsync(object?[] after, CancellationToken cancellationToken) => Source.Where(After(after)).LongCountAsync(cancellationToken);

    public Task<List<object>> LoadBatchAsync(object?[]? after, int take, CancellationToken cancellationToken) =>
        Page(Source.AsTracking(), after, take).Cast<object>().ToListAsync(cancellationToken);

    public Task<List<object?[]>> LoadKeysAsync(object?[]? after, int take, CancellationToken cancellationToken)
    {
        var entity = Expression.Parameter(typeof(T), "e");
        var projection = Expression.Lambda<Func<T, object?[]>>(
            Expression.NewArrayInit(typeof(object), _key.Select(p => Expression.Convert(Property(entity, p), typeof(object)))),
            entity);
        return Page(Source.AsNoTracking(), after, take).Select(projection).ToListAsync(cancellationToken);
    }

    public async Task<object?> LoadOneAsync(object?[] key, CancellationToken cancellationToken)
    {
        var entity = Expression.Parameter(typeof(T), "e");
        Expression? body = null;
        for (var i = 0; i < _key.Length; i++)
        {
            var equal = Expression.Equal(Property(entity, _key[i]), Value(_key[i].ClrType, key[i]));
            body = body is null ? equal : Expression.AndAlso(body, equal);
        }

        return await Source.AsTracking().Where(Expression.Lambda<Func<T, bool>>(body!, entity)).SingleOrDefaultAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<object?[]?> LoadKeyAtAsync(long offset, CancellationToken cancellationToken)
    {
        var entity = Expression.Parameter(typeof(T), "e");
        var projection = Expression.Lambda<Func<T, object?[]>>(
            Expression.NewArrayInit(typeof(object), _key.Select(p => Expression.Convert(Property(entity, p), typeof(object)))),
            entity);
        var ordered = Ordered(Source.AsNoTracking());
        return await ordered.Skip(checked((int)offset)).Select(projection).FirstOrDefaultAsync(cancellationToken).ConfigureAwait(false);
    }

    private static Expression<Func<T, bool>> Not(Expression<Func<T, bool>> predicate) =>
        Expression.Lambda<Func<T, bool>>(Expression.Not(predicate.Body), predicate.Parameters);

    private IQueryable<T> Page(IQueryable<T> query, object?[]? after, int take)
    {
        if (after is not null)
        {
            query = query.Where(After(after));
        }

        return Ordered(query).Take(take);
    }

    private IOrderedQueryable<T> Ordered(IQueryable<T> query)
    {
        var entity = Expression.Parameter(typeof(T), "e");
        IOrderedQueryable<T>? ordered = null;
        foreach (var property in _key)
        {
            var selector = Expression.Lambda(Property(entity, property), entity);
            var method = (ordered is null ? OrderBy : ThenBy).MakeGenericMethod(typeof(T), property.ClrType);
            ordered = (IOrderedQueryable<T>)method.Invoke(null, [ordered ?? query, selector])!;
        }

        return ordered!;
    }

    /// <summary>(k1 &gt; v1) OR (k1 = v1 AND k2 &gt; v2) OR ...: rows after the given key, in the same order as ORDER BY k1, k2.</summary>
    private Expression<Func<T, bool>> After(object?[] after)
    {
        var entity = Expression.Parameter(typeof(T), "e");
        Expression? result = null;
        for (var i = 0; i < _key.Length; i++)
        {
            Expression term = GreaterThan(Property(entity, _key[i]), Value(_key[i].ClrType, after[i]), _key[i].ClrType);
            for (var j = i - 1; j >= 0; j--)
            {
                term = Expression.AndAlso(Expression.Equal(Property(entity, _key[j]), Value(_key[j].ClrType, after[j])), term);
            }

            result = result is null ? term : Expression.OrElse(result, term);
        }

        return Expression.Lambda<Func<T, bool>>(result!, entity);
    }

    private static bool IsOrdered(Type type) =>
        type == typeof(string) || type == typeof(Guid) || type == typeof(DateTime) || type == typeof(DateTimeOffset) || type == typeof(DateOnly)
        || type == typeof(decimal) || type.IsEnum || (type.IsPrimitive && type != typeof(bool) && type != typeof(char) && type != typeof(IntPtr) && type != typeof(UIntPtr));

    private static Expression GreaterThan(Expression left, Expression right, Type type)
    {
        if (type == typeof(string))
        {
            return Expression.GreaterThan(Expression.Call(StringCompare, left, right), Expression.Constant(0));
        }

        if (type.IsEnum)
        {
            var underlying = Enum.GetUnderlyingType(type);
            return Expression.GreaterThan(Expression.Convert(left, underlying), Expression.Convert(right, underlying));
        }

        // Guid has no comparison operator EF translates; CompareTo(...) > 0 is the pattern EF turns into "k > @v".
        return type == typeof(Guid) || type == typeof(DateTimeOffset) || type == typeof(DateOnly)
            ? Expression.GreaterThan(Expression.Call(left, type.GetMethod(nameof(IComparable<int>.CompareTo), [type])!, right), Expression.Constant(0))
            : Expression.GreaterThan(left, right);
    }

    private static Expression Property(ParameterExpression entity, IProperty property) =>
        Expression.Call(PropertyMethod.MakeGenericMethod(property.ClrType), entity, Expression.Constant(property.Name));

    // A field of a constant object, not a constant: EF turns it into a SQL parameter, so every batch reuses one
    // compiled query instead of compiling a new one per key value.
    private static MemberExpression Value(Type type, object? value)
    {
        var box = (IStrongBox)Activator.CreateInstance(typeof(StrongBox<>).MakeGenericType(type), value)!;
        return Expression.Field(Expression.Constant(box), nameof(StrongBox<int>.Value));
    }
}
