using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Operations;

namespace EfEnvelope.Analyzers;

/// <summary>Reports a DbContext with encrypted properties whose options pick a database but not UseEnvelopeEncryption.</summary>
/// <remarks>
/// <para>
/// Without the extension, <c>[Encrypted]</c> is an attribute nobody reads and EF stores the values in plaintext. Three
/// places choose a context's database in one piece of code: <c>OnConfiguring</c>, the options lambda of
/// <c>AddDbContext</c> (and its pool and factory forms), and a <c>new DbContextOptionsBuilder&lt;T&gt;()...Options</c>
/// chain. Each is reported only when it is seen whole: it calls a relational provider (<c>UseSqlite</c>,
/// <c>UseSqlServer</c>, <c>UseNpgsql</c>...), every call on the builder is EF Core's or a provider's, and the builder
/// goes nowhere else. A builder handed to a helper, or a chain with a call of the application's own, may get
/// encryption there, so it is not reported.
/// </para>
/// </remarks>
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class MissingEncryptionAnalyzer : DiagnosticAnalyzer
{
    private static readonly HashSet<string> Providers =
        ["UseSqlite", "UseSqlServer", "UseAzureSql", "UseAzureSynapse", "UseNpgsql", "UseMySql", "UseMySQL", "UseOracle", "UseFirebird"];

    private static readonly HashSet<string> Registrations =
        ["AddDbContext", "AddDbContextPool", "AddDbContextFactory", "AddPooledDbContextFactory"];

    /// <inheritdoc />
    public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics { get; } = ImmutableArray.Create(Rules.MissingEncryption);

    /// <inheritdoc />
    public override void Initialize(AnalysisContext context)
    {
        context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
        context.EnableConcurrentExecution();
        context.RegisterCompilationStartAction(start =>
        {
            var dbContext = start.Compilation.GetTypeByMetadataName("Microsoft.EntityFrameworkCore.DbContext");
            var optionsBuilder = start.Compilation.GetTypeByMetadataName("Microsoft.EntityFrameworkCore.DbContextOptionsBuilder");
            if (EncryptedMembers.Create(start.Compilation) is not { } members || dbContext is null || optionsBuilder is null)
            {
                return;
            }

            var checker = new Checker(members, dbContext, optionsBuilder);
            start.RegisterOperationBlockAction(checker.AnalyzeOnConfiguring);
            start.RegisterOperationAction(checker.AnalyzeRegistration, OperationKind.Invocation);
            start.RegisterOperationAction(checker.AnalyzeBuilderChain, OperationKind.ObjectCreation);
        });
    }

    private sealed class Checker(EncryptedMembers members, INamedTypeSymbol dbContext, INamedTypeSymbol optionsBuilder)
    {
        public void AnalyzeOnConfiguring(OperationBlockAnalysisContext context)
        {
            if (context.OwningSymbol is not IMethodSymbol { Name: "OnConfiguring", IsOverride: true, Parameters.Length: 1 } method
                || !IsContext(method.ContainingType))
            {
                return;
            }

            var builder = method.Parameters[0];
            var uses = context.OperationBlocks.SelectMany(block => block.DescendantsAndSelf()).OfType<IParameterReferenceOperation>()
                .Where(reference => SymbolEqualityComparer.Default.Equals(reference.Parameter, builder));
            if (Configures(uses) && EncryptedProperties(method.ContainingType, context.CancellationToken) is { Length: > 0 } encrypted)
            {
                var location = method.Locations.FirstOrDefault() ?? Location.None;
                context.ReportDiagnostic(Diagnostic.Create(Rules.MissingEncryption, location, method.ContainingType.Name, encrypted, "OnConfiguring"));
            }
        }

        public void AnalyzeRegistration(OperationAnalysisContext context)
        {
            var invocation = (IInvocationOperation)context.Operation;
            var method = invocation.TargetMethod;
            if (!Registrations.Contains(method.Name) || method.TypeArguments.Length == 0 || method.TypeArguments[0] is not INamedTypeSymbol contextType
                || method.ContainingNamespace?.ToDisplayString() != "Microsoft.Extensions.DependencyInjection")
            {
                return;
            }

            foreach (var argument in invocation.Arguments)
            {
                if (QuerySymbols.Lambda(argument.Value) is not { } lambda)
                {
                    continue;
                }

                var builder = lambda.Symbol.Parameters.FirstOrDefault(parameter => IsBuilder(parameter.Type));
                if (builder is null)
                {
                    continue;
                }

                var uses = lambda.Body.DescendantsAndSelf().OfType<IParameterReferenceOperation>()
                    .Where(reference => SymbolEqualityComparer.Default.Equals(reference.Parameter, builder));
                if (Configures(uses) && EncryptedProperties(contextType, context.CancellationToken) is { Length: > 0 } encrypted)
                {
                    context.ReportDiagnostic(Diagnostic.Create(Rules.MissingEncryption, invocation.Syntax.GetLocation(), contextType.Name, encrypted, method.Name));
                }
            }
        }

        // new DbContextOptionsBuilder<T>().UseSqlite(...)...Options, in one expression.
        public void AnalyzeBuilderChain(OperationAnalysisContext context)
        {
            var creation = (IObjectCreationOperation)context.Operation;
            if (creation.Type is not INamedTypeSymbol { TypeArguments.Length: 1 } type || !IsBuilder(type) || type.TypeArguments[0] is not INamedTypeSymbol contextType)
            {
                return;
            }

            var calls = new List<IMethodSymbol>();
            IOperation current = creation;
            while (true)
            {
                var parent = Unwrap(current.Parent);
                if (parent is IInvocationOperation call && ReceiverOf(call) == current)
                {
                    calls.Add(call.TargetMethod);
                    current = call;
                }
                else if (parent is IPropertyReferenceOperation { Property.Name: "Options" } options && options.Instance is not null && QuerySymbols.Strip(options.Instance) == current)
                {
                    break;
                }
                else
                {
                    return;
                }
            }

            if (Decide(calls) && EncryptedProperties(contextType, context.CancellationToken) is { Length: > 0 } encrypted)
            {
                context.ReportDiagnostic(Diagnostic.Create(Rules.MissingEncryption, creation.Syntax.GetLocation(), contextType.Name, encrypted, "this DbContextOptionsBuilder"));
            }
        }

        // Every use of the builder must be a chain of EF Core or provider calls (or a read of IsConfigured).
        private bool Configures(IEnumerable<IParameterReferenceOperation> uses)
        {
            var calls = new List<IMethodSymbol>();
            foreach (var use in uses)
            {
                IOperation current = use;
                while (true)
                {
                    var parent = Unwrap(current.Parent);
                    if (parent is IInvocationOperation call && ReceiverOf(call) == current)
                    {
                        calls.Add(call.TargetMethod);
                        current = call;
                        continue;
                    }

                    if (parent is IPropertyReferenceOperation { Property.Name: "IsConfigured" } && current == use)
                    {
                        break;
                    }

                    // The chain's value is discarded (an expression statement, or a lambda's result): nothing else
                    // can add to it. Anything else hands the builder on.
                    if (current != use && parent is IExpressionStatementOperation or IReturnOperation { IsImplicit: true })
                    {
                        break;
                    }

                    return false;
                }
            }

            return Decide(calls);
        }

        private static bool Decide(List<IMethodSymbol> calls) =>
            calls.Any(call => Providers.Contains(call.Name))
            && !calls.Any(call => call.Name == "UseEnvelopeEncryption")
            && calls.All(call => call.ContainingNamespace?.ToDisplayString().StartsWith("Microsoft.EntityFrameworkCore", StringComparison.Ordinal) == true);

        private static IOperation? ReceiverOf(IInvocationOperation call) =>
            call.Instance is { } instance ? QuerySymbols.Strip(instance)
            : call.TargetMethod.IsExtensionMethod && call.Arguments.Length > 0 ? QuerySymbols.Strip(call.Arguments[0].Value) : null;

        // Up from an operand to the operation that consumes it, past conversions and argument wrappers.
        private static IOperation? Unwrap(IOperation? operation)
        {
            while (operation is IConversionOperation or IArgumentOperation)
            {
                operation = operation.Parent;
            }

            return operation;
        }

        private bool IsBuilder(ITypeSymbol type)
        {
            for (var current = type as INamedTypeSymbol; current is not null; current = current.BaseType)
            {
                if (SymbolEqualityComparer.Default.Equals(current, optionsBuilder))
                {
                    return true;
                }
            }

            return false;
        }

        private bool IsContext(INamedTypeSymbol type)
        {
            for (var current = type.BaseType; current is not null; current = current.BaseType)
            {
                if (SymbolEqualityComparer.Default.Equals(current, dbContext))
                {
                    return true;
                }
            }

            return false;
        }

        // The encrypted properties of the entity types the context exposes as DbSet properties, and of the types
        // those reach through their properties (owned types, navigations), named for the message.
        private string EncryptedProperties(INamedTypeSymbol contextType, CancellationToken cancellationToken)
        {
            var pending = new Queue<ITypeSymbol>();
            var seen = new HashSet<ITypeSymbol>(SymbolEqualityComparer.Default);
            for (var current = contextType; current is not null && !SymbolEqualityComparer.Default.Equals(current, dbContext); current = current.BaseType)
            {
                foreach (var property in current.GetMembers().OfType<IPropertySymbol>())
                {
                    if (property.Type is INamedTypeSymbol { Name: "DbSet", TypeArguments.Length: 1 } set && seen.Add(set.TypeArguments[0]))
                    {
                        pending.Enqueue(set.TypeArguments[0]);
                    }
                }
            }

            var found = new List<string>();
            while (pending.Count > 0 && seen.Count < 500)
            {
                var entity = pending.Dequeue();
                for (var current = entity; current is not null && current.SpecialType != SpecialType.System_Object; current = current.BaseType)
                {
                    foreach (var property in current.GetMembers().OfType<IPropertySymbol>())
                    {
                        if (members.Find(property, cancellationToken) is { } encrypted)
                        {
                            found.Add(encrypted.Name);
                        }
                        else if (Reached(property.Type) is { } next && seen.Add(next))
                        {
                            pending.Enqueue(next);
                        }
                    }
                }
            }

            return string.Join(", ", found.Distinct().Take(3)) + (found.Distinct().Count() > 3 ? ", ..." : "");
        }

        // The application type a property leads to: itself, or the element of a collection.
        private static ITypeSymbol? Reached(ITypeSymbol type)
        {
            if (type is INamedTypeSymbol { IsGenericType: true } generic && generic.AllInterfaces.Any(i => i.Name == "IEnumerable" && i.TypeArguments.Length == 1))
            {
                type = generic.TypeArguments[generic.TypeArguments.Length - 1];
            }

            var ns = type.ContainingNamespace?.ToDisplayString() ?? "";
            return type.TypeKind is TypeKind.Class or TypeKind.Struct && type.SpecialType == SpecialType.None
                && !ns.StartsWith("System", StringComparison.Ordinal) && !ns.StartsWith("Microsoft", StringComparison.Ordinal)
                ? type
                : null;
        }
    }
}
