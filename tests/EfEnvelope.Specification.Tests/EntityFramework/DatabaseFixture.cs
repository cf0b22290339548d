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

    /// <summary>Creates the provider; the default is the in-memory one with a primary and a second key.</summary>
    protected virtual IMasterKeyProvider CreateProvider() => new InsecureInMemoryMasterKeyProvider("primary").AddKey("secondary");

    /// <summary>Points the options at this fixture's database.</summary>
    public abstract void UseDatabase(DbContextOptionsBuilder builder);

    /// <summary>Why this database cannot run here (no Docker, no server), or null when it can.</summary>
    public virtual string? SkipReason => null;

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

        await using var db = CreateContext();
        await db.Database.EnsureDeletedAsync();
        await db.Database.EnsureCreatedAsync();

        // The blind-index suite's tables live in the same database.
        await using var search = new SearchContext(CreateOptions<SearchContext>());
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

        GC.SuppressFinalize(this);
    }
}
