using System.Collections;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using EfEnvelope.ChangeTracking;
using EfEnvelope.Crypto;
using EfEnvelope.Diagnostics;
using EfEnvelope.Infrastructure;
using EfEnvelope.KeyManagement;
using EfEnvelope.Metadata;
using EfEnvelope.Update;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace EfEnvelope.Lifecycle;

/// <summary>Runs one lifecycle operation over the chosen entity types, batch by batch.</summary>
/// <remarks>
/// <para>
/// Per batch: read the next rows by primary key through EF (which decrypts them, unwrapping each distinct KEK once
/// through the shared cache); plan each record's new bytes (the only step that calls the provider); then, in one
/// transaction, write each record with a compare-and-swap UPDATE (<see cref="RecordTable"/>). Rows another writer
/// changed in between are read and planned again after the commit. The change tracker is cleared after every batch,
/// so memory holds one batch at a time.
/// </para>
/// <para>
/// A row that cannot be read or written (tampered, key destroyed) is recorded as a failure and left as it was; the
/// job goes on. A batch whose read fails is read again row by row so that only the failing rows are reported.
/// </para>
/// </remarks>
internal sealed partial class LifecycleJob
{
    private readonly DbContext _context;
    private readonly LifecycleOperation _operation;
    private readonly LifecycleOptions _options;
    private readonly IProgress<LifecycleProgress>? _progress;
    private readonly EnvelopeRuntime _runtime;
    private readonly ILogger _logger;
    private readonly Dictionary<IEntityType, RecordTable> _tables = [];
    private readonly LifecycleResult _result;
    private readonly Stopwatch _clock = new();
    private long _rowsTotal;

    // Where the job will be once the batch being written commits (a retried row re-commits the same one).
    private string? _batchCheckpoint;

    // The context's AutoDetectChangesEnabled, restored when the job ends and for its saves of JSON-mapped records.
    private bool _autoDetectChanges;

    public LifecycleJob(DbContext context, LifecycleOperation operation, LifecycleOptions? options, IProgress<LifecycleProgress>? progress)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (context.GetService<IDbContextOptions>().FindExtension<EnvelopeEncryptionOptionsExtension>() is null)
        {
            throw new InvalidOperationException($"Context '{context.GetType().Name}' is not configured with UseEnvelopeEncryption.");
        }

        _context = context;
        _operation = operation;
        _options = options ?? new LifecycleOptions();
        _progress = progress;
        _runtime = context.GetService<EnvelopeRuntime>();
        _logger = (_runtime.Settings.LoggerFactory ?? context.GetService<ILoggerFactory>() ?? NullLoggerFactory.Instance).CreateLogger("EfEnvelope.Lifecycle");
        _result = new LifecycleResult(operation);
    }

    /// <summary>Refuses a <see cref="LifecycleOptions.TargetKeyId"/> with a master-key selector, before anything is written.</summary>
    internal static void RequireTargetFitsSelector(EnvelopeRuntime runtime, LifecycleOperation operation, LifecycleOptions options)
    {
        if (options.TargetKeyId is { } targetKeyId && runtime.Settings.KeySelector is not null && operation != LifecycleOperation.Verify)
        {
            // Reads check every record against the selector's choice for its row, so records this job put under
            // another key would all be refused afterwards: fail before writing any.
            throw new InvalidOperationException(
                $"LifecycleOptions.TargetKeyId ('{targetKeyId}') cannot be combined with a master-key selector: the selector chooses each record's key, and reads refuse a record under a key it does not choose for that row. "
                + "Leave TargetKeyId unset so that the job moves each record to the selector's choice; to move records to another key, change the selector (with AcceptPreviousSelector while they move, docs/KEY-MANAGEMENT.md).");
        }
    }

    /// <summary>What the job has done so far: after a failure, the batches it committed.</summary>
    internal LifecycleResult Result => _result;

    public async Task<LifecycleResult> RunAsync(CancellationToken cancellationToken)
    {
        if (_context.Database.CurrentTransaction is not null)
        {
            throw new InvalidOperationException("A lifecycle job commits one transaction per batch: run it on a context without an open transaction.");
        }

        if (_context.ChangeTracker.Entries().Any())
        {
            throw new InvalidOperationException("A lifecycle job clears the change tracker after every batch: run it on a context that tracks nothing.");
        }

        RequireTargetFitsSelector(_runtime, _operation, _options);

        var roots = SelectRoots();
        if (_options.Range is not null && roots.Count != 1)
        {
            throw new InvalidOperationException("A job over a key range processes exactly one root entity type.");
        }

        foreach (var type in roots.SelectMany(Aggregate).Where(t => _runtime.Find(t) is not null && !t.IsMappedToJson()))
        {
            Table(type);
        }

        var checkpoint = Checkpoint.Parse(_options.ResumeFrom, _operation);
        _clock.Start();
        var pagers = roots.Select(r => (Root: r, Pager: Pager.Create(_context, r, _options.Range))).ToList();
        foreach (var (_, pager) in pagers)
        {
            _rowsTotal += await pager.CountAsync(cancellationToken).ConfigureAwait(false);
        }

        Log.Started(_logger, _operation, roots.Count, _rowsTotal);
        using var keyring = new JobKeyring(_runtime);
        var outcome = "stopped";

        // DbContext.Entry() detects changes of the entity it is asked for, and EfEnvelope's detection compares every
        // encrypted value with its snapshot: for nothing here, since the job only reads the records it loaded and
        // writes them by SQL (a fifth of a re-encryption's time on SQLite). The save of JSON-mapped records, which
        // goes through SaveChanges, runs with the context's own setting (WriteJsonAsync).
        _autoDetectChanges = _context.ChangeTracker.AutoDetectChangesEnabled;
        _context.ChangeTracker.AutoDetectChangesEnabled = false;
        try
        {
            foreach (var (root, pager) in pagers)
            {
                if (checkpoint.Done.Contains(root.Name))
                {
                    _result.RowsExamined += await pager.CountAsync(cancellationToken).ConfigureAwait(false);
                    continue;
                }

                var after = checkpoint.Entity == root.Name ? checkpoint.After(pager.KeyProperties) : null;
                if (after is not null && _options.Range is null)
                {
                    // Rows up to the checkpoint were finished by the interrupted run (a partition's previous owner
                    // counted them in its own result).
                    _result.RowsExamined += await pager.CountAsync(cancellationToken).ConfigureAwait(false)
                        - await pager.CountAfterAsync(after, cancellationToken).ConfigureAwait(false);
                }

                await RunEntityAsync(root, pager, after, checkpoint, keyring, cancellationToken).ConfigureAwait(false);
                checkpoint = checkpoint.Finished(root.Name);
                _result.Checkpoint = checkpoint.ToString();
            }

            outcome = "finished";
        }
        catch (Exception ex)
        {
            // Cancelled or an infrastructure failure: committed batches stay; the checkpoint says where to resume.
            outcome = "stopped by " + ex.GetType().Name;
            throw;
        }
        finally
        {
            _clock.Stop();
            _result.Elapsed = _clock.Elapsed;
            _context.ChangeTracker.Clear();
            _context.ChangeTracker.AutoDetectChangesEnabled = _autoDetectChanges;
            Log.Finished(_logger, _operation, outcome, _result.RowsExamined, _result.RecordsChanged, _result.RecordsAlreadyDone, _result.ConflictsRetried, _result.FailureList.Count, _result.Batches, keyring.Generated, _clock.Elapsed.TotalSeconds);
        }

        if (_options.VerifyAfterwards && _operation != LifecycleOperation.Verify)
        {
            var verifyOptions = new LifecycleOptions { BatchSize = _options.BatchSize };
            foreach (var type in _options.EntityTypes)
            {
                verifyOptions.EntityTypes.Add(type);
            }

            _result.Verification = await new LifecycleJob(_context, LifecycleOperation.Verify, verifyOptions, _progress).RunAsync(cancellationToken).ConfigureAwait(false);
        }

        return _result;
    }

    private async Task RunEntityAsync(IEntityType root, IPager pager, object?[]? after, Checkpoint checkpoint, JobKeyring keyring, CancellationToken cancellationToken)
    {
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var (entities, failedKeys, last) = await ReadBatchAsync(root, pager, after, cancellationToken).ConfigureAwait(false);
            if (last is null)
            {
                return;
            }

            if (_options.AfterBatchRead is { } hook)
            {
                await hook(cancellationToken).ConfigureAwait(false);
            }

            _batchCheckpoint = checkpoint.At(root.Name, pager.KeyProperties, last).ToString();
            var conflicts = await WriteAsync(root, entities, keyring, cancellationToken).ConfigureAwait(false);
            _context.ChangeTracker.Clear();
            foreach (var key in conflicts)
            {
                await RetryAsync(root, pager, key, keyring, cancellationToken).ConfigureAwait(false);
            }

            _result.RowsExamined += entities.Count + failedKeys;
            _result.Batches++;
            after = last;
            _result.Checkpoint = _batchCheckpoint;
            var seconds = Math.Max(_clock.Elapsed.TotalSeconds, 1e-6);
            _progress?.Report(new LifecycleProgress(_operation, root.DisplayName(), _result.RowsExamined, Math.Max(_rowsTotal, _result.RowsExamined), _result.RowsExamined / seconds, _result.Checkpoint));
        }
    }

    /// <summary>Reads the next batch; if decrypting it fails, reads it row by row and records the rows that fail.</summary>
    private async Task<(List<(object Entity, object?[] Key)> Entities, int Failed, object?[]? Last)> ReadBatchAsync(IEntityType root, IPager pager, object?[]? after, CancellationToken cancellationToken)
    {
        try
        {
            var batch = await pager.LoadBatchAsync(after, _options.BatchSize, cancellationToken).ConfigureAwait(false);
            var entities = batch.Select(e => (e, KeyOf(pager, e))).ToList();
            return (entities, 0, entities.Count == 0 ? null : entities[^1].Item2);
        }
        catch (Exception ex) when (IsRecordError(ex))
        {
            _context.ChangeTracker.Clear();
        }

        var keys = await pager.LoadKeysAsync(after, _options.BatchSize, cancellationToken).ConfigureAwait(false);
        var loaded = new List<(object, object?[])>(keys.Count);
        var failed = 0;
        foreach (var key in keys)
        {
            try
            {
                if (await pager.LoadOneAsync(key, cancellationToken).ConfigureAwait(false) is { } entity)
                {
                    loaded.Add((entity, key));
                }
            }
            catch (Exception ex) when (IsRecordError(ex))
            {
                failed++;
                Fail(root, key, ex);
            }
        }

        return (loaded, failed, keys.Count == 0 ? null : keys[^1]);
    }

    /// <summary>Plans and writes one batch in one transaction; returns the keys of rows another writer changed meanwhile.</summary>
    private async Task<List<object?[]>> WriteAsync(IEntityType root, List<(object Entity, object?[] Key)> entities, JobKeyring keyring, CancellationToken cancellationToken)
    {
        var planned = new List<(Planned Plan, object?[] Key)>();
        foreach (var (entity, key) in entities)
        {
            try
            {
                foreach (var entry in Records(entity))
                {
                    if (await PlanAsync(entry, keyring, cancellationToken).ConfigureAwait(false) is { } plan)
                    {
                        planned.Add((plan, key));
                    }
                    else if (_operation != LifecycleOperation.Verify)
                    {
                        _result.RecordsAlreadyDone++;
                    }
                }
            }
            catch (Exception ex) when (IsRecordError(ex))
            {
                Fail(root, key, ex);
            }
        }

        if (planned.Count == 0)
        {
            if (_options.BatchCommitting is { } committing)
            {
                // Nothing to write, so nothing to keep atomic with the checkpoint.
                await committing(_batchCheckpoint!, cancellationToken).ConfigureAwait(false);
            }

            return [];
        }

        var strategy = _context.Database.CreateExecutionStrategy();
        return await strategy.ExecuteAsync(async token =>
        {
            // Built inside the delegate: a retrying execution strategy runs it again from the start.
            var conflicts = new List<object?[]>();
            var written = 0;
            await using var transaction = await _context.Database.BeginTransactionAsync(token).ConfigureAwait(false);
            var tables = planned.Where(p => p.Plan.Json is null).ToList();
            var affected = await RecordWrite.ExecuteAsync(_context, [.. tables.Select(p => p.Plan.Write!)], token).ConfigureAwait(false);
            for (var i = 0; i < tables.Count; i++)
            {
                if (affected[i] == 1)
                {
                    written++;
                }
                else if (!conflicts.Contains(tables[i].Key))
                {
                    conflicts.Add(tables[i].Key);
                }
            }

            var json = planned.Where(p => p.Plan.Json is not null).ToList();
            if (json.Count > 0)
            {
                written += await WriteJsonAsync(json, conflicts, token).ConfigureAwait(false);
            }

            if (_options.BatchCommitting is { } committing)
            {
                // In the batch's transaction: the checkpoint commits with the rows or not at all (partitioned jobs).
                await committing(_batchCheckpoint!, token).ConfigureAwait(false);
            }

            await transaction.CommitAsync(token).ConfigureAwait(false);
            _result.RecordsChanged += written;
            return conflicts;
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Records stored as JSON inside their owner's column cannot be updated column by column: SaveChanges writes them,
    /// rewriting the owner's JSON document. The job encrypts them itself, exactly as it does table rows (its own KEKs
    /// under the target key, never the shared cache's write key), and hands SaveChanges the finished key and
    /// ciphertexts: the snapshot names them, so the save writes them as they are instead of encrypting again.
    /// </summary>
    /// <remarks>
    /// There is no compare-and-swap on a JSON document: a concurrency token on the owner makes EF check it, and a
    /// conflict it reports sends those rows back to be read again, like any other conflict.
    /// </remarks>
    private async Task<int> WriteJsonAsync(List<(Planned Plan, object?[] Key)> json, List<object?[]> conflicts, CancellationToken cancellationToken)
    {
        var detector = _context.GetService<IChangeDetector>() as EncryptionChangeDetector
            ?? throw new InvalidOperationException("EfEnvelope's change detector is not installed: another extension replaced IChangeDetector.");
        foreach (var (plan, _) in json)
        {
            var entry = plan.Json!;
            var encrypted = _runtime.Find(entry.Metadata)!;
            var read = detector.Find(entry.Entity, (byte[]?)entry.Property(encrypted.KeyProperty.Name).CurrentValue)
                ?? throw new InvalidOperationException($"The record of '{encrypted.Name}' read by the job has no change-tracking snapshot.");

            // The job's own assignment, not a reload: the detector must not decrypt the record again (a synchronous
            // provider call for the job's new KEK) as it does when stored values change under a tracked record.
            detector.Assigning = true;
            try
            {
                entry.Property(encrypted.KeyProperty.Name).CurrentValue = plan.WrappedKey;
                for (var i = 0; i < encrypted.Properties.Length && plan.Fields is not null; i++)
                {
                    entry.Property(encrypted.Properties[i].Ciphertext.Name).CurrentValue = plan.Fields[i];
                    if (encrypted.Properties[i].LegacyPlaintext is { } legacy)
                    {
                        entry.Property(legacy.Name).CurrentValue = null;
                    }
                }
            }
            finally
            {
                detector.Assigning = false;
            }

            detector.Remember(entry.Entity, new RecordSnapshot(plan.WrappedKey, read.Values, written: plan.Fields));
        }

        try
        {
            _context.ChangeTracker.AutoDetectChangesEnabled = _autoDetectChanges;
            try
            {
                await _context.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                _context.ChangeTracker.AutoDetectChangesEnabled = false;
            }

            return json.Count;
        }
        catch (DbUpdateConcurrencyException)
        {
            foreach (var (_, key) in json)
            {
                if (!conflicts.Contains(key))
                {
                    conflicts.Add(key);
                }
            }

            return 0;
        }
    }

    /// <summary>A row changed by another writer during its batch: read it again and redo it, a bounded number of times.</summary>
    private async Task RetryAsync(IEntityType root, IPager pager, object?[] key, JobKeyring keyring, CancellationToken cancellationToken)
    {
        for (var attempt = 1; attempt <= _options.MaxAttemptsPerRow; attempt++)
        {
            _result.ConflictsRetried++;
            object? entity;
            try
            {
                entity = await pager.LoadOneAsync(key, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (IsRecordError(ex))
            {
                _context.ChangeTracker.Clear();
                Fail(root, key, ex);
                return;
            }

            if (entity is null)
            {
                // Deleted meanwhile: nothing left to do.
                return;
            }

            var conflicts = await WriteAsync(root, [(entity, key)], keyring, cancellationToken).ConfigureAwait(false);
            _context.ChangeTracker.Clear();
            if (conflicts.Count == 0)
            {
                return;
            }
        }

        Fail(root, key, new DbUpdateConcurrencyException($"The row kept changing during {_options.MaxAttemptsPerRow} attempts; run the job again to process it."));
    }

    /// <summary>Decides what a record needs; null when nothing (already done). Calls the provider for new keys.</summary>
    private async Task<Planned?> PlanAsync(EntityEntry entry, JobKeyring keyring, CancellationToken cancellationToken)
    {
        var encrypted = _runtime.Find(entry.Metadata);
        if (encrypted is null || _operation == LifecycleOperation.Verify)
        {
            return null;
        }

        var isJson = entry.Metadata.IsMappedToJson();
        var table = isJson ? null : Table(entry.Metadata);
        var storedKey = (byte[]?)entry.Property(encrypted.KeyProperty.Name).OriginalValue;
        var hasLegacy = encrypted.Properties.Any(p => p.LegacyPlaintext is { } legacy && entry.Property(legacy.Name).OriginalValue is not null);
        switch (_operation)
        {
            case LifecycleOperation.EncryptLegacyPlaintext when !hasLegacy:
            case LifecycleOperation.Rotate when storedKey is null:
                return null;
        }

        var selector = _runtime.Settings.KeySelector;
        var target = _options.TargetKeyId
            ?? (selector is null ? null : selector(SaveEncryption.SelectorSubject(entry.GetInfrastructure())))
            ?? _runtime.Provider.PrimaryKeyId;
        if (_operation == LifecycleOperation.Rotate)
        {
            if (!WrappedKeyBlob.TryParse(storedKey!, out var blob, out var error))
            {
                throw new EnvelopeDecryptionException(error!, encrypted.Name);
            }

            var direct = _runtime.Settings.Mode == KeyWrappingMode.Direct;
            // Already under the target: named as the target, or (an AWS alias target: rows record key ARNs) the same
            // key under the name records under the target carry. A record naming the alias itself, as older versions
            // wrote them, is the same key under another name: it is rewritten to name the key ARN.
            if (blob.ProviderName == _runtime.Provider.Name && (blob.Mode == EnvelopeFormat.ModeDirect) == direct
                && (blob.KeyId == target
                    || (await _runtime.KeyNames.IsSameAsync(blob.KeyId, target, encrypted.Name, cancellationToken).ConfigureAwait(false)
                        && blob.KeyId == await keyring.RecordedKeyIdAsync(encrypted.Name, target, cancellationToken).ConfigureAwait(false))))
            {
                return null;
            }

            // A record moved to any master key but the provider's primary (a selector's per-subject key, or such a
            // TargetKeyId) gets a fresh data key and record id. Rewrapping would keep the data key: a backup of the key
            // column from before the move, opened with the old master key (still live for other records), would then
            // decrypt the record's current and future values after the subject's own key is destroyed. Plain rotation
            // to the primary replaces the old key for everyone, so it keeps the data key and rewrites one column.
            var movesToSubjectKey = target != _runtime.Provider.PrimaryKeyId;
            if (blob.Mode == EnvelopeFormat.ModeCachedKek && !direct && !movesToSubjectKey)
            {
                // The record's KEK was unwrapped when the batch was read, so this is a cache hit.
                var from = await _runtime.Cache.GetAsync(encrypted.Name, blob, encrypted.LastKey, cancellationToken).ConfigureAwait(false);
                try
                {
                    var to = await keyring.ReserveAsync(encrypted.Name, target, cancellationToken).ConfigureAwait(false);
                    var newKey = KeyRewrap.Rewrap(encrypted, blob, from, to, _runtime.Random);
                    return isJson
                        ? new Planned(entry, newKey, fields: null)
                        : new Planned(table!.ReplaceKey(entry, newKey));
                }
                finally
                {
                    from.Release();
                }
            }

            // A data key the provider wrapped directly cannot be rewrapped without a provider call per row; and moving
            // between modes changes the blob's shape. Either way the record gets a fresh data key, as re-encryption does.
        }

        var fields = new byte[]?[encrypted.Properties.Length];
        var binding = encrypted.BindingOf(p => entry.Property(p.Name).CurrentValue, known: _ => true);
        byte[] wrapped;
        if (_runtime.Settings.Mode == KeyWrappingMode.Direct)
        {
            var recordId = new byte[EnvelopeFormat.RecordIdSize];
            _runtime.Random.Fill(recordId);
            using var dataKey = await _runtime.Gateway.GenerateDataKeyAsync(target, _runtime.Cache.ContextFor(encrypted.Name, recordId, direct: true), cancellationToken).ConfigureAwait(false);
            wrapped = encrypted.EncryptNewDirect(entry.Entity, dataKey, recordId, _runtime.Provider.Name, _runtime.Random, fields, binding);
        }
        else
        {
            var kek = await keyring.ReserveAsync(encrypted.Name, target, cancellationToken).ConfigureAwait(false);
            wrapped = encrypted.EncryptNew(entry.Entity, kek, _runtime.Random, fields, binding);
        }

        if (isJson)
        {
            return new Planned(entry, wrapped, fields);
        }

        var plaintext = encrypted.Properties.Select(p => p.Capture(entry.Entity)).ToArray();
        return new Planned(table!.ReplaceRecord(entry, wrapped, fields, plaintext));
    }

    /// <summary>The root entity's record and those of its owned entities (each has its own wrapped key).</summary>
    private IEnumerable<EntityEntry> Records(object root)
    {
        var pending = new Stack<EntityEntry>();
        pending.Push(_context.Entry(root));
        while (pending.TryPop(out var entry))
        {
            yield return entry;
            foreach (var navigation in entry.Navigations)
            {
                if (navigation.Metadata is not INavigation { ForeignKey.IsOwnership: true, IsOnDependent: false } || navigation.CurrentValue is not { } value)
                {
                    continue;
                }

                if (value is IEnumerable items && navigation.Metadata.IsCollection)
                {
                    foreach (var item in items)
                    {
                        pending.Push(_context.Entry(item));
                    }
                }
                else
                {
                    pending.Push(_context.Entry(value));
                }
            }
        }
    }

    /// <summary>The root entity types the job processes, in order.</summary>
    internal List<IEntityType> SelectRoots()
    {
        var model = _context.Model;
        List<IEntityType> roots;
        if (_options.EntityTypes.Count == 0)
        {
            roots = [.. model.GetEntityTypes().Where(t => !t.IsOwned() && t.BaseType is null && Aggregate(t).Any(a => _runtime.Find(a) is not null))];
        }
        else
        {
            roots = [.. _options.EntityTypes.Select(clr =>
            {
                var type = model.FindEntityType(clr) ?? throw new ArgumentException($"Type '{clr.Name}' is not an entity type of context '{_context.GetType().Name}'.", nameof(_options));
                return type.IsOwned()
                    ? throw new ArgumentException($"Type '{clr.Name}' is owned: choose its owner, whose job processes it.", nameof(_options))
                    : type.GetRootType();
            }).Distinct()];
        }

        return [.. roots.OrderBy(r => r.Name, StringComparer.Ordinal)];
    }

    /// <summary>A root entity type's hierarchy and every owned type reachable from it.</summary>
    private static IEnumerable<IEntityType> Aggregate(IEntityType root)
    {
        var pending = new Stack<IEntityType>(root.GetDerivedTypesInclusive());
        var seen = new HashSet<IEntityType>();
        while (pending.TryPop(out var type))
        {
            if (!seen.Add(type))
            {
                continue;
            }

            yield return type;
            foreach (var navigation in type.GetNavigations().Where(n => n.ForeignKey.IsOwnership && !n.IsOnDependent))
            {
                pending.Push(navigation.TargetEntityType);
            }
        }
    }

    private RecordTable Table(IEntityType type)
    {
        if (!_tables.TryGetValue(type, out var table))
        {
            _tables[type] = table = new RecordTable(_runtime.Find(type)!, _context.GetService<ISqlGenerationHelper>());
        }

        return table;
    }

    private object?[] KeyOf(IPager pager, object entity)
    {
        var entry = _context.Entry(entity);
        return [.. pager.KeyProperties.Select(p => entry.Property(p.Name).CurrentValue)];
    }

    private void Fail(IEntityType root, object?[] key, Exception error)
    {
        // The key values were read from the row: a forged one must not break the log line it is written to.
        var text = UntrustedText.Escape(string.Join(", ", key.Select(k => Convert.ToString(k, CultureInfo.InvariantCulture))))!;
        _result.FailureList.Add(new LifecycleFailure(root.DisplayName(), text, error.Message, error.GetType().Name));
        Log.RowFailed(_logger, _operation, root.DisplayName(), text, error.GetType().Name, error.Message);
    }

    // Errors that belong to one row: its data or its master key. Anything else (connection lost, cancelled) stops the job.
    private static bool IsRecordError(Exception ex) => ex is EnvelopeDecryptionException or MasterKeyException;

    /// <summary>A record's planned write: a compare-and-swap UPDATE, or for a JSON-mapped record its entry.</summary>
    private sealed class Planned
    {
        public Planned(RecordWrite write) => Write = write;

        /// <summary>A JSON-mapped record, written through SaveChanges with the rest of its batch.</summary>
        /// <param name="json">The record's entry.</param>
        /// <param name="wrappedKey">Its new wrapped-key blob, made with the job's own keys.</param>
        /// <param name="fields">Its new ciphertexts, or null when only the key is rewrapped.</param>
        public Planned(EntityEntry json, byte[] wrappedKey, byte[]?[]? fields)
        {
            Json = json;
            WrappedKey = wrappedKey;
            Fields = fields;
        }

        public RecordWrite? Write { get; }

        public EntityEntry? Json { get; }

        public byte[]? WrappedKey { get; }

        public byte[]?[]? Fields { get; }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 100, EventName = "LifecycleStarted", Level = LogLevel.Information,
            Message = "Key lifecycle job {Operation} started: {EntityTypes} entity types, {RowsTotal} rows")]
        public static partial void Started(ILogger logger, LifecycleOperation operation, int entityTypes, long rowsTotal);

        [LoggerMessage(EventId = 101, EventName = "LifecycleFinished", Level = LogLevel.Information,
            Message = "Key lifecycle job {Operation} {Outcome}: {RowsExamined} rows examined, {RecordsChanged} records changed, {RecordsAlreadyDone} already done, {ConflictsRetried} conflicts retried, {Failures} failed, {Batches} batches, {KeysGenerated} keys generated, {Seconds:F1} s")]
        public static partial void Finished(ILogger logger, LifecycleOperation operation, string outcome, long rowsExamined, long recordsChanged, long recordsAlreadyDone, long conflictsRetried, int failures, int batches, int keysGenerated, double seconds);

        [LoggerMessage(EventId = 102, EventName = "LifecycleRowFailed", Level = LogLevel.Warning,
            Message = "Key lifecycle job {Operation} left row {Entity} ({Key}) unchanged: {ErrorType}: {Error}")]
        public static partial void RowFailed(ILogger logger, LifecycleOperation operation, string entity, string key, string errorType, string error);
    }
}

/// <summary>Where a job got to: finished root types, and the last committed key of the current one; JSON text.</summary>
internal sealed class Checkpoint
{
    private readonly JsonArray? _after;

    private Checkpoint(LifecycleOperation operation, IReadOnlyCollection<string> done, string? entity, JsonArray? after)
    {
        Operation = operation;
        Done = done;
        Entity = entity;
        _after = after;
    }

    public LifecycleOperation Operation { get; }

    public IReadOnlyCollection<string> Done { get; }

    public string? Entity { get; }

    public static Checkpoint Parse(string? text, LifecycleOperation operation)
    {
        if (string.IsNullOrEmpty(text))
        {
            return new Checkpoint(operation, [], null, null);
        }

        try
        {
            var node = JsonNode.Parse(text)!.AsObject();
            var recorded = Enum.Parse<LifecycleOperation>((string)node["operation"]!);
            if (recorded != operation)
            {
                throw new ArgumentException($"The checkpoint is from a {recorded} job, not {operation}.", nameof(text));
            }

            return new Checkpoint(operation, [.. node["done"]!.AsArray().Select(n => (string)n!)], (string?)node["entity"], node["after"]?.AsArray());
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or NullReferenceException or FormatException)
        {
            throw new ArgumentException("The checkpoint is not one a lifecycle job wrote.", nameof(text), ex);
        }
    }

    public object?[]? After(IReadOnlyList<IProperty> keyProperties) =>
        _after is null ? null : [.. keyProperties.Select((p, i) => _after[i].Deserialize(p.ClrType))];

    public Checkpoint At(string entity, IReadOnlyList<IProperty> keyProperties, object?[] key) =>
        new(Operation, Done, entity, [.. keyProperties.Select((p, i) => JsonSerializer.SerializeToNode(key[i], p.ClrType))]);

    /// <summary>A primary key as JSON text, each value serialized by its property's CLR type (as in a checkpoint).</summary>
    public static string KeyText(IReadOnlyList<IProperty> keyProperties, object?[] key) =>
        new JsonArray([.. keyProperties.Select((p, i) => JsonSerializer.SerializeToNode(key[i], p.ClrType))]).ToJsonString();

    /// <summary>The primary key <see cref="KeyText"/> wrote.</summary>
    public static object?[] ParseKey(IReadOnlyList<IProperty> keyProperties, string text)
    {
        var values = JsonNode.Parse(text)!.AsArray();
        return [.. keyProperties.Select((p, i) => values[i].Deserialize(p.ClrType))];
    }

    public Checkpoint Finished(string entity) => new(Operation, [.. Done, entity], null, null);

    public override string ToString() => new JsonObject
    {
        ["operation"] = Operation.ToString(),
        ["done"] = new JsonArray([.. Done.Select(d => (JsonNode?)JsonValue.Create(d))]),
        ["entity"] = Entity,
        ["after"] = _after?.DeepClone(),
    }.ToJsonString();
}
