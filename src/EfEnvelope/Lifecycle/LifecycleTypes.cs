namespace EfEnvelope.Lifecycle;

/// <summary>The key lifecycle operations that <see cref="EnvelopeKeyLifecycle"/> runs over stored rows.</summary>
public enum LifecycleOperation
{
    /// <summary>Rewraps each record's data key under the current master key; field ciphertext is not rewritten.</summary>
    Rotate = 0,

    /// <summary>Gives every record a fresh data key (and fresh key-encryption key) and new ciphertext.</summary>
    Reencrypt = 1,

    /// <summary>Encrypts values still held in legacy plaintext columns and empties those columns.</summary>
    EncryptLegacyPlaintext = 2,

    /// <summary>Decrypts every record and reports the ones that fail, changing nothing.</summary>
    Verify = 3,
}

/// <summary>Settings of one lifecycle job.</summary>
public sealed class LifecycleOptions
{
    private int _batchSize = 500;
    private int _maxAttemptsPerRow = 5;

    /// <summary>The entity types to process (CLR types of root entity types); empty means every type with encrypted data.</summary>
    /// <remarks>Owned types are processed with their owner.</remarks>
    public IList<Type> EntityTypes { get; } = [];

    /// <summary>Rows per batch: each batch is read by primary key after the previous one and written in its own transaction.</summary>
    /// <remarks>The default is 500.</remarks>
    public int BatchSize
    {
        get => _batchSize;
        set => _batchSize = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(BatchSize), value, "Must be positive.");
    }

    /// <summary>How often a row that another writer changed during its batch is read and tried again before it is reported as failed.</summary>
    /// <remarks>The default is 5.</remarks>
    public int MaxAttemptsPerRow
    {
        get => _maxAttemptsPerRow;
        set => _maxAttemptsPerRow = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(MaxAttemptsPerRow), value, "Must be positive.");
    }

    /// <summary>
    /// The master key new data keys are wrapped under. The default is what the configuration would choose for a new
    /// record: the master-key selector's choice for that record, else the provider's primary key.
    /// </summary>
    public string? TargetKeyId { get; set; }

    /// <summary>
    /// A <see cref="LifecycleProgress.Checkpoint"/> (or <see cref="LifecycleResult.Checkpoint"/>) of an interrupted
    /// run of the same operation: the job starts after the last batch that run committed.
    /// </summary>
    /// <remarks>
    /// Rotation and plaintext encryption skip finished rows by themselves, so for them this only saves reading those
    /// rows again. Re-encryption cannot tell a finished row from an unfinished one and needs it to avoid redoing work.
    /// </remarks>
    public string? ResumeFrom { get; set; }

    /// <summary>Runs <see cref="EnvelopeKeyLifecycle.VerifyAsync"/> over the same entity types after the job.</summary>
    public bool VerifyAfterwards { get; set; }

    /// <summary>Test hook: runs after each batch is read and before it is written (to inject concurrent writes).</summary>
    internal Func<CancellationToken, Task>? AfterBatchRead { get; set; }

    /// <summary>Processes only the rows of one key range (a partition of a <see cref="PartitionedLifecycleJob"/>).</summary>
    internal KeyRange? Range { get; set; }

    /// <summary>Runs inside each batch's transaction just before it commits, with the checkpoint the commit reaches.</summary>
    internal Func<string, CancellationToken, Task>? BatchCommitting { get; set; }
}

/// <summary>Progress of a lifecycle job, reported after every committed batch.</summary>
/// <param name="Operation">The job.</param>
/// <param name="Entity">The entity type being processed.</param>
/// <param name="RowsDone">Rows (of every entity type) processed so far, including rows that needed no change.</param>
/// <param name="RowsTotal">Rows of the chosen entity types when the job started.</param>
/// <param name="RowsPerSecond">Rows processed per second since the job started.</param>
/// <param name="Checkpoint">Where to resume after this batch (<see cref="LifecycleOptions.ResumeFrom"/>).</param>
public sealed record LifecycleProgress(LifecycleOperation Operation, string Entity, long RowsDone, long RowsTotal, double RowsPerSecond, string Checkpoint)
{
    /// <summary>Fraction done, 0 to 1.</summary>
    public double Fraction => RowsTotal == 0 ? 1 : Math.Min(1, (double)RowsDone / RowsTotal);
}

/// <summary>A row a job could not process; it was left as it was.</summary>
/// <param name="Entity">The entity type.</param>
/// <param name="Key">The row's primary key values, as text.</param>
/// <param name="Error">The error (the library's messages name entity, property and key id, never plaintext).</param>
/// <param name="ErrorType">The exception type's name.</param>
public sealed record LifecycleFailure(string Entity, string Key, string Error, string ErrorType);

/// <summary>What a lifecycle job did.</summary>
public sealed class LifecycleResult
{
    internal LifecycleResult(LifecycleOperation operation) => Operation = operation;

    /// <summary>The job.</summary>
    public LifecycleOperation Operation { get; }

    /// <summary>Rows read (root entities; their owned records are counted with them).</summary>
    public long RowsExamined { get; internal set; }

    /// <summary>Records written: a root entity and each of its owned records count separately.</summary>
    public long RecordsChanged { get; internal set; }

    /// <summary>Records that needed nothing (already under the target key, no plaintext left, no encrypted data); 0 for verification.</summary>
    public long RecordsAlreadyDone { get; internal set; }

    /// <summary>Rows read and written again because another writer changed them during their batch.</summary>
    public long ConflictsRetried { get; internal set; }

    /// <summary>Batches committed.</summary>
    public int Batches { get; internal set; }

    /// <summary>Rows that failed, with why; empty when everything succeeded.</summary>
    public IReadOnlyList<LifecycleFailure> Failures => FailureList;

    /// <summary>Wall-clock duration.</summary>
    public TimeSpan Elapsed { get; internal set; }

    /// <summary>Where the job stopped; pass to <see cref="LifecycleOptions.ResumeFrom"/> to continue after an interruption.</summary>
    public string? Checkpoint { get; internal set; }

    /// <summary>The verification pass, when <see cref="LifecycleOptions.VerifyAfterwards"/> asked for one.</summary>
    public LifecycleResult? Verification { get; internal set; }

    /// <summary>True when no row failed (including in the verification pass).</summary>
    public bool Succeeded => FailureList.Count == 0 && (Verification?.Succeeded ?? true);

    internal List<LifecycleFailure> FailureList { get; } = [];

    /// <inheritdoc />
    public override string ToString() =>
        $"{Operation}: {RowsExamined} rows examined, {RecordsChanged} records changed, {RecordsAlreadyDone} already done, {ConflictsRetried} conflicts retried, {FailureList.Count} failed, {Batches} batches in {Elapsed.TotalSeconds:F1} s";
}

/// <summary>Rows whose primary key is after <paramref name="After"/> (exclusive) and up to <paramref name="UpTo"/> (inclusive); null is unbounded.</summary>
internal sealed record KeyRange(object?[]? After, object?[]? UpTo);
