using System.CommandLine;
using EfEnvelope.Lifecycle;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Cli;

/// <summary>rotate, reencrypt, encrypt-legacy and verify: one lifecycle job, checkpointed after every committed batch.</summary>
internal static class JobCommand
{
    public static async Task<int> RunAsync(DbContext db, LifecycleOperation operation, ParseResult parse, Output output, Interrupt interrupt)
    {
        if (operation != LifecycleOperation.Verify && Commands.PartitionedJob(parse) is { } partitioned)
        {
            return await RunWorkerAsync(db, operation, partitioned, parse, output, interrupt);
        }

        var verb = Output.Verb(operation);
        var options = new LifecycleOptions
        {
            BatchSize = Commands.BatchSize(parse),
            TargetKeyId = operation == LifecycleOperation.Verify ? null : Commands.TargetKey(parse),
            VerifyAfterwards = operation != LifecycleOperation.Verify && Commands.VerifyAfterwards(parse),
        };
        foreach (var type in Commands.EntityTypes(db, parse))
        {
            options.EntityTypes.Add(type);
        }

        var checkpointPath = Commands.CheckpointPath(parse, verb);
        if (Commands.Restart(parse))
        {
            File.Delete(checkpointPath);
        }

        var resumed = File.Exists(checkpointPath);
        if (resumed)
        {
            options.ResumeFrom = await File.ReadAllTextAsync(checkpointPath, interrupt.Token);
            output.Say($"Resuming {verb} from {checkpointPath}.");
        }

        LifecycleResult result;
        try
        {
            result = await Run(db, operation, options, new CheckpointingProgress(operation, checkpointPath, output), interrupt.Token);
        }
        catch (OperationCanceledException) when (interrupt.Requested)
        {
            output.Error(File.Exists(checkpointPath)
                ? $"Interrupted after a committed batch: run the same command again to resume from {checkpointPath}."
                : "Interrupted before the first batch committed: nothing was changed.");
            return ExitCodes.Interrupted;
        }

        // The job went through every row: a later run is a new job, not a resumption.
        File.Delete(checkpointPath);
        return Report(verb, resumed, result, output);
    }

    /// <summary>One worker of a job shared through the partition table: interrupted, its partition is resumed by the next worker to claim it.</summary>
    private static async Task<int> RunWorkerAsync(DbContext db, LifecycleOperation operation, PartitionedJobOptions options, ParseResult parse, Output output, Interrupt interrupt)
    {
        options.Job.BatchSize = Commands.BatchSize(parse);
        options.Job.TargetKeyId = Commands.TargetKey(parse);
        foreach (var type in Commands.EntityTypes(db, parse))
        {
            options.Job.EntityTypes.Add(type);
        }

        output.Say($"Worker {options.WorkerId} of job {options.JobName}.");
        LifecycleResult result;
        try
        {
            result = await EnvelopeKeyLifecycle.RunPartitionedAsync(db, operation, options, new Progress(output), interrupt.Token);
        }
        catch (OperationCanceledException) when (interrupt.Requested)
        {
            output.Error($"Interrupted after a committed batch: this worker's partition is resumed by the next worker of job {options.JobName} (start one with the same command).");
            return ExitCodes.Interrupted;
        }

        return Report(Output.Verb(operation), resumed: false, result, output);
    }

    private static int Report(string verb, bool resumed, LifecycleResult result, Output output)
    {
        var failures = result.Failures.Concat(result.Verification?.Failures ?? []).ToList();
        output.Say(result.ToString());
        if (result.Verification is { } verification)
        {
            output.Say(verification.ToString());
        }

        foreach (var failure in failures)
        {
            output.Say($"  failed: {failure.Entity} {failure.Key}: {failure.ErrorType}: {failure.Error}");
        }

        output.Result(new
        {
            Command = verb,
            Resumed = resumed,
            result.Succeeded,
            result.RowsExamined,
            result.RecordsChanged,
            result.RecordsAlreadyDone,
            result.ConflictsRetried,
            result.Batches,
            ElapsedSeconds = result.Elapsed.TotalSeconds,
            Failures = failures,
            Verification = result.Verification is { } v ? new { v.Succeeded, v.RowsExamined, Failures = v.Failures.Count } : null,
        });
        return result.Succeeded ? ExitCodes.Success : ExitCodes.RowsFailed;
    }

    private static Task<LifecycleResult> Run(DbContext db, LifecycleOperation operation, LifecycleOptions options, IProgress<LifecycleProgress> progress, CancellationToken cancellationToken) =>
        operation switch
        {
            LifecycleOperation.Rotate => EnvelopeKeyLifecycle.RotateAsync(db, options, progress, cancellationToken),
            LifecycleOperation.Reencrypt => EnvelopeKeyLifecycle.ReencryptAsync(db, options, progress, cancellationToken),
            LifecycleOperation.EncryptLegacyPlaintext => EnvelopeKeyLifecycle.EncryptLegacyPlaintextAsync(db, options, progress, cancellationToken),
            _ => EnvelopeKeyLifecycle.VerifyAsync(db, options, progress, cancellationToken),
        };

    /// <summary>Draws progress (called synchronously by the job).</summary>
    private sealed class Progress(Output output) : IProgress<LifecycleProgress>
    {
        public void Report(LifecycleProgress value) => output.Progress(value);
    }

    /// <summary>Draws progress and saves the job's checkpoint after each committed batch.</summary>
    /// <remarks>
    /// Called synchronously by the job (not through <see cref="Progress{T}"/>, which would post reports to the thread
    /// pool): the file always names a batch that has committed. It is replaced atomically, so an interruption while
    /// writing leaves the previous checkpoint, never half of one.
    /// </remarks>
    private sealed class CheckpointingProgress(LifecycleOperation operation, string path, Output output) : IProgress<LifecycleProgress>
    {
        public void Report(LifecycleProgress value)
        {
            output.Progress(value);
            if (value.Operation != operation)
            {
                // The verification pass after a job reports under its own operation; the job's checkpoint stays.
                return;
            }

            var temporary = path + ".tmp";
            File.WriteAllText(temporary, value.Checkpoint);
            File.Move(temporary, path, overwrite: true);
        }
    }
}
