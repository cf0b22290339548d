using System.Text.RegularExpressions;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Microsoft.EntityFrameworkCore.Metadata.Conventions;

namespace EfEnvelope.Metadata;

/// <summary>Refuses a check constraint (<c>ToTable(t => t.HasCheckConstraint(...))</c>) whose SQL names an encrypted column.</summary>
/// <remarks>
/// With plain EF the database enforces the constraint on the value; here the column holds ciphertext, so the database
/// would evaluate the SQL on random bytes: on PostgreSQL and SQL Server the table fails to create (no operator between
/// binary and the value's type), on SQLite the constraint silently holds or fails whatever the value (a blob compares
/// greater than any number; <c>length()</c> counts the ciphertext's bytes). Refused when the model is built, naming the
/// constraint, the property and what to do instead. The SQL is matched on the column's name as a whole identifier,
/// ignoring case and quoting, so a constraint that mentions a word equal to the column's name is refused too.
/// Runs after EF has named the columns (<see cref="OwnedCiphertextColumnConvention"/> included).
/// </remarks>
internal sealed class EncryptedCheckConstraintConvention : IModelFinalizingConvention
{
    public void ProcessModelFinalizing(IConventionModelBuilder modelBuilder, IConventionContext<IConventionModelBuilder> context)
    {
        var entityTypes = modelBuilder.Metadata.GetEntityTypes().ToList();
        foreach (var constrained in entityTypes)
        {
            if (StoreObjectIdentifier.Create(constrained, StoreObjectType.Table) is not { } table)
            {
                continue;
            }

            foreach (var constraint in constrained.GetDeclaredCheckConstraints())
            {
                foreach (var (entityType, name, column) in EncryptedColumns(entityTypes, table))
                {
                    if (Regex.IsMatch(constraint.Sql, $@"(?<![\w$@#]){Regex.Escape(column)}(?![\w$@#])", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant))
                    {
                        throw new InvalidOperationException(
                            $"Check constraint '{constraint.ModelName}' of entity type '{constrained.DisplayName()}' refers to column '{column}' of encrypted property '{entityType.DisplayName()}.{name}'. " +
                            "The column holds ciphertext, so the database cannot evaluate the constraint on the value (the table would fail to create, or the constraint would hold or fail whatever the value): " +
                            "remove the constraint and validate the value in the application before SaveChanges, for example in a SavingChanges handler or with IValidatableObject.");
                    }
                }
            }
        }
    }

    // The column of each encrypted property stored in the table, whichever entity type of the table declares it.
    private static IEnumerable<(IConventionEntityType EntityType, string Name, string Column)> EncryptedColumns(IEnumerable<IConventionEntityType> entityTypes, StoreObjectIdentifier table)
    {
        foreach (var entityType in entityTypes)
        {
            if (entityType.FindAnnotation(EncryptionAnnotations.EncryptedProperties)?.Value is not string[] names)
            {
                continue;
            }

            foreach (var name in names)
            {
                if (entityType.FindProperty(EncryptionAnnotations.CiphertextPropertyName(name))?.GetColumnName(table) is { } column)
                {
                    yield return (entityType, name, column);
                }
            }
        }
    }
}
