using System.Text;
using HealthRecords.Setup;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Configuration;

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

    protected override void ConfigureWebHost(IWebHostBuilder builder) =>
        builder.ConfigureAppConfiguration((_, configuration) => configuration.AddInMemoryCollection(_settings));

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
