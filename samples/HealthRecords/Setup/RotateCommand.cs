using EfEnvelope.Lifecycle;
using HealthRecords.Data;

namespace HealthRecords.Setup;

/// <summary><c>dotnet run -- rotate</c>: rewraps every stored data key under the configured primary master key.</summary>
/// <remarks>
/// The procedure (docs/KEY-MANAGEMENT.md): configure the new key as primary and the old one for reading
/// (AwsKms: <c>KeyId</c> and <c>AdditionalKeyIds</c>), run this, then retire the old key. Field ciphertext is not
/// rewritten; rows already under the primary key are skipped, so running it twice is harmless.
/// </remarks>
public static class RotateCommand
{
    /// <returns>The process exit code: 0 when every row was rotated and verified.</returns>
    public static async Task<int> RunAsync(IServiceProvider services, TextWriter output, CancellationToken cancellationToken)
    {
        await using var scope = services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ClinicDbContext>();
        var environment = scope.ServiceProvider.GetRequiredService<SampleEnvironment>();
        output.WriteLine($"Rotating every record to master key {environment.MasterKey.KeyId} ({environment.MasterKey.Provider}).");

        var result = await EnvelopeKeyLifecycle.RotateAsync(db, new LifecycleOptions { VerifyAfterwards = true }, new ProgressBar(output), cancellationToken);
        output.WriteLine();
        output.WriteLine(result);
        if (result.Verification is { } verification)
        {
            output.WriteLine(verification);
        }

        foreach (var failure in result.Failures.Concat(result.Verification?.Failures ?? []))
        {
            output.WriteLine($"  {failure.Entity} {failure.Key}: {failure.ErrorType}: {failure.Error}");
        }

        output.WriteLine(result.Succeeded
            ? "Done: every record reads under the primary key. The blind index key (data/blind-index-key.*) stays wrapped under the key it was created with: keep that master key configured and enabled for it."
            : "Some records failed: keep the old key configured and enabled, fix them, and run rotate again.");
        return result.Succeeded ? 0 : 1;
    }

    /// <summary>One line redrawn in place: entity, bar, percentage, rows and rate.</summary>
    private sealed class ProgressBar(TextWriter output) : IProgress<LifecycleProgress>
    {
        private const int Width = 30;

        // Called synchronously by the job after each committed batch (not through Progress<T>, which would post
        // reports to the thread pool and draw them out of order).
        public void Report(LifecycleProgress value)
        {
            var filled = (int)Math.Round(value.Fraction * Width);
            output.Write($"\r{value.Operation,-9} {value.Entity,-10} [{new string('#', filled)}{new string('.', Width - filled)}] {(int)Math.Round(value.Fraction * 100),3}%  {value.RowsDone:N0}/{value.RowsTotal:N0} rows  {value.RowsPerSecond:N0} rows/s ");
            output.Flush();
        }
    }
}
