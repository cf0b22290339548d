using System.Data.Common;
using System.Globalization;
using System.Text;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Storage;

namespace EfEnvelope.Lifecycle;

/// <summary>One compare-and-swap UPDATE of a job: SQL text with the provider's parameter placeholders, and its parameters.</summary>
internal sealed class RecordWrite(DbContext context)
{
    // Below SQL Server's 2,100 parameters per request, with room for one more record's parameters.
    private const int MaxParametersPerBatch = 2_000;

    private readonly List<DbParameter> _parameters = [];
    private readonly ISqlGenerationHelper _sql = context.GetService<ISqlGenerationHelper>();

    // Only creates parameters of the connection's type; never executed, disposed after the write ran.
    private readonly DbCommand _factory = context.Database.GetDbConnection().CreateCommand();

    public StringBuilder Sql { get; } = new();

    /// <summary>Adds a parameter typed by the property's mapping (so value converters apply), returns its placeholder.</summary>
    public string Add(IProperty property, object? value)
    {
        var name = "lifecycle" + _parameters.Count.ToString(CultureInfo.InvariantCulture);
        _parameters.Add(property.GetRelationalTypeMapping().CreateParameter(_factory, _sql.GenerateParameterName(name), value, nullable: true));
        return _sql.GenerateParameterNamePlaceholder(name);
    }

    /// <summary>Runs the writes in the context's current transaction and returns, for each, the rows it changed (1, or 0 on a conflict).</summary>
    /// <remarks>
    /// Where the ADO.NET provider supports batches (Npgsql, SqlClient), the writes go to the database a few hundred at
    /// a time, with the rows changed still reported per statement: one round trip per batch instead of per record. The
    /// others (Microsoft.Data.Sqlite, which runs in process anyway) run the writes one by one, through one command per
    /// run of writes with the same SQL text.
    /// </remarks>
    public static async Task<int[]> ExecuteAsync(DbContext context, IReadOnlyList<RecordWrite> writes, CancellationToken cancellationToken)
    {
        try
        {
            return await RunAsync(context, writes, async: true, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            foreach (var write in writes)
            {
                await write._factory.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>The synchronous form of <see cref="ExecuteAsync"/>, for EF's synchronous SaveChanges.</summary>
    public static int[] Execute(DbContext context, IReadOnlyList<RecordWrite> writes)
    {
        try
        {
            // With async false the awaits below are on completed tasks (commands and batches dispose synchronously).
            return RunAsync(context, writes, async: false, CancellationToken.None).GetAwaiter().GetResult();
        }
        finally
        {
            foreach (var write in writes)
            {
                write._factory.Dispose();
            }
        }
    }

    private static async Task<int[]> RunAsync(DbContext context, IReadOnlyList<RecordWrite> writes, bool async, CancellationToken cancellationToken)
    {
        var affected = new int[writes.Count];
        if (writes.Count == 0)
        {
            return affected;
        }

        var connection = context.Database.GetDbConnection();
        var transaction = context.Database.CurrentTransaction?.GetDbTransaction();
        var timeout = context.Database.GetCommandTimeout();
        if (!connection.CanCreateBatch)
        {
            // Consecutive writes of one table have the same text: one command serves them all, so that Microsoft.Data.
            // Sqlite compiles the statement once instead of per record; only the parameters change between runs.
            DbCommand? command = null;
            try
            {
                for (var i = 0; i < writes.Count; i++)
                {
                    var text = writes[i].Sql.ToString();
                    if (command is null || !string.Equals(command.CommandText, text, StringComparison.Ordinal))
                    {
                        if (command is not null)
                        {
                            await command.DisposeAsync().ConfigureAwait(false);
                        }

                        command = connection.CreateCommand();
                        command.CommandText = text;
                        command.Transaction = transaction;
                        if (timeout is { } seconds)
                        {
                            command.CommandTimeout = seconds;
                        }
                    }

                    command.Parameters.Clear();
                    command.Parameters.AddRange(writes[i]._parameters.ToArray());
                    affected[i] = async ? await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) : command.ExecuteNonQuery();
                }
            }
            finally
            {
                if (command is not null)
                {
                    command.Parameters.Clear();
                    await command.DisposeAsync().ConfigureAwait(false);
                }
            }

            return affected;
        }

        var start = 0;
        while (start < writes.Count)
        {
            await using var batch = connection.CreateBatch();
            batch.Transaction = transaction;
            if (timeout is { } seconds)
            {
                batch.Timeout = seconds;
            }

            var parameters = 0;
            var end = start;
            while (end < writes.Count && (end == start || parameters + writes[end]._parameters.Count <= MaxParametersPerBatch))
            {
                var command = batch.CreateBatchCommand();
                command.CommandText = writes[end].Sql.ToString();
                foreach (var parameter in writes[end]._parameters)
                {
                    command.Parameters.Add(parameter);
                }

                batch.BatchCommands.Add(command);
                parameters += writes[end]._parameters.Count;
                end++;
            }

            _ = async ? await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) : batch.ExecuteNonQuery();
            for (var i = start; i < end; i++)
            {
                affected[i] = batch.BatchCommands[i - start].RecordsAffected;
            }

            start = end;
        }

        return affected;
    }
}
