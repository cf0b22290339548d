using System.Data.Common;
using EfEnvelope.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Storage;

/// <summary>Refuses a query that reads an encrypted column's ciphertext as text or as a number, naming the property.</summary>
/// <remarks>
/// Raw SQL (<c>Database.SqlQuery&lt;string&gt;</c>, a keyless type over the table) returns ciphertext. Microsoft.Data.Sqlite
/// decodes any BLOB as UTF-8 when asked for a string (and as 0 when asked for a number), so the application would
/// silently get garbage where plain EF returned the value; Npgsql refuses the cast with an
/// <see cref="InvalidCastException"/> that says nothing of encryption. The wrapped reader
/// (<see cref="CiphertextGuardingDataReader"/>) lets bytes through (EfEnvelope's own materialization, or an application
/// that wants the ciphertext) and refuses any other typed read of an encrypted column: on SQLite before the read, on
/// PostgreSQL once the provider refused it. Other providers are not wrapped (SQL Server refuses the cast itself).
/// </remarks>
internal static class CiphertextReadGuard
{
    /// <summary>The reader of a query, wrapped when the provider is checked and the model has encrypted columns.</summary>
    public static DbDataReader Wrap(EnvelopeRuntime runtime, DbCommand command, CommandExecutedEventData eventData, DbDataReader result)
    {
        if (eventData.Context is not { } context
            || eventData.CommandSource is not (CommandSource.LinqQuery or CommandSource.FromSqlQuery)
            || ColumnOrigins.For(command) is not { } origins)
        {
            return result;
        }

        var columns = runtime.EncryptedColumns(context.Model);
        return columns.IsEmpty ? result : new CiphertextGuardingDataReader(result, columns, origins);
    }
}

/// <summary>The table columns that hold an encrypted property's ciphertext, by schema, table and column name.</summary>
internal sealed class EncryptedColumns
{
    private readonly List<(string? Schema, string Table, string Column, string Property)> _columns = [];

    public bool IsEmpty => _columns.Count == 0;

    /// <remarks>
    /// View mappings count on PostgreSQL, whose catalog names the view a result reads; SQLite names the view's base
    /// table instead, so a type mapped only to a view over a table outside the model is not recognized there.
    /// </remarks>
    public static EncryptedColumns Build(EnvelopeRuntime runtime, IModel model)
    {
        var columns = new EncryptedColumns();
        foreach (var entityType in model.GetEntityTypes())
        {
            foreach (var property in runtime.Find(entityType)?.Properties ?? [])
            {
                var mappings = property.Ciphertext.GetTableColumnMappings().Select(m => m.Column)
                    .Concat<IColumnBase>(property.Ciphertext.GetViewColumnMappings().Select(m => m.Column));
                foreach (var column in mappings)
                {
                    columns._columns.Add((column.Table.Schema, column.Table.Name, column.Name, $"{entityType.DisplayName()}.{property.Name}"));
                }
            }
        }

        return columns;
    }

    /// <summary>
    /// The encrypted property ("Entity.Property") stored in <paramref name="column"/> of <paramref name="table"/>, or
    /// null. A mapping without a schema is the table in the connection's default schema (<paramref name="defaultSchema"/>),
    /// and a database without schemas (<paramref name="schema"/> null) ignores them; names compare as the database
    /// compares identifiers (<paramref name="names"/>).
    /// </summary>
    public string? Find(string? schema, bool defaultSchema, string table, string column, StringComparison names)
    {
        foreach (var mapped in _columns)
        {
            if (string.Equals(mapped.Column, column, names) && string.Equals(mapped.Table, table, names)
                && (schema is null || (mapped.Schema is null ? defaultSchema : string.Equals(mapped.Schema, schema, names))))
            {
                return mapped.Property;
            }
        }

        return null;
    }
}
