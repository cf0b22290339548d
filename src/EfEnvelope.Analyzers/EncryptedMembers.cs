using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace EfEnvelope.Analyzers;

/// <summary>How one property is encrypted, as far as the source shows.</summary>
internal sealed class EncryptedMember(string name, IPropertySymbol property, bool searchable, bool truncated)
{
    /// <summary>Type and property, as the runtime names it ("Patient.Ssn").</summary>
    public string Name { get; } = name;

    public IPropertySymbol Property { get; } = property;

    /// <summary>Whether it has a blind index.</summary>
    public bool Searchable { get; } = searchable;

    /// <summary>Whether that index keeps fewer than 32 bytes.</summary>
    public bool Truncated { get; } = truncated;
}

/// <summary>Which properties of a compilation are encrypted: <c>[Encrypted]</c>, and the fluent <c>IsEncrypted</c> calls in its source.</summary>
/// <remarks>
/// The runtime reads the fluent setting first and the attribute second, so a fluent <c>IsEncrypted(o => ...)</c> makes
/// an attributed property searchable; missing it would report equality searches that work. Fluent calls are found
/// in this compilation's source only: one made in a referenced assembly is invisible here.
/// </remarks>
internal sealed class EncryptedMembers
{
    private const int FullIndexBytes = 32;

    private readonly INamedTypeSymbol _attribute;
    private readonly Compilation _compilation;
    private readonly object _gate = new();
    private Dictionary<IPropertySymbol, (bool Searchable, bool Truncated)>? _fluent;

    private EncryptedMembers(INamedTypeSymbol attribute, Compilation compilation)
    {
        _attribute = attribute;
        _compilation = compilation;
    }

    /// <summary>Null when the compilation does not reference EfEnvelope: then nothing can be encrypted.</summary>
    public static EncryptedMembers? Create(Compilation compilation) =>
        compilation.GetTypeByMetadataName("EfEnvelope.EncryptedAttribute") is { } attribute ? new EncryptedMembers(attribute, compilation) : null;

    public EncryptedMember? Find(IPropertySymbol property, CancellationToken cancellationToken)
    {
        var attribute = FindAttribute(property);
        var fluent = Fluent(cancellationToken);
        var hasFluent = fluent.TryGetValue(property.OriginalDefinition, out var configured);
        if (attribute is null && !hasFluent)
        {
            return null;
        }

        var searchable = configured.Searchable || (attribute is not null && Named(attribute, "Searchable") is true);
        var truncated = hasFluent && configured.Searchable
            ? configured.Truncated
            : attribute is not null && Named(attribute, "IndexBytes") is int bytes && bytes < FullIndexBytes;
        return new EncryptedMember($"{property.ContainingType.Name}.{property.Name}", property, searchable, searchable && truncated);
    }

    /// <summary>The encrypted properties of an entity type and its base types, one per name, as EF maps them.</summary>
    public List<EncryptedMember> OfEntity(ITypeSymbol type, CancellationToken cancellationToken)
    {
        var found = new List<EncryptedMember>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var current = type; current is not null && current.SpecialType != SpecialType.System_Object; current = current.BaseType)
        {
            foreach (var property in current.GetMembers().OfType<IPropertySymbol>())
            {
                // An override comes before the property it overrides, and names the same mapped property.
                if (names.Add(property.Name) && Find(property, cancellationToken) is { } encrypted)
                {
                    found.Add(encrypted);
                }
            }
        }

        return found;
    }

    // [Encrypted] is Inherited = true: an override without it is still encrypted.
    private AttributeData? FindAttribute(IPropertySymbol property)
    {
        for (var current = property; current is not null; current = current.OverriddenProperty)
        {
            foreach (var attribute in current.GetAttributes())
            {
                if (SymbolEqualityComparer.Default.Equals(attribute.AttributeClass, _attribute))
                {
                    return attribute;
                }
            }
        }

        return null;
    }

    private static object? Named(AttributeData attribute, string name)
    {
        foreach (var argument in attribute.NamedArguments)
        {
            if (argument.Key == name)
            {
                return argument.Value.Value;
            }
        }

        return null;
    }

    private Dictionary<IPropertySymbol, (bool Searchable, bool Truncated)> Fluent(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            return _fluent ??= ScanFluent(cancellationToken);
        }
    }

    // Binds only the files that mention IsEncrypted, once per compilation, the first time a query needs it: the
    // answer depends on configuration anywhere in the project, which no single node action can see.
#pragma warning disable RS1030 // The fluent configuration lives in other files than the query being analyzed.
    private Dictionary<IPropertySymbol, (bool Searchable, bool Truncated)> ScanFluent(CancellationToken cancellationToken)
    {
        var found = new Dictionary<IPropertySymbol, (bool Searchable, bool Truncated)>(SymbolEqualityComparer.Default);
        foreach (var tree in _compilation.SyntaxTrees)
        {
            if (!tree.GetText(cancellationToken).ToString().Contains("IsEncrypted"))
            {
                continue;
            }

            SemanticModel? model = null;
            foreach (var invocation in tree.GetRoot(cancellationToken).DescendantNodes().OfType<InvocationExpressionSyntax>())
            {
                if (invocation.Expression is not MemberAccessExpressionSyntax { Name.Identifier.ValueText: "IsEncrypted" } access)
                {
                    continue;
                }

                model ??= _compilation.GetSemanticModel(tree);
                if (model.GetSymbolInfo(invocation, cancellationToken).Symbol is not IMethodSymbol method
                    || !SymbolEqualityComparer.Default.Equals(method.ContainingAssembly, _attribute.ContainingAssembly)
                    || SelectedProperty(model, access.Expression, cancellationToken) is not { } property)
                {
                    continue;
                }

                var searchable = method.Parameters.Length == 1 && invocation.ArgumentList.Arguments.Count == 1;
                var truncated = searchable && SetsShortIndex(model, invocation.ArgumentList.Arguments[0].Expression, cancellationToken);
                found[property.OriginalDefinition] = found.TryGetValue(property.OriginalDefinition, out var earlier)
                    ? (earlier.Searchable || searchable, earlier.Truncated || truncated)
                    : (searchable, truncated);
            }
        }

        return found;
    }
#pragma warning restore RS1030

    // builder.Property(p => p.Ssn)[.HasColumnName(...)...].IsEncrypted(...): the property the chain started from.
    private static IPropertySymbol? SelectedProperty(SemanticModel model, ExpressionSyntax receiver, CancellationToken cancellationToken)
    {
        while (receiver is InvocationExpressionSyntax { Expression: MemberAccessExpressionSyntax access } call)
        {
            if (access.Name.Identifier.ValueText == "Property" && call.ArgumentList.Arguments.Count == 1
                && call.ArgumentList.Arguments[0].Expression is LambdaExpressionSyntax { Body: ExpressionSyntax body })
            {
                return model.GetSymbolInfo(body, cancellationToken).Symbol as IPropertySymbol;
            }

            receiver = access.Expression;
        }

        return null;
    }

    private static bool SetsShortIndex(SemanticModel model, ExpressionSyntax configure, CancellationToken cancellationToken) =>
        configure.DescendantNodesAndSelf().OfType<AssignmentExpressionSyntax>().Any(assignment =>
            assignment.Left is MemberAccessExpressionSyntax { Name.Identifier.ValueText: "IndexBytes" } or IdentifierNameSyntax { Identifier.ValueText: "IndexBytes" }
            && model.GetConstantValue(assignment.Right, cancellationToken) is { HasValue: true, Value: int bytes }
            && bytes < FullIndexBytes);
}
