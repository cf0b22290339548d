using EfEnvelope.KeyManagement;
using Microsoft.Extensions.Logging;

namespace EfEnvelope;

/// <summary>How a record's data key is protected.</summary>
public enum KeyWrappingMode
{
    /// <summary>
    /// Data keys are wrapped locally under a key-encryption key that the provider generated and that is cached;
    /// one provider call serves many records. The default.
    /// </summary>
    CachedKeyEncryptionKey = 0,

    /// <summary>
    /// Every record's data key is wrapped by the provider itself: one provider call per record written and per
    /// record read with a cold cache. For policies that require the textbook envelope; much slower with a remote KMS.
    /// </summary>
    Direct = 1,
}

/// <summary>Chooses the master key for one record, for per-tenant or per-subject keys (crypto-shredding).</summary>
/// <param name="entity">The entity instance being saved; for an owned type, the entity that owns it (its root owner).</param>
/// <returns>A key id the provider has configured, or null for the provider's primary key.</returns>
public delegate string? MasterKeySelector(object entity);

/// <summary>How reads check a master-key selector's choice; passed to <see cref="EnvelopeEncryptionOptionsBuilder.UseMasterKeySelector(MasterKeySelector, Action{MasterKeySelectorOptions})"/>.</summary>
public sealed class MasterKeySelectorOptions
{
    internal MasterKeySelector? Previous { get; private set; }

    /// <summary>
    /// While records move to the keys the selector now chooses, reads also accept a record under the key
    /// <paramref name="previous"/> chooses for its row.
    /// </summary>
    /// <param name="previous">
    /// The selector the application used before (a stable delegate); one that returns null for every entity accepts the
    /// provider's primary key, for records written before any selector was configured.
    /// </param>
    /// <returns>These options.</returns>
    /// <remarks>
    /// <para>
    /// For a deliberate change of the selector's choice for existing rows: a tenant given a key of its own, a subject
    /// moved off a key about to be destroyed, a per-tenant key replaced. Configure the old selector here, run
    /// <c>EnvelopeKeyLifecycle.RotateAsync</c> (it moves every record to the key the current selector chooses), then
    /// remove this option: from then on a record under the old key is refused again.
    /// </para>
    /// <para>
    /// While it is configured, a record under the key the previous selector chooses for a row reads in that row, so a
    /// record copied between two rows to which the previous selector gave one key (the primary key, when records are
    /// moving onto their first per-tenant keys) is not refused. Keep the move short.
    /// </para>
    /// </remarks>
    public MasterKeySelectorOptions AcceptPreviousSelector(MasterKeySelector previous)
    {
        ArgumentNullException.ThrowIfNull(previous);
        Previous = previous;
        return this;
    }
}

/// <summary>Configures envelope encryption: the master-key provider, the wrapping mode and the key cache.</summary>
/// <remarks>
/// Two option sets that are equal (same provider instance or equal provider configuration, same settings) share one
/// key cache and one set of interceptors, so create providers once (a singleton) rather than per context.
/// </remarks>
public sealed class EnvelopeEncryptionOptionsBuilder
{
    private readonly EnvelopeEncryptionSettings _settings;

    internal EnvelopeEncryptionOptionsBuilder(EnvelopeEncryptionSettings? settings = null) => _settings = settings ?? new EnvelopeEncryptionSettings();

    internal EnvelopeEncryptionSettings Settings => _settings;

    /// <summary>Uses the given master-key provider; other assemblies plug in through this method.</summary>
    /// <remarks>Pass the same instance to every context (register it as a singleton) so that they share a cache.</remarks>
    public EnvelopeEncryptionOptionsBuilder UseProvider(IMasterKeyProvider provider)
    {
        ArgumentNullException.ThrowIfNull(provider);
        _settings.Provider = provider;
        return this;
    }

    /// <summary>Uses an in-memory master key: for tests and local development only, never production.</summary>
    /// <param name="provider">The provider; create it once and reuse it, since its keys live only in that instance.</param>
    public EnvelopeEncryptionOptionsBuilder UseInsecureInMemoryMasterKey(InsecureInMemoryMasterKeyProvider provider) =>
        UseProvider(provider);

    /// <summary>Chooses how data keys are wrapped.</summary>
    /// <remarks>The default is <see cref="KeyWrappingMode.CachedKeyEncryptionKey"/>.</remarks>
    public EnvelopeEncryptionOptionsBuilder UseKeyWrappingMode(KeyWrappingMode mode)
    {
        if (!Enum.IsDefined(mode))
        {
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "Unknown key wrapping mode.");
        }

        _settings.Mode = mode;
        return this;
    }

    /// <summary>Names the application in every provider call's context (the KMS encryption context, audit logs).</summary>
    /// <remarks>The default is <c>efenvelope</c>. Changing it makes existing rows unreadable: it is bound to every wrapped key.</remarks>
    public EnvelopeEncryptionOptionsBuilder UseApplicationName(string applicationName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(applicationName);
        _settings.ApplicationName = applicationName;
        return this;
    }

    /// <summary>Configures the key cache bounds.</summary>
    public EnvelopeEncryptionOptionsBuilder ConfigureKeyCache(Action<KeyCacheOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        configure(_settings.Cache);
        return this;
    }

    /// <summary>Chooses the master key per record (per tenant or data subject) for new data keys, and checks it on reads.</summary>
    /// <param name="selector">Chooses the key; a stable delegate (a static method or a cached instance): it is part of the configuration's identity.</param>
    /// <remarks>
    /// <para>
    /// Every entity read is checked once EF has set its properties: the master key its key column names must be the
    /// one the selector chooses for it (compared by the provider through <see cref="IMasterKeyProvider.IsSameKeyAsync"/>,
    /// so an AWS KMS alias matches the key ARN the row stores). Otherwise the read fails with
    /// <see cref="EnvelopeDecryptionException"/>: a record copied into another tenant's row, or a row whose tenant
    /// column was changed, does not read as that tenant's. Lifecycle jobs read through the same check and report such a
    /// row as a failure without writing it. A record of an owned type is checked against the key the selector chooses
    /// for its root owner, once EF has materialized that owner (a query without tracking that projects an owned member
    /// without its owner is refused with <see cref="InvalidOperationException"/>: select the owner). A record read, edited so that the selector chooses another key (its
    /// tenant column), and saved gets a fresh data key under that key, with its owned records.
    /// </para>
    /// <para>
    /// When the selector's choice for existing rows changes on purpose (a tenant's new key), records not yet moved are
    /// refused: use the overload with <see cref="MasterKeySelectorOptions.AcceptPreviousSelector"/> while
    /// <c>EnvelopeKeyLifecycle.RotateAsync</c> moves them (docs/KEY-MANAGEMENT.md).
    /// </para>
    /// </remarks>
    /// <returns>This builder.</returns>
    public EnvelopeEncryptionOptionsBuilder UseMasterKeySelector(MasterKeySelector selector) => UseMasterKeySelector(selector, _ => { });

    /// <summary>Chooses the master key per record, as <see cref="UseMasterKeySelector(MasterKeySelector)"/>, with options for the read check.</summary>
    /// <param name="selector">Chooses the key; a stable delegate.</param>
    /// <param name="configure">Tunes the read check (<see cref="MasterKeySelectorOptions.AcceptPreviousSelector"/>).</param>
    /// <returns>This builder.</returns>
    public EnvelopeEncryptionOptionsBuilder UseMasterKeySelector(MasterKeySelector selector, Action<MasterKeySelectorOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(selector);
        ArgumentNullException.ThrowIfNull(configure);
        var options = new MasterKeySelectorOptions();
        configure(options);
        _settings.KeySelector = selector;
        _settings.PreviousKeySelector = options.Previous;
        return this;
    }

    /// <summary>
    /// Refuses records without a record seal: format version 1 records, and rows whose key column is NULL; for once every
    /// table has been upgraded.
    /// </summary>
    /// <remarks>
    /// Both are read by default so that existing databases keep working, and neither is bound to its row: a database
    /// writer can move a version 1 record onto another row, NULL a value or write back an older one, and can erase a
    /// record by setting its key column and every nullable value to NULL (an empty value in a required column reads as
    /// the type's default, as a migration leaves it) (docs/SECURITY.md). Every record written since format version 2 has
    /// a sealed key column, even when all its values are NULL, except an optional owned or table-split record without
    /// any value, which is stored as NULLs (as plain EF stores it) and reads as absent. Upgrade every table first with
    /// <c>EnvelopeKeyLifecycle.ReencryptAsync</c> under a configuration without this option (it seals rows without a key
    /// too; <c>EnvelopeKeyLifecycle.InventoryAsync</c> counts rows per format version), then turn this on: such a record
    /// then fails with <see cref="EnvelopeDecryptionException"/>.
    /// </remarks>
    public EnvelopeEncryptionOptionsBuilder RequireSealedRecords()
    {
        _settings.RequireSealedRecords = true;
        return this;
    }

    /// <summary>
    /// Binds records whose key the database generates (identity columns, an owned collection's generated ordinal) to
    /// that key in the save that inserts them, instead of on their next write.
    /// </summary>
    /// <remarks>
    /// <para>
    /// A record is sealed before EF sends its <c>INSERT</c>, so without this option a key the database generates is not
    /// in its seal until the record is next written: until then a database writer can move the record's encrypted
    /// columns and key column into another row of the table and they read there (docs/SECURITY.md). With it, once
    /// the inserts have returned their keys, each such record's seal is computed again over its key and written by
    /// one <c>UPDATE</c> of its key column, in the same transaction as the inserts: the save is atomic, and a retrying
    /// execution strategy retries the whole of it.
    /// </para>
    /// <para>
    /// Cost: one more statement per inserted record whose key the database generates (sent past EF's command
    /// interceptors, batched where the provider has ADO.NET batches), and a transaction around the save (one begun for
    /// it, or the application's, with a savepoint). Refused before anything is written: a context with
    /// <c>AutoTransactionBehavior.Never</c> and no open transaction, and types with a column the database sets on
    /// update (a row version), updated through a stored procedure, or whose key column is not in a table with their
    /// primary key. Records inserted before the option was turned on are bound on their next write, or by
    /// <c>EnvelopeKeyLifecycle.ReencryptAsync</c>.
    /// </para>
    /// </remarks>
    public EnvelopeEncryptionOptionsBuilder BindStoreGeneratedKeys()
    {
        _settings.BindStoreGeneratedKeys = true;
        return this;
    }

    /// <summary>Bounds how long one provider call may take before it is cancelled.</summary>
    /// <remarks>The default is 30 seconds. The caller's <see cref="CancellationToken"/> is honoured as well.</remarks>
    public EnvelopeEncryptionOptionsBuilder UseProviderTimeout(TimeSpan timeout)
    {
        if (timeout <= TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "The provider timeout must be positive or infinite.");
        }

        _settings.ProviderTimeout = timeout;
        return this;
    }

    /// <summary>Sends provider-call events to this logger factory.</summary>
    /// <remarks>
    /// Rarely needed: by default events go to the logger factory set on the DbContext options before
    /// <c>UseEnvelopeEncryption</c>, else to the application's logging when the context is registered with
    /// <c>AddDbContext</c>, <c>AddDbContextPool</c> or <c>AddDbContextFactory</c>.
    /// </remarks>
    public EnvelopeEncryptionOptionsBuilder UseLoggerFactory(ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(loggerFactory);
        _settings.LoggerFactory = loggerFactory;
        return this;
    }

    /// <summary>Configures the wrapped index key that searchable properties' blind indexes are derived from.</summary>
    /// <param name="wrappedIndexKey">The bytes returned once by <see cref="BlindIndexKey.CreateAsync"/>, kept in configuration.</param>
    /// <remarks>Required when any property is <see cref="EncryptedAttribute.Searchable"/>. Every instance of the application must use the same one.</remarks>
    public EnvelopeEncryptionOptionsBuilder UseBlindIndexKey(byte[] wrappedIndexKey)
    {
        ArgumentNullException.ThrowIfNull(wrappedIndexKey);
        if (!Crypto.WrappedKeyBlob.TryParse(wrappedIndexKey.ToArray(), out var blob, out var error) || blob.Entity != BlindIndexKey.EntityName)
        {
            throw new ArgumentException("Not a blind index key created by BlindIndexKey.CreateAsync: " + (error ?? "it wraps another kind of key."), nameof(wrappedIndexKey));
        }

        _settings.BlindIndexKey = wrappedIndexKey.ToArray();
        return this;
    }

    /// <summary>Replaces the clock used for cache expiry (tests).</summary>
    public EnvelopeEncryptionOptionsBuilder UseTimeProvider(TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(timeProvider);
        _settings.TimeProvider = timeProvider;
        return this;
    }

    /// <summary>Replaces the source of keys, nonces and record ids (known-answer tests only: never in production).</summary>
    public EnvelopeEncryptionOptionsBuilder UseRandomSource(IRandomSource randomSource)
    {
        ArgumentNullException.ThrowIfNull(randomSource);
        _settings.Random = randomSource;
        return this;
    }
}
