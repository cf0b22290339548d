using System.Globalization;
using System.Linq.Expressions;
using System.Reflection;
using EfEnvelope.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Query;

namespace EfEnvelope.Query;

/// <summary>Translates equality on searchable encrypted properties to their blind index, and refuses what cannot work.</summary>
/// <remarks>
/// <para>
/// The database holds random ciphertext, so comparing, ordering or matching it could only return wrong results;
/// EF's own error for an unmapped member does not say why. Reading an encrypted property in the final projection is
/// allowed: EF materializes the entity and the projection runs on the decrypted instance.
/// </para>
/// <para>
/// <c>p.Ssn == x</c> on a searchable property becomes <c>EF.Property&lt;string&gt;(p, "Ssn_Index") == x</c>: the index
/// property's value converter turns <c>x</c> into its HMAC when EF binds the parameter, so the plaintext never
/// reaches the SQL text, its parameters or EF's logs. Comparing with null uses the ciphertext column (nullness is
/// visible anyway).
/// </para>
/// </remarks>
internal sealed class EncryptedQueryGuard(EnvelopeRuntime runtime) : IQueryExpressionInterceptor
{
    private static readonly HashSet<string> ResultOperators =
    [
        "First", "FirstOrDefault", "Single", "SingleOrDefault", "Last", "LastOrDefault", "ElementAt", "ElementAtOrDefault",
        "Take", "Skip", "Distinct", "AsNoTracking", "AsTracking", "AsNoTrackingWithIdentityResolution", "AsSplitQuery",
        "AsSingleQuery", "TagWith", "TagWithCallSite", "IgnoreQueryFilters", "IgnoreAutoIncludes",
    ];

    // Operators between a nested collection read and its last Select that only pick or gather its elements.
    private static readonly HashSet<string> SingleRecordOperators =
    [
        nameof(Enumerable.First), nameof(Enumerable.FirstOrDefault), nameof(Enumerable.Single), nameof(Enumerable.SingleOrDefault),
        nameof(Enumerable.Last), nameof(Enumerable.LastOrDefault),
    ];

    private static readonly HashSet<string> NestedResultOperators =
    [
        nameof(Enumerable.ToList), nameof(Enumerable.ToArray), nameof(Enumerable.ToHashSet), nameof(Enumerable.AsEnumerable),
        nameof(Queryable.AsQueryable), nameof(Enumerable.Distinct), .. SingleRecordOperators,
    ];

    private static readonly MethodInfo LoadedMethod = typeof(EncryptedQueryGuard).GetMethod(nameof(Loaded), BindingFlags.NonPublic | BindingFlags.Static)!;

    public Expression QueryCompilationStarting(Expression queryExpression, QueryExpressionEventData eventData)
    {
        if (eventData.Context is { } context)
        {
            queryExpression = ResultSelectorSplit.Split(queryExpression, e => new EncryptedMemberFinder(runtime, context.Model).Find(e));
            queryExpression = Compose(runtime, context.Model, queryExpression);
            (queryExpression, var projection) = ProjectionTracking.Apply(queryExpression, FindProjection(queryExpression), context, e => new EncryptedMemberFinder(runtime, context.Model).Find(e));
            return new Visitor(runtime, context, projection).Visit(queryExpression);
        }

        return queryExpression;
    }

    // The last Select of the query, under operators that only pick rows of its result: its selector may read
    // encrypted properties.
    internal static MethodCallExpression? FindProjection(Expression expression)
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

    /// <summary>The query with a projection that reads encrypted properties moved after what is composed on it (<see cref="ProjectionComposition"/>).</summary>
    internal static Expression Compose(EnvelopeRuntime runtime, Microsoft.EntityFrameworkCore.Metadata.IModel model, Expression query) =>
        ProjectionComposition.Compose(query, e => new EncryptedMemberFinder(runtime, model).Find(e));

    /// <summary>The first encrypted property ("Type.Property") <paramref name="expression"/> reads, or null.</summary>
    internal static string? FindEncryptedMember(EnvelopeRuntime runtime, Microsoft.EntityFrameworkCore.Metadata.IModel model, Expression expression) =>
        new EncryptedMemberFinder(runtime, model).Find(expression);

    /// <summary>The entity itself; EF cannot translate it, so it materializes the entity passed in (see <c>ReadThroughOwner</c>).</summary>
    private static T Loaded<T>(T entity) => entity;

    private static readonly MethodInfo EnumTextMethod = typeof(EncryptedQueryGuard).GetMethod(nameof(EnumText), BindingFlags.NonPublic | BindingFlags.Static)!;

    private static readonly MethodInfo NullableEnumTextMethod = typeof(EncryptedQueryGuard).GetMethod(nameof(NullableEnumText), BindingFlags.NonPublic | BindingFlags.Static)!;

    /// <summary>An enum value as EF's translation of its <c>ToString()</c> gives it: a defined value's name, else its number.</summary>
    private static string EnumText<TEnum>(TEnum value)
        where TEnum : struct, Enum =>
        Array.IndexOf(DefinedValues<TEnum>.All, value) is var index and >= 0
            ? DefinedValues<TEnum>.All[index].ToString()
            : System.Convert.ToString(System.Convert.ChangeType(value, Enum.GetUnderlyingType(typeof(TEnum)), CultureInfo.InvariantCulture), CultureInfo.InvariantCulture)!;

    /// <summary>As <see cref="EnumText{TEnum}"/>; null reads as the empty string, as EF's translation gives it.</summary>
    private static string NullableEnumText<TEnum>(TEnum? value)
        where TEnum : struct, Enum =>
        value is { } defined ? EnumText(defined) : "";

    // In Enum.GetValues order, which EF's translation follows (the first name of a value defined twice).
    private static class DefinedValues<TEnum>
        where TEnum : struct, Enum
    {
        public static readonly TEnum[] All = Enum.GetValues<TEnum>();
    }

    /// <summary>The first encrypted property ("Type.Property") an expression reads.</summary>
    private sealed class EncryptedMemberFinder(EnvelopeRuntime runtime, Microsoft.EntityFrameworkCore.Metadata.IModel model) : ExpressionVisitor
    {
        private string? _found;

        public string? Find(Expression expression)
        {
            Visit(expression);
            return _found;
        }

        protected override Expression VisitMember(MemberExpression node)
        {
            if (_found is null && node.Member is PropertyInfo property && node.Expression is not null
                && runtime.FindEncryptedMember(model, node.Expression.Type, property.Name) is not null)
            {
                _found = $"{node.Expression.Type.Name}.{property.Name}";
            }

            return base.VisitMember(node);
        }
    }

    /// <summary>The expression under any conversions (nullable lifting, enums, boxing to object).</summary>
    internal static Expression Strip(Expression expression)
    {
        while (expression is UnaryExpression { NodeType: ExpressionType.Convert or ExpressionType.ConvertChecked } convert)
        {
            expression = convert.Operand;
        }

        return expression;
    }

    internal static Expression Unquote(Expression expression) =>
        expression is UnaryExpression { NodeType: ExpressionType.Quote } quote ? quote.Operand : expression;

    /// <summary>
    /// <c>EF.Property&lt;T&gt;(entity, "Name")</c> naming an encrypted CLR property (possibly under a conversion), as the
    /// member access it stands for; null for anything else. EF would fail to translate it over the ciphertext column with
    /// its own message; as a member access it gets the guard's translation or refusal, and a searched constant becomes a
    /// parameter as for <c>c.Email == value</c> (kept out of EF's query log).
    /// </summary>
    internal static Expression? PropertyByName(EnvelopeRuntime runtime, Microsoft.EntityFrameworkCore.Metadata.IModel model, Expression expression)
    {
        var call = Strip(expression);
        if (call is not MethodCallExpression { Method: { Name: nameof(EF.Property), IsGenericMethod: true } method } propertyCall
            || method.DeclaringType != typeof(EF) || propertyCall.Arguments[1] is not ConstantExpression { Value: string name })
        {
            return null;
        }

        var instance = Strip(propertyCall.Arguments[0]);
        if (instance.Type.GetProperty(name) is not { } property || property.PropertyType != propertyCall.Type
            || runtime.FindEncryptedMember(model, instance.Type, name) is null)
        {
            return null;
        }

        Expression access = Expression.Property(instance, property);
        return ReferenceEquals(call, expression) ? access : new MemberReplacer(propertyCall, access).Visit(expression);
    }

    // Replaces one node of a tree (by reference).
    private sealed class MemberReplacer(Expression target, Expression replacement) : ExpressionVisitor
    {
        public override Expression? Visit(Expression? node) => node == target ? replacement : base.Visit(node);
    }

    /// <summary>The encrypted property a (possibly converted) member access reads, if any.</summary>
    internal static (MemberExpression Member, Metadata.EncryptedProperty Property, Metadata.EncryptedEntity Entity)? Resolve(EnvelopeRuntime runtime, Microsoft.EntityFrameworkCore.Metadata.IModel model, Expression expression)
    {
        if (Strip(expression) is MemberExpression { Member: PropertyInfo property, Expression: { } instance } member
            && runtime.FindEncryptedMember(model, instance.Type, property.Name) is { } found)
        {
            return (member, found.Property, found.Entity);
        }

        return null;
    }

    private sealed class Visitor(EnvelopeRuntime runtime, DbContext context, MethodCallExpression? projection) : ExpressionVisitor
    {
        private bool _inProjection;

        // The conversions to a nullable type a projection applies to the encrypted member being visited, innermost
        // first ((long?)((Dog)a).Age: to long, then to long?), if any.
        private List<UnaryExpression>? _nullableResult;
        private string _operator = "the query";

        protected override Expression VisitMethodCall(MethodCallExpression node)
        {
            var outerProjection = _inProjection;
            var outerOperator = _operator;
            if (ReferenceEquals(node, projection))
            {
                var source = Visit(node.Arguments[0]);
                _inProjection = true;
                var selector = Visit(node.Arguments[1]);
                _inProjection = outerProjection;
                return node.Update(node.Object, [source, selector, .. node.Arguments.Skip(2)]);
            }

            if (!_inProjection && TryRewriteSearch(node) is { } rewritten)
            {
                return rewritten;
            }

            if (_inProjection && node is { Method.Name: nameof(ToString), Arguments.Count: 0, Object: { } value }
                && (Nullable.GetUnderlyingType(value.Type) ?? value.Type) is { IsEnum: true } enumType && Encrypted(value) is not null)
            {
                // EF translates an enum's ToString() to the name of a defined value and the number otherwise (and NULL
                // to ""); .NET names a combination of [Flags] values ("Read, Write" where the database gives "3").
                return Visit(Expression.Call((value.Type == enumType ? EnumTextMethod : NullableEnumTextMethod).MakeGenericMethod(enumType), value));
            }

            if (_inProjection && node.Method.Name == nameof(ToString) && NullPropagated(node, node.Type) is { } guarded)
            {
                return guarded;
            }

            if (_inProjection && FindNestedProjection(node) is { } nested)
            {
                return VisitNestedProjection(node, nested);
            }

            // Inside the projection, a nested query operator (a filtered collection, a count) runs in the database.
            var isQueryOperator = node.Method.DeclaringType is { } declaring
                && (declaring == typeof(Queryable) || declaring == typeof(Enumerable) || declaring.Name.Contains("EntityFrameworkQueryableExtensions", StringComparison.Ordinal));
            var isDatabaseFunction = node.Method.DeclaringType == typeof(string) || node.Method.DeclaringType == typeof(DbFunctionsExtensions)
                || (node.Method.Name == nameof(ToString) && node.Arguments.Count == 0 && node.Object is { } formatted && Encrypted(formatted) is not null
                    && !FormatsAlike(formatted.Type));
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
            if (!_inProjection && (ByName(node.Left) is not null || ByName(node.Right) is not null))
            {
                // EF.Property<string>(c, "Email") == value compares the encrypted property as c.Email == value does.
                node = node.Update(ByName(node.Left) ?? node.Left, node.Conversion, ByName(node.Right) ?? node.Right);
            }

            if (!_inProjection && node.NodeType is ExpressionType.Equal or ExpressionType.NotEqual
                && (Encrypted(node.Left) is not null || Encrypted(node.Right) is not null))
            {
                return RewriteEquality(node.NodeType, node.Left, node.Right);
            }

            if (_inProjection && node.NodeType == ExpressionType.Add && node.Method?.DeclaringType == typeof(string)
                && (AsNumber(node.Left) is not null || AsNumber(node.Right) is not null))
            {
                // "tier " + c.Tier: EF concatenates an enum's number (its column), where .NET would give its name.
                node = node.Update(AsNumber(node.Left) ?? node.Left, node.Conversion, AsNumber(node.Right) ?? node.Right);
            }

            var outer = _operator;
            var outerProjection = _inProjection;
            if (!_inProjection)
            {
                _operator = node.NodeType switch
                {
                    ExpressionType.Add when node.Method?.DeclaringType == typeof(string) => "a concatenation",
                    ExpressionType.Add or ExpressionType.AddChecked or ExpressionType.Subtract or ExpressionType.SubtractChecked
                        or ExpressionType.Multiply or ExpressionType.MultiplyChecked or ExpressionType.Divide or ExpressionType.Modulo
                        or ExpressionType.Power or ExpressionType.And or ExpressionType.Or or ExpressionType.ExclusiveOr
                        or ExpressionType.LeftShift or ExpressionType.RightShift or ExpressionType.Coalesce => $"a computation ({node.NodeType})",
                    ExpressionType.AndAlso or ExpressionType.OrElse => $"a condition ({node.NodeType})",
                    _ => $"a comparison ({node.NodeType})",
                };
            }
            else if (node.NodeType == ExpressionType.Add && node.Method?.DeclaringType == typeof(string)
                && (FormattedEncrypted(node.Left) || FormattedEncrypted(node.Right)))
            {
                // "v=" + c.Balance: string concatenation formats the value as ToString() does.
                _inProjection = false;
                _operator = nameof(ToString);
            }

            var result = base.VisitBinary(node);
            _operator = outer;
            _inProjection = outerProjection;
            return result;
        }

        protected override Expression VisitUnary(UnaryExpression node)
        {
            if (_inProjection && Checked(node) != node.NodeType && Encrypted(Strip(node.Operand)) is not null)
            {
                // (short)c.Big: the decrypted value is converted on the client, where plain EF's data reader refused a
                // value that does not fit (OverflowException); an unchecked conversion would truncate it instead.
                return VisitUnary(Expression.ConvertChecked(node.Operand, node.Type));
            }

            if (_inProjection && node.NodeType is ExpressionType.Convert or ExpressionType.ConvertChecked && CanBeNull(node.Type))
            {
                // (int?)c.Notes.Length: null where Notes is null, as the database's length(NULL) is.
                if (NullPropagated(node.Operand, node.Type) is { } guarded)
                {
                    return guarded;
                }

                // (int?)((Dog)a).Age, (int?)o.Customer.Score: null where the entity is of another type or missing. The
                // compiler writes (long?)((Dog)a).Age as a conversion to long, then to long?: the read value goes
                // through the same conversions.
                var conversions = new List<UnaryExpression> { node };
                var operand = node.Operand;
                while (operand is UnaryExpression { NodeType: ExpressionType.Convert or ExpressionType.ConvertChecked } inner && inner.Type.IsValueType)
                {
                    conversions.Insert(0, inner);
                    operand = inner.Operand;
                }

                if (operand is MemberExpression { Expression: { } instance and not ParameterExpression, Member: PropertyInfo } member
                    && Encrypted(member) is not null && !(Encrypted(member)!.Value.Entity.EntityType.IsOwned()))
                {
                    _nullableResult = conversions;
                    try
                    {
                        return Visit(member);
                    }
                    finally
                    {
                        _nullableResult = null;
                    }
                }
            }

            if (_inProjection && RoundsOnPostgres(node) && TranslatedByPostgres(node.Operand) && FindEncryptedMember(runtime, context.Model, node.Operand) is not null)
            {
                return Expression.MakeUnary(node.NodeType, RoundedAsPostgres(Visit(node.Operand), node.Type), node.Type, node.Method);
            }

            return base.VisitUnary(node);
        }

        protected override Expression VisitMember(MemberExpression node)
        {
            if (_inProjection && NullPropagated(node, node.Type) is { } guarded)
            {
                return guarded;
            }

            if (node is { Member.Name: nameof(Nullable<int>.HasValue), Expression: { } nullable }
                && Nullable.GetUnderlyingType(nullable.Type) is not null && Encrypted(nullable) is not null)
            {
                // c.Score.HasValue means c.Score != null, which the stored nullness answers, in a filter and in a
                // projection alike (where the decrypted value's HasValue made EF's shaper read a null as a value).
                return Visit(Expression.NotEqual(nullable, Expression.Constant(null, nullable.Type)));
            }

            if (node.Member is PropertyInfo property && node.Expression is not null && runtime.FindEncryptedMember(context.Model, node.Expression.Type, property.Name) is { } found)
            {
                if (!_inProjection)
                {
                    throw new InvalidOperationException(Explain(node.Expression.Type, property.Name, found.Property.Index is not null));
                }

                if (IsUncorrelatedRecordOnSqlite(node.Expression))
                {
                    throw UncorrelatedRecordOnSqlite($"{node.Expression.Type.Name}.{property.Name}", ((MethodCallExpression)node.Expression).Method.Name);
                }

                if (found.Entity.EntityType.IsOwned() && ReadThroughOwner(node) is { } throughOwner)
                {
                    return throughOwner;
                }

                var conversions = _nullableResult;
                _nullableResult = null;
                var resultType = conversions?[^1].Type ?? node.Type;
                Expression Converted(Expression value) =>
                    conversions?.Aggregate(
                        value,
                        (converted, step) => Expression.MakeUnary(Checked(step), RoundsOnPostgres(step) ? RoundedAsPostgres(converted, step.Type) : converted, step.Type, step.Method))
                    ?? value;
                var read = (MemberExpression)base.VisitMember(node);
                if (read.Expression is { } instance and not ParameterExpression)
                {
                    // The value is read on the client from an entity that a navigation or a left join may leave null,
                    // or that a cast to a derived type ((Dog)a, a as Dog) names although the row is of another type,
                    // where plain EF reads NULL from the column (and fails to put it into a type that cannot be null).
                    // Plain EF binds the member to the column of the type declaring it, whatever the cast names:
                    // ((Puppy)a).Vet, with Vet declared on Dog, reads every Dog's value, Puppy or not. So the test and
                    // the read use the declaring type.
                    Expression absent;
                    if (WithoutDowncasts(instance) is var root && root != instance)
                    {
                        var declaring = DeclaringEntityType(node.Expression!.Type, property);
                        var holds = declaring.IsAssignableFrom(root.Type);
                        absent = holds ? Expression.Equal(root, Expression.Constant(null, root.Type)) : Expression.Not(Expression.TypeIs(root, declaring));
                        read = Expression.MakeMemberAccess(holds ? root : Expression.Convert(root, declaring), property);
                    }
                    else
                    {
                        absent = Expression.Equal(instance, Expression.Constant(null, instance.Type));
                    }

                    var canBeNull = !resultType.IsValueType || Nullable.GetUnderlyingType(resultType) is not null;
                    var whenNull = canBeNull
                        ? (Expression)Expression.Default(resultType)
                        : Expression.Throw(
                            Expression.New(
                                typeof(InvalidOperationException).GetConstructor([typeof(string)])!,
                                Expression.Constant(
                                    $"The query reads encrypted property '{node.Expression!.Type.Name}.{property.Name}', of type {node.Type.Name}, through an entity that is null or of another type in a row (an optional navigation, a left join, or a cast to a derived type). " +
                                    $"Cast it to {node.Type.Name}? in the projection to read null there.")),
                            resultType);
                    return Expression.Condition(absent, whenNull, Converted(read));
                }

                return Converted(read);
            }

            return base.VisitMember(node);
        }

        // A conversion of a decrypted number (or enum) to an integer type (or an enum over one) is checked, as the data
        // readers' conversions are: SQLite and PostgreSQL refuse a value that does not fit. The exception is ulong on
        // SQLite, which stores it in a signed column and reads it from the column's bits (-1 reads as 2^64 - 1).
        // A char is left as .NET converts it (the providers do not agree on what (char)n reads).
        private ExpressionType Checked(UnaryExpression conversion) =>
            conversion is { NodeType: ExpressionType.Convert, Method: null } && IsNumber(conversion.Operand.Type) && IsInteger(conversion.Type)
                && !(Number(conversion.Type) == typeof(ulong) && OnSqlite)
                ? ExpressionType.ConvertChecked
                : conversion.NodeType;

        // PostgreSQL converts a real or a numeric to an integer by rounding, where .NET truncates: 2.5::float8::int is 2
        // (half to even, as rint does) and 2.5::numeric::int is 3 (half away from zero). Plain EF converts the column in
        // the database, EfEnvelope converts the decrypted value on the client, so it rounds it first as PostgreSQL would.
        // SQLite and SQL Server truncate, as .NET does.
        private bool RoundsOnPostgres(UnaryExpression conversion) =>
            conversion is { NodeType: ExpressionType.Convert or ExpressionType.ConvertChecked }
            && (conversion.Method is null || conversion.Method.DeclaringType == typeof(decimal))
            && IsInteger(conversion.Type) && Number(conversion.Operand.Type) is var number
            && (number == typeof(float) || number == typeof(double) || number == typeof(decimal))
            && OnPostgres;

        // Plain EF converts in SQL only what Npgsql translates: members, constants, arithmetic and conditionals over them,
        // and a few Math functions. Anything else (a method of the application, Math.Round(x, 1)) it evaluates on the
        // client, where .NET truncates: the decrypted value is then left to do the same.
        private static bool TranslatedByPostgres(Expression operand) => operand switch
        {
            MemberExpression or ConstantExpression or ParameterExpression => true,
            UnaryExpression { NodeType: ExpressionType.Convert or ExpressionType.ConvertChecked or ExpressionType.Negate or ExpressionType.NegateChecked, Method: null } unary =>
                TranslatedByPostgres(unary.Operand),
            BinaryExpression { NodeType: ExpressionType.Add or ExpressionType.Subtract or ExpressionType.Multiply or ExpressionType.Divide or ExpressionType.Coalesce } binary =>
                TranslatedByPostgres(binary.Left) && TranslatedByPostgres(binary.Right),
            ConditionalExpression conditional => TranslatedByPostgres(conditional.IfTrue) && TranslatedByPostgres(conditional.IfFalse),
            MethodCallExpression { Method.Name: nameof(Math.Abs) or nameof(Math.Max) or nameof(Math.Min) } call when call.Method.DeclaringType == typeof(Math) =>
                call.Arguments.All(TranslatedByPostgres),
            _ => false,
        };

        // Npgsql maps ulong to numeric(20,0), so a conversion to ulong rounds half away from zero, as a numeric does;
        // a float (PostgreSQL's real) is rounded through double, which holds it exactly.
        private static Expression RoundedAsPostgres(Expression value, Type target)
        {
            var nullable = Nullable.GetUnderlyingType(value.Type) is not null;
            var number = Number(value.Type) == typeof(decimal) || Number(target) == typeof(ulong) ? typeof(decimal?) : typeof(double?);
            var rounded = Expression.Call(typeof(Visitor).GetMethod(nameof(RoundLikePostgres), BindingFlags.NonPublic | BindingFlags.Static, [number])!, Expression.Convert(value, number));
            return nullable ? rounded : Expression.Convert(rounded, Nullable.GetUnderlyingType(number)!);
        }

        private static double? RoundLikePostgres(double? value) => value is { } real ? Math.Round(real, MidpointRounding.ToEven) : null;

        private static decimal? RoundLikePostgres(decimal? value) => value is { } numeric ? Math.Round(numeric, MidpointRounding.AwayFromZero) : null;

        private static bool IsNumber(Type type) =>
            IsInteger(type) || Number(type) is var number && (number == typeof(float) || number == typeof(double) || number == typeof(decimal));

        private static bool IsInteger(Type type) =>
            Number(type) is var number && number.IsPrimitive && number != typeof(bool) && number != typeof(char) && number != typeof(float) && number != typeof(double)
            && number != typeof(nint) && number != typeof(nuint);

        // The number a type holds: itself, under Nullable, an enum's underlying type.
        private static Type Number(Type type)
        {
            type = Nullable.GetUnderlyingType(type) ?? type;
            return type.IsEnum ? Enum.GetUnderlyingType(type) : type;
        }

        // The type whose column a member read through a cast reads: the topmost entity type, from the one the cast names
        // up, whose CLR type has the member (Dog for ((Puppy)a).Vet with Vet declared on Dog, and for ((Dog)a).Vet with
        // Vet declared on a base class the model does not map, whose sibling type has a column of its own).
        private Type DeclaringEntityType(Type written, MemberInfo member)
        {
            if (context.Model.FindEntityType(written) is not { } declaring)
            {
                return written;
            }

            while (declaring.BaseType is { } baseType && member.DeclaringType!.IsAssignableFrom(baseType.ClrType))
            {
                declaring = baseType;
            }

            return declaring.ClrType;
        }

        // (Puppy)(Dog)a, a as Dog: the entity under the casts to derived types a query writes.
        private static Expression WithoutDowncasts(Expression instance)
        {
            while (instance is UnaryExpression { NodeType: ExpressionType.Convert or ExpressionType.TypeAs } cast && !cast.Type.IsValueType
                && cast.Type != cast.Operand.Type && cast.Operand.Type.IsAssignableFrom(cast.Type))
            {
                instance = cast.Operand;
            }

            return instance;
        }

        // c.Home.Street, where Home is owned: EF would project the owned entity alone and read Street from it, which
        // a tracking query refuses (an owned entity cannot be tracked without its owner). Passing the owner through a
        // method EF cannot translate makes EF materialize the owner, and the member is read from it on the client,
        // null-safe as the database would have been.
        private Expression? ReadThroughOwner(MemberExpression node)
        {
            var path = new List<MemberExpression> { node };
            var root = node.Expression!;
            while (root is MemberExpression step && context.Model.GetEntityTypes().Any(t => t.IsOwned() && t.ClrType == step.Type))
            {
                path.Insert(0, step);
                root = step.Expression!;
            }

            if (root is null || context.Model.FindEntityType(root.Type) is not { } owner || owner.IsOwned())
            {
                return null;
            }

            // ((Dog)a).Clinic.Phone: a row of another type has no owner of this type (plain EF reads NULL), so the cast
            // becomes a test (a as Dog), which the null checks below answer. As for a property, the test names the
            // type declaring the navigation, not the one the cast names (((Puppy)a).Clinic reads every Dog's).
            if (WithoutDowncasts(root) is var entity && entity != root)
            {
                var declaring = DeclaringEntityType(root.Type, path[0].Member);
                root = declaring.IsAssignableFrom(entity.Type) ? entity : Expression.TypeAs(entity, declaring);
            }

            Expression current = Expression.Call(LoadedMethod.MakeGenericMethod(root.Type), Visit(root));
            var checks = new List<Expression>();
            foreach (var member in path)
            {
                if (!current.Type.IsValueType)
                {
                    checks.Add(current);
                }

                current = Expression.MakeMemberAccess(current, member.Member);
            }

            var result = current;
            for (var i = checks.Count - 1; i >= 0; i--)
            {
                result = Expression.Condition(Expression.Equal(checks[i], Expression.Constant(null, checks[i].Type)), Expression.Default(node.Type), result);
            }

            return result;
        }

        // The last Select of a collection read inside the final projection (c.Orders.OrderBy(o => o.Id).Select(o =>
        // o.CardNumber).ToList()): its selector runs on materialized elements, the operators under it in the database.
        private static MethodCallExpression? FindNestedProjection(MethodCallExpression node)
        {
            Expression current = node;
            while (current is MethodCallExpression call && call.Arguments.Count > 0
                && (call.Method.DeclaringType == typeof(Enumerable) || call.Method.DeclaringType == typeof(Queryable)))
            {
                if (call.Method.Name == nameof(Enumerable.Select) && Unquote(call.Arguments[1]) is LambdaExpression { Parameters.Count: 1 })
                {
                    return call;
                }

                if (!NestedResultOperators.Contains(call.Method.Name) || call.Arguments.Count > 1)
                {
                    return null;
                }

                current = call.Arguments[0];
            }

            return null;
        }

        private Expression VisitNestedProjection(MethodCallExpression node, MethodCallExpression nested)
        {
            if (IsUncorrelatedRecordOnSqlite(node) && FindEncryptedMember(runtime, context.Model, nested.Arguments[1]) is { } member)
            {
                // db.Orders.OrderBy(o => o.Id).Select(o => o.CardNumber).FirstOrDefault() in a projection: the value needs
                // its record's key column, so EF must read one record from a subquery that does not depend on the row,
                // which SQLite cannot translate (EF's "requires the SQL APPLY operation"); plain EF reads one column.
                throw UncorrelatedRecordOnSqlite(member, node.Method.Name);
            }

            var outerOperator = _operator;
            _inProjection = false;
            _operator = nested.Method.Name;
            var source = Visit(nested.Arguments[0]);
            _inProjection = true;
            _operator = outerOperator;
            var selector = Visit(nested.Arguments[1]);
            return new MemberReplacer(nested, nested.Update(nested.Object, [source!, selector!])).Visit(node)!;
        }

        // A single record read from a subquery that does not depend on the row (db.Orders.First()), on SQLite.
        private bool IsUncorrelatedRecordOnSqlite(Expression instance) =>
            instance is MethodCallExpression single && SingleRecordOperators.Contains(single.Method.Name)
            && (single.Method.DeclaringType == typeof(Queryable) || single.Method.DeclaringType == typeof(Enumerable))
            && OnSqlite
            && !ParameterUse.ReadsOuterParameter(single);

        private bool OnSqlite => context.Database.ProviderName == "Microsoft.EntityFrameworkCore.Sqlite";

        private bool OnPostgres => context.Database.ProviderName == "Npgsql.EntityFrameworkCore.PostgreSQL";

        private static InvalidOperationException UncorrelatedRecordOnSqlite(string member, string operation) =>
            new($"The query's projection reads encrypted property '{member}' through a subquery that does not depend on the row ({operation}). " +
                "EfEnvelope must read that record with its key column, which SQLite cannot do inside such a subquery (it needs APPLY). Run the subquery as a query of its own first, and use its value in this one.");

        private string Explain(Type type, string property, bool searchable)
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
                "Sum" or "Average" =>
                    "The database holds random ciphertext, which it cannot add up. Aggregate after loading (for example AsEnumerable() before the aggregate).",
                "ToString" =>
                    "The database formats values as text its own way (dates and times, fractional numbers, booleans and GUIDs do not read as .NET's ToString() gives them), and it holds ciphertext. Select the value and format it after loading (for example AsEnumerable() before the Select).",
                "IsNullOrEmpty" or "IsNullOrWhiteSpace" =>
                    "The database holds random ciphertext: only whether a value is NULL is visible. Test with '== null', or test emptiness after loading.",
                "a concatenation" =>
                    "The database holds random ciphertext, which it cannot concatenate or format. Combine the values after loading (in the final Select, or after AsEnumerable()); to change stored values, load the entities, set the properties and call SaveChanges.",
                _ when _operator.StartsWith("a computation", StringComparison.Ordinal) =>
                    "The database holds random ciphertext, which it cannot compute with. Compute after loading (in the final Select, or after AsEnumerable()); to change stored values, load the entities, set the properties and call SaveChanges.",
                _ when _operator.StartsWith("a condition", StringComparison.Ordinal) =>
                    "The database holds random ciphertext, so it cannot test an encrypted bool. Filter after loading, or mark the property [Encrypted(Searchable = true)] and compare it (== true) through its blind index.",
                "Select" or "SelectMany" =>
                    "A projection that reads an encrypted property must come last: the value exists only once EF has decrypted the entity. Compose Where, OrderBy and GroupBy on plain properties before the Select, or call AsEnumerable() before the operators that need the decrypted value.",
                _ when searchable =>
                    "The property is searchable, but its blind index supports only equality with values the application supplies (==, !=, Equals, Contains on a list); ranges, ordering and other comparisons stay unsupported. Compare after loading instead.",
                _ =>
                    "The database holds random ciphertext: equal values do not look equal, so comparing it cannot find anything. For equality search mark the property [Encrypted(Searchable = true)] (or IsEncrypted(o => ...)) to give it a blind index; ranges and ordering stay unsupported.",
            };
            return $"The query uses encrypted property {name} in {_operator}, which EfEnvelope cannot translate. {why}";
        }

        private Expression RewriteEquality(ExpressionType comparison, Expression left, Expression right)
        {
            var leftMember = Encrypted(left);
            var rightMember = Encrypted(right);
            if (leftMember is null)
            {
                (left, right, leftMember, rightMember) = (right, left, rightMember, null);
            }

            var (member, property, entity) = leftMember!.Value;
            if (Strip(right) is ConstantExpression { Value: null })
            {
                // Nullness is stored in the clear (a NULL ciphertext), so a null test needs no index.
                var ciphertext = PropertyAccess(member.Expression!, typeof(byte[]), property.Ciphertext.Name);
                return Expression.MakeBinary(comparison, ciphertext, Expression.Constant(null, typeof(byte[])));
            }

            if (property.Index is null)
            {
                _operator = $"a comparison ({comparison})";
                throw new InvalidOperationException(Explain(member.Expression!.Type, property.Name, searchable: false));
            }

            if (rightMember is null && new QuerySourceFinder(context.Model).Finds(right))
            {
                // The other side reads a column (a plain property of a queried entity): a blind index can only be
                // compared with a value computed on the client, whose index EF computes when it binds the parameter.
                throw new InvalidOperationException(
                    $"The query compares encrypted property '{member.Expression!.Type.Name}.{property.Name}' with another column. The database holds its blind index, which only matches values supplied by the application (constants, variables); compare after loading instead.");
            }

            if (rightMember is { } other && (other.Entity.Name != entity.Name || other.Property.Name != property.Name))
            {
                throw new InvalidOperationException(
                    $"The query compares encrypted properties '{member.Expression!.Type.Name}.{property.Name}' and '{other.Member.Expression!.Type.Name}.{other.Property.Name}'. Each property's blind index has its own key, so only values of the same property can be compared.");
            }

            var newLeft = ReplaceWithIndex(left, member, property);
            var newRight = rightMember is { } same ? ReplaceWithIndex(right, same.Member, same.Property) : Visit(right);
            return Expression.MakeBinary(comparison, newLeft, newRight);
        }

        private Expression? TryRewriteSearch(MethodCallExpression node)
        {
            // x.Equals(y), string.Equals(x, y), object.Equals(x, y): the same as x == y.
            if (node.Method.Name == nameof(Equals) && node.Method.ReturnType == typeof(bool))
            {
                var (left, right) = node.Object is not null && node.Arguments.Count == 1
                    ? (node.Object, node.Arguments[0])
                    : node.Object is null && node.Arguments.Count == 2 ? (node.Arguments[0], node.Arguments[1]) : (null, null);
                if (left is not null && right is not null && (Encrypted(left) is not null || Encrypted(right) is not null))
                {
                    var (l, r) = left.Type == right.Type ? (left, right) : (Strip(left), Strip(right));
                    return RewriteEquality(ExpressionType.Equal, l, l.Type == r.Type || r is ConstantExpression { Value: null } ? r : Expression.Convert(r, l.Type));
                }
            }

            // list.Contains(p.Ssn), Enumerable.Contains(list, p.Ssn), MemoryExtensions.Contains(span, p.Ssn): SQL IN.
            if (node.Method.Name == nameof(Enumerable.Contains) && node.Arguments.Count > 0)
            {
                var itemIndex = node.Object is null ? node.Arguments.Count - 1 : 0;
                if (Encrypted(node.Arguments[itemIndex]) is { } item && node.Object?.Type != typeof(string))
                {
                    if (item.Property.Index is null)
                    {
                        _operator = "Contains";
                        throw new InvalidOperationException(Explain(item.Member.Expression!.Type, item.Property.Name, searchable: false).Replace("patterns cannot match it. Search after loading.", "an IN list cannot match it. Mark the property [Encrypted(Searchable = true)] for equality search.", StringComparison.Ordinal));
                    }

                    var arguments = node.Arguments.Select((argument, i) => i == itemIndex ? ReplaceWithIndex(argument, item.Member, item.Property) : Visit(argument)).ToList();
                    return node.Update(node.Object is null ? null : Visit(node.Object), arguments);
                }
            }

            // join ... on a.Ssn equals b.Ssn: both key selectors read the same property's index.
            if (node.Method.Name is nameof(Queryable.Join) or nameof(Queryable.GroupJoin) && node.Arguments.Count >= 4
                && Unquote(node.Arguments[2]) is LambdaExpression outerKey && Unquote(node.Arguments[3]) is LambdaExpression innerKey
                && (Encrypted(outerKey.Body) is not null || Encrypted(innerKey.Body) is not null))
            {
                var outer = Encrypted(outerKey.Body);
                var inner = Encrypted(innerKey.Body);
                if (outer is null || inner is null || outer.Value.Property.Index is null || outer.Value.Property.Search?.IsTruncated == true
                    || outer.Value.Entity.Name != inner.Value.Entity.Name || outer.Value.Property.Name != inner.Value.Property.Name)
                {
                    _operator = "Join";
                    var which = outer ?? inner!.Value;
                    throw new InvalidOperationException(
                        $"The query joins on encrypted property '{which.Member.Expression!.Type.Name}.{which.Property.Name}'. A join can only match a searchable encrypted property with the same property (one blind index key), and only on a full (not truncated) index, whose false matches could not be removed; join on plain keys otherwise.");
                }

                var arguments = node.Arguments.ToList();
                arguments[0] = Visit(arguments[0]);
                arguments[1] = Visit(arguments[1]);
                arguments[2] = Expression.Quote(Expression.Lambda(ReplaceWithIndex(outerKey.Body, outer.Value.Member, outer.Value.Property), outerKey.Parameters));
                arguments[3] = Expression.Quote(Expression.Lambda(ReplaceWithIndex(innerKey.Body, inner.Value.Member, inner.Value.Property), innerKey.Parameters));
                return node.Update(node.Object, arguments);
            }

            return null;
        }

        private static Expression Convert(Expression expression, Type type) =>
            expression.Type == type ? expression : Expression.Convert(expression, type);

        // Whether the database's text form of a value of the type is what the projection gives on the client: strings and
        // integers, and enums (ToString() as EF's translation names them, EnumText; concatenated as their number,
        // AsNumber). Dates and times, fractional numbers, booleans and GUIDs are formatted differently by each database
        // (SQLite: '1990-01-02', 3.0, 1), and a client-side ToString() would silently differ. ToString(format) and
        // ToString(provider) run on the client in plain EF too, and are left alone.
        private static bool FormatsAlike(Type type)
        {
            type = Nullable.GetUnderlyingType(type) ?? type;
            return type == typeof(string) || type.IsEnum || type == typeof(int) || type == typeof(long) || type == typeof(short)
                || type == typeof(byte) || type == typeof(sbyte) || type == typeof(uint) || type == typeof(ulong) || type == typeof(ushort);
        }

        // An encrypted enum concatenated to a string, as its number (boxed like the operand it replaces).
        private Expression? AsNumber(Expression operand)
        {
            var value = Strip(operand);
            if ((Nullable.GetUnderlyingType(value.Type) ?? value.Type) is not { IsEnum: true } enumType || !FormatsDecrypted(value))
            {
                return null;
            }

            var number = Enum.GetUnderlyingType(enumType);
            return Convert(Expression.Convert(value, value.Type == enumType ? number : typeof(Nullable<>).MakeGenericType(number)), operand.Type);
        }

        private bool FormattedEncrypted(Expression operand) => FormatsDecrypted(operand) && !FormatsAlike(Strip(operand).Type);

        // Whether a string concatenation's operand is a decrypted value, which the client formats: an encrypted member,
        // or a ?? or ?: that can give one (c.Nickname ?? c.Tier, c.Vip ? c.Tier : Tier.Low).
        private bool FormatsDecrypted(Expression operand) =>
            Strip(operand) is var value
            && (Encrypted(value) is not null
                || (value is BinaryExpression { NodeType: ExpressionType.Coalesce } or ConditionalExpression && FindEncryptedMember(runtime, context.Model, value) is not null));

        private Expression? ByName(Expression expression) => PropertyByName(runtime, context.Model, expression);

        private static bool CanBeNull(Type type) => !type.IsValueType || Nullable.GetUnderlyingType(type) is not null;

        /// <summary>
        /// A member or ToString() of an encrypted value that can be null, read in the final projection: evaluated on the
        /// client, where it would throw NullReferenceException on a null value, while the database computes NULL from NULL.
        /// Null there (<paramref name="resultType"/> can be null), or, for a type that cannot hold null, the
        /// InvalidOperationException plain EF raises for a NULL it cannot put into that type.
        /// </summary>
        private Expression? NullPropagated(Expression operation, Type resultType)
        {
            var instance = operation switch
            {
                MemberExpression { Member: not FieldInfo } member => member.Expression,
                MethodCallExpression { Method.Name: nameof(ToString), Arguments.Count: 0 } call => call.Object,
                _ => null,
            };
            // Nullable<T>'s own members answer for null themselves (HasValue, GetValueOrDefault), or fail as EF does (Value).
            if (instance is not MemberExpression || !CanBeNull(instance.Type) || Encrypted(instance) is null
                || (Nullable.GetUnderlyingType(instance.Type) is not null && operation is not MethodCallExpression)
                || (operation is MethodCallExpression && !FormatsAlike(instance.Type)))
            {
                return null;
            }

            var read = Visit(instance);
            var operated = operation is MemberExpression accessed
                ? Expression.MakeMemberAccess(read, accessed.Member)
                : (Expression)Expression.Call(read, ((MethodCallExpression)operation).Method);
            var whenNull = CanBeNull(resultType)
                ? (Expression)Expression.Default(resultType)
                : Expression.Throw(
                    Expression.New(
                        typeof(InvalidOperationException).GetConstructor([typeof(string)])!,
                        Expression.Constant(
                            $"The query reads a member of encrypted property '{((MemberExpression)instance).Expression?.Type.Name}.{((MemberExpression)instance).Member.Name}' in a row where it is null, into a {resultType.Name}, which cannot be null. " +
                            $"Cast the result to {resultType.Name}? in the projection to read null there.")),
                    resultType);
            return Expression.Condition(Expression.Equal(read, Expression.Constant(null, read.Type)), whenNull, Convert(operated, resultType));
        }

        private (MemberExpression Member, Metadata.EncryptedProperty Property, Metadata.EncryptedEntity Entity)? Encrypted(Expression expression) =>
            Resolve(runtime, context.Model, expression);

        // Replaces the encrypted member inside a side of a comparison (possibly under conversions) by its index property.
        private static Expression ReplaceWithIndex(Expression side, MemberExpression member, Metadata.EncryptedProperty property) =>
            new MemberReplacer(member, PropertyAccess(member.Expression!, member.Type, property.Index!.Name)).Visit(side)!;

        private static MethodCallExpression PropertyAccess(Expression instance, Type type, string name) =>
            Expression.Call(
                typeof(EF).GetMethod(nameof(EF.Property))!.MakeGenericMethod(type),
                Convert(instance, typeof(object)),
                Expression.Constant(name));

        /// <summary>Whether an expression uses a parameter it does not declare itself (a row of the query around it).</summary>
        private sealed class ParameterUse : ExpressionVisitor
        {
            private readonly HashSet<ParameterExpression> _declared = [];
            private bool _outer;

            public static bool ReadsOuterParameter(Expression expression)
            {
                var use = new ParameterUse();
                use.Visit(expression);
                return use._outer;
            }

            protected override Expression VisitLambda<T>(Expression<T> node)
            {
                _declared.UnionWith(node.Parameters);
                return base.VisitLambda(node);
            }

            protected override Expression VisitParameter(ParameterExpression node)
            {
                _outer |= !_declared.Contains(node);
                return node;
            }
        }

        /// <summary>Whether an expression reads a row of the query (an entity, or a compiler-generated row of a join or projection) rather than only client values.</summary>
        /// <remarks>Parameters of a compiled query are client values: they are of the query's parameter types, not rows.</remarks>
        private sealed class QuerySourceFinder(Microsoft.EntityFrameworkCore.Metadata.IModel model) : ExpressionVisitor
        {
            private bool _found;

            public bool Finds(Expression expression)
            {
                Visit(expression);
                return _found;
            }

            protected override Expression VisitParameter(ParameterExpression node)
            {
                _found |= model.FindEntityType(node.Type) is not null
                    || node.Type.IsDefined(typeof(System.Runtime.CompilerServices.CompilerGeneratedAttribute), inherit: false);
                return node;
            }
        }
    }
}
