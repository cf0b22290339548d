using HealthRecords.Data;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace HealthRecords.Setup;

/// <summary>Checkpoints SQLite's write-ahead log at an interval and empties the file, so that it cannot grow without bound.</summary>
/// <remarks>
/// <para>
/// SQLite's own automatic checkpoint copies the log into the database only as far as the oldest open read allows, and
/// never shrinks the file. Under constant reads it never gets to start the log over, so the file grows with every
/// write, and keeps every superseded ciphertext in it (800 MB of log against a 6 MB database in one test).
/// </para>
/// <para>
/// <c>wal_checkpoint(TRUNCATE)</c> copies the whole log, then waits (within the connection's busy timeout) for the
/// readers still using the log to finish. Readers that start once it has been copied read the database file alone,
/// so a steady stream of new reads does not hold it up; then it empties the file.
/// </para>
/// </remarks>
public sealed partial class WalCheckpointer(
    IServiceScopeFactory scopes, SampleEnvironment environment, IOptions<HealthRecordsOptions> options, ILogger<WalCheckpointer> logger) : BackgroundService
{
    private const int CheckpointBusyTimeoutSeconds = 5;

    /// <summary>Runs one checkpoint now.</summary>
    /// <returns>True when the log was emptied; false when a read or write held it past the busy timeout.</returns>
    public async Task<bool> CheckpointAsync(CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ClinicDbContext>();
        await db.Database.OpenConnectionAsync(cancellationToken);
        try
        {
            await using var command = db.Database.GetDbConnection().CreateCommand();
            command.CommandText = "PRAGMA wal_checkpoint(TRUNCATE);";

            // While it waits for readers it holds the write lock, so writes wait with it: the busy timeout (which is
            // what CommandTimeout sets for SQLite) bounds that stall, and a blocked checkpoint is retried next time.
            command.CommandTimeout = CheckpointBusyTimeoutSeconds;
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            await reader.ReadAsync(cancellationToken);

            // One row: busy (1 when blocked), then page counts that TRUNCATE leaves at zero.
            return reader.GetInt32(0) == 0;
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = options.Value.Database.WalCheckpointInterval;
        if (environment.Database != "Sqlite" || interval <= TimeSpan.Zero)
        {
            return;
        }

        using var timer = new PeriodicTimer(interval);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                if (!await CheckpointAsync(stoppingToken))
                {
                    LogBlocked(logger);
                }
            }
            catch (SqliteException error)
            {
                // Locked for longer than the busy timeout, for example: the next tick tries again.
                LogFailed(logger, error.SqliteErrorCode, error.Message);
            }
        }
    }

    [LoggerMessage(EventId = 1030, Level = LogLevel.Warning, Message = "The SQLite write-ahead log could not be emptied: a read or write held it past the busy timeout; trying again at the next interval")]
    private static partial void LogBlocked(ILogger logger);

    [LoggerMessage(EventId = 1031, Level = LogLevel.Warning, Message = "SQLite checkpoint failed (error {Code}: {Error}); trying again at the next interval")]
    private static partial void LogFailed(ILogger logger, int code, string error);
}
