using EfEnvelope.Specification.Tests;
using EfEnvelope.KeyManagement;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Storage;

namespace EfEnvelope.Specification.Tests.EntityFramework;

/// <summary>A database (SQLite, PostgreSQL, SQL Server) and a master-key provider the behaviour suite runs against.</summary>
/// <remarks>Each fixture instance owns one database, created at start and dropped at the end.</remarks>
public abstract class DatabaseFixture : IAsyncLifetime
{
    private IMasterKeyProvider? _provider;

    /// <summary>The provider every context of this fixture shares (so they share one key cache).</summary>
    public IMasterKeyProvider Provider => _provider ??= CreateProvider();

    /// <summary>
    /// Where the master keys come from when they need set-up of their own (a local KMS endpoint, keys on an HSM token);
    /// null for the in-memory provider. A provider's suite overrides only this, whatever the database.
    /// </summary>
    protected virtual IFixtureKeySource? KeySource => null;

    /// <summary>Creates the provider; the default is the key source's, else the in-memory one with a primary and a second key.</summary>
    protected virtual IMasterKeyProvider CreateProvider() =>
        KeySource?.CreateProvider() ?? new InsecureInMemoryMasterKeyProvider("primary").AddKey("secondary");

    /// <summary>Points the options at this fixture's database.</summary>
    public abstract void UseDatabase(DbContextOptionsBuilder builder);

    /// <summary>Why this fixture cannot run here (no Docker, no server, no HSM token), or null when it can.</summary>
    public string? SkipReason => KeySource?.SkipReason ?? DatabaseSkipReason;

    /// <summary>Why this database cannot run here, or null when it can.</summary>
    protected virtual string? DatabaseSkipReason => null;

    /// <summary>A context on this fixture's database with encryption configured by <paramref name="configure"/> (default: the shared provider).</summary>
    public ClinicContext CreateContext(Action<EfEnvelope.EnvelopeEncryptionOptionsBuilder>? configure = null, params IInterceptor[] interceptors) =>
        new(CreateOptions<ClinicContext>(configure, interceptors));

    /// <summary>Options for any context on this fixture's database.</summary>
    public DbContextOptions<TContext> CreateOptions<TContext>(Action<EfEnvelope.EnvelopeEncryptionOptionsBuilder>? configure = null, params IInterceptor[] interceptors)
        where TContext : DbContext
    {
        var builder = new DbContextOptionsBuilder<TContext>();
        UseDatabase(builder);
        builder.ManyConfigurationsPerProcess().UseEnvelopeEncryption(configure ?? (e => e.UseProvider(Provider)));
        if (interceptors.Length > 0)
        {
            builder.AddInterceptors(interceptors);
        }

        return builder.Options;
    }

    /// <inheritdoc />
    public virtual async ValueTask InitializeAsync()
    {
        if (SkipReason is not null)
        {
            return;
        }

        if (KeySource is { } keys)
        {
            await keys.InitializeAsync();
        }

        await using var db = CreateContext();
        await db.Database.EnsureDeletedAsync();
        await db.Database.EnsureCreatedAsync();

        // The blind-index suite's tables live in the same database.
        // A searchable model needs an index key to be built at all; the tables do not depend on which.
        var indexKey = await BlindIndexKey.CreateAsync(Provider);
        await using var search = new SearchContext(CreateOptions<SearchContext>(e => e.UseProvider(Provider).UseBlindIndexKey(indexKey)));
        await search.GetService<IRelationalDatabaseCreator>().CreateTablesAsync();
    }

    /// <inheritdoc />
    public virtual async ValueTask DisposeAsync()
    {
        if (SkipReason is null)
        {
            await using var db = CreateContext();
            await db.Database.EnsureDeletedAsync();
        }

        if (KeySource is { } keys)
        {
            await keys.DisposeAsync();
        }

        GC.SuppressFinalize(this);
    }
}

/// <summary>Master keys that need set-up and tear-down around a fixture (a local KMS endpoint, keys on an HSM token).</summary>
public interface IFixtureKeySource : IAsyncDisposable
{
    /// <summary>Why these keys cannot be had here, or null.</summary>
    string? SkipReason { get; }

    /// <summary>Starts what the keys need; called before the database is created.</summary>
    Task InitializeAsync();

    /// <summary>The provider over these keys, with a primary and a second configured key.</summary>
    IMasterKeyProvider CreateProvider();
}
