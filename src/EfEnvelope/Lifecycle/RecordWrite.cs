using System.Data.Common;
using System.Globalization;
using System.Text;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Storage;

namespace EfEnvelope.Lifecycle;

/// <summary>
/// The columns a compare-and-swap UPDATE of one table sets and compares, in order; every <see cref="RecordWrite"/> of
/// a shape holds one value per column. Delimited names.
/// </summary>
/// <param name="Table">The table.</param>
/// <param name="Set">The columns set from values.</param>
/// <param name="SetNull">The columns set to NULL.</param>
/// <param name="Key">The primary key columns the row is found by.</param>
/// <param name="Unchanged">The columns that must still hold the values the writer read (NULL included).</param>
internal sealed record RecordShape(
    string Table,
    (IProperty Property, string Column)[] Set,
    string[] SetNull,
    (IProperty Property, string Column)[] Key,
    (IProperty Property, string Column)[] Unchanged)
{
    /// <summary>Every column a write holds a value for, in the order of its values: set, key, unchanged.</summary>
    public (IProperty Property, string Column)[] Columns { get; } = [.. Set, .. Key, .. Unchanged];

    /// <summary>Where the key columns start in <see cref="Columns"/>.</summary>
    public int KeyStart => Set.Length;

    /// <summary>Where the compared columns start in <see cref="Columns"/>.</summary>
    public int UnchangedStart => Set.Length + Key.Length;
}

/// <summary>One compare-and-swap UPDATE: a row found by its primary key, written only if it still holds what was read.</summary>
/// <param name="shape">The table and columns.</param>
/// <param name="values">A value per column of <see cref="RecordShape.Columns"/>.</param>
internal sealed class RecordWrite(RecordShape shape, object?[] values)
{
    private readonly RecordShape _shape = shape;
    private readonly object?[] _values = values;

    // Below SQL Server's 2,100 parameters per request, with room for one more record's parameters.
    private const int MaxParametersPerBatch = 2_000;

    // PostgreSQL's protocol allows 65,535 parameters per statement; a job's default batch of 500 records of three
    // encrypted properties needs 4,500 (9 per re-encrypted record).
    private const int MaxParametersPerStatement = 10_000;

    private const string PostgreSql = "Npgsql.EntityFrameworkCore.PostgreSQL";

    private int ParameterCount => _values.Length;

    /// <summary>Runs the writes in the context's current transaction and returns, for each, the rows it changed (1, or 0 on a conflict).</summary>
    /// <remarks>
    /// <para>
    /// On PostgreSQL, the writes of one shape go to the database as one <c>UPDATE ... FROM (VALUES ...)</c> that
    /// returns the ordinals of the rows it changed (more than one past the parameter limit), and the statements of
    /// all shapes in one batch: the server parses, plans and binds one statement per shape instead of one per record,
    /// in one round trip. The comparison is the same, per row: a row whose compared columns changed since they were
    /// read is not updated and not returned.
    /// </para>
    /// <para>
    /// Where the ADO.NET provider supports batches (SqlClient), the writes go to the database a few hundred at a time,
    /// with the rows changed still reported per statement: one round trip per batch instead of per record. The
    /// others (Microsoft.Data.Sqlite, which runs in process anyway) run the writes one by one, through one command per
    /// run of writes with the same SQL text.
    /// </para>
    /// </remarks>
    public static Task<int[]> ExecuteAsync(DbContext context, IReadOnlyList<RecordWrite> writes, CancellationToken cancellationToken) =>
        RunAsync(context, writes, async: true, cancellationToken);

    /// <summary>The synchronous form of <see cref="ExecuteAsync"/>, for EF's synchronous SaveChanges.</summary>
    public static int[] Execute(DbContext context, IReadOnlyList<RecordWrite> writes) =>
        // With async false the awaits are on completed tasks (commands, readers and batches dispose synchronously).
        RunAsync(context, writes, async: false, CancellationToken.None).GetAwaiter().GetResult();

    private static async Task<int[]> RunAsync(DbContext context, IReadOnlyList<RecordWrite> writes, bool async, CancellationToken cancellationToken)
    {
        var affected = new int[writes.Count];
        if (writes.Count == 0)
        {
            return affected;
        }

        var statements = new Statements(context);
        if (context.Database.ProviderName == PostgreSql)
        {
            await RunSetBasedAsync(statements, writes, affected, async, cancellationToken).ConfigureAwait(false);
        }
        else if (!statements.Connection.CanCreateBatch)
        {
            await RunOneByOneAsync(statements, writes, affected, async, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            await RunBatchedAsync(statements, writes, affected, async, cancellationToken).ConfigureAwait(false);
        }

        return affected;
    }

    private static async Task RunSetBasedAsync(Statements statements, IReadOnlyList<RecordWrite> writes, int[] affected, bool async, CancellationToken cancellationToken)
    {
        // The writes of one shape make one statement (or a few, by the parameter limit) wherever they are in the list:
        // a job lists each record's owned records right after it, alternating shapes. All statements go in one batch.
        var statementsOf = new List<List<int>>();
        var open = new Dictionary<RecordShape, (List<int> Writes, int Parameters)>(ReferenceEqualityComparer.Instance);
        for (var i = 0; i < writes.Count; i++)
        {
            var shape = writes[i]._shape;
            if (!open.TryGetValue(shape, out var current) || current.Parameters + writes[i].ParameterCount > MaxParametersPerStatement)
            {
                current = ([], 0);
                statementsOf.Add(current.Writes);
            }

            current.Writes.Add(i);
            open[shape] = (current.Writes, current.Parameters + writes[i].ParameterCount);
        }

        await using var factory = statements.Connection.CreateCommand();
        await using var batch = statements.CreateBatch();
        foreach (var members in statementsOf)
        {
            var command = batch.CreateBatchCommand();
            command.CommandText = SetBasedSql(statements, factory, command.Parameters, writes, members);
            batch.BatchCommands.Add(command);
        }

        await using var reader = async
            ? await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false)
            : batch.ExecuteReader();
        foreach (var members in statementsOf)
        {
            while (async ? await reader.ReadAsync(cancellationToken).ConfigureAwait(false) : reader.Read())
            {
                affected[members[reader.GetInt32(0)]] = 1;
            }

            _ = async ? await reader.NextResultAsync(cancellationToken).ConfigureAwait(false) : reader.NextResult();
        }
    }

    // UPDATE t SET ... FROM (VALUES (0, ...), (1, ...)) AS v (n, ...) WHERE t.key = v.key AND t.column IS NOT DISTINCT
    // FROM v.column ... RETURNING v.n: the ordinals, among members, of the writes whose row still held what was read.
    private static string SetBasedSql(Statements statements, DbCommand factory, DbParameterCollection parameters, IReadOnlyList<RecordWrite> writes, List<int> members)
    {
        var sql = statements.Sql;
        var shape = writes[members[0]]._shape;
        var target = sql.DelimitIdentifier("t");
        var values = sql.DelimitIdentifier("v");
        string Value(int column) => values + "." + sql.DelimitIdentifier("c" + column.ToString(CultureInfo.InvariantCulture));

        var text = new StringBuilder("UPDATE ").Append(shape.Table).Append(" AS ").Append(target).Append(" SET ");
        for (var i = 0; i < shape.Set.Length; i++)
        {
            text.Append(i == 0 ? "" : ", ").Append(shape.Set[i].Column).Append(" = ").Append(Value(i));
        }

        foreach (var column in shape.SetNull)
        {
            text.Append(", ").Append(column).Append(" = NULL");
        }

        text.Append(" FROM (VALUES ");
        for (var n = 0; n < members.Count; n++)
        {
            var write = writes[members[n]];
            text.Append(n == 0 ? "(" : ", (").Append(n.ToString(CultureInfo.InvariantCulture));
            for (var i = 0; i < shape.Columns.Length; i++)
            {
                text.Append(", ").Append(statements.Add(factory, parameters, shape.Columns[i].Property, write._values[i]));
            }

            text.Append(')');
        }

        text.Append(") AS ").Append(values).Append(" (").Append(sql.DelimitIdentifier("n"));
        for (var i = 0; i < shape.Columns.Length; i++)
        {
            text.Append(", ").Append(sql.DelimitIdentifier("c" + i.ToString(CultureInfo.InvariantCulture)));
        }

        text.Append(") WHERE ");
        for (var i = 0; i < shape.Key.Length; i++)
        {
            text.Append(i == 0 ? "" : " AND ").Append(target).Append('.').Append(shape.Key[i].Column).Append(" = ").Append(Value(shape.KeyStart + i));
        }

        for (var i = 0; i < shape.Unchanged.Length; i++)
        {
            text.Append(" AND ").Append(target).Append('.').Append(shape.Unchanged[i].Column).Append(" IS NOT DISTINCT FROM ").Append(Value(shape.UnchangedStart + i));
        }

        return text.Append(" RETURNING ").Append(values).Append('.').Append(sql.DelimitIdentifier("n")).ToString();
    }

    private static async Task RunOneByOneAsync(Statements statements, IReadOnlyList<RecordWrite> writes, int[] affected, bool async, CancellationToken cancellationToken)
    {
        // Consecutive writes of one table have the same text: one command serves them all, so that Microsoft.Data.
        // Sqlite compiles the statement once instead of per record; only the parameters change between runs.
        DbCommand? command = null;
        try
        {
            for (var i = 0; i < writes.Count; i++)
            {
                var text = writes[i].Sql(statements.Sql);
                if (command is null || !string.Equals(command.CommandText, text, StringComparison.Ordinal))
                {
                    if (command is not null)
                    {
                        await command.DisposeAsync().ConfigureAwait(false);
                    }

                    command = statements.Create();
                    command.CommandText = text;
                }

                command.Parameters.Clear();
                writes[i].AddParameters(statements, command, command.Parameters);
                affected[i] = async ? await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) : command.ExecuteNonQuery();
            }
        }
        finally
        {
            if (command is not null)
            {
                await command.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private static async Task RunBatchedAsync(Statements statements, IReadOnlyList<RecordWrite> writes, int[] affected, bool async, CancellationToken cancellationToken)
    {
        // Only creates parameters of the connection's type; never executed.
        await using var factory = statements.Connection.CreateCommand();
        var start = 0;
        while (start < writes.Count)
        {
            await using var batch = statements.CreateBatch();
            var parameters = 0;
            var end = start;
            while (end < writes.Count && (end == start || parameters + writes[end].ParameterCount <= MaxParametersPerBatch))
            {
                var command = batch.CreateBatchCommand();
                command.CommandText = writes[end].Sql(statements.Sql);
                writes[end].AddParameters(statements, factory, command.Parameters);
                batch.BatchCommands.Add(command);
                parameters += writes[end].ParameterCount;
                end++;
            }

            _ = async ? await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) : batch.ExecuteNonQuery();
            for (var i = start; i < end; i++)
            {
                affected[i] = batch.BatchCommands[i - start].RecordsAffected;
            }

            start = end;
        }
    }

    /// <summary>
    /// This write as a statement of its own: UPDATE t SET ... WHERE key = @k AND column = @u (IS NULL for a NULL read),
    /// parameters named lifecycle0, 1, ... in the order <see cref="AddParameters"/> adds them.
    /// </summary>
    internal string Sql(ISqlGenerationHelper sql)
    {
        var number = 0;
        string Next() => sql.GenerateParameterNamePlaceholder("lifecycle" + (number++).ToString(CultureInfo.InvariantCulture));

        var text = new StringBuilder("UPDATE ").Append(_shape.Table).Append(" SET ");
        for (var i = 0; i < _shape.Set.Length; i++)
        {
            text.Append(i == 0 ? "" : ", ").Append(_shape.Set[i].Column).Append(" = ").Append(Next());
        }

        foreach (var column in _shape.SetNull)
        {
            text.Append(", ").Append(column).Append(" = NULL");
        }

        text.Append(" WHERE ");
        for (var i = 0; i < _shape.Key.Length; i++)
        {
            text.Append(i == 0 ? "" : " AND ").Append(_shape.Key[i].Column).Append(" = ").Append(Next());
        }

        for (var i = 0; i < _shape.Unchanged.Length; i++)
        {
            text.Append(" AND ").Append(_shape.Unchanged[i].Column).Append(_values[_shape.UnchangedStart + i] is null ? " IS NULL" : " = " + Next());
        }

        return text.ToString();
    }

    // Every value but a compared NULL, which the statement tests with IS NULL.
    private void AddParameters(Statements statements, DbCommand factory, DbParameterCollection parameters)
    {
        var number = 0;
        for (var i = 0; i < _values.Length; i++)
        {
            if (i < _shape.UnchangedStart || _values[i] is not null)
            {
                parameters.Add(statements.Parameter(factory, "lifecycle" + (number++).ToString(CultureInfo.InvariantCulture), _shape.Columns[i].Property, _values[i]));
            }
        }
    }

    /// <summary>The context's connection, transaction and timeout, and its parameters typed by each property's mapping.</summary>
    private sealed class Statements(DbContext context)
    {
        private int _parameters;

        public ISqlGenerationHelper Sql { get; } = context.GetService<ISqlGenerationHelper>();

        public DbConnection Connection { get; } = context.Database.GetDbConnection();

        public DbTransaction? Transaction { get; } = context.Database.CurrentTransaction?.GetDbTransaction();

        public int? Timeout { get; } = context.Database.GetCommandTimeout();

        public DbBatch CreateBatch()
        {
            var batch = Connection.CreateBatch();
            batch.Transaction = Transaction;
            if (Timeout is { } seconds)
            {
                batch.Timeout = seconds;
            }

            return batch;
        }

        public DbCommand Create()
        {
            var command = Connection.CreateCommand();
            command.Transaction = Transaction;
            if (Timeout is { } seconds)
            {
                command.CommandTimeout = seconds;
            }

            return command;
        }

        /// <summary>A parameter typed by the property's mapping (so value converters apply).</summary>
        public DbParameter Parameter(DbCommand factory, string name, IProperty property, object? value) =>
            property.GetRelationalTypeMapping().CreateParameter(factory, Sql.GenerateParameterName(name), value, nullable: true);

        /// <summary>Adds a parameter with a name unique in this run to <paramref name="parameters"/> and returns its placeholder.</summary>
        public string Add(DbCommand factory, DbParameterCollection parameters, IProperty property, object? value)
        {
            var name = "p" + (_parameters++).ToString(CultureInfo.InvariantCulture);
            parameters.Add(Parameter(factory, name, property, value));
            return Sql.GenerateParameterNamePlaceholder(name);
        }
    }
}
