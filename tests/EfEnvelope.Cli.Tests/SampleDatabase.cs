using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.RegularExpressions;

namespace EfEnvelope.Cli.Tests;

/// <summary>
/// The sample application's database in a data directory of its own: the sample runs once as its own process to create
/// and seed it (development master key, SQLite file, blind index key), more patients are added through its API, then
/// it stops. The tool then works on that database through the sample's own host configuration.
/// </summary>
public sealed partial class SampleDatabase : IAsyncDisposable
{
    private SampleDatabase(string dataDirectory)
    {
        DataDirectory = dataDirectory;
        Environment["HealthRecords__DataDirectory"] = dataDirectory;
    }

    public string DataDirectory { get; }

    /// <summary>The folder of the sample's build output: its configuration files are there, so tools run from it.</summary>
    public static string SampleFolder => Path.Combine(Build.RepositoryRoot, "samples", "HealthRecords", "bin", Build.Configuration, "net10.0");

    public static string SampleAssembly => Path.Combine(SampleFolder, "HealthRecords.dll");

    /// <summary>The environment the tool runs with: it points the sample (and so the tool, through the sample's host) at this database.</summary>
    public IDictionary<string, string> Environment { get; } = new Dictionary<string, string>();

    /// <summary>A data directory for an application other than the sample, deleted with this object.</summary>
    public static SampleDatabase ForDirectory(string dataDirectory) => new(dataDirectory);

    public static async Task<SampleDatabase> CreateAsync(int extraPatients, CancellationToken cancellationToken)
    {
        var database = new SampleDatabase(Path.Combine(Path.GetTempPath(), "efenvelope-cli-" + Guid.NewGuid().ToString("N")));
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = SampleFolder, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in new[] { SampleAssembly, "--urls", "http://127.0.0.1:0" })
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["HealthRecords__DataDirectory"] = database.DataDirectory;
        start.Environment["HealthRecords__SeedDemoData"] = "true";
        using var sample = Process.Start(start)!;
        try
        {
            var url = await ListeningUrlAsync(sample, cancellationToken);
            using var http = new HttpClient { BaseAddress = new Uri(url) };
            for (var i = 0; i < extraPatients; i++)
            {
                var response = await http.PostAsJsonAsync(
                    "/api/patients",
                    new { Name = $"Patient {i}", Ssn = $"9{i / 100 % 100:00}-{i % 100:00}-{1000 + i:0000}", DateOfBirth = new DateOnly(1950, 1, 1).AddDays(i), Diagnosis = "Routine" },
                    cancellationToken);
                Assert.True(response.IsSuccessStatusCode, $"Adding a patient failed: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(cancellationToken)}");
            }
        }
        finally
        {
            sample.Kill(entireProcessTree: true);
            await sample.WaitForExitAsync(cancellationToken);
        }

        return database;
    }

    public ValueTask DisposeAsync()
    {
        if (Directory.Exists(DataDirectory))
        {
            Directory.Delete(DataDirectory, recursive: true);
        }

        return ValueTask.CompletedTask;
    }

    private static async Task<string> ListeningUrlAsync(Process sample, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(TimeSpan.FromMinutes(2));
        var seen = new List<string>();
        while (await sample.StandardOutput.ReadLineAsync(deadline.Token) is { } line)
        {
            seen.Add(line);
            if (ListeningOn().Match(line) is { Success: true } match)
            {
                // Keep draining the output so that the sample never blocks on a full pipe.
                _ = sample.StandardOutput.ReadToEndAsync(CancellationToken.None);
                _ = sample.StandardError.ReadToEndAsync(CancellationToken.None);
                return match.Groups[1].Value;
            }
        }

        throw new InvalidOperationException($"The sample stopped before listening:\n{string.Join('\n', seen)}\n{await sample.StandardError.ReadToEndAsync(cancellationToken)}");
    }

    [GeneratedRegex(@"Now listening on: (http://\S+)")]
    private static partial Regex ListeningOn();
}
