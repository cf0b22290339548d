using System.Text.Json;
using System.Text.Json.Serialization;
using EfEnvelope.Lifecycle;

namespace EfEnvelope.Cli;

/// <summary>Where results and progress go: a redrawn progress bar on a terminal, plain lines when redirected, JSON on request.</summary>
internal sealed class Output(TextWriter stdout, TextWriter stderr, bool json, bool terminal)
{
    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
    };

    private bool _barDrawn;

    public bool Json => json;

    /// <summary>A human message: stdout normally, stderr with --json so that stdout stays one JSON document.</summary>
    public void Say(string line)
    {
        EndBar();
        (json ? stderr : stdout).WriteLine(line);
    }

    public void Error(string line)
    {
        EndBar();
        stderr.WriteLine(line);
    }

    public void Progress(LifecycleProgress progress, string? label = null)
    {
        var percent = (int)Math.Round(progress.Fraction * 100);
        var what = $"{label ?? Verb(progress.Operation)} {progress.Entity}";
        if (terminal && !json)
        {
            const int Width = 30;
            var filled = (int)Math.Round(progress.Fraction * Width);
            stdout.Write($"\r{what,-28} [{new string('#', filled)}{new string('.', Width - filled)}] {percent,3}%  {progress.RowsDone:N0}/{progress.RowsTotal:N0} rows  {progress.RowsPerSecond:N0} rows/s ");
            stdout.Flush();
            _barDrawn = true;
            return;
        }

        (json ? stderr : stdout).WriteLine($"{what}: {progress.RowsDone}/{progress.RowsTotal} rows ({percent}%), {progress.RowsPerSecond:0} rows/s");
    }

    public void Result(object value)
    {
        EndBar();
        if (json)
        {
            stdout.WriteLine(JsonSerializer.Serialize(value, value.GetType(), JsonOptions));
        }
    }

    public static string Verb(LifecycleOperation operation) => operation switch
    {
        LifecycleOperation.Rotate => "rotate",
        LifecycleOperation.Reencrypt => "reencrypt",
        LifecycleOperation.EncryptLegacyPlaintext => "encrypt-legacy",
        _ => "verify",
    };

    private void EndBar()
    {
        if (_barDrawn)
        {
            stdout.WriteLine();
            _barDrawn = false;
        }
    }
}
