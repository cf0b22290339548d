using System.Text;
using EfEnvelope.Metadata;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Storage;

namespace EfEnvelope.Internal;

/// <summary>
/// <c>UPDATE table SET key column = new blob WHERE primary key = values AND key column = inserted blob</c> for one
/// encrypted type, in the database's own quoting (<see cref="ISqlGenerationHelper"/>); used by <see cref="GeneratedKeyBinding"/>.
/// </summary>
#pragma warning disable EF1001 // InternalEntityEntry: the values come from the entry EF just saved
internal sealed class KeyColumnUpdate
{
    private readonly string _table;
    private readonly string _keyColumn;
    private readonly string _terminator;
    private readonly (string Column, IProperty Property)[] _primaryKey;

    private KeyColumnUpdate(string table, string keyColumn, string terminator, (string, IProperty)[] primaryKey)
    {
        _table = table;
        _keyColumn = keyColumn;
        _terminator = terminator;
        _primaryKey = primaryKey;
    }

    /// <summary>The statement for a type's records.</summary>
    /// <exception cref="InvalidOperationException">The type is JSON-mapped, or its key column has no table with its primary key.</exception>
    public static KeyColumnUpdate For(EncryptedEntity encrypted, ISqlGenerationHelper sql)
    {
        var entityType = encrypted.KeyProperty.DeclaringType.ContainingEntityType;
        var mapping = encrypted.KeyProperty.GetTableColumnMappings().FirstOrDefault();
        var primaryKey = entityType.FindPrimaryKey();
        if (mapping is null || primaryKey is null)
        {
            throw new InvalidOperationException(
                $"BindStoreGeneratedKeys() cannot bind '{encrypted.Name}': its key column is not a column of a table with its primary key. Give it a key set on the client (a Guid, a sequence or HiLo), which every record binds at insert.");
        }

        var table = mapping.Column.Table;
        var store = StoreObjectIdentifier.Table(table.Name, table.Schema);
        var columns = new (string, IProperty)[primaryKey.Properties.Count];
        for (var i = 0; i < columns.Length; i++)
        {
            var property = primaryKey.Properties[i];
            columns[i] = (Escape(sql.DelimitIdentifier(property.GetColumnName(store) ?? throw new InvalidOperationException(
                $"BindStoreGeneratedKeys() cannot bind '{encrypted.Name}': its key property '{property.Name}' has no column in table '{table.Name}'."))), property);
        }

        return new KeyColumnUpdate(Escape(sql.DelimitIdentifier(table.Name, table.Schema)), Escape(sql.DelimitIdentifier(mapping.Column.Name)), sql.StatementTerminator, columns);
    }

    /// <summary>Appends the statement for one record, with its parameters as <c>{n}</c> placeholders (EF's raw SQL form).</summary>
    /// <param name="sql">The command being built.</param>
    /// <param name="parameters">The command's parameter values.</param>
    /// <param name="entry">The record, whose key values the insert has set.</param>
    /// <param name="inserted">The blob its insert wrote: the row must still hold it.</param>
    /// <param name="resealed">The blob to write.</param>
    public void Append(StringBuilder sql, List<object> parameters, InternalEntityEntry entry, byte[] inserted, byte[] resealed)
    {
        sql.Append("UPDATE ").Append(_table).Append(" SET ").Append(_keyColumn).Append(" = ").Append(Placeholder(parameters, resealed)).Append(" WHERE ");
        foreach (var (column, property) in _primaryKey)
        {
            // The parameter carries the value the database stores: a key with a value converter is compared as such.
            var value = entry[property];
            var converter = property.GetTypeMapping().Converter;
            sql.Append(column).Append(" = ").Append(Placeholder(parameters, converter is null ? value : converter.ConvertToProvider(value))).Append(" AND ");
        }

        sql.Append(_keyColumn).Append(" = ").Append(Placeholder(parameters, inserted)).Append(_terminator).Append('\n');
    }

    private static string Placeholder(List<object> parameters, object? value)
    {
        // Key values are never null once saved, and blobs never are.
        parameters.Add(value!);
        return "{" + (parameters.Count - 1) + "}";
    }

    // EF formats raw SQL with string.Format: braces in a quoted name must not read as placeholders.
    private static string Escape(string identifier) => identifier.Replace("{", "{{", StringComparison.Ordinal).Replace("}", "}}", StringComparison.Ordinal);
}
#pragma warning restore EF1001
