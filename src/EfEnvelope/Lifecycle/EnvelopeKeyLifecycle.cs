using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Lifecycle;

/// <summary>Key lifecycle jobs over stored rows: rotation, re-encryption, encryption of legacy plaintext, verification.</summary>
/// <remarks>
/// <para>
/// Every job reads the chosen entity types in primary-key order, a batch at a time (keyset pagination), writes each
/// batch in its own transaction, and reports progress after each commit. It runs next to the application: each
/// record is written with a compare-and-swap UPDATE on the bytes it read, so a concurrent write is never overwritten;
/// the job reads that row again and redoes it. Interrupted (cancelled, killed), a job can be started again: rotation
/// and plaintext encryption skip finished rows by themselves, and <see cref="LifecycleOptions.ResumeFrom"/> starts any
/// job after the last committed batch.
/// </para>
/// <para>
/// Pass a context of the configuration to use (its provider and master keys), tracking nothing and without an open
/// transaction; the job clears its change tracker after every batch. docs/KEY-MANAGEMENT.md has the procedures.
/// </para>
/// </remarks>
public static class EnvelopeKeyLifecycle
{
    /// <summary>
    /// Rewraps every record's data key under the target master key (by default the one a new record would get: the
    /// selector's choice or the primary key), without rewriting field ciphertext.
    /// </summary>
    /// <remarks>
    /// Records already under the target key are skipped, so the job is idempotent. Provider calls: one unwrap per
    /// distinct stored KEK (through the shared cache) and one new KEK per entity type and target key, not one per
    /// row. Records written in direct mode (or when moving between modes) cannot be rewrapped without a provider call
    /// each and get a fresh data key instead. Afterwards the old master key can be disabled: keep it configured for
    /// reading until the job reports no failure.
    /// </remarks>
    /// <param name="context">A context of the configuration to rotate to.</param>
    /// <param name="options">Entity types, batch size, target key, checkpoint; null for the defaults.</param>
    /// <param name="progress">Receives progress after every batch.</param>
    /// <param name="cancellationToken">Stops the job after the current batch's transaction (which commits or rolls back whole).</param>
    public static Task<LifecycleResult> RotateAsync(DbContext context, LifecycleOptions? options = null, IProgress<LifecycleProgress>? progress = null, CancellationToken cancellationToken = default) =>
        new LifecycleJob(context, LifecycleOperation.Rotate, options, progress).RunAsync(cancellationToken);

    /// <summary>Gives every record a fresh data key, wrapped under a key-encryption key generated for this job, and new ciphertext.</summary>
    /// <remarks>
    /// For a suspected compromise of a data key or KEK. Re-encryption cannot tell a finished record from an unfinished
    /// one, so resume an interrupted run with <see cref="LifecycleOptions.ResumeFrom"/>. An application save that read a
    /// record before the job re-keyed it and edits some of its encrypted properties after would write them under the
    /// old data key; a concurrency token the database maintains (PostgreSQL <c>xmin</c>, SQL Server <c>rowversion</c>)
    /// makes such a save fail with <see cref="DbUpdateConcurrencyException"/> instead, to be retried as with any
    /// optimistic concurrency (docs/KEY-MANAGEMENT.md).
    /// </remarks>
    /// <param name="context">A context of the configuration to re-encrypt under.</param>
    /// <param name="options">Entity types, batch size, target key, checkpoint; null for the defaults.</param>
    /// <param name="progress">Receives progress after every batch.</param>
    /// <param name="cancellationToken">Stops the job after the current batch's transaction.</param>
    public static Task<LifecycleResult> ReencryptAsync(DbContext context, LifecycleOptions? options = null, IProgress<LifecycleProgress>? progress = null, CancellationToken cancellationToken = default) =>
        new LifecycleJob(context, LifecycleOperation.Reencrypt, options, progress).RunAsync(cancellationToken);

    /// <summary>Encrypts every value still held in a legacy plaintext column and sets that column to NULL.</summary>
    /// <remarks>
    /// For properties configured with <see cref="EncryptedAttribute.LegacyPlaintextColumn"/> (or
    /// <c>HasLegacyPlaintextColumn</c>). Records without plaintext left are skipped, so the job is idempotent; the
    /// application keeps reading and writing meanwhile (unconverted rows read from the plaintext column and are
    /// converted by their next save).
    /// </remarks>
    /// <param name="context">A context whose model maps the legacy plaintext columns.</param>
    /// <param name="options">Entity types, batch size, target key, checkpoint; null for the defaults.</param>
    /// <param name="progress">Receives progress after every batch.</param>
    /// <param name="cancellationToken">Stops the job after the current batch's transaction.</param>
    public static Task<LifecycleResult> EncryptLegacyPlaintextAsync(DbContext context, LifecycleOptions? options = null, IProgress<LifecycleProgress>? progress = null, CancellationToken cancellationToken = default) =>
        new LifecycleJob(context, LifecycleOperation.EncryptLegacyPlaintext, options, progress).RunAsync(cancellationToken);

    /// <summary>Decrypts every record under the context's configuration and reports each row that fails; changes nothing.</summary>
    /// <remarks>Failures carry the row's primary key and the error (never plaintext). Use after a rotation, before disabling the old key.</remarks>
    /// <param name="context">A context of the configuration to verify.</param>
    /// <param name="options">Entity types and batch size; null for the defaults.</param>
    /// <param name="progress">Receives progress after every batch.</param>
    /// <param name="cancellationToken">Stops the pass.</param>
    public static Task<LifecycleResult> VerifyAsync(DbContext context, LifecycleOptions? options = null, IProgress<LifecycleProgress>? progress = null, CancellationToken cancellationToken = default) =>
        new LifecycleJob(context, LifecycleOperation.Verify, options, progress).RunAsync(cancellationToken);

    /// <summary>
    /// Runs one worker of <paramref name="operation"/> split into partitions of the primary key that workers claim
    /// through the database, so several processes (or machines) share one job: start the same call in each.
    /// </summary>
    /// <remarks>
    /// <para>
    /// The partitions live in a table named <c>EfEnvelopeJobPartitions</c>, created on first use in the context's
    /// database (the connection needs the right to create it, or create it beforehand). The first worker splits each
    /// entity type into <see cref="PartitionedJobOptions.Partitions"/> key ranges; each worker claims a range, runs the
    /// operation over it batch by batch and claims the next. Each batch commits together with the range's checkpoint
    /// and only while the worker still holds the range, so no row is processed by two workers and none is missed; a
    /// range whose worker died is taken over when its lease runs out and resumed after its last committed batch.
    /// </para>
    /// <para>
    /// The result counts what this worker did. Afterwards run <see cref="VerifyAsync"/> once; a new run of the same
    /// operation needs a new <see cref="PartitionedJobOptions.JobName"/>. docs/KEY-MANAGEMENT.md shows a Kubernetes
    /// indexed Job running it.
    /// </para>
    /// </remarks>
    /// <param name="context">A context of the configuration to run under, tracking nothing and without an open transaction.</param>
    /// <param name="operation">Rotation, re-encryption or legacy plaintext encryption (verification changes nothing and needs no partitions, but works too).</param>
    /// <param name="options">The job name, this worker's id, partitions, lease and the job's own options.</param>
    /// <param name="progress">Receives progress after every batch; rows are this worker's.</param>
    /// <param name="cancellationToken">Stops the worker after the current batch's transaction; its partition is resumed by whoever claims it next.</param>
    public static Task<LifecycleResult> RunPartitionedAsync(DbContext context, LifecycleOperation operation, PartitionedJobOptions options, IProgress<LifecycleProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(options);
        return new PartitionedLifecycleJob(context, operation, options, progress).RunAsync(cancellationToken);
    }

    /// <summary>
    /// Counts, per encrypted entity type, the rows under each master key, wrapping mode and format version, the
    /// distinct key-encryption keys and the rows still holding legacy plaintext; decrypts nothing and calls no provider.
    /// </summary>
    /// <remarks>
    /// The answer to "can I disable the old master key now?" is <see cref="KeyInventory.StillNeeds"/>. Entity types
    /// stored as JSON inside their owner's column are not listed (their keys are inside the JSON document).
    /// </remarks>
    /// <param name="context">A context of the configuration to inventory.</param>
    /// <param name="cancellationToken">Stops the scan.</param>
    public static Task<KeyInventory> InventoryAsync(DbContext context, CancellationToken cancellationToken = default) =>
        KeyInventoryReader.ReadAsync(context, cancellationToken);
}
