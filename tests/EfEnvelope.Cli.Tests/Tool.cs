using System.Diagnostics;
using System.Text;

namespace EfEnvelope.Cli.Tests;

/// <summary>Runs <c>efenvelope</c> (its build output, through <c>dotnet</c>) from the sample's folder, output redirected.</summary>
internal sealed class Tool : IDisposable
{
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();
    private readonly Process _process;
    private readonly Task _reading;
    private readonly TaskCompletionSource _firstProgress = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private Tool(Process process)
    {
        _process = process;
        _reading = Task.WhenAll(ReadAsync(process.StandardOutput, _stdout, progress: true), ReadAsync(process.StandardError, _stderr, progress: false));
    }

    public string Stdout => _stdout.ToString();

    public string Stderr => _stderr.ToString();

    public static Tool Start(SampleDatabase database, params string[] arguments) => StartProgram(database, "dotnet", [Build.Tool, .. arguments]);

    /// <summary>Runs another program (a wrapper such as script(1)) with the database's environment, from the sample's folder.</summary>
    public static async Task<(int ExitCode, string Stdout, string Stderr)> RunProgramAsync(SampleDatabase database, string program, CancellationToken cancellationToken, params string[] arguments)
    {
        using var tool = StartProgram(database, program, arguments);
        var exitCode = await tool.WaitAsync(cancellationToken);
        return (exitCode, tool.Stdout, tool.Stderr);
    }

    private static Tool StartProgram(SampleDatabase database, string program, string[] arguments)
    {
        var start = new ProcessStartInfo(program) { WorkingDirectory = SampleDatabase.SampleFolder, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        foreach (var (name, value) in database.Environment)
        {
            start.Environment[name] = value;
        }

        return new Tool(Process.Start(start)!);
    }

    public static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(SampleDatabase database, CancellationToken cancellationToken, params string[] arguments)
    {
        using var tool = Start(database, arguments);
        var exitCode = await tool.WaitAsync(cancellationToken);
        return (exitCode, tool.Stdout, tool.Stderr);
    }

    /// <summary>Completes when the tool has printed its first progress line (a batch has committed).</summary>
    public Task FirstProgress => _firstProgress.Task;

    /// <summary>What Ctrl+C does to a console process: SIGINT.</summary>
    // Sent directly, not through a spawned kill(1): on a loaded machine starting that process took longer than the
    // job left to run, and the interrupt arrived after it had finished.
    public void Interrupt() => Assert.Equal(0, SendSignal(_process.Id, SignalInterrupt));

    private const int SignalInterrupt = 2;

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int SendSignal(int pid, int signal);

    public async Task<int> WaitAsync(CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(TimeSpan.FromMinutes(4));
        await _process.WaitForExitAsync(deadline.Token);
        await _reading;
        return _process.ExitCode;
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }

        _process.Dispose();
    }

    private async Task ReadAsync(StreamReader reader, StringBuilder into, bool progress)
    {
        while (await reader.ReadLineAsync() is { } line)
        {
            lock (into)
            {
                into.AppendLine(line);
            }

            if (progress && line.Contains(" rows (", StringComparison.Ordinal))
            {
                _firstProgress.TrySetResult();
            }
        }

        _firstProgress.TrySetResult();
    }
}
