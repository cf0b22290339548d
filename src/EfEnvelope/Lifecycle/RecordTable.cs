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
    private readonly (IProperty Property, string Column)[] _ciphertext;
    private readonly (IProperty Property, string Column)?[] _index;
    private readonly RecordShape _replaceKey;
    private readonly RecordShape? _replaceRecord;

    public RecordTable(EncryptedEntity encrypted, ISqlGenerationHelper sql)
        : this(encrypted, sql, StoreObjectIdentifier.Create(encrypted.EntityType, StoreObjectType.Table)
            ?? throw new NotSupportedException($"Entity type '{encrypted.EntityType.DisplayName()}' is not mapped to a table: lifecycle jobs write tables."), keyOnly: false)
    {
    }

    private RecordTable(EncryptedEntity encrypted, ISqlGenerationHelper sql, StoreObjectIdentifier table, bool keyOnly)
    {
        var entityType = encrypted.EntityType;
        var name = sql.DelimitIdentifier(table.Name, table.Schema);

        (IProperty Property, string Column) Column(IProperty property) =>
            (property, sql.DelimitIdentifier(property.GetColumnName(table)
                ?? throw new NotSupportedException($"Property '{entityType.DisplayName()}.{property.Name}' is not in table '{table.Name}' with the record's wrapped key (table-per-type or entity splitting): lifecycle jobs update one table per record.")));

        (IProperty Property, string Column)[] key = [.. entityType.FindPrimaryKey()!.Properties.Select(Column)];
        var wrappedKey = Column(encrypted.KeyProperty);
        _replaceKey = new RecordShape(name, [wrappedKey], [], key, [wrappedKey]);
        if (keyOnly)
        {
            _ciphertext = [];
            _index = [];
            return;
        }

        _ciphertext = [.. encrypted.Properties.Select(p => Column(p.Ciphertext))];
        _index = [.. encrypted.Properties.Select(p => p.Index is { } index ? Column(index) : ((IProperty, string)?)null)];
        var legacy = encrypted.Properties.Where(p => p.LegacyPlaintext is not null).Select(p => Column(p.LegacyPlaintext!)).ToArray();

        // Set: the key, then each property's ciphertext and index; legacy plaintext emptied. Compared: the key, every
        // ciphertext and every legacy plaintext column (the index follows from the plaintext, which they cover).
        var set = new List<(IProperty, string)> { wrappedKey };
        for (var i = 0; i < _ciphertext.Length; i++)
        {
            set.Add(_ciphertext[i]);
            if (_index[i] is { } index)
            {
                set.Add(index);
            }
        }

        _replaceRecord = new RecordShape(name, [.. set], [.. legacy.Select(c => c.Column)], key, [wrappedKey, .. _ciphertext, .. legacy]);
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
    public RecordWrite ReplaceKey(EntityEntry entry, byte[] newKey)
    {
        var values = Stored(entry, _replaceKey);
        values[0] = newKey;
        return new RecordWrite(_replaceKey, values);
    }

    /// <summary>The write of a whole new record (wrapped key and every ciphertext, legacy plaintext emptied), if nothing it covers changed since <paramref name="entry"/> was read.</summary>
    /// <remarks>
    /// Blind indexes are written as well: a value encrypted from a legacy plaintext column has none yet. The index
    /// property's value converter computes the index from the plaintext, as it does on SaveChanges.
    /// </remarks>
    public RecordWrite ReplaceRecord(EntityEntry entry, byte[] newKey, byte[]?[] fields, object?[] plaintext)
    {
        var shape = _replaceRecord ?? throw new InvalidOperationException("This table writes key columns only.");
        var values = Stored(entry, shape);
        var column = 0;
        values[column++] = newKey;
        for (var i = 0; i < _ciphertext.Length; i++)
        {
            values[column++] = fields[i];
            if (_index[i] is not null)
            {
                values[column++] = plaintext[i];
            }
        }

        return new RecordWrite(shape, values);
    }

    // A value per column of the shape: the stored key and compared values as read; the set values are the caller's.
    private static object?[] Stored(EntityEntry entry, RecordShape shape)
    {
        var values = new object?[shape.Columns.Length];
        for (var i = shape.KeyStart; i < values.Length; i++)
        {
            values[i] = entry.Property(shape.Columns[i].Property.Name).OriginalValue;
        }

        return values;
    }
}
