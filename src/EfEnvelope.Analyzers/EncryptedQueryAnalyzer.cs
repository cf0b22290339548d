using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Operations;

namespace EfEnvelope.Analyzers;

/// <summary>Reports LINQ queries that EfEnvelope refuses at run time because they use an encrypted property in the database.</summary>
/// <remarks>
/// Each query is analysed once, from its outermost operator (the one whose result no other query operator
/// consumes), as EF would compile it; see <see cref="QueryWalker"/> for the rules, which follow the runtime guard.
/// </remarks>
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class EncryptedQueryAnalyzer : DiagnosticAnalyzer
{
    /// <inheritdoc />
    public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics { get; } = ImmutableArray.Create(
        Rules.ComparedWithoutIndex, Rules.Ordered, Rules.PatternMatched, Rules.Grouped, Rules.InExecuteUpdate,
        Rules.ReadByDatabase, Rules.TruncatedIndex);

    /// <inheritdoc />
    public override void Initialize(AnalysisContext context)
    {
        context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
        context.EnableConcurrentExecution();
        context.RegisterCompilationStartAction(start =>
        {
            if (EncryptedMembers.Create(start.Compilation) is not { } members)
            {
                return;
            }

            var symbols = new QuerySymbols(start.Compilation);
            start.RegisterOperationAction(operation => AnalyzeInvocation(operation, symbols, members), OperationKind.Invocation);
        });
    }

    private static void AnalyzeInvocation(OperationAnalysisContext context, QuerySymbols symbols, EncryptedMembers members)
    {
        var invocation = (IInvocationOperation)context.Operation;
        if (!symbols.IsQueryOperator(invocation.TargetMethod) || IsPartOfLargerQuery(invocation, symbols) || IsOverInMemorySequence(invocation, symbols))
        {
            return;
        }

        new QueryWalker(symbols, members, context.ReportDiagnostic, context.CancellationToken).Analyze(invocation);
    }

    // An operator consumed by another query operator, or inside a query's lambda, is analysed with that query.
    private static bool IsPartOfLargerQuery(IInvocationOperation invocation, QuerySymbols symbols)
    {
        var parent = invocation.Parent;
        while (parent is IConversionOperation or IArgumentOperation)
        {
            parent = parent.Parent;
        }

        if (parent is IInvocationOperation consumer && symbols.IsQueryOperator(consumer.TargetMethod))
        {
            return true;
        }

        for (var ancestor = invocation.Parent; ancestor is not null; ancestor = ancestor.Parent)
        {
            if (ancestor is IAnonymousFunctionOperation lambda && symbols.IsExpressionLambda(lambda))
            {
                return true;
            }
        }

        return false;
    }

    // list.AsQueryable() runs LINQ to Objects, which reads plaintext: EfEnvelope never sees the query.
    private static bool IsOverInMemorySequence(IInvocationOperation invocation, QuerySymbols symbols)
    {
        IOperation? source = invocation;
        while (source is not null)
        {
            source = QuerySymbols.Strip(source);
            if (source is not IInvocationOperation call || !symbols.IsQueryOperator(call.TargetMethod))
            {
                return false;
            }

            if (call.TargetMethod.Name == "AsQueryable" && symbols.IsQueryable(call.TargetMethod))
            {
                return true;
            }

            source = QuerySymbols.Source(call);
        }

        return false;
    }
}
