using System.Diagnostics;
using EfEnvelope.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Lifecycle;

/// <summary>One worker of a lifecycle job split into key ranges that the workers claim through the database.</summary>
/// <remarks>
/// <para>
/// The first worker plans the job: per root entity type, <see cref="PartitionedJobOptions.Partitions"/> ranges of the
/// primary key with about as many rows each (the last one open-ended, so rows inserted later with higher keys belong
/// to it). Every worker then claims a free partition, runs the ordinary job over that range, marks it done and claims
/// the next, until none is left.
/// </para>
/// <para>
/// Exactly once: each batch's transaction also moves the partition's checkpoint and renews the worker's lease, on the
/// condition that the worker still owns the partition. A worker that lost its partition (its lease ran out while it
/// stalled, and another worker took over) sees that condition fail inside the transaction and rolls the batch back;
/// the new owner resumes after the last committed batch. So no row is written by two workers, and none is skipped.
/// </para>
/// </remarks>
internal sealed class PartitionedLifecycleJob(DbContext context, LifecycleOperation operation, PartitionedJobOptions options, IProgress<LifecycleProgress>? progress)
{
    private readonly JobPartitionTable _table = new(context);
    private readonly LifecycleResult _result = new(operation);

    public async Task<LifecycleResult> RunAsync(CancellationToken cancellationToken)
    {
        if (options.Job.ResumeFrom is not null)
        {
            throw new ArgumentException("A partitioned job resumes each partition from the partition table: leave LifecycleOptions.ResumeFrom unset.", nameof(options));
        }

        if (options.Job.VerifyAfterwards)
        {
            throw new ArgumentException("Verify once every worker has finished (EnvelopeKeyLifecycle.VerifyAsync): leave LifecycleOptions.VerifyAfterwards unset.", nameof(options));
        }

        if (context.GetService<IDbContextOptions>().FindExtension<EnvelopeEncryptionOptionsExtension>() is not null)
        {
            // Here, not only in each partition's job: a partition claimed and then refused would stay leased.
            LifecycleJob.RequireTargetFitsSelector(context.GetService<EnvelopeRuntime>(), operation, options.Job);
        }

        var clock = Stopwatch.StartNew();
        await _table.EnsureCreatedAsync(cancellationToken).ConfigureAwait(false);
        await PlanAsync(cancellationToken).ConfigureAwait(false);
        // Often enough that a worker waiting for the last partitions returns soon after they finish; the table is tiny.
        var poll = TimeSpan.FromTicks(Math.Clamp(options.LeaseDuration.Ticks / 8, TimeSpan.FromMilliseconds(50).Ticks, TimeSpan.FromMilliseconds(200).Ticks));
        while (true)
        {
            var now = Now();
            var partition = await _table.TryClaimAsync(options.JobName, options.WorkerId, now, now + LeaseMilliseconds, cancellationToken).ConfigureAwait(false);
            if (partition is null)
            {
                if (!options.WaitForOtherWorkers || await _table.CountUnfinishedAsync(options.JobName, cancellationToken).ConfigureAwait(false) == 0)
                {
                    break;
                }

                await Task.Delay(poll, cancellationToken).ConfigureAwait(false);
                continue;
            }

            try
            {
                await RunPartitionAsync(partition, cancellationToken).ConfigureAwait(false);
                await _table.TryFinishAsync(options.JobName, partition.Number, options.WorkerId, cancellationToken).ConfigureAwait(false);
            }
            catch (PartitionLostException)
            {
                // Another worker owns it now and resumes after our last committed batch; this one was rolled back.
                context.ChangeTracker.Clear();
            }
        }

        _result.Elapsed = clock.Elapsed;
        return _result;
    }

    private long LeaseMilliseconds => (long)options.LeaseDuration.TotalMilliseconds;

    private static long Now() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    /// <summary>Splits each root entity type's keys into ranges of about equal row counts, unless another worker already did.</summary>
    private async Task PlanAsync(CancellationToken cancellationToken)
    {
        var partitions = new List<(string Entity, string? After, string? UpTo)>();
        foreach (var root in new LifecycleJob(context, operation, options.Job, null).SelectRoots())
        {
            var pager = Pager.Create(context, root);
            var rows = await pager.CountAsync(cancellationToken).ConfigureAwait(false);
            string? after = null;
            for (var i = 1; i < options.Partitions; i++)
            {
                var offset = rows * i / options.Partitions - 1;
                if (offset < 0 || await pager.LoadKeyAtAsync(offset, cancellationToken).ConfigureAwait(false) is not { } key)
                {
                    continue;
                }

                var upTo = Checkpoint.KeyText(pager.KeyProperties, key);
                if (upTo != after)
                {
                    partitions.Add((root.Name, after, upTo));
                    after = upTo;
                }
            }

            partitions.Add((root.Name, after, null));
        }

        await _table.TryPlanAsync(options.JobName, partitions, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Runs the job over one partition and adds what it committed (all of it, or the batches before it lost the partition).</summary>
    private async Task RunPartitionAsync(JobPartition partition, CancellationToken cancellationToken)
    {
        var root = context.Model.FindEntityType(partition.Entity)
            ?? throw new InvalidOperationException($"Lifecycle job '{options.JobName}' has a partition of entity type '{partition.Entity}', which context '{context.GetType().Name}' does not map: run every worker with the same model.");
        var keyProperties = root.FindPrimaryKey()!.Properties;
        var job = new LifecycleOptions
        {
            BatchSize = options.Job.BatchSize,
            MaxAttemptsPerRow = options.Job.MaxAttemptsPerRow,
            TargetKeyId = options.Job.TargetKeyId,
            ResumeFrom = partition.Checkpoint,
            AfterBatchRead = options.Job.AfterBatchRead,
            Range = new KeyRange(
                partition.After is null ? null : Checkpoint.ParseKey(keyProperties, partition.After),
                partition.UpTo is null ? null : Checkpoint.ParseKey(keyProperties, partition.UpTo)),
            BatchCommitting = async (checkpoint, token) =>
            {
                if (!await _table.TryAdvanceAsync(options.JobName, partition.Number, options.WorkerId, checkpoint, Now() + LeaseMilliseconds, token).ConfigureAwait(false))
                {
                    throw new PartitionLostException();
                }
            },
        };
        job.EntityTypes.Add(root.ClrType);
        var partitionProgress = progress is null ? null : new WorkerProgress(progress, _result.RowsExamined);
        var run = new LifecycleJob(context, operation, job, partitionProgress);
        try
        {
            await run.RunAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            Add(run.Result);
        }
    }

    private void Add(LifecycleResult partition)
    {
        _result.RowsExamined += partition.RowsExamined;
        _result.RecordsChanged += partition.RecordsChanged;
        _result.RecordsAlreadyDone += partition.RecordsAlreadyDone;
        _result.ConflictsRetried += partition.ConflictsRetried;
        _result.Batches += partition.Batches;
        _result.FailureList.AddRange(partition.Failures);
    }

    /// <summary>Reports a partition's progress as this worker's: rows of the partitions it finished before, plus this one's.</summary>
    /// <remarks>Synchronous, as the job reports after each commit (not <see cref="Progress{T}"/>, which posts to the thread pool).</remarks>
    private sealed class WorkerProgress(IProgress<LifecycleProgress> inner, long rowsBefore) : IProgress<LifecycleProgress>
    {
        public void Report(LifecycleProgress value) => inner.Report(value with { RowsDone = rowsBefore + value.RowsDone });
    }

    /// <summary>The partition's lease was taken over by another worker: the batch being written rolls back.</summary>
    private sealed class PartitionLostException() : Exception("The partition was taken over by another worker after this worker's lease ran out.");
}
