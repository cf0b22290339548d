using System.Text;
using HealthRecords.Data;
using HealthRecords.Setup;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace HealthRecords.Tests;

/// <summary>The sample in-process, with its own temporary data directory (SQLite file and development key).</summary>
public sealed class SampleApp : WebApplicationFactory<Program>
{
    private readonly Dictionary<string, string?> _settings;

    public SampleApp(string? dataDirectory = null, bool seed = false, IDictionary<string, string?>? settings = null)
    {
        DataDirectory = dataDirectory ?? Path.Combine(Path.GetTempPath(), "healthrecords-tests-" + Guid.NewGuid().ToString("N"));
        OwnsDirectory = dataDirectory is null;
        _settings = new Dictionary<string, string?>
        {
            ["HealthRecords:DataDirectory"] = DataDirectory,
            ["HealthRecords:SeedDemoData"] = seed ? "true" : "false",
        };
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
        {
            _settings[key] = value;
        }
    }

    public string DataDirectory { get; }

    /// <summary>Every log entry the app wrote, at every level from Trace up.</summary>
    public CapturedLogs Logs { get; } = new();

    private bool OwnsDirectory { get; }

    public string DatabaseFile => Path.Combine(DataDirectory, DatabaseSetup.SqliteFileName);

    /// <summary>Every byte SQLite has written: the main file and the write-ahead log (recent commits live there first).</summary>
    public byte[] StoredBytes()
    {
        var bytes = new List<byte>();
        foreach (var path in new[] { DatabaseFile, DatabaseFile + "-wal" })
        {
            if (File.Exists(path))
            {
                // The app still has the database open: share every access so that reading does not disturb it.
                using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                using var copy = new MemoryStream();
                stream.CopyTo(copy);
                bytes.AddRange(copy.ToArray());
            }
        }

        return [.. bytes];
    }

    /// <summary>Whether the stored bytes contain <paramref name="text"/> as UTF-8 (how SQLite stores text) or UTF-16.</summary>
    public bool StoresPlaintext(string text)
    {
        var stored = StoredBytes();
        return stored.AsSpan().IndexOf(Encoding.UTF8.GetBytes(text)) >= 0
            || stored.AsSpan().IndexOf(Encoding.Unicode.GetBytes(text)) >= 0;
    }

    /// <summary>Runs SQL against the database file on a connection of its own, as anyone with write access could.</summary>
    public void ExecuteSql(string sql, params (string Name, object Value)[] parameters)
    {
        using var connection = OpenDirect();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        command.ExecuteNonQuery();
    }

    /// <summary>One stored value of one row, read past the application (table and column are the test's own constants).</summary>
    public object? ReadStored(string table, string column, int id)
    {
        using var connection = OpenDirect();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT \"{column}\" FROM \"{table}\" WHERE \"Id\" = $id";
        command.Parameters.AddWithValue("$id", id);
        var value = command.ExecuteScalar();
        return value is DBNull ? null : value;
    }

    /// <summary>Overwrites one stored value of one row, past the application.</summary>
    public void WriteStored(string table, string column, int id, object value) =>
        ExecuteSql($"UPDATE \"{table}\" SET \"{column}\" = $value WHERE \"Id\" = $id", ("$value", value), ("$id", id));

    /// <summary>How many rows a table holds, counted past the application.</summary>
    public long CountRows(string table)
    {
        using var connection = OpenDirect();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT COUNT(*) FROM \"{table}\"";
        return (long)command.ExecuteScalar()!;
    }

    private SqliteConnection OpenDirect()
    {
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = DatabaseFile, Pooling = false }.ToString());
        connection.Open();
        return connection;
    }

    protected override void ConfigureWebHost(IWebHostBuilder builder) =>
        builder.ConfigureAppConfiguration((_, configuration) => configuration.AddInMemoryCollection(_settings))
            .ConfigureServices(services => services.ConfigureDbContext<ClinicDbContext>(options => options.ConfigureWarnings(
                warnings => warnings.Ignore(CoreEventId.ManyServiceProvidersCreatedWarning))))

            // Each in-process app has a master-key provider instance of its own, so EF builds an internal service
            // provider per app; one test process hosts dozens of apps, where a real process hosts one.
            .ConfigureLogging(logging => logging
                .AddProvider(Logs)

                // A rule for this provider beats appsettings.json's rules, which name no provider: every category at
                // every level reaches Logs, while the console keeps its usual levels.
                .AddFilter<CapturedLogs>(category: null, LogLevel.Trace));

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        if (OwnsDirectory)
        {
            DeleteDirectory(DataDirectory);
        }
    }

    public static void DeleteDirectory(string directory)
    {
        // Pooled SQLite connections keep the file open; release them before deleting the directory.
        SqliteConnection.ClearAllPools();
        if (Directory.Exists(directory))
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
