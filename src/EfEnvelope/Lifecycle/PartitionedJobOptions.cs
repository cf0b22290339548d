namespace EfEnvelope.Lifecycle;

/// <summary>Settings of one worker of a lifecycle job split into partitions (<see cref="EnvelopeKeyLifecycle.RunPartitionedAsync"/>).</summary>
public sealed class PartitionedJobOptions
{
    private int _partitions = 16;
    private TimeSpan _leaseDuration = TimeSpan.FromMinutes(2);
    private string _workerId = $"{Environment.MachineName}/{Environment.ProcessId}/{Guid.NewGuid():N}";

    /// <summary>Creates the settings of a worker of the job named <paramref name="jobName"/>.</summary>
    /// <param name="jobName">
    /// Names the job in the partition table: every worker of one job passes the same name, and a new job needs a new
    /// name (for example <c>rotate-2026-12</c>). At most 200 characters.
    /// </param>
    public PartitionedJobOptions(string jobName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(jobName);
        if (jobName.Length > 200)
        {
            throw new ArgumentException("A job name has at most 200 characters.", nameof(jobName));
        }

        JobName = jobName;
    }

    /// <summary>The job's name in the partition table.</summary>
    public string JobName { get; }

    /// <summary>
    /// Partitions per root entity type, decided by the first worker to start the job (later workers use its plan).
    /// The default is 16: a few per worker, so that a worker that finishes early takes over the rest.
    /// </summary>
    public int Partitions
    {
        get => _partitions;
        set => _partitions = value is > 0 and <= 10_000 ? value : throw new ArgumentOutOfRangeException(nameof(Partitions), value, "Must be 1 to 10,000.");
    }

    /// <summary>This worker's name in the partition table; the default is unique per process (machine, process id, random suffix).</summary>
    /// <remarks>At most 200 characters.</remarks>
    public string WorkerId
    {
        get => _workerId;
        set
        {
            ArgumentException.ThrowIfNullOrWhiteSpace(value);
            _workerId = value.Length <= 200 ? value : throw new ArgumentException("A worker id has at most 200 characters.", nameof(value));
        }
    }

    /// <summary>
    /// How long a claimed partition stays this worker's without news from it; every committed batch renews it. A
    /// partition whose lease ran out (its worker crashed or stalled) is taken over by another worker, which resumes it
    /// after the last batch committed, and the stalled worker's next batch rolls back. The default is 2 minutes.
    /// </summary>
    /// <remarks>Leases compare the workers' clocks: keep them synchronised to well within this duration.</remarks>
    public TimeSpan LeaseDuration
    {
        get => _leaseDuration;
        set => _leaseDuration = value >= TimeSpan.FromSeconds(1) ? value : throw new ArgumentOutOfRangeException(nameof(LeaseDuration), value, "Must be at least one second.");
    }

    /// <summary>
    /// When no partition is free but others are still held, wait (polling) until they finish or their lease runs out
    /// and take them over, so that the job is complete when any worker returns. The default is true; false returns
    /// as soon as no partition is free. Waiting workers look again every 50 to 200 ms (an eighth of the lease, within those bounds).
    /// </summary>
    public bool WaitForOtherWorkers { get; set; } = true;

    /// <summary>
    /// The job itself: entity types, batch size, target key, attempts per row. <see cref="LifecycleOptions.ResumeFrom"/>
    /// and <see cref="LifecycleOptions.VerifyAfterwards"/> are refused: partitions keep their own checkpoints, and a
    /// verification belongs after every worker has finished.
    /// </summary>
    public LifecycleOptions Job { get; } = new();
}
