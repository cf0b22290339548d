using System;
using System.Collections.Generic;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Operations;

namespace EfEnvelope.Analyzers;

/// <summary>What the analyzers recognise as LINQ and EF Core query methods, and how EF sees each call.</summary>
internal sealed class QuerySymbols
{
    // EF's async and client-side methods that end a query: what they consume is the query EF compiles.
    private static readonly HashSet<string> Materializers =
    [
        "AsAsyncEnumerable", "ToListAsync", "ToArrayAsync", "ToDictionaryAsync", "ToHashSetAsync",
        "ForEachAsync", "Load", "LoadAsync", "ToQueryString", "CreateDbCommand",
    ];

    private readonly INamedTypeSymbol? _queryable;
    private readonly INamedTypeSymbol? _enumerable;
    private readonly INamedTypeSymbol? _expression;
    private readonly INamedTypeSymbol? _cancellationToken;
    private readonly INamedTypeSymbol? _dbFunctionsExtensions;

    public QuerySymbols(Compilation compilation)
    {
        _queryable = compilation.GetTypeByMetadataName("System.Linq.Queryable");
        _enumerable = compilation.GetTypeByMetadataName("System.Linq.Enumerable");
        _expression = compilation.GetTypeByMetadataName("System.Linq.Expressions.Expression`1");
        _cancellationToken = compilation.GetTypeByMetadataName("System.Threading.CancellationToken");
        _dbFunctionsExtensions = compilation.GetTypeByMetadataName("Microsoft.EntityFrameworkCore.DbFunctionsExtensions");
    }

    public bool IsQueryable(IMethodSymbol method) => SymbolEqualityComparer.Default.Equals(method.ContainingType, _queryable);

    /// <summary>EF Core's queryable extensions (Include, AsNoTracking, FirstAsync, ExecuteUpdate, ...).</summary>
    public static bool IsEfQueryableExtension(IMethodSymbol method) =>
        method.ContainingType is { } type && type.Name.EndsWith("QueryableExtensions", StringComparison.Ordinal)
        && type.ContainingNamespace?.ToDisplayString() == "Microsoft.EntityFrameworkCore";

    /// <summary>A query operator that stays in the expression EF compiles (not a materializer such as ToListAsync).</summary>
    public bool IsQueryOperator(IMethodSymbol method) =>
        IsQueryable(method) || (IsEfQueryableExtension(method) && !Materializers.Contains(method.Name));

    /// <summary>An operator the runtime guard treats as running in the database when met inside a projection.</summary>
    public bool IsNestedQueryOperator(IMethodSymbol method) =>
        IsQueryable(method) || SymbolEqualityComparer.Default.Equals(method.ContainingType, _enumerable)
        || (method.ContainingType?.Name.Contains("EntityFrameworkQueryableExtensions") ?? false);

    public bool IsDatabaseFunction(IMethodSymbol method) =>
        method.ContainingType?.SpecialType == SpecialType.System_String
        || SymbolEqualityComparer.Default.Equals(method.ContainingType, _dbFunctionsExtensions);

    /// <summary>The name of the Queryable method EF sees: FirstAsync(q) reaches the query compiler as First(q).</summary>
    public static string EfName(IMethodSymbol method) =>
        IsEfQueryableExtension(method) && method.Name.EndsWith("Async", StringComparison.Ordinal) && method.Name != "ExecuteUpdateAsync" && method.Name != "ExecuteDeleteAsync"
            ? method.Name.Substring(0, method.Name.Length - "Async".Length)
            : method.Name;

    /// <summary>The arguments as EF's expression has them: the source first, without the cancellation token.</summary>
    public List<IOperation> Arguments(IInvocationOperation invocation)
    {
        var arguments = new List<IOperation>();
        foreach (var argument in invocation.Arguments)
        {
            if (!SymbolEqualityComparer.Default.Equals(argument.Parameter?.Type, _cancellationToken))
            {
                arguments.Add(argument.Value);
            }
        }

        return arguments;
    }

    /// <summary>Whether the lambda becomes an expression tree (a query's lambda) rather than a delegate.</summary>
    public bool IsExpressionLambda(IAnonymousFunctionOperation lambda)
    {
        // The conversion that wraps the lambda has the target type; query syntax clauses have no lambda syntax to ask.
        var converted = lambda.Parent is IDelegateCreationOperation or IConversionOperation
            ? lambda.Parent.Type
            : lambda.SemanticModel?.GetTypeInfo(lambda.Syntax).ConvertedType;
        return converted is not null && SymbolEqualityComparer.Default.Equals(converted.OriginalDefinition, _expression);
    }

    /// <summary>The operation under implicit and explicit conversions, as the runtime strips Convert nodes.</summary>
    public static IOperation Strip(IOperation operation)
    {
        while (operation is IConversionOperation conversion)
        {
            operation = conversion.Operand;
        }

        return operation;
    }

    /// <summary>The single expression a lambda argument returns (<c>p => p.Ssn</c> gives <c>p.Ssn</c>).</summary>
    public static IOperation? LambdaBody(IOperation argument)
    {
        var lambda = Lambda(argument);
        return lambda is { Body.Operations: { Length: 1 } operations } && operations[0] is IReturnOperation { ReturnedValue: { } value } ? value : null;
    }

    public static IAnonymousFunctionOperation? Lambda(IOperation argument)
    {
        var operation = argument;
        while (true)
        {
            switch (operation)
            {
                case IAnonymousFunctionOperation lambda:
                    return lambda;
                case IConversionOperation conversion:
                    operation = conversion.Operand;
                    break;
                case IDelegateCreationOperation creation:
                    operation = creation.Target;
                    break;
                default:
                    return null;
            }
        }
    }

    /// <summary>The query a call consumes: its source argument (extension) or receiver.</summary>
    public static IOperation? Source(IInvocationOperation invocation) =>
        invocation.Instance ?? (invocation.Arguments.Length > 0 ? invocation.Arguments[0].Value : null);
}
