using Microsoft.EntityFrameworkCore;
using Testcontainers.MsSql;

namespace EfEnvelope.Specification.Tests.EntityFramework;

/// <summary>A SQLite file database of its own; subclass it to run the suite with another provider.</summary>
public class SqliteFixture : DatabaseFixture
{
    public string DatabasePath { get; } = Path.Combine(Path.GetTempPath(), $"efenvelope-{Guid.NewGuid():N}.db");

    public override void UseDatabase(DbContextOptionsBuilder builder) => builder.UseSqlite($"Data Source={DatabasePath};Pooling=False");

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        foreach (var suffix in new[] { "", "-wal", "-shm" })
        {
            File.Delete(DatabasePath + suffix);
        }
    }
}

/// <summary>A database of its own on the PostgreSQL server named by <c>EFENVELOPE_POSTGRES</c> (tests/run-all.sh starts one).</summary>
/// <remarks>Without the variable the tests skip, except under CI (<c>CI=true</c>), where a missing server is a failure.</remarks>
public class PostgresFixture : DatabaseFixture
{
    private readonly string _database = "efenvelope_" + Guid.NewGuid().ToString("N")[..16];

    public static string? ServerConnectionString => TestEnvironment.Require("EFENVELOPE_POSTGRES", "PostgreSQL");

    protected override string? DatabaseSkipReason => ServerConnectionString is null ? TestEnvironment.SkipMessage("EFENVELOPE_POSTGRES", "PostgreSQL") : null;

    public override void UseDatabase(DbContextOptionsBuilder builder) =>
        builder.UseNpgsql($"{ServerConnectionString};Database={_database}");
}

/// <summary>SQL Server in a Testcontainers container; skipped with the reason where Docker is not available.</summary>
public class SqlServerFixture : DatabaseFixture
{
    private MsSqlContainer? _container;

    protected override string? DatabaseSkipReason => TestEnvironment.DockerUnavailableReason;

    public override void UseDatabase(DbContextOptionsBuilder builder) =>
        builder.UseSqlServer(_container?.GetConnectionString() ?? "Server=(none);Database=EfEnvelope");

    public override async ValueTask InitializeAsync()
    {
        if (SkipReason is null)
        {
            _container = new MsSqlBuilder("mcr.microsoft.com/mssql/server:2022-CU14-ubuntu-22.04").Build();
            await _container.StartAsync();
        }

        await base.InitializeAsync();
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        if (_container is not null)
        {
            await _container.DisposeAsync();
        }
    }
}

/// <summary>What the test environment provides, and how a missing part is reported.</summary>
public static class TestEnvironment
{
    public static bool IsCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    /// <summary>The variable's value; under CI a missing one throws, so nothing silently skips there.</summary>
    public static string? Require(string variable, string what)
    {
        var value = Environment.GetEnvironmentVariable(variable);
        if (string.IsNullOrEmpty(value) && IsCi)
        {
            throw new InvalidOperationException($"{what} is required under CI but {variable} is not set: run the tests through tests/run-all.sh.");
        }

        return string.IsNullOrEmpty(value) ? null : value;
    }

    public static string SkipMessage(string variable, string what) => $"{what} not configured ({variable} is not set): run tests/run-all.sh.";

    /// <summary>Why Docker (and so Testcontainers) cannot run here, or null.</summary>
    public static string? DockerUnavailableReason =>
        Environment.GetEnvironmentVariable("DOCKER_HOST") is { Length: > 0 } || File.Exists("/var/run/docker.sock")
            ? null
            : "Docker is not available on this machine (no DOCKER_HOST, no /var/run/docker.sock): the Testcontainers SQL Server tests need it.";
}
