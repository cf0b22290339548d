using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Operations;

namespace EfEnvelope.Analyzers;

/// <summary>
/// Reports <c>entry.CurrentValues.SetValues(...)</c> and <c>entry.OriginalValues.SetValues(...)</c> calls that leave
/// encrypted properties behind where plain EF would set them.
/// </summary>
/// <remarks>
/// <para>
/// An encrypted property is not in EF's model (a <c>{Name}_Ciphertext</c> shadow property stands for it), so
/// <c>PropertyValues.SetValues</c> never sets it. The call is reported when its receiver is <c>CurrentValues</c> or
/// <c>OriginalValues</c> of a generic <c>EntityEntry&lt;TEntity&gt;</c> whose <c>TEntity</c> (or a base type) has
/// encrypted properties, and its argument would set one of them in plain EF:
/// </para>
/// <list type="bullet">
/// <item>an object (the entity type, a DTO, an anonymous object) whose type has a readable property of the same name;</item>
/// <item>a dictionary, unless it is created in the call with constant keys none of which names an encrypted property;</item>
/// <item>
/// another <c>PropertyValues</c> copied into <c>CurrentValues</c>, unless it is written in the call as an entry's
/// <c>OriginalValues</c>, its <c>GetDatabaseValues()</c> / <c>await GetDatabaseValuesAsync()</c>, or a <c>Clone()</c> of
/// one of them: it carries encrypted values as the ciphertext last read or saved, so an unsaved edit made on the source
/// (another entry's <c>CurrentValues</c>) is not copied. Stored values copied over an unsaved edit take it back, as in
/// plain EF, once change detection has seen the edit (EfEnvelope's change detector), so those sources are not
/// reported; they keep the edit with <c>AutoDetectChangesEnabled = false</c> and no <c>DetectChanges()</c> since the
/// edit (a documented limit, as for <c>OriginalValues</c> below). Copied into
/// <c>OriginalValues</c> it works (<c>GetDatabaseValues()</c> to resolve a conflict, the entry's own
/// <c>CurrentValues</c>) and is not reported; it misses an unsaved edit only from another entry's <c>CurrentValues</c>,
/// or with <c>AutoDetectChangesEnabled = false</c>.
/// </item>
/// </list>
/// <para>
/// Not reported: a non-generic <c>EntityEntry</c> (<c>ChangeTracker.Entries()</c>, a concurrency exception's
/// entries), whose type is known only at run time; <c>PropertyValues</c> held in a variable first; an argument whose
/// type, under its casts, is <c>object</c> or a type parameter; encrypted properties of types derived from
/// <c>TEntity</c>. The indexer (<c>CurrentValues["Ssn"] = ...</c>) throws at run time, so it needs no warning. The call
/// is reported as it stands: a later <c>State = EntityState.Unchanged</c> or <c>Reload()</c> that puts the values
/// right is not looked for.
/// </para>
/// </remarks>
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class PropertyValuesAnalyzer : DiagnosticAnalyzer
{
    private const int NamedInMessage = 3;

    /// <inheritdoc />
    public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics { get; } = ImmutableArray.Create(Rules.ValuesBypassed);

    /// <inheritdoc />
    public override void Initialize(AnalysisContext context)
    {
        context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
        context.EnableConcurrentExecution();
        context.RegisterCompilationStartAction(start =>
        {
            var propertyValues = start.Compilation.GetTypeByMetadataName("Microsoft.EntityFrameworkCore.ChangeTracking.PropertyValues");
            var entry = start.Compilation.GetTypeByMetadataName("Microsoft.EntityFrameworkCore.ChangeTracking.EntityEntry`1");
            var nonGenericEntry = start.Compilation.GetTypeByMetadataName("Microsoft.EntityFrameworkCore.ChangeTracking.EntityEntry");
            var dictionary = start.Compilation.GetTypeByMetadataName("System.Collections.Generic.IDictionary`2");
            if (EncryptedMembers.Create(start.Compilation) is not { } members || propertyValues is null || entry is null || nonGenericEntry is null || dictionary is null)
            {
                return;
            }

            var checker = new Checker(members, propertyValues, entry, nonGenericEntry, dictionary);
            start.RegisterOperationAction(checker.AnalyzeInvocation, OperationKind.Invocation);
        });
    }

    private sealed class Checker(EncryptedMembers members, INamedTypeSymbol propertyValues, INamedTypeSymbol entry, INamedTypeSymbol nonGenericEntry, INamedTypeSymbol dictionary)
    {
        public void AnalyzeInvocation(OperationAnalysisContext context)
        {
            var invocation = (IInvocationOperation)context.Operation;
            if (invocation.TargetMethod is not { Name: "SetValues", Parameters.Length: 1 } method
                || !SymbolEqualityComparer.Default.Equals(method.ContainingType, propertyValues)
                || invocation.Instance is null
                || QuerySymbols.Strip(invocation.Instance) is not IPropertyReferenceOperation { Property.Name: "CurrentValues" or "OriginalValues" } values
                || values.Instance?.Type is not { } entryType
                || EntityOf(entryType) is not { } entity)
            {
                return;
            }

            var encrypted = members.OfEntity(entity, context.CancellationToken);
            if (encrypted.Count == 0)
            {
                return;
            }

            var current = values.Property.Name == "CurrentValues";
            var argument = invocation.Arguments[0];
            string[] outcome;
            if (SymbolEqualityComparer.Default.Equals(argument.Parameter?.Type, propertyValues))
            {
                if (!current || CarriesStoredValues(argument.Value))
                {
                    return;
                }

                outcome =
                [
                    "CurrentValues.SetValues copies them as the ciphertext last read or saved: an unsaved edit made on the source is not copied",
                    "copy it",
                    "Assign the properties on the entity, or copy OriginalValues or GetDatabaseValues(), which take an unsaved edit back as in plain EF",
                ];
            }
            else
            {
                var names = IsDictionary(argument.Parameter?.Type) ? ConstantKeys(argument.Value) : ReadableProperties(QuerySymbols.Strip(argument.Value).Type);
                if (names is not null)
                {
                    encrypted = encrypted.Where(member => names.Contains(member.Property.Name)).ToList();
                }

                if (encrypted.Count == 0)
                {
                    return;
                }

                outcome = current
                    ? [
                        "CurrentValues.SetValues leaves them as they are",
                        "copy them from the source",
                        $"Assign them on the entity instead (entity.{encrypted[0].Property.Name} = source.{encrypted[0].Property.Name}), which EfEnvelope saves",
                    ]
                    : [
                        "OriginalValues.SetValues leaves their original values as read",
                        "mark a property modified whose new original value differs from its current one, and save it",
                        "Assign the property on the entity to save a value, or pass entry.GetDatabaseValues() to take the stored values",
                    ];
            }

            var named = string.Join(", ", encrypted.Take(NamedInMessage).Select(member => member.Name)) + (encrypted.Count > NamedInMessage ? ", ..." : "");
            context.ReportDiagnostic(Diagnostic.Create(Rules.ValuesBypassed, invocation.Syntax.GetLocation(), entity.Name, named, outcome[0], outcome[1], outcome[2]));
        }

        // Values of a stored row, written in the call: entry.OriginalValues, entry.GetDatabaseValues(),
        // await entry.GetDatabaseValuesAsync(), or a Clone() of one of them. They hold no unsaved edit, so copying them
        // into CurrentValues sets encrypted properties as plain EF does (EncryptionChangeDetector takes an edit back).
        private bool CarriesStoredValues(IOperation value)
        {
            var operation = QuerySymbols.Strip(value);
            if (operation is IAwaitOperation awaited)
            {
                operation = QuerySymbols.Strip(awaited.Operation);
            }

            return operation switch
            {
                IPropertyReferenceOperation { Property.Name: "OriginalValues", Instance: { } entryOf } => IsEntry(entryOf.Type),
                IInvocationOperation { TargetMethod.Name: "GetDatabaseValues" or "GetDatabaseValuesAsync", Instance: { } entryOf } => IsEntry(entryOf.Type),
                IInvocationOperation { TargetMethod.Name: "Clone", Arguments.Length: 0, Instance: { } source } invocation
                    when SymbolEqualityComparer.Default.Equals(invocation.TargetMethod.ContainingType, propertyValues) => CarriesStoredValues(source),
                _ => false,
            };
        }

        // EntityEntry or EntityEntry<TEntity> (or a class derived from them).
        private bool IsEntry(ITypeSymbol? type)
        {
            for (var current = type as INamedTypeSymbol; current is not null; current = current.BaseType)
            {
                if (SymbolEqualityComparer.Default.Equals(current.OriginalDefinition, entry) || SymbolEqualityComparer.Default.Equals(current, nonGenericEntry))
                {
                    return true;
                }
            }

            return false;
        }

        // EntityEntry<TEntity> (or a class derived from it): TEntity. A non-generic EntityEntry gives nothing.
        private ITypeSymbol? EntityOf(ITypeSymbol type)
        {
            for (var current = type as INamedTypeSymbol; current is not null; current = current.BaseType)
            {
                if (SymbolEqualityComparer.Default.Equals(current.OriginalDefinition, entry))
                {
                    return current.TypeArguments[0];
                }
            }

            return null;
        }

        private bool IsDictionary(ITypeSymbol? type) =>
            type is INamedTypeSymbol named && SymbolEqualityComparer.Default.Equals(named.OriginalDefinition, dictionary);

        // new Dictionary<string, T> { ["Ssn"] = ..., { "Name", ... } }: its keys. Null when they are not all known here.
        private static HashSet<string>? ConstantKeys(IOperation argument)
        {
            if (QuerySymbols.Strip(argument) is not IObjectCreationOperation { Arguments.Length: 0, Initializer: { } initializer })
            {
                return null;
            }

            var keys = new HashSet<string>(StringComparer.Ordinal);
            foreach (var element in initializer.Initializers)
            {
                var key = element switch
                {
                    ISimpleAssignmentOperation { Target: IPropertyReferenceOperation { Arguments.Length: 1 } indexer } => indexer.Arguments[0].Value,
                    IInvocationOperation { TargetMethod.Name: "Add", Arguments.Length: 2 } add => add.Arguments[0].Value,
                    _ => null,
                };
                if (key?.ConstantValue is not { HasValue: true, Value: string name })
                {
                    return null;
                }

                keys.Add(name);
            }

            return keys;
        }

        // The properties EF can read from an object of this type by name: its own, its base types' and, for an
        // interface, those of the interfaces it extends.
        private static HashSet<string> ReadableProperties(ITypeSymbol? type)
        {
            var names = new HashSet<string>(StringComparer.Ordinal);
            if (type is null)
            {
                return names;
            }

            var types = new List<ITypeSymbol>();
            for (var current = type; current is not null; current = current.BaseType)
            {
                types.Add(current);
            }

            if (type.TypeKind == TypeKind.Interface)
            {
                types.AddRange(type.AllInterfaces);
            }

            foreach (var property in types.SelectMany(t => t.GetMembers()).OfType<IPropertySymbol>())
            {
                if (!property.IsIndexer && property.GetMethod is not null)
                {
                    names.Add(property.Name);
                }
            }

            return names;
        }
    }
}
