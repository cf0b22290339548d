using EfEnvelope.Metadata;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Storage;

namespace EfEnvelope.Lifecycle;

/// <summary>Where one encrypted entity type's columns live, and the compare-and-swap UPDATE a job writes a record with.</summary>
/// <remarks>
/// A job never writes through SaveChanges: its UPDATE carries, in the WHERE clause, the exact bytes it read (the
/// wrapped key, and every column it rewrites). If the application changed any of them in the meantime, the UPDATE
/// matches no row and the job reads the row again, so a concurrent write is never overwritten with stale values.
/// </remarks>
internal sealed class RecordTable
{
    private readonly string _table;
    private readonly (IProperty Property, string Column)[] _key;
    private readonly (IProperty Property, string Column) _wrappedKey;
    private readonly (IProperty Property, string Column)[] _ciphertext;
    private readonly (IProperty Property, string Column)?[] _legacy;
    private readonly (IProperty Property, string Column)?[] _index;

    public RecordTable(EncryptedEntity encrypted, ISqlGenerationHelper sql)
        : this(encrypted, sql, StoreObjectIdentifier.Create(encrypted.EntityType, StoreObjectType.Table)
            ?? throw new NotSupportedException($"Entity type '{encrypted.EntityType.DisplayName()}' is not mapped to a table: lifecycle jobs write tables."), keyOnly: false)
    {
    }

    private RecordTable(EncryptedEntity encrypted, ISqlGenerationHelper sql, StoreObjectIdentifier table, bool keyOnly)
    {
        var entityType = encrypted.EntityType;
        _table = sql.DelimitIdentifier(table.Name, table.Schema);

        (IProperty, string) Column(IProperty property) =>
            (property, sql.DelimitIdentifier(property.GetColumnName(table)
                ?? throw new NotSupportedException($"Property '{entityType.DisplayName()}.{property.Name}' is not in table '{table.Name}' with the record's wrapped key (table-per-type or entity splitting): lifecycle jobs update one table per record.")));

        _key = [.. entityType.FindPrimaryKey()!.Properties.Select(Column)];
        _wrappedKey = Column(encrypted.KeyProperty);
        if (keyOnly)
        {
            _ciphertext = [];
            _legacy = [];
            _index = [];
            return;
        }

        _ciphertext = [.. encrypted.Properties.Select(p => Column(p.Ciphertext))];
        _legacy = [.. encrypted.Properties.Select(p => p.LegacyPlaintext is { } legacy ? Column(legacy) : ((IProperty, string)?)null)];
        _index = [.. encrypted.Properties.Select(p => p.Index is { } index ? Column(index) : ((IProperty, string)?)null)];
    }

    /// <summary>
    /// For <see cref="ReplaceKey"/> only: the table of the entity type's own mapping that holds its key column (in
    /// table-per-type, the base type's table; in table-per-concrete-type, the concrete type's).
    /// </summary>
    /// <exception cref="NotSupportedException">No table of the type holds both its key column and its primary key.</exception>
    public static RecordTable ForKeyColumn(EncryptedEntity encrypted, ISqlGenerationHelper sql)
    {
        foreach (var mapping in encrypted.EntityType.GetTableMappings())
        {
            var table = StoreObjectIdentifier.Table(mapping.Table.Name, mapping.Table.Schema);
            if (encrypted.KeyProperty.GetColumnName(table) is not null
                && encrypted.EntityType.FindPrimaryKey()!.Properties.All(p => p.GetColumnName(table) is not null))
            {
                return new RecordTable(encrypted, sql, table, keyOnly: true);
            }
        }

        throw new NotSupportedException($"Entity type '{encrypted.EntityType.DisplayName()}' has no table holding both its key column and its primary key.");
    }

    /// <summary>The write of a new wrapped key only, if the stored one is still <paramref name="entry"/>'s.</summary>
    public RecordWrite ReplaceKey(DbContext context, EntityEntry entry, byte[] newKey)
    {
        var command = new RecordWrite(context);
        command.Sql.Append("UPDATE ").Append(_table).Append(" SET ").Append(_wrappedKey.Column).Append(" = ").Append(command.Add(_wrappedKey.Property, newKey));
        WhereUnchanged(command, entry, ciphertextToo: false);
        return command;
    }

    /// <summary>The write of a whole new record (wrapped key and every ciphertext, legacy plaintext emptied), if nothing it covers changed since <paramref name="entry"/> was read.</summary>
    /// <remarks>
    /// Blind indexes are written as well: a value encrypted from a legacy plaintext column has none yet. The index
    /// property's value converter computes the index from the plaintext, as it does on SaveChanges.
    /// </remarks>
    public RecordWrite ReplaceRecord(DbContext context, EntityEntry entry, byte[] newKey, byte[]?[] fields, object?[] plaintext)
    {
        var command = new RecordWrite(context);
        command.Sql.Append("UPDATE ").Append(_table).Append(" SET ").Append(_wrappedKey.Column).Append(" = ").Append(command.Add(_wrappedKey.Property, newKey));
        for (var i = 0; i < _ciphertext.Length; i++)
        {
            command.Sql.Append(", ").Append(_ciphertext[i].Column).Append(" = ").Append(command.Add(_ciphertext[i].Property, fields[i]));
            if (_legacy[i] is { } legacy)
            {
                command.Sql.Append(", ").Append(legacy.Column).Append(" = NULL");
            }

            if (_index[i] is { } index)
            {
                command.Sql.Append(", ").Append(index.Column).Append(" = ").Append(command.Add(index.Property, plaintext[i]));
            }
        }

        WhereUnchanged(command, entry, ciphertextToo: true);
        return command;
    }

    private void WhereUnchanged(RecordWrite command, EntityEntry entry, bool ciphertextToo)
    {
        command.Sql.Append(" WHERE ");
        for (var i = 0; i < _key.Length; i++)
        {
            command.Sql.Append(i == 0 ? "" : " AND ").Append(_key[i].Column).Append(" = ").Append(command.Add(_key[i].Property, entry.Property(_key[i].Property.Name).OriginalValue));
        }

        Unchanged(command, entry, _wrappedKey);
        if (ciphertextToo)
        {
            foreach (var column in _ciphertext)
            {
                Unchanged(command, entry, column);
            }

            foreach (var column in _legacy)
            {
                if (column is { } legacy)
                {
                    Unchanged(command, entry, legacy);
                }
            }
        }
    }

    private static void Unchanged(RecordWrite command, EntityEntry entry, (IProperty Property, string Column) column)
    {
        var value = entry.Property(column.Property.Name).OriginalValue;
        command.Sql.Append(" AND ").Append(column.Column);
        command.Sql.Append(value is null ? " IS NULL" : " = " + command.Add(column.Property, value));
    }
}
