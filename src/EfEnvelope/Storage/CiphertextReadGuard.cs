using System.Data;
using System.Data.Common;
using EfEnvelope.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Storage;

/// <summary>Refuses, on SQLite, a query that reads an encrypted column's ciphertext as text or as a number.</summary>
/// <remarks>
/// Raw SQL (<c>Database.SqlQuery&lt;string&gt;</c>, a keyless type over the table) returns ciphertext. PostgreSQL and
/// SQL Server refuse to read a binary column as a string themselves, but Microsoft.Data.Sqlite decodes any BLOB as
/// UTF-8 when asked for a string, so the application would silently get garbage where plain EF returned the value.
/// The wrapped reader lets bytes through (EfEnvelope's own materialization, or an application that wants the
/// ciphertext) and checks the first other typed read of each BLOB column against the encrypted columns of the model.
/// </remarks>
internal sealed class CiphertextReadGuard(EnvelopeRuntime runtime) : DbCommandInterceptor
{
    public override DbDataReader ReaderExecuted(DbCommand command, CommandExecutedEventData eventData, DbDataReader result) =>
        Guard(command, eventData, result);

    public override ValueTask<DbDataReader> ReaderExecutedAsync(DbCommand command, CommandExecutedEventData eventData, DbDataReader result, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(Guard(command, eventData, result));

    private DbDataReader Guard(DbCommand command, CommandExecutedEventData eventData, DbDataReader result)
    {
        if (eventData.Context is not { } context
            || eventData.CommandSource is not (CommandSource.LinqQuery or CommandSource.FromSqlQuery)
            || command.GetType().Namespace != "Microsoft.Data.Sqlite")
        {
            return result;
        }

        var columns = runtime.EncryptedColumns(context.Model);
        return columns.IsEmpty ? result : new CiphertextGuardingDataReader(result, columns);
    }
}

/// <summary>The table columns that hold an encrypted property's ciphertext, by table and column name.</summary>
internal sealed class EncryptedColumns
{
    // SQLite compares identifiers without regard to case.
    private readonly Dictionary<(string Table, string Column), string> _properties = new(new IgnoreCase());

    public bool IsEmpty => _properties.Count == 0;

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

/// <summary>A SQLite reader that refuses to decode an encrypted column's ciphertext as anything but bytes.</summary>
internal sealed class CiphertextGuardingDataReader(DbDataReader inner, EncryptedColumns encrypted) : DelegatingDataReader(inner)
{
    // Per ordinal of the current result set, from its first typed read: the encrypted property its origin column
    // holds, or "" for a column that holds none.
    private string?[]? _origins;

    public override string GetString(int ordinal) => Checked(ordinal, typeof(string)).GetString(ordinal);

    public override char GetChar(int ordinal) => Checked(ordinal, typeof(char)).GetChar(ordinal);

    public override long GetChars(int ordinal, long dataOffset, char[]? buffer, int bufferOffset, int length) =>
        Checked(ordinal, typeof(char[])).GetChars(ordinal, dataOffset, buffer, bufferOffset, length);

    public override TextReader GetTextReader(int ordinal) => Checked(ordinal, typeof(TextReader)).GetTextReader(ordinal);

    public override bool GetBoolean(int ordinal) => Checked(ordinal, typeof(bool)).GetBoolean(ordinal);

    public override byte GetByte(int ordinal) => Checked(ordinal, typeof(byte)).GetByte(ordinal);

    public override DateTime GetDateTime(int ordinal) => Checked(ordinal, typeof(DateTime)).GetDateTime(ordinal);

    public override decimal GetDecimal(int ordinal) => Checked(ordinal, typeof(decimal)).GetDecimal(ordinal);

    public override double GetDouble(int ordinal) => Checked(ordinal, typeof(double)).GetDouble(ordinal);

    public override float GetFloat(int ordinal) => Checked(ordinal, typeof(float)).GetFloat(ordinal);

    public override Guid GetGuid(int ordinal) => Checked(ordinal, typeof(Guid)).GetGuid(ordinal);

    public override short GetInt16(int ordinal) => Checked(ordinal, typeof(short)).GetInt16(ordinal);

    public override int GetInt32(int ordinal) => Checked(ordinal, typeof(int)).GetInt32(ordinal);

    public override long GetInt64(int ordinal) => Checked(ordinal, typeof(long)).GetInt64(ordinal);

    public override T GetFieldValue<T>(int ordinal) =>
        typeof(T) == typeof(byte[]) || typeof(T) == typeof(object) || typeof(T) == typeof(Stream)
            ? Inner.GetFieldValue<T>(ordinal)
            : Checked(ordinal, typeof(T)).GetFieldValue<T>(ordinal);

    public override Task<T> GetFieldValueAsync<T>(int ordinal, CancellationToken cancellationToken) =>
        typeof(T) == typeof(byte[]) || typeof(T) == typeof(object) || typeof(T) == typeof(Stream)
            ? Inner.GetFieldValueAsync<T>(ordinal, cancellationToken)
            : Checked(ordinal, typeof(T)).GetFieldValueAsync<T>(ordinal, cancellationToken);

    public override bool NextResult()
    {
        _origins = null;
        return Inner.NextResult();
    }

    public override Task<bool> NextResultAsync(CancellationToken cancellationToken)
    {
        _origins = null;
        return Inner.NextResultAsync(cancellationToken);
    }

    private DbDataReader Checked(int ordinal, Type readAs)
    {
        var origins = _origins ??= new string?[Inner.FieldCount];
        var property = origins[ordinal] ??= Origin(ordinal);
        if (property.Length > 0)
        {
            var (table, column) = Columns(ordinal);
            throw new InvalidOperationException(
                $"The query reads column '{column}' of table '{table}' as {readAs.Name}, but the column holds the ciphertext of encrypted property '{property}'; "
                + "raw SQL and types mapped without encryption see only ciphertext, and SQLite would decode it as garbage. "
                + $"Query the entity instead (LINQ over its DbSet, or its DbSet's FromSql returning the table's columns), or read the column as byte[] to get the ciphertext itself.");
        }

        return Inner;
    }

    // Only a column declared BLOB holds ciphertext (SQLite reports the declared type of a column a result reads
    // directly, through a view or an alias too; an expression has no origin column). The schema table, which runs
    // extra statements, is built only for such a column.
    private string Origin(int ordinal)
    {
        if (!string.Equals(Inner.GetDataTypeName(ordinal), "BLOB", StringComparison.OrdinalIgnoreCase))
        {
            return "";
        }

        var (table, column) = Columns(ordinal);
        return table is null || column is null ? "" : encrypted.Find(table, column) ?? "";
    }

    private (string? Table, string? Column) Columns(int ordinal)
    {
        var schema = Inner.GetSchemaTable();
        var row = schema?.Rows.Cast<DataRow>().FirstOrDefault(r => Convert.ToInt32(r[SchemaTableColumn.ColumnOrdinal], System.Globalization.CultureInfo.InvariantCulture) == ordinal);
        return row is null ? (null, null) : (row[SchemaTableColumn.BaseTableName] as string, row[SchemaTableColumn.BaseColumnName] as string);
    }
}
