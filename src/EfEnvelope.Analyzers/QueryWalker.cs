using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Operations;

namespace EfEnvelope.Analyzers;

/// <summary>Walks one query the way EfEnvelope's runtime guard and search planner walk its expression tree.</summary>
/// <remarks>
/// <para>
/// The rules are the runtime's (EncryptedQueryGuard, SearchPlanner), so that a warning means "this query will be
/// refused": an encrypted property may appear in the query's final <c>Select</c> (run on decrypted entities, unless
/// a nested query or a string function there sends it to the database), in a null test, and, when it has a blind
/// index, in <c>==</c>, <c>!=</c>, <c>Equals</c>, <c>Contains</c> over a list and a join on the same property.
/// Any other read inside the query's lambdas is refused.
/// </para>
/// <para>
/// Only lambdas that become expression trees are part of the query: arguments outside them (a <c>Take</c> count, a
/// <c>FromSql</c> string) are evaluated before EF sees the query, and reach it as parameters.
/// </para>
/// </remarks>
internal sealed class QueryWalker(QuerySymbols symbols, EncryptedMembers members, Action<Diagnostic> report, CancellationToken cancellationToken)
{
    // Operators between the final Select and the end of the query that only pick rows of the projection's result.
    // (Distinct is not one: it compares the projected values. The runtime applies it after loading only at the end of
    // the query or under Count/LongCount/Any, and only to values with .NET value equality: see ClientDistinct.)
    private static readonly HashSet<string> ResultOperators =
    [
        "First", "FirstOrDefault", "Single", "SingleOrDefault", "Last", "LastOrDefault", "ElementAt", "ElementAtOrDefault",
        "Take", "Skip", "AsNoTracking", "AsTracking", "AsNoTrackingWithIdentityResolution", "AsSplitQuery",
        "AsSingleQuery", "TagWith", "TagWithCallSite", "IgnoreQueryFilters", "IgnoreAutoIncludes",
    ];

    // Operators with a lambda that the runtime moves below the final Select (ProjectionComposition), substituting the
    // selector into the lambda: the projection stays the final one.
    private static readonly HashSet<string> ComposedOperators = ["Where", "OrderBy", "OrderByDescending", "ThenBy", "ThenByDescending"];

    // The same for the operator that ends the query, whose predicate the runtime moves below the Select.
    private static readonly HashSet<string> ComposedTerminals =
        ["First", "FirstOrDefault", "Single", "SingleOrDefault", "Last", "LastOrDefault", "Count", "LongCount", "Any", "All"];

    // Operators between a collection read inside the final Select and its own last Select that only gather or pick its elements.
    private static readonly HashSet<string> NestedResultOperators =
    [
        "ToList", "ToArray", "ToHashSet", "AsEnumerable", "AsQueryable", "Distinct", "First", "FirstOrDefault", "Single",
        "SingleOrDefault", "Last", "LastOrDefault",
    ];

    // Operators whose predicate filters the rows the query returns (the search planner's terminals and Where).
    private static readonly HashSet<string> FilteringOperators = ["Where", "First", "FirstOrDefault", "Single", "SingleOrDefault", "Count", "LongCount", "Any"];

    // Operators that neither limit nor reshape rows: with only these, dropping a truncated index's false matches
    // after decryption gives the exact result.
    private static readonly HashSet<string> RowPreservingOperators =
    [
        "Where", "OrderBy", "OrderByDescending", "ThenBy", "ThenByDescending", "AsNoTracking", "AsTracking",
        "AsNoTrackingWithIdentityResolution", "Include", "ThenInclude", "AsSplitQuery", "AsSingleQuery", "TagWith",
        "TagWithCallSite", "IgnoreQueryFilters", "IgnoreAutoIncludes", "First", "FirstOrDefault", "Single",
        "SingleOrDefault", "Count", "LongCount", "Any",
    ];

    private static readonly HashSet<string> OrderingOperators = ["OrderBy", "OrderByDescending", "ThenBy", "ThenByDescending", "Min", "Max", "MinBy", "MaxBy", "Order", "OrderDescending"];

    private static readonly HashSet<string> GroupingOperators =
        ["GroupBy", "Join", "GroupJoin", "LeftJoin", "RightJoin", "Distinct", "DistinctBy", "Sum", "Average", "Aggregate", "CountBy", "AggregateBy", "Union", "UnionBy", "Intersect", "IntersectBy", "Except", "ExceptBy"];

    // The parameters of the lambdas composed after the final Select (x in Where(x => ...)), with the selector's body:
    // the runtime substitutes the selector into those lambdas, so what they read of x is what the selector reads.
    private readonly Dictionary<IParameterSymbol, IOperation> _projectedRows = new(SymbolEqualityComparer.Default);

    private readonly HashSet<IInvocationOperation> _rootChain = [];
    private bool _rootChainPreservesRows = true;
    private IInvocationOperation? _projection;

    private bool _inProjection;
    private int _treeDepth;
    private string _operator = "the query";
    private OperatorKind _operatorKind = OperatorKind.Query;

    // The parameter of a root-chain predicate while the walk is on its top-level AND chain: only there can a
    // truncated index's false matches be dropped after decryption.
    private IParameterSymbol? _conjunctOf;

    private enum OperatorKind
    {
        Query,
        Function,
        Binary,
    }

    public void Analyze(IInvocationOperation query)
    {
        _projection = FindProjection(query);
        for (IOperation? node = query; node is not null && QuerySymbols.Strip(node) is IInvocationOperation call && symbols.IsQueryOperator(call.TargetMethod); node = QuerySymbols.Source(call))
        {
            _rootChain.Add(call);
            _rootChainPreservesRows &= RowPreservingOperators.Contains(QuerySymbols.EfName(call.TargetMethod));
        }

        Visit(query);
    }

    // The last Select of the query, under operators that only pick rows of its result: its selector may read
    // encrypted properties (EF runs it on the decrypted entities).
    private IInvocationOperation? FindProjection(IOperation expression)
    {
        var outermost = true;
        var underCount = false;
        var composed = new List<IAnonymousFunctionOperation>();
        while (QuerySymbols.Strip(expression) is IInvocationOperation call && symbols.IsQueryOperator(call.TargetMethod))
        {
            var arguments = symbols.Arguments(call);
            if (arguments.Count == 0)
            {
                return null;
            }

            var name = QuerySymbols.EfName(call.TargetMethod);
            if ((name == "Select" || IsPairingResultSelector(call, name, arguments)) && symbols.IsQueryable(call.TargetMethod))
            {
                if (arguments.Count >= 2 && QuerySymbols.LambdaBody(arguments[arguments.Count - 1]) is { } body)
                {
                    foreach (var parameter in composed.SelectMany(lambda => lambda.Symbol.Parameters))
                    {
                        _projectedRows[parameter] = body;
                    }
                }

                return call;
            }

            if (arguments.Count == 2 && QuerySymbols.Lambda(arguments[1]) is { } composedLambda)
            {
                composed.Add(composedLambda);
            }

            var lambda = arguments.Count == 2 && QuerySymbols.Lambda(arguments[1]) is not null;
            var distinctOnClient = name == "Distinct" && arguments.Count == 1 && (outermost || underCount)
                && call.TargetMethod.TypeArguments.Length == 1 && HasValueEquality(call.TargetMethod.TypeArguments[0]);
            underCount = outermost && arguments.Count == 1 && name is "Count" or "LongCount" or "Any";
            var picksRows = (ResultOperators.Contains(name) && arguments.Count <= 2 && !lambda) || distinctOnClient;
            var movesBelow = (ComposedOperators.Contains(name) || (outermost && ComposedTerminals.Contains(name))) && arguments.Count <= 2;
            if (!picksRows && !movesBelow)
            {
                return null;
            }

            outermost = false;
            expression = arguments[0];
        }

        return null;
    }

    // A join's or SelectMany's result selector, which the runtime moves into a Select of its own (ResultSelectorSplit):
    // the overloads without a comparer, and SelectMany's whose collection selector takes no index.
    private static bool IsPairingResultSelector(IInvocationOperation call, string name, List<IOperation> arguments) =>
        (name is "Join" or "LeftJoin" or "RightJoin" && arguments.Count == 5)
        || (name == "SelectMany" && arguments.Count == 3 && QuerySymbols.Lambda(arguments[1]) is { Symbol.Parameters.Length: 1 });

    // Whether the database's text form of a value of the type is what the projection gives, as the runtime's query guard
    // decides: strings, integers and enums (the guard gives an enum's ToString() as EF's translation names it, and
    // concatenates its number, as EF does).
    private static bool FormatsAlike(ITypeSymbol? type)
    {
        if (type is INamedTypeSymbol { OriginalDefinition.SpecialType: SpecialType.System_Nullable_T } nullable)
        {
            type = nullable.TypeArguments[0];
        }

        return type is not null && (type.SpecialType is SpecialType.System_String or SpecialType.System_Byte or SpecialType.System_SByte
            or SpecialType.System_Int16 or SpecialType.System_UInt16 or SpecialType.System_Int32 or SpecialType.System_UInt32
            or SpecialType.System_Int64 or SpecialType.System_UInt64
            || type.TypeKind == TypeKind.Enum);
    }

    // Whether .NET equality of the type is the database's, as the runtime's ClientDistinct decides: a DateTimeOffset
    // only as the element itself (an anonymous type's equality would compare its instant, not its offset).
    private static bool HasValueEquality(ITypeSymbol type, bool member = false)
    {
        if (type is INamedTypeSymbol { OriginalDefinition.SpecialType: SpecialType.System_Nullable_T } nullable)
        {
            type = nullable.TypeArguments[0];
        }

        if (type.SpecialType is >= SpecialType.System_Boolean and <= SpecialType.System_String or SpecialType.System_DateTime
            || type.TypeKind == TypeKind.Enum
            || type.ToDisplayString() is "System.Guid" or "System.DateOnly" or "System.TimeOnly" or "System.TimeSpan"
            || (!member && type.ToDisplayString() == "System.DateTimeOffset"))
        {
            return true;
        }

        return type.IsAnonymousType && type.GetMembers().OfType<IPropertySymbol>().All(p => HasValueEquality(p.Type, member: true));
    }

    // The last Select of a collection read inside the final Select (p.Visits.Select(v => v.Notes).ToList()): the
    // runtime runs its selector on the loaded elements too.
    private IInvocationOperation? FindNestedProjection(IInvocationOperation node)
    {
        IOperation expression = node;
        while (QuerySymbols.Strip(expression) is IInvocationOperation call && symbols.IsNestedQueryOperator(call.TargetMethod))
        {
            var arguments = symbols.Arguments(call);
            var name = QuerySymbols.EfName(call.TargetMethod);
            if (name == "Select" && arguments.Count == 2 && QuerySymbols.Lambda(arguments[1]) is { Symbol.Parameters.Length: 1 })
            {
                return call;
            }

            if (!NestedResultOperators.Contains(name) || arguments.Count != 1)
            {
                return null;
            }

            expression = arguments[0];
        }

        return null;
    }

    private void Visit(IOperation? operation)
    {
        cancellationToken.ThrowIfCancellationRequested();
        switch (operation)
        {
            case null:
                return;
            case IInvocationOperation invocation:
                VisitInvocation(invocation);
                return;
            case IBinaryOperation binary:
                VisitBinary(binary);
                return;
            case IPropertyReferenceOperation property:
                VisitProperty(property);
                return;
            case IParameterReferenceOperation parameter when !_inProjection && _treeDepth > 0 && Encrypted(parameter) is { } projected:
                // The projected value itself, read by a lambda composed after the final Select.
                var (rule, what) = Classify();
                Report(rule, projected.Operation, what);
                return;
            case IAnonymousFunctionOperation lambda:
                VisitLambda(lambda);
                return;
            case IInterpolatedStringOperation when _treeDepth > 0:
                // An expression tree builds an interpolated string with string.Format: a string function.
                WithOperator("string.Format", OperatorKind.Function, () => VisitChildren(operation));
                return;
            case IConversionOperation or IArgumentOperation or IBlockOperation or IReturnOperation:
                VisitChildren(operation);
                return;
            default:
                var conjunct = _conjunctOf;
                _conjunctOf = null;
                VisitChildren(operation);
                _conjunctOf = conjunct;
                return;
        }
    }

    private void VisitChildren(IOperation operation)
    {
        foreach (var child in operation.ChildOperations)
        {
            Visit(child);
        }
    }

    private void VisitLambda(IAnonymousFunctionOperation lambda)
    {
        // Inside an expression tree, a lambda handed to Enumerable.Any or Select is a nested tree, not a delegate.
        if (_treeDepth > 0 || symbols.IsExpressionLambda(lambda))
        {
            _treeDepth++;
            Visit(lambda.Body);
            _treeDepth--;
            return;
        }

        // A delegate (EF 10's ExecuteUpdate(s => s.SetProperty(...))) runs in C#; only the expression lambdas it
        // hands to SetProperty become part of the query.
        foreach (var nested in lambda.Body.Descendants())
        {
            if (nested is IInvocationOperation { TargetMethod.Name: var name } setter && name.StartsWith("SetProperty", StringComparison.Ordinal))
            {
                foreach (var argument in setter.Arguments)
                {
                    if (QuerySymbols.Lambda(argument.Value) is { } selector && symbols.IsExpressionLambda(selector))
                    {
                        WithOperator("SetProperty", OperatorKind.Query, () => Visit(selector));
                    }
                }
            }
        }
    }

    private void VisitInvocation(IInvocationOperation node)
    {
        var arguments = symbols.Arguments(node);
        if (ReferenceEquals(node, _projection))
        {
            if (arguments.Count == 2)
            {
                Visit(arguments[0]);
            }
            else if (!TrySearch(node, arguments))
            {
                // A join or SelectMany: its sources and keys are checked as any operator's, its result selector below.
                WithOperator(QuerySymbols.EfName(node.TargetMethod), OperatorKind.Query, () =>
                {
                    foreach (var argument in arguments.Take(arguments.Count - 1))
                    {
                        Visit(argument);
                    }
                });
            }

            var outer = _inProjection;
            _inProjection = true;
            Visit(arguments[arguments.Count - 1]);
            _inProjection = outer;
            return;
        }

        if (!_inProjection && TrySearch(node, arguments))
        {
            return;
        }

        if (_inProjection && FindNestedProjection(node) is { } nested)
        {
            var nestedArguments = symbols.Arguments(nested);
            WithOperator("Select", OperatorKind.Query, () => Visit(nestedArguments[0]));
            Visit(nestedArguments[1]);
            return;
        }

        if (_inProjection && node.TargetMethod is { Name: "ToString", Parameters.Length: 0 } && node.Instance is { } formatted
            && Encrypted(formatted) is { } text && !FormatsAlike(text.Operation.Type))
        {
            Report(Rules.ReadByDatabase, text.Operation, "format it as text (ToString): the database's text form of the value is not .NET's");
            return;
        }

        var method = node.TargetMethod;
        var name = QuerySymbols.EfName(method);
        var isQueryOperator = symbols.IsNestedQueryOperator(method) || symbols.IsQueryOperator(method);
        var isFunction = symbols.IsDatabaseFunction(method);
        if (!isQueryOperator && !isFunction && !method.Name.StartsWith("SetProperty", StringComparison.Ordinal))
        {
            WithConjunct(null, () => VisitChildren(node));
            return;
        }

        WithOperator(isFunction ? FunctionName(method) : name, isFunction ? OperatorKind.Function : OperatorKind.Query, () =>
        {
            if (isQueryOperator && FilteringOperators.Contains(name) && arguments.Count == 2 && QuerySymbols.Lambda(arguments[1]) is { } predicate)
            {
                Visit(arguments[0]);
                WithConjunct(_rootChain.Contains(node) && predicate.Symbol.Parameters.Length == 1 ? predicate.Symbol.Parameters[0] : null, () => Visit(arguments[1]));
                return;
            }

            WithConjunct(null, () =>
            {
                Visit(node.Instance);
                foreach (var argument in arguments)
                {
                    Visit(argument);
                }
            });
        });
    }

    private static string FunctionName(IMethodSymbol method) =>
        method.ContainingType.SpecialType == SpecialType.System_String && method.IsStatic ? "string." + method.Name : method.Name;

    // ==, !=, Equals and Contains over a list on a searchable property, and joins on it, run on the blind index.
    private bool TrySearch(IInvocationOperation node, List<IOperation> arguments)
    {
        var method = node.TargetMethod;
        // Outside the query's lambdas, Equals and Contains run in C# before EF sees the query.
        var inTree = _treeDepth > 0 || symbols.IsQueryOperator(method);
        if (inTree && method.Name == "Equals" && method.ReturnType.SpecialType == SpecialType.System_Boolean)
        {
            var (left, right) = node.Instance is not null && arguments.Count == 1 ? (node.Instance, arguments[0])
                : node.Instance is null && arguments.Count == 2 ? (arguments[0], arguments[1]) : (null, null);
            if (left is not null && right is not null && (Encrypted(left) is not null || Encrypted(right) is not null))
            {
                Equality("Equals", left, right);
                return true;
            }
        }

        if (inTree && method.Name == "Contains" && arguments.Count > 0 && node.Instance?.Type?.SpecialType != SpecialType.System_String)
        {
            var itemIndex = node.Instance is null ? arguments.Count - 1 : 0;
            if (Encrypted(arguments[itemIndex]) is { } item)
            {
                if (!item.Member.Searchable)
                {
                    Report(Rules.ComparedWithoutIndex, item.Operation, "match it against a list (Contains)");
                }
                else if (item.Member.Truncated)
                {
                    RequireFilterable(item, "Contains");
                }

                WithConjunct(null, () =>
                {
                    Visit(node.Instance);
                    for (var i = 0; i < arguments.Count; i++)
                    {
                        if (i != itemIndex)
                        {
                            Visit(arguments[i]);
                        }
                    }
                });
                return true;
            }
        }

        if (method.Name is "Join" or "GroupJoin" && arguments.Count >= 4
            && QuerySymbols.LambdaBody(arguments[2]) is { } outerKey && QuerySymbols.LambdaBody(arguments[3]) is { } innerKey)
        {
            var outer = Encrypted(outerKey);
            var inner = Encrypted(innerKey);
            if (outer is null && inner is null)
            {
                return false;
            }

            var which = (outer ?? inner)!.Value;
            var same = outer is not null && inner is not null && SymbolEqualityComparer.Default.Equals(outer.Value.Member.Property.OriginalDefinition, inner.Value.Member.Property.OriginalDefinition);
            if (same && !which.Member.Searchable)
            {
                Report(Rules.ComparedWithoutIndex, which.Operation, "join on it");
            }
            else if (same && which.Member.Truncated)
            {
                Report(Rules.TruncatedIndex, which.Operation, "serve a join");
            }
            else if (!same)
            {
                Report(Rules.Grouped, which.Operation, "join on it unless both keys are that same searchable property (Join)");
            }

            WithOperator(method.Name, OperatorKind.Query, () =>
            {
                Visit(arguments[0]);
                Visit(arguments[1]);
            });
            return true;
        }

        return false;
    }

    private void VisitBinary(IBinaryOperation node)
    {
        var kind = node.OperatorKind;
        if (!_inProjection && _treeDepth > 0 && kind is BinaryOperatorKind.Equals or BinaryOperatorKind.NotEquals
            && (Encrypted(node.LeftOperand) is not null || Encrypted(node.RightOperand) is not null))
        {
            Equality(kind == BinaryOperatorKind.Equals ? "==" : "!=", node.LeftOperand, node.RightOperand);
            return;
        }

        if (_inProjection && kind == BinaryOperatorKind.Add && node.Type?.SpecialType == SpecialType.System_String)
        {
            foreach (var operand in new[] { node.LeftOperand, node.RightOperand })
            {
                if (Encrypted(operand) is { } text && !FormatsAlike(text.Operation.Type))
                {
                    Report(Rules.ReadByDatabase, text.Operation, "format it as text (string concatenation): the database's text form of the value is not .NET's");
                    return;
                }
            }
        }

        var conjunct = kind == BinaryOperatorKind.ConditionalAnd ? _conjunctOf : null;
        void VisitOperands()
        {
            WithConjunct(conjunct, () =>
            {
                Visit(node.LeftOperand);
                Visit(node.RightOperand);
            });
        }

        if (_inProjection)
        {
            VisitOperands();
        }
        else
        {
            WithOperator(kind.ToString(), OperatorKind.Binary, VisitOperands);
        }
    }

    private void Equality(string comparison, IOperation left, IOperation right)
    {
        var leftMember = Encrypted(left);
        var rightMember = Encrypted(right);
        if (leftMember is null)
        {
            (left, right, leftMember, rightMember) = (right, left, rightMember, null);
        }

        var found = leftMember!.Value;
        if (IsNullConstant(right))
        {
            // Nullness is stored in the clear (a NULL ciphertext): a null test needs no index.
            return;
        }

        if (!found.Member.Searchable)
        {
            Report(Rules.ComparedWithoutIndex, found.Operation, $"compare it ({comparison})");
            return;
        }

        if (rightMember is { } other)
        {
            if (!SymbolEqualityComparer.Default.Equals(other.Member.Property.OriginalDefinition, found.Member.Property.OriginalDefinition))
            {
                Report(Rules.ReadByDatabase, found.Operation, $"in a comparison with '{other.Member.Name}', another property whose blind index has its own key ({comparison})");
            }

            return;
        }

        if (found.Member.Truncated)
        {
            if (comparison == "!=")
            {
                Report(Rules.TruncatedIndex, found.Operation, "test it for inequality (!=): rows that share its index would be missed");
            }
            else
            {
                RequireFilterable(found, comparison);
            }
        }

        WithConjunct(null, () => Visit(right));
    }

    private void RequireFilterable((IPropertyReferenceOperation Operation, EncryptedMember Member) found, string comparison)
    {
        var onPredicateParameter = _conjunctOf is not null && QuerySymbols.Strip(found.Operation.Instance!) is IParameterReferenceOperation parameter
            && SymbolEqualityComparer.Default.Equals(parameter.Parameter, _conjunctOf);
        if (_projection is not null || !_rootChainPreservesRows || !onPredicateParameter)
        {
            Report(Rules.TruncatedIndex, found.Operation, $"serve this comparison ({comparison}): it is not a top-level AND condition of a filter over the returned entities, or the query projects, joins, takes or skips");
        }
    }

    private void VisitProperty(IPropertyReferenceOperation node)
    {
        // p.Rating.HasValue is a null test (EfEnvelope reads it as p.Rating != null): nullness is stored in the clear.
        if (node.Property is { Name: "HasValue", ContainingType.OriginalDefinition.SpecialType: SpecialType.System_Nullable_T }
            && node.Instance is { } nullable && Encrypted(nullable) is not null)
        {
            return;
        }

        if (!_inProjection && _treeDepth > 0 && Encrypted(node) is { } found)
        {
            var (rule, what) = Classify();
            Report(rule, found.Operation, what);
            return;
        }

        Visit(node.Instance);
    }

    // Which rule a read of an encrypted property breaks, from the operator it is read under.
    private (DiagnosticDescriptor Rule, string What) Classify()
    {
        var op = _operator;
        switch (_operatorKind)
        {
            case OperatorKind.Binary when op is "LessThan" or "LessThanOrEqual" or "GreaterThan" or "GreaterThanOrEqual":
                return (Rules.Ordered, $"compare it as a range ({op})");
            case OperatorKind.Binary:
                return (Rules.ReadByDatabase, $"in an operation ({op})");
            case OperatorKind.Function when op.EndsWith("Compare", StringComparison.Ordinal) || op is "CompareTo" or "string.CompareOrdinal":
                return (Rules.Ordered, $"compare it ({op})");
            case OperatorKind.Function:
                return (Rules.PatternMatched, $"apply {op} to it");
            case OperatorKind.Query when OrderingOperators.Contains(op):
                return (Rules.Ordered, $"order by it ({op})");
            case OperatorKind.Query when GroupingOperators.Contains(op):
                return (Rules.Grouped, $"use it in {op}");
            case OperatorKind.Query when op.StartsWith("SetProperty", StringComparison.Ordinal) || op.StartsWith("ExecuteUpdate", StringComparison.Ordinal):
                return (Rules.InExecuteUpdate, "set it or compute with it (SetProperty)");
            case OperatorKind.Query when op == "Select":
                return (Rules.ReadByDatabase, "in a Select that runs in the database (only the query's last Select runs after loading)");
            default:
                return (Rules.ReadByDatabase, $"in {op}");
        }
    }

    // A property of a row the query reads: its instance depends on a lambda parameter. Anything else (a captured
    // entity's property) EF evaluates before the query runs and passes as a parameter, as EfEnvelope then sees it.
    private (IPropertyReferenceOperation Operation, EncryptedMember Member)? Encrypted(IOperation operation)
    {
        var stripped = QuerySymbols.Strip(operation);
        if (stripped is IPropertyReferenceOperation { Instance: { } instance } property && DependsOnRow(instance))
        {
            if (members.Find(property.Property, cancellationToken) is { } member)
            {
                return (property, member);
            }

            // x.Ssn in a lambda composed after Select(p => new { p.Ssn }): the value the selector gave that member.
            if (QuerySymbols.Strip(instance) is IParameterReferenceOperation row && _projectedRows.TryGetValue(row.Parameter, out var projected)
                && Initializer(projected, property.Property) is { } value && Encrypted(value) is { } read)
            {
                return (property, read.Member);
            }
        }

        // s in Where(s => ...) after Select(p => p.Ssn): the value itself.
        return stripped is IParameterReferenceOperation parameter && _projectedRows.TryGetValue(parameter.Parameter, out var scalar)
            && Encrypted(scalar) is { } scalarRead
            ? scalarRead
            : null;
    }

    // The value a projection's object creation gives a member (new { p.Ssn }, new Dto { Ssn = p.Ssn }).
    private static IOperation? Initializer(IOperation projection, IPropertySymbol member)
    {
        var assignments = QuerySymbols.Strip(projection) switch
        {
            IAnonymousObjectCreationOperation anonymous => anonymous.Initializers,
            IObjectCreationOperation { Initializer: { } initializer } => initializer.Initializers,
            _ => [],
        };
        return assignments.OfType<ISimpleAssignmentOperation>()
            .FirstOrDefault(a => a.Target is IPropertyReferenceOperation target && SymbolEqualityComparer.Default.Equals(target.Property, member))?.Value;
    }

    private static bool DependsOnRow(IOperation instance) =>
        instance.DescendantsAndSelf().Any(operation => operation is IParameterReferenceOperation { Parameter.ContainingSymbol: IMethodSymbol { MethodKind: MethodKind.AnonymousFunction } });

    private static bool IsNullConstant(IOperation operation) =>
        QuerySymbols.Strip(operation) is { ConstantValue: { HasValue: true, Value: null } };

    private void WithOperator(string name, OperatorKind kind, Action visit)
    {
        var (outerInProjection, outerName, outerKind) = (_inProjection, _operator, _operatorKind);
        _inProjection = false;
        (_operator, _operatorKind) = (name, kind);
        visit();
        (_inProjection, _operator, _operatorKind) = (outerInProjection, outerName, outerKind);
    }

    private void WithConjunct(IParameterSymbol? conjunct, Action visit)
    {
        var outer = _conjunctOf;
        _conjunctOf = conjunct;
        visit();
        _conjunctOf = outer;
    }

    private void Report(DiagnosticDescriptor rule, IOperation at, string what) =>
        report(Diagnostic.Create(rule, at.Syntax.GetLocation(), MemberName(at), what));

    private string MemberName(IOperation at) =>
        at is IPropertyReferenceOperation property && members.Find(property.Property, cancellationToken) is { } member ? member.Name : at.Syntax.ToString();
}
