using System.Diagnostics;

namespace EfEnvelope.Reliability.Tests.Faults;

/// <summary>
/// [Encrypted] without UseEnvelopeEncryption, in a process where no EfEnvelope code ran before EF built the model: the
/// in-process tests cannot show this, because other tests have already installed the check in their process.
/// </summary>
public sealed class ForgottenRegistrationProcessTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("efenvelope-forgotten-").FullName;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task A_fresh_process_refuses_to_save_an_encrypted_property_without_the_extension_and_stores_nothing()
    {
        var child = Path.Combine(AppContext.BaseDirectory, "EfEnvelope.Reliability.Child.dll");
        Assert.True(File.Exists(child), $"child process not built next to the tests: {child}");
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet")
        {
            ArgumentList = { "exec", child, "forgotten-registration", Path.Combine(_directory, "forgotten.db") },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync(Ct);
        var stderr = process.StandardError.ReadToEndAsync(Ct);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);

        var output = await stdout;
        Assert.True(process.ExitCode == 0, $"exit code {process.ExitCode}: {output}{await stderr}");
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var refusal = Assert.Single(lines, l => l.StartsWith("refused: ", StringComparison.Ordinal));
        Assert.Contains("'Applicant.Ssn'", refusal, StringComparison.Ordinal);
        Assert.Contains("UseEnvelopeEncryption", refusal, StringComparison.Ordinal);
        Assert.Contains(lines, l => l.StartsWith("rows 0", StringComparison.Ordinal));
    }
}
