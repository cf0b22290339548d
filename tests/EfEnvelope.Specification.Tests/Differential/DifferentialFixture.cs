using System.Collections.Concurrent;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace EfEnvelope.Specification.Tests.Differential;

/// <summary>Hands out a fresh, empty-but-created database for each run of a scenario, and the keys the encrypted run uses.</summary>
public abstract class DifferentialFixture : IAsyncLifetime
{
    /// <summary>The master-key provider of every encrypted run (one provider, so one EF service provider and key cache).</summary>
    public IMasterKeyProvider Provider { get; } = new InsecureInMemoryMasterKeyProvider("primary");

    /// <summary>The wrapped blind-index key the searchable properties use.</summary>
    public byte[] IndexKey { get; private set; } = [];

    /// <summary>The database's name in the suite's output.</summary>
    public abstract string Name { get; }

    /// <summary>Why this database cannot be used here, or null.</summary>
    public virtual string? SkipReason => null;

    /// <summary>A new database with no tables.</summary>
    public abstract Task<FreshDatabase> CreateEmptyAsync(CancellationToken cancellationToken);

    /// <summary>A new database holding the differential model's tables for the given configuration.</summary>
    public virtual async Task<FreshDatabase> CreateShopAsync(bool encrypted, CancellationToken cancellationToken)
    {
        var database = await CreateEmptyAsync(cancellationToken);
        await using var db = new ShopContext(ShopOptions(database, encrypted).Options);
        await db.Database.EnsureCreatedAsync(cancellationToken);
        return database;
    }

    /// <summary>Options for the shop model on <paramref name="database"/>, plain or encrypted.</summary>
    public DbContextOptionsBuilder<ShopContext> ShopOptions(FreshDatabase database, bool encrypted)
    {
        var builder = new DbContextOptionsBuilder<ShopContext>();
        Configure(builder, database, encrypted);
        return builder;
    }

    /// <summary>Points <paramref name="builder"/> at <paramref name="database"/> and, when encrypted, registers EfEnvelope.</summary>
    public void Configure(DbContextOptionsBuilder builder, FreshDatabase database, bool encrypted)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(database);
        database.Use(builder);
        builder.ManyConfigurationsPerProcess().ReplaceService<Microsoft.EntityFrameworkCore.Infrastructure.IModelCacheKeyFactory, ShopModelCacheKeyFactory>();
        if (encrypted)
        {
            builder.UseEnvelopeEncryption(e => e.UseProvider(Provider).UseBlindIndexKey(IndexKey));
        }
    }

    public async ValueTask InitializeAsync()
    {
        IndexKey = await BlindIndexKey.CreateAsync(Provider, cancellationToken: TestContext.Current.CancellationToken);
    }

    public virtual ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        return ValueTask.CompletedTask;
    }
}

/// <summary>One database created for one run; deleted on disposal.</summary>
public abstract class FreshDatabase : IAsyncDisposable
{
    /// <summary>Points the options at this database.</summary>
    public abstract void Use(DbContextOptionsBuilder builder);

    /// <summary>Points the options at this database with a retrying execution strategy.</summary>
    public abstract void UseWithRetries(DbContextOptionsBuilder builder);

    /// <summary>An exception that this database's retrying strategy treats as transient.</summary>
    public abstract Exception TransientFailure();

    public abstract ValueTask DisposeAsync();
}

public sealed class SqliteDifferentialFixture : DifferentialFixture
{
    public override string Name => "SQLite";

    public override Task<FreshDatabase> CreateEmptyAsync(CancellationToken cancellationToken) =>
        Task.FromResult<FreshDatabase>(new SqliteDatabase(Path.Combine(Path.GetTempPath(), $"efenvelope-diff-{Guid.NewGuid():N}.db")));

    private sealed class SqliteDatabase(string path) : FreshDatabase
    {
        private string ConnectionString => $"Data Source={path};Pooling=False";

        public override void Use(DbContextOptionsBuilder builder) => builder.UseSqlite(ConnectionString);

        // Microsoft.Data.Sqlite has no retrying strategy of its own; this one retries what TransientFailure returns, the
        // way the server providers' strategies retry their transient error codes.
        public override void UseWithRetries(DbContextOptionsBuilder builder) =>
            builder.UseSqlite(ConnectionString, o => o.ExecutionStrategy(d => new RetryingStrategy(d)));

        public override Exception TransientFailure() => new TimeoutException("injected transient failure");

        public override ValueTask DisposeAsync()
        {
            foreach (var suffix in new[] { "", "-wal", "-shm", "-journal" })
            {
                File.Delete(path + suffix);
            }

            return ValueTask.CompletedTask;
        }
    }

    private sealed class RetryingStrategy(Microsoft.EntityFrameworkCore.Storage.ExecutionStrategyDependencies dependencies)
        : Microsoft.EntityFrameworkCore.Storage.ExecutionStrategy(dependencies, 3, TimeSpan.FromMilliseconds(10))
    {
        protected override bool ShouldRetryOn(Exception exception) => exception is TimeoutException;
    }
}

/// <summary>
/// Databases on the server named by <c>EFENVELOPE_POSTGRES</c>. Each configuration's tables are created once in a template
/// database, and each run gets a copy (CREATE DATABASE ... TEMPLATE), which is much faster than creating the tables again.
/// </summary>
public sealed class PostgresDifferentialFixture : DifferentialFixture
{
    private readonly string _prefix = "efdiff_" + Guid.NewGuid().ToString("N")[..10];
    private readonly ConcurrentDictionary<bool, Lazy<Task<string>>> _templates = new();
    private readonly ConcurrentDictionary<string, bool> _created = new();
    private int _count;

    public override string Name => "PostgreSQL";

    public override string? SkipReason => PostgresFixture.ServerConnectionString is null ? TestEnvironment.SkipMessage("EFENVELOPE_POSTGRES", "PostgreSQL") : null;

    public override Task<FreshDatabase> CreateEmptyAsync(CancellationToken cancellationToken) =>
        Task.FromResult<FreshDatabase>(new PostgresDatabase(this, NextName()));

    public override async Task<FreshDatabase> CreateShopAsync(bool encrypted, CancellationToken cancellationToken)
    {
        var template = await _templates.GetOrAdd(encrypted, e => new Lazy<Task<string>>(() => CreateTemplateAsync(e))).Value;
        var name = NextName();
        await AdminAsync($"CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"", cancellationToken);
        return new PostgresDatabase(this, name);
    }

    private string NextName()
    {
        var name = $"{_prefix}_{Interlocked.Increment(ref _count)}";
        _created[name] = true;
        return name;
    }

    private async Task<string> CreateTemplateAsync(bool encrypted)
    {
        var database = new PostgresDatabase(this, NextName());
        await using var db = new ShopContext(ShopOptions(database, encrypted).Options);
        await db.Database.EnsureCreatedAsync();
        return database.Name;
    }

    private static string Connection(string database) => $"{PostgresFixture.ServerConnectionString};Database={database};Pooling=False";

    private static async Task AdminAsync(string sql, CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(Connection("postgres"));
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public override async ValueTask DisposeAsync()
    {
        if (SkipReason is null)
        {
            foreach (var name in _created.Keys)
            {
                await AdminAsync($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)", CancellationToken.None);
            }
        }

        await base.DisposeAsync();
    }

    private sealed class PostgresDatabase(PostgresDifferentialFixture fixture, string name) : FreshDatabase
    {
        public string Name => name;

        public override void Use(DbContextOptionsBuilder builder) => builder.UseNpgsql(Connection(name));

        public override void UseWithRetries(DbContextOptionsBuilder builder) =>
            builder.UseNpgsql(Connection(name), o => o.EnableRetryOnFailure(3, TimeSpan.FromMilliseconds(10), errorCodesToAdd: null));

        // 40001 (serialization_failure) is one of the codes Npgsql's strategy retries.
        public override Exception TransientFailure() => new PostgresException("injected transient failure", "ERROR", "ERROR", "40001");

        public override async ValueTask DisposeAsync()
        {
            await AdminAsync($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)", CancellationToken.None);
            fixture._created.TryRemove(name, out _);
        }
    }
}
