using System.Data.Common;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Storage;

namespace EfEnvelope.Lifecycle;

/// <summary>One partition of a job as the table holds it.</summary>
internal sealed record JobPartition(int Number, string Entity, string? After, string? UpTo, string? Checkpoint);

/// <summary>
/// The table through which the workers of a partitioned job share it out: one row per partition, claimed with a
/// conditional UPDATE, so the database decides every race.
/// </summary>
/// <remarks>
/// <para>
/// Columns: <c>Job</c> and <c>Partition</c> (the key), <c>Entity</c> (root entity type), <c>After</c> and
/// <c>UpTo</c> (the key range, JSON, null for open ends), <c>Checkpoint</c> (where the partition got to), <c>Owner</c>
/// and <c>LeaseUntil</c> (Unix milliseconds) of the worker holding it, <c>Done</c>. Column types come from the
/// database provider's own type mappings, so the same code creates it on SQLite, PostgreSQL and SQL Server.
/// </para>
/// <para>
/// Claiming is <c>UPDATE ... WHERE Owner IS NULL OR LeaseUntil &lt; now</c>: of two workers racing for a partition the
/// database lets exactly one update the row. A worker renews its lease with <c>WHERE Owner = me</c> inside each batch's
/// transaction, so once another worker has taken a partition over, the old owner's next batch finds no row and rolls
/// back: a row is never written by two workers.
/// </para>
/// </remarks>
internal sealed class JobPartitionTable(DbContext context)
{
    public const string TableName = "EfEnvelopeJobPartitions";

    private readonly ISqlGenerationHelper _sql = context.GetService<ISqlGenerationHelper>();

    private string Table => _sql.DelimitIdentifier(TableName);

    private string Column(string name) => _sql.DelimitIdentifier(name);

    /// <summary>Creates the table unless it exists (another worker may be creating it at the same moment).</summary>
    public async Task EnsureCreatedAsync(CancellationToken cancellationToken)
    {
        if (await ExistsAsync(cancellationToken).ConfigureAwait(false))
        {
            return;
        }

        var create = CreateTableSql();
        try
        {
            await ExecuteAsync(create, [], cancellationToken).ConfigureAwait(false);
        }
        catch (DbException ex)
        {
            // Fine if another worker created it between our check and our CREATE.
            if (!await ExistsAsync(cancellationToken).ConfigureAwait(false))
            {
                throw new InvalidOperationException($"Could not create table {TableName}, which partitioned lifecycle jobs share work through: create it beforehand (docs/KEY-MANAGEMENT.md) or grant the right to.", ex);
            }
        }
    }

    /// <summary>The table's CREATE statement, in the database provider's own column types and identifier quoting.</summary>
    public string CreateTableSql()
    {
        var types = context.GetService<IRelationalTypeMappingSource>();
        string Type(Type clr, int? size = null) =>
            (size is null ? types.FindMapping(clr) : types.FindMapping(clr, storeTypeName: null, unicode: true, size: size))!.StoreType;

        var name = Type(typeof(string), 200);
        var text = Type(typeof(string));
        return
            $"CREATE TABLE {Table} ({Column("Job")} {name} NOT NULL, {Column("Partition")} {Type(typeof(int))} NOT NULL, "
            + $"{Column("Entity")} {text} NOT NULL, {Column("After")} {text} NULL, {Column("UpTo")} {text} NULL, {Column("Checkpoint")} {text} NULL, "
            + $"{Column("Owner")} {name} NULL, {Column("LeaseUntil")} {Type(typeof(long))} NULL, {Column("Done")} {Type(typeof(int))} NOT NULL, "
            + $"PRIMARY KEY ({Column("Job")}, {Column("Partition")}))";
    }

    /// <summary>Stores the plan unless the job has one: true when this worker's plan was stored.</summary>
    /// <remarks>
    /// The plan goes in as one transaction; a second planner's first INSERT hits the primary key (on PostgreSQL it waits
    /// for the first planner's commit), so the job keeps the first plan and every worker reads the same one.
    /// </remarks>
    public async Task<bool> TryPlanAsync(string job, IReadOnlyList<(string Entity, string? After, string? UpTo)> partitions, CancellationToken cancellationToken)
    {
        if (await CountAsync(job, cancellationToken).ConfigureAwait(false) > 0)
        {
            return false;
        }

        var insert =
            $"INSERT INTO {Table} ({Column("Job")}, {Column("Partition")}, {Column("Entity")}, {Column("After")}, {Column("UpTo")}, {Column("Done")}) "
            + $"VALUES ({P("job")}, {P("partition")}, {P("entity")}, {P("after")}, {P("upTo")}, 0)";
        DbException failure;
        try
        {
            await using var transaction = await context.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            for (var i = 0; i < partitions.Count; i++)
            {
                await ExecuteAsync(insert, [("job", job), ("partition", i), ("entity", partitions[i].Entity), ("after", partitions[i].After), ("upTo", partitions[i].UpTo)], cancellationToken).ConfigureAwait(false);
            }

            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (DbException ex)
        {
            failure = ex;
        }

        // Checked after the failed transaction is rolled back (PostgreSQL refuses statements in an aborted one).
        return await CountAsync(job, cancellationToken).ConfigureAwait(false) > 0
            ? false
            : throw new InvalidOperationException($"Could not store the partitions of lifecycle job '{job}' in table {TableName}.", failure);
    }

    /// <summary>Claims the first partition that is not done and not held (or whose lease ran out); null when none is free.</summary>
    public async Task<JobPartition?> TryClaimAsync(string job, string worker, long now, long leaseUntil, CancellationToken cancellationToken)
    {
        var free = await ReadAsync(
            $"SELECT {Column("Partition")}, {Column("Entity")}, {Column("After")}, {Column("UpTo")}, {Column("Checkpoint")} FROM {Table} "
            + $"WHERE {Column("Job")} = {P("job")} AND {Column("Done")} = 0 AND ({Column("Owner")} IS NULL OR {Column("LeaseUntil")} < {P("now")}) ORDER BY {Column("Partition")}",
            [("job", job), ("now", now)],
            r => new JobPartition(r.GetInt32(0), r.GetString(1), Text(r, 2), Text(r, 3), Text(r, 4)),
            cancellationToken).ConfigureAwait(false);
        foreach (var candidate in free)
        {
            // The same condition again in the UPDATE: only one of the workers that saw the partition free gets the row.
            var claimed = await ExecuteAsync(
                $"UPDATE {Table} SET {Column("Owner")} = {P("worker")}, {Column("LeaseUntil")} = {P("until")} "
                + $"WHERE {Column("Job")} = {P("job")} AND {Column("Partition")} = {P("partition")} AND {Column("Done")} = 0 AND ({Column("Owner")} IS NULL OR {Column("LeaseUntil")} < {P("now")})",
                [("worker", worker), ("until", leaseUntil), ("job", job), ("partition", candidate.Number), ("now", now)],
                cancellationToken).ConfigureAwait(false);
            if (claimed == 1)
            {
                // Read again: the checkpoint may have moved since the SELECT (a stalled owner's last batch).
                var current = await ReadAsync(
                    $"SELECT {Column("Checkpoint")} FROM {Table} WHERE {Column("Job")} = {P("job")} AND {Column("Partition")} = {P("partition")}",
                    [("job", job), ("partition", candidate.Number)],
                    r => Text(r, 0),
                    cancellationToken).ConfigureAwait(false);
                return candidate with { Checkpoint = current.Single() };
            }
        }

        return null;
    }

    /// <summary>Records a partition's checkpoint and renews the lease, if this worker still holds it (false otherwise).</summary>
    /// <remarks>Runs in the caller's transaction when there is one, so that it commits with the batch it describes.</remarks>
    public async Task<bool> TryAdvanceAsync(string job, int partition, string worker, string checkpoint, long leaseUntil, CancellationToken cancellationToken) =>
        await ExecuteAsync(
            $"UPDATE {Table} SET {Column("Checkpoint")} = {P("checkpoint")}, {Column("LeaseUntil")} = {P("until")} "
            + $"WHERE {Column("Job")} = {P("job")} AND {Column("Partition")} = {P("partition")} AND {Column("Owner")} = {P("worker")}",
            [("checkpoint", checkpoint), ("until", leaseUntil), ("job", job), ("partition", partition), ("worker", worker)],
            cancellationToken).ConfigureAwait(false) == 1;

    /// <summary>Marks a partition finished, if this worker still holds it.</summary>
    public async Task<bool> TryFinishAsync(string job, int partition, string worker, CancellationToken cancellationToken) =>
        await ExecuteAsync(
            $"UPDATE {Table} SET {Column("Done")} = 1, {Column("Owner")} = NULL, {Column("LeaseUntil")} = NULL "
            + $"WHERE {Column("Job")} = {P("job")} AND {Column("Partition")} = {P("partition")} AND {Column("Owner")} = {P("worker")}",
            [("job", job), ("partition", partition), ("worker", worker)],
            cancellationToken).ConfigureAwait(false) == 1;

    /// <summary>Partitions of the job not yet done.</summary>
    public async Task<int> CountUnfinishedAsync(string job, CancellationToken cancellationToken) =>
        (await ReadAsync(
            $"SELECT COUNT(*) FROM {Table} WHERE {Column("Job")} = {P("job")} AND {Column("Done")} = 0",
            [("job", job)],
            r => Convert.ToInt32(r.GetValue(0), System.Globalization.CultureInfo.InvariantCulture),
            cancellationToken).ConfigureAwait(false)).Single();

    private async Task<int> CountAsync(string job, CancellationToken cancellationToken) =>
        (await ReadAsync(
            $"SELECT COUNT(*) FROM {Table} WHERE {Column("Job")} = {P("job")}",
            [("job", job)],
            r => Convert.ToInt32(r.GetValue(0), System.Globalization.CultureInfo.InvariantCulture),
            cancellationToken).ConfigureAwait(false)).Single();

    private async Task<bool> ExistsAsync(CancellationToken cancellationToken)
    {
        try
        {
            await ReadAsync($"SELECT 1 FROM {Table} WHERE 1 = 0", [], _ => 0, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (DbException)
        {
            return false;
        }
    }

    private string P(string name) => _sql.GenerateParameterNamePlaceholder(name);

    private static string? Text(DbDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetString(ordinal);

    private async Task<int> ExecuteAsync(string sql, (string Name, object? Value)[] parameters, CancellationToken cancellationToken)
    {
        await using var command = await CreateAsync(sql, parameters, cancellationToken).ConfigureAwait(false);
        try
        {
            return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await context.Database.CloseConnectionAsync().ConfigureAwait(false);
        }
    }

    private async Task<List<T>> ReadAsync<T>(string sql, (string Name, object? Value)[] parameters, Func<DbDataReader, T> read, CancellationToken cancellationToken)
    {
        await using var command = await CreateAsync(sql, parameters, cancellationToken).ConfigureAwait(false);
        try
        {
            var rows = new List<T>();
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                rows.Add(read(reader));
            }

            return rows;
        }
        finally
        {
            await context.Database.CloseConnectionAsync().ConfigureAwait(false);
        }
    }

    // On the context's connection and in its current transaction, if any: EF's OpenConnection/CloseConnection count
    // nest, so a connection the application opened stays open.
    private async Task<DbCommand> CreateAsync(string sql, (string Name, object? Value)[] parameters, CancellationToken cancellationToken)
    {
        await context.Database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var command = context.Database.GetDbConnection().CreateCommand();
        command.CommandText = sql;
        command.Transaction = context.Database.CurrentTransaction?.GetDbTransaction();
        foreach (var (name, value) in parameters)
        {
            var parameter = command.CreateParameter();
            parameter.ParameterName = _sql.GenerateParameterName(name);
            parameter.Value = value ?? DBNull.Value;
            command.Parameters.Add(parameter);
        }

        return command;
    }
}
