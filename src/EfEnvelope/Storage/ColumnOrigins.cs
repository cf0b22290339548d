using System.Data;
using System.Data.Common;
using System.Globalization;
using System.Transactions;

namespace EfEnvelope.Storage;

/// <summary>Which table column a result column of a provider's reader reads, where the provider can tell.</summary>
internal abstract class ColumnOrigins
{
    private static readonly ColumnOrigins SqliteOrigins = new Sqlite();

    /// <summary>
    /// Whether the provider decodes a binary value as text or a number without complaint (SQLite): a read is then
    /// checked before it happens, otherwise only once the provider refused it.
    /// </summary>
    public abstract bool DecodesBinary { get; }

    /// <summary>The origins for the readers of <paramref name="command"/>, or null for a provider that is not checked.</summary>
    public static ColumnOrigins? For(DbCommand command) => command.GetType().Namespace switch
    {
        "Microsoft.Data.Sqlite" => SqliteOrigins,
        "Npgsql" when command.Connection is ICloneable connection => new Postgres(connection),
        _ => null,
    };

    /// <summary>How the database compares identifiers.</summary>
    public abstract StringComparison Names { get; }

    /// <summary>
    /// The table column that result column <paramref name="ordinal"/> reads directly, or null (an expression, or not
    /// known): its schema (null where the database has none), whether that is the connection's default schema, its
    /// table and its name.
    /// </summary>
    public abstract (string? Schema, bool DefaultSchema, string Table, string Column)? Find(DbDataReader reader, int ordinal);

    private sealed class Sqlite : ColumnOrigins
    {
        public override bool DecodesBinary => true;

        public override StringComparison Names => StringComparison.OrdinalIgnoreCase;

        // SQLite reports the origin of a column a result reads directly, also through a view or an alias (not of an
        // expression, and for a compound SELECT that of its first arm). Ciphertext is stored as BLOB values, whatever
        // type the column was declared with: the schema table, which runs extra statements, is built only when the
        // column is declared BLOB or the value being read is one.
        // EF's SQLite provider has no schemas (an attached database's name is not one).
        public override (string? Schema, bool DefaultSchema, string Table, string Column)? Find(DbDataReader reader, int ordinal)
        {
            if (!string.Equals(reader.GetDataTypeName(ordinal), "BLOB", StringComparison.OrdinalIgnoreCase) && reader.GetFieldType(ordinal) != typeof(byte[]))
            {
                return null;
            }

            var row = reader.GetSchemaTable()?.Rows.Cast<DataRow>()
                .FirstOrDefault(r => Convert.ToInt32(r[SchemaTableColumn.ColumnOrdinal], CultureInfo.InvariantCulture) == ordinal);
            return row?[SchemaTableColumn.BaseTableName] is string table && row[SchemaTableColumn.BaseColumnName] is string column
                ? (null, true, table, column)
                : null;
        }
    }

    private sealed class Postgres(ICloneable connection) : ColumnOrigins
    {
        public override bool DecodesBinary => false;

        public override StringComparison Names => StringComparison.Ordinal;

        // Npgsql's column schema, without CommandBehavior.KeyInfo, gives the table's OID and the column's number from
        // the result's description, not their names. The reader holds its connection, so the catalog is asked over a
        // copy of it, outside any ambient transaction, synchronously (it runs only after Npgsql refused a cast, never
        // on a query that works). When the copy cannot be opened or queried (a full pool, multiplexing, which has no
        // synchronous commands) the origin stays unknown and Npgsql's own error is thrown.
        public override (string? Schema, bool DefaultSchema, string Table, string Column)? Find(DbDataReader reader, int ordinal)
        {
            try
            {
                if (!reader.CanGetColumnSchema()
                    || reader.GetColumnSchema()[ordinal] is not { } column
                    || column["TableOID"] is not uint table || table == 0
                    || column["ColumnAttributeNumber"] is not short number)
                {
                    return null;
                }

                using var suppress = new TransactionScope(TransactionScopeOption.Suppress);
                using var copy = (DbConnection)connection.Clone();
                copy.Open();
                using var command = copy.CreateCommand();
                command.CommandText = string.Create(CultureInfo.InvariantCulture,
                    $"SELECT n.nspname, n.nspname = current_schema(), c.relname, a.attname FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE a.attrelid = {table} AND a.attnum = {number}");
                using var found = command.ExecuteReader();
                return found.Read() ? (found.GetString(0), found.GetBoolean(1), found.GetString(2), found.GetString(3)) : null;
            }
            catch (Exception error) when (error is DbException or InvalidOperationException or NotSupportedException or TimeoutException)
            {
                return null;
            }
        }
    }
}
