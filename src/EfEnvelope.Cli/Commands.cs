using System.CommandLine;
using System.Runtime.InteropServices;
using EfEnvelope.Lifecycle;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Cli;

/// <summary>The verbs of <c>efenvelope</c> and what they share: finding the application's context, output, exit codes, interruption.</summary>
internal static class Commands
{
    private static readonly Option<string> AssemblyOption = new("--assembly", "-a")
    {
        Description = "The application's built assembly (bin/<configuration>/<framework>/App.dll). Run from the application's folder, as its configuration expects.",
        Required = true,
        Recursive = true,
    };

    private static readonly Option<string?> ContextOption = new("--context", "-c") { Description = "The DbContext class (name or full name) when the application has several.", Recursive = true };

    private static readonly Option<bool> JsonOption = new("--json") { Description = "Write the result as one JSON document on standard output (messages and progress go to standard error).", Recursive = true };

    private static readonly Option<int> HostTimeoutOption = new("--host-timeout") { Description = "Seconds to wait for the application to build its host.", DefaultValueFactory = _ => 60, Recursive = true };

    private static readonly Option<string[]> EntityOption = new("--entity", "-e") { Description = "Entity types to process (class name); all encrypted types when omitted.", AllowMultipleArgumentsPerToken = true };

    private static readonly Option<int> BatchSizeOption = new("--batch-size") { Description = "Rows per batch; each batch commits in its own transaction.", DefaultValueFactory = _ => 500 };

    private static readonly Option<string?> CheckpointOption = new("--checkpoint") { Description = "Checkpoint file, written after every committed batch (default: .efenvelope-<verb>.checkpoint in the current folder). When it exists, the job resumes from it." };

    private static readonly Option<bool> RestartOption = new("--restart") { Description = "Ignore (and delete) an existing checkpoint file and start from the first row." };

    private static readonly Option<string?> TargetKeyOption = new("--target-key") { Description = "The master key to wrap data keys under (default: what a new record would get)." };

    private static readonly Option<bool> VerifyOption = new("--verify") { Description = "Decrypt every row afterwards and report any that fail." };

    private static readonly Option<string?> JobNameOption = new("--job-name") { Description = "Run as one worker of a job shared by several processes through the database (table EfEnvelopeJobPartitions): start the same command, with the same name, in each. No checkpoint file: partitions keep their own." };

    private static readonly Option<int> PartitionsOption = new("--partitions") { Description = "With --job-name: key ranges per entity type, decided by the first worker.", DefaultValueFactory = _ => 16 };

    private static readonly Option<string?> WorkerIdOption = new("--worker-id") { Description = "With --job-name: this worker's name in the partition table (default: host, process id and a random suffix)." };

    private static readonly Option<int> LeaseSecondsOption = new("--lease-seconds") { Description = "With --job-name: seconds without a committed batch after which another worker takes this one's partition over.", DefaultValueFactory = _ => 120 };

    private static readonly Option<string?> RetiringKeyOption = new("--retiring-key") { Description = "Exit with 0 only if no stored row and no blind index key needs this master key any more." };

    public static RootCommand Build(string[] applicationArguments)
    {
        var root = new RootCommand("Operates on the encrypted data of an EfEnvelope application, through the application's own DbContext.");
        root.Options.Add(AssemblyOption);
        root.Options.Add(ContextOption);
        root.Options.Add(JsonOption);
        root.Options.Add(HostTimeoutOption);

        var inventory = new Command("inventory", "Per entity type: rows by master key, wrapping mode and format version, distinct key-encryption keys, rows still holding legacy plaintext. Decrypts nothing.");
        inventory.Options.Add(RetiringKeyOption);
        inventory.SetAction((parse, token) => RunAsync(parse, applicationArguments, (db, output, interrupt) => InventoryAsync(db, parse, output, interrupt.Token), token));
        root.Subcommands.Add(inventory);

        root.Subcommands.Add(Job("rotate", "Rewraps every data key under the target master key (field ciphertext is not rewritten).", LifecycleOperation.Rotate, applicationArguments));
        root.Subcommands.Add(Job("reencrypt", "Gives every record a fresh data key and new ciphertext.", LifecycleOperation.Reencrypt, applicationArguments));
        root.Subcommands.Add(Job("encrypt-legacy", "Encrypts values still held in legacy plaintext columns and empties those columns.", LifecycleOperation.EncryptLegacyPlaintext, applicationArguments));
        root.Subcommands.Add(Job("verify", "Decrypts every record and reports each row that fails; changes nothing.", LifecycleOperation.Verify, applicationArguments));

        var rebuild = new Command("rebuild-indexes", "Recomputes the blind indexes of every searchable entity type under the configured index key.");
        rebuild.Options.Add(EntityOption);
        rebuild.Options.Add(BatchSizeOption);
        rebuild.SetAction((parse, token) => RunAsync(parse, applicationArguments, (db, output, interrupt) => RebuildIndexesAsync(db, parse, output, interrupt.Token), token));
        root.Subcommands.Add(rebuild);
        return root;
    }

    private static Command Job(string name, string description, LifecycleOperation operation, string[] applicationArguments)
    {
        var command = new Command(name, description);
        command.Options.Add(EntityOption);
        command.Options.Add(BatchSizeOption);
        command.Options.Add(CheckpointOption);
        command.Options.Add(RestartOption);
        if (operation != LifecycleOperation.Verify)
        {
            command.Options.Add(TargetKeyOption);
            command.Options.Add(VerifyOption);
            command.Options.Add(JobNameOption);
            command.Options.Add(PartitionsOption);
            command.Options.Add(WorkerIdOption);
            command.Options.Add(LeaseSecondsOption);
        }

        command.SetAction((parse, token) => RunAsync(parse, applicationArguments, (db, output, interrupt) => JobCommand.RunAsync(db, operation, parse, output, interrupt), token));
        return command;
    }

    public static List<Type> EntityTypes(DbContext db, ParseResult parse) =>
        [.. (parse.GetValue(EntityOption) ?? []).Select(name =>
        {
            var matches = db.Model.GetEntityTypes().Where(t => !t.IsOwned() && (t.ClrType.Name == name || t.ClrType.FullName == name || t.DisplayName() == name)).ToList();
            return matches is [var match]
                ? match.ClrType
                : throw new UsageException($"'{name}' names {(matches.Count == 0 ? "no" : "more than one")} entity type of {db.GetType().Name}; its entity types: {string.Join(", ", db.Model.GetEntityTypes().Where(t => !t.IsOwned()).Select(t => t.DisplayName()).Order())}.");
        })];

    public static int BatchSize(ParseResult parse) => parse.GetValue(BatchSizeOption);

    public static string CheckpointPath(ParseResult parse, string verb) =>
        Path.GetFullPath(parse.GetValue(CheckpointOption) ?? $".efenvelope-{verb}.checkpoint");

    public static bool Restart(ParseResult parse) => parse.GetValue(RestartOption);

    public static string? TargetKey(ParseResult parse) => parse.GetValue(TargetKeyOption);

    public static bool VerifyAfterwards(ParseResult parse) => parse.GetValue(VerifyOption);

    /// <summary>The settings of a worker of a partitioned job, or null when the command runs the job alone.</summary>
    public static PartitionedJobOptions? PartitionedJob(ParseResult parse)
    {
        if (parse.GetValue(JobNameOption) is not { } name)
        {
            return null;
        }

        if (parse.GetValue(VerifyOption) || parse.GetValue(CheckpointOption) is not null || parse.GetValue(RestartOption))
        {
            throw new UsageException("--job-name runs one worker of a shared job: partitions keep their own checkpoints, and verification belongs after every worker has finished (run verify once then). Leave out --verify, --checkpoint and --restart.");
        }

        try
        {
            var options = new PartitionedJobOptions(name)
            {
                Partitions = parse.GetValue(PartitionsOption),
                LeaseDuration = TimeSpan.FromSeconds(parse.GetValue(LeaseSecondsOption)),
            };
            if (parse.GetValue(WorkerIdOption) is { } worker)
            {
                options.WorkerId = worker;
            }

            return options;
        }
        catch (ArgumentException ex)
        {
            throw new UsageException(ex.Message);
        }
    }

    private static async Task<int> RunAsync(ParseResult parse, string[] applicationArguments, Func<DbContext, Output, Interrupt, Task<int>> work, CancellationToken invocationToken)
    {
        var output = new Output(Console.Out, Console.Error, parse.GetValue(JsonOption), !Console.IsOutputRedirected);
        using var interrupt = new Interrupt(invocationToken);

        // The application's console logging must not mix with a JSON result: everything below Critical goes to stderr.
        Environment.SetEnvironmentVariable("Logging__Console__LogToStandardErrorThreshold", Environment.GetEnvironmentVariable("Logging__Console__LogToStandardErrorThreshold") ?? "Trace");
        try
        {
            await using var loader = ApplicationLoader.Load(parse.GetValue(AssemblyOption)!);
            var db = loader.CreateContext(parse.GetValue(ContextOption), applicationArguments, TimeSpan.FromSeconds(parse.GetValue(HostTimeoutOption)));
            return await work(db, output, interrupt);
        }
        catch (OperationCanceledException) when (interrupt.Requested)
        {
            output.Error("Interrupted.");
            return ExitCodes.Interrupted;
        }
        catch (UsageException ex)
        {
            output.Error(ex.Message);
            return ExitCodes.UsageOrConfiguration;
        }
        catch (MasterKeyAccessRevokedException ex)
        {
            output.Error($"Master key access revoked: {ex.Message}");
            return ExitCodes.KeyRevoked;
        }
        catch (MasterKeyConfigurationException ex)
        {
            output.Error($"Master key configuration: {ex.Message}");
            return ExitCodes.UsageOrConfiguration;
        }
        catch (MasterKeyException ex)
        {
            output.Error($"Master-key provider unavailable: {ex.Message}");
            return ExitCodes.ProviderUnavailable;
        }
        catch (Exception ex) when (ex is InvalidOperationException or NotSupportedException or ArgumentException or FileLoadException)
        {
            // EF and EfEnvelope configuration errors, a checkpoint of another job, a version mismatch with the application.
            output.Error($"{ex.GetType().Name}: {ex.Message}");
            return ExitCodes.UsageOrConfiguration;
        }
    }

    private static async Task<int> InventoryAsync(DbContext db, ParseResult parse, Output output, CancellationToken cancellationToken)
    {
        var inventory = await EnvelopeKeyLifecycle.InventoryAsync(db, cancellationToken);
        var retiring = parse.GetValue(RetiringKeyOption);
        var stillNeeded = retiring is not null && inventory.StillNeeds(retiring);
        output.Say($"Provider {inventory.Provider}, primary master key {inventory.PrimaryKeyId}.");
        foreach (var entity in inventory.Entities)
        {
            output.Say($"{entity.Entity} (table {entity.Table}): {entity.Rows} rows, {entity.RowsWithoutKey} without encrypted data, {entity.LegacyPlaintextRows} still holding legacy plaintext, {entity.UnreadableRows} unreadable");
            output.Say($"  by master key: {Counts(entity.ByMasterKey)}");
            output.Say($"  by wrapping mode: {Counts(entity.ByWrappingMode)}; by format version: {Counts(entity.ByFormatVersion.ToDictionary(p => "v" + p.Key, p => p.Value))}; distinct key-encryption keys: {entity.DistinctKeyEncryptionKeys}");
        }

        if (inventory.BlindIndexMasterKeyId is { } indexKey)
        {
            output.Say($"The blind index key is wrapped under master key {indexKey}.");
        }

        if (retiring is not null)
        {
            output.Say(stillNeeded
                ? $"Master key {retiring} is still needed: do not disable it yet (rotate, and move the blind index key, first)."
                : $"Nothing stored needs master key {retiring}: it can be disabled as far as this database is concerned.");
        }

        output.Result(new { inventory.Provider, inventory.PrimaryKeyId, inventory.BlindIndexMasterKeyId, inventory.Entities, RetiringKey = retiring, StillNeeded = retiring is null ? (bool?)null : stillNeeded });
        return stillNeeded ? ExitCodes.RowsFailed : ExitCodes.Success;
    }

    private static async Task<int> RebuildIndexesAsync(DbContext db, ParseResult parse, Output output, CancellationToken cancellationToken)
    {
        var chosen = EntityTypes(db, parse);
        var inventory = await EnvelopeKeyLifecycle.InventoryAsync(db, cancellationToken);
        var roots = inventory.Entities
            .Where(e => e.HasBlindIndexes)
            .Select(e => Root(db.Model.GetEntityTypes().Single(t => t.DisplayName() == e.Entity)))
            .Distinct()
            .Where(r => chosen.Count == 0 || chosen.Contains(r.ClrType))
            .OrderBy(r => r.Name, StringComparer.Ordinal)
            .ToList();
        var rebuild = typeof(BlindIndexDbContextExtensions).GetMethod(nameof(BlindIndexDbContextExtensions.RebuildBlindIndexesAsync))!;
        var results = new List<object>();
        foreach (var root in roots)
        {
            output.Say($"Rebuilding the blind indexes of {root.DisplayName()}...");
            var records = await (Task<int>)rebuild.MakeGenericMethod(root.ClrType).Invoke(null, [db, BatchSize(parse), cancellationToken])!;
            output.Say($"{root.DisplayName()}: {records} records re-indexed.");
            results.Add(new { Entity = root.DisplayName(), Records = records });
        }

        if (roots.Count == 0)
        {
            output.Say("No entity type has searchable properties: nothing to rebuild.");
        }

        output.Result(new { Entities = results });
        return ExitCodes.Success;
    }

    private static IEntityType Root(IEntityType type)
    {
        while (type.FindOwnership() is { } ownership)
        {
            type = ownership.PrincipalEntityType;
        }

        return type.GetRootType();
    }

    private static string Counts<TKey>(IEnumerable<KeyValuePair<TKey, long>> counts) =>
        counts.Any() ? string.Join(", ", counts.Select(p => $"{p.Key} {p.Value}")) : "none";
}

/// <summary>Turns Ctrl+C and SIGTERM into a cancellation the jobs honour after their current batch.</summary>
internal sealed class Interrupt : IDisposable
{
    private readonly CancellationTokenSource _source;
    private readonly PosixSignalRegistration[] _signals;

    public Interrupt(CancellationToken outer)
    {
        _source = CancellationTokenSource.CreateLinkedTokenSource(outer);
        _signals = [PosixSignalRegistration.Create(PosixSignal.SIGINT, Handle), PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handle)];
    }

    public CancellationToken Token => _source.Token;

    public bool Requested => _source.IsCancellationRequested;

    public void Dispose()
    {
        foreach (var signal in _signals)
        {
            signal.Dispose();
        }

        _source.Dispose();
    }

    private void Handle(PosixSignalContext context)
    {
        // Keep the process alive: the job stops after the batch in progress, whose transaction commits or rolls back whole.
        context.Cancel = true;
        _source.Cancel();
    }
}
