using System.Text.RegularExpressions;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Microsoft.EntityFrameworkCore.Metadata.Conventions;

namespace EfEnvelope.Metadata;

/// <summary>Refuses a check constraint (<c>ToTable(t => t.HasCheckConstraint(...))</c>) whose SQL reads an encrypted value.</summary>
/// <remarks>
/// With plain EF the database enforces the constraint on the value; here the column holds ciphertext, so the database
/// would evaluate the SQL on random bytes: on PostgreSQL and SQL Server the table fails to create (no operator between
/// binary and the value's type), on SQLite the constraint silently holds or fails whatever the value (a blob compares
/// greater than any number; <c>length()</c> counts the ciphertext's bytes). Refused when the model is built, naming the
/// constraint, the property and what to do instead. A constraint reads an encrypted value when its SQL, outside string
/// literals, names the value's column as a whole identifier (ignoring case and quoting), or, for a JSON-mapped owned
/// type, names the document's column and, anywhere (a JSON path is a literal), the value's JSON property name. Each
/// table is checked with every constraint EF creates in it: those of each type mapped to it, inherited ones included
/// (a TPC base's constraints are created in every concrete table). Runs after EF has named the columns
/// (<see cref="OwnedCiphertextColumnConvention"/> included).
/// </remarks>
internal sealed class EncryptedCheckConstraintConvention : IModelFinalizingConvention
{
    private static readonly Regex StringLiteral = new("'(?:[^']|'')*'", RegexOptions.CultureInvariant);

    public void ProcessModelFinalizing(IConventionModelBuilder modelBuilder, IConventionContext<IConventionModelBuilder> context)
    {
        var entityTypes = modelBuilder.Metadata.GetEntityTypes().ToList();
        foreach (var constrained in entityTypes)
        {
            if (StoreObjectIdentifier.Create(constrained, StoreObjectType.Table) is not { } table)
            {
                continue;
            }

            foreach (var constraint in constrained.GetCheckConstraints())
            {
                var outsideLiterals = StringLiteral.Replace(constraint.Sql, "''");
                foreach (var (entityType, name, column, jsonName) in EncryptedValues(entityTypes, table))
                {
                    if (Names(outsideLiterals, column) && (jsonName is null || Names(constraint.Sql, jsonName)))
                    {
                        throw new InvalidOperationException(
                            $"Check constraint '{constraint.ModelName}' of entity type '{constrained.DisplayName()}' refers to column '{column}'{(jsonName is null ? "" : $" (JSON property '{jsonName}')")} of encrypted property '{entityType.DisplayName()}.{name}'. " +
                            "The column holds ciphertext, so the database cannot evaluate the constraint on the value (the table would fail to create, or the constraint would hold or fail whatever the value): " +
                            "remove the constraint and validate the value in the application before SaveChanges, for example in a SavingChanges handler or with IValidatableObject.");
                    }
                }
            }
        }
    }

    private static bool Names(string sql, string identifier) =>
        Regex.IsMatch(sql, $@"(?<![\w$@#]){Regex.Escape(identifier)}(?![\w$@#])", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant);

    // Where each encrypted value stored in the table lives, whichever entity type of the table declares it: its column,
    // or for a JSON-mapped owned type the document's column and the value's property name in it.
    private static IEnumerable<(IConventionEntityType EntityType, string Name, string Column, string? JsonName)> EncryptedValues(
        IEnumerable<IConventionEntityType> entityTypes, StoreObjectIdentifier table)
    {
        foreach (var entityType in entityTypes)
        {
            if (entityType.FindAnnotation(EncryptionAnnotations.EncryptedProperties)?.Value is not string[] names)
            {
                continue;
            }

            foreach (var name in names)
            {
                var ciphertext = entityType.FindProperty(EncryptionAnnotations.CiphertextPropertyName(name));
                if (entityType.IsMappedToJson())
                {
                    if (StoreObjectIdentifier.Create(entityType, StoreObjectType.Table) == table
                        && entityType.GetContainerColumnName() is { } document
                        && ciphertext?.GetJsonPropertyName() is { } jsonName)
                    {
                        yield return (entityType, name, document, jsonName);
                    }
                }
                else if (ciphertext?.GetColumnName(table) is { } column)
                {
                    yield return (entityType, name, column, null);
                }
            }
        }
    }
}
