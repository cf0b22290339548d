using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;

namespace EfEnvelope.Reliability.Tests.Tampering;

/// <summary>
/// A test class whose tests each get a database of their own, on SQLite (a file) or PostgreSQL (a database on the
/// server <c>EFENVELOPE_POSTGRES</c> names), chosen by the test's <c>database</c> argument and removed afterwards.
/// </summary>
/// <param name="name">Names the class's files and databases (lower case, no spaces).</param>
public abstract class ScratchDatabaseTests<TContext>(string name) : IAsyncDisposable
    where TContext : DbContext
{
    private readonly string _sqlitePath = Path.Combine(Path.GetTempPath(), $"efenvelope-{name}-{Guid.NewGuid():N}.db");
    private readonly string _postgresDatabase = $"efenvelope_{name}_" + Guid.NewGuid().ToString("N")[..12];

    /// <summary>"sqlite" or "postgres", once <see cref="UseAsync"/> has run.</summary>
    protected string? Database { get; private set; }

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask DisposeAsync()
    {
        if (Database == "postgres")
        {
            await using var db = NewContext();
            await db.Database.EnsureDeletedAsync(CancellationToken.None);
        }

        foreach (var suffix in new[] { "", "-wal", "-shm", "-journal" })
        {
            File.Delete(_sqlitePath + suffix);
        }

        GC.SuppressFinalize(this);
    }

    /// <summary>A context on this test's database, configured as the test class needs.</summary>
    protected abstract TContext NewContext();

    /// <summary>Options on this test's database.</summary>
    /// <param name="strategy">Replaces the provider's execution strategy, when given.</param>
    protected DbContextOptionsBuilder<TContext> OptionsBuilder(Func<ExecutionStrategyDependencies, IExecutionStrategy>? strategy = null)
    {
        var builder = new DbContextOptionsBuilder<TContext>().ManyConfigurationsPerProcess();
        _ = Database == "postgres"
            ? builder.UseNpgsql($"{PostgresFixture.ServerConnectionString};Database={_postgresDatabase}", o =>
            {
                if (strategy is not null)
                {
                    o.ExecutionStrategy(strategy);
                }
            })
            : builder.UseSqlite($"Data Source={_sqlitePath};Pooling=False", o =>
            {
                if (strategy is not null)
                {
                    o.ExecutionStrategy(strategy);
                }
            });
        return builder;
    }

    /// <summary>Creates this test's database on <paramref name="database"/>, or skips the test when that server is not configured.</summary>
    protected async Task UseAsync(string database)
    {
        if (database == "postgres" && PostgresFixture.ServerConnectionString is null)
        {
            Assert.Skip(TestEnvironment.SkipMessage("EFENVELOPE_POSTGRES", "PostgreSQL"));
        }

        Database = database;
        await using var db = NewContext();
        await db.Database.EnsureCreatedAsync(Ct);
    }
}
