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

/// <summary>The table columns that hold an encrypted property's ciphertext, by table and column name.</summary>
internal sealed class EncryptedColumns
{
    // SQLite compares identifiers without regard to case.
    private readonly Dictionary<(string Table, string Column), string> _properties = new(new IgnoreCase());

    public bool IsEmpty => _properties.Count == 0;

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
                    columns._properties.TryAdd((column.Table.Name, column.Name), $"{entityType.DisplayName()}.{property.Name}");
                }
            }
        }

        return columns;
    }

    /// <summary>The encrypted property ("Entity.Property") stored in <paramref name="column"/> of <paramref name="table"/>, or null.</summary>
    public string? Find(string table, string column) => _properties.GetValueOrDefault((table, column));

    private sealed class IgnoreCase : IEqualityComparer<(string Table, string Column)>
    {
        public bool Equals((string Table, string Column) x, (string Table, string Column) y) =>
            string.Equals(x.Table, y.Table, StringComparison.OrdinalIgnoreCase) && string.Equals(x.Column, y.Column, StringComparison.OrdinalIgnoreCase);

        public int GetHashCode((string Table, string Column) obj) =>
            HashCode.Combine(StringComparer.OrdinalIgnoreCase.GetHashCode(obj.Table), StringComparer.OrdinalIgnoreCase.GetHashCode(obj.Column));
    }
}
