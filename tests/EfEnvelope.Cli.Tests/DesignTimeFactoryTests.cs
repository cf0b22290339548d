using System.Text.Json;
using EfEnvelope.KeyManagement;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace EfEnvelope.Cli.Tests;

/// <summary>A ledger entry of an application that offers the tool a design-time factory instead of a host.</summary>
public sealed class LedgerEntry
{
    public int Id { get; set; }

    [Encrypted]
    public string Account { get; set; } = "";
}

public sealed class LedgerContext(DbContextOptions<LedgerContext> options) : DbContext(options)
{
    public DbSet<LedgerEntry> Entries => Set<LedgerEntry>();
}

/// <summary>What <c>dotnet ef</c> would use too: the database file comes from the environment, the master key is fixed.</summary>
public sealed class LedgerContextFactory : IDesignTimeDbContextFactory<LedgerContext>
{
    public const string DatabaseVariable = "EFENVELOPE_CLI_TEST_LEDGER";

    // A fixed key so that the tool's process and the test's process unwrap the same data keys (test data only).
    private static readonly InsecureInMemoryMasterKeyProvider Provider = new("ledger-key", new byte[32]);

    public LedgerContext CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<LedgerContext>()
            .UseSqlite($"Data Source={Environment.GetEnvironmentVariable(DatabaseVariable)};Pooling=False")
            .UseEnvelopeEncryption(e => e.UseProvider(Provider))
            .Options);
}

public sealed class DesignTimeFactoryTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_tool_uses_an_IDesignTimeDbContextFactory_when_the_application_has_one()
    {
        await using var database = SampleDatabase.ForDirectory(Path.Combine(Path.GetTempPath(), "efenvelope-ledger-" + Guid.NewGuid().ToString("N")));
        Directory.CreateDirectory(database.DataDirectory);
        var file = Path.Combine(database.DataDirectory, "ledger.db");
        Environment.SetEnvironmentVariable(LedgerContextFactory.DatabaseVariable, file);
        await using (var db = new LedgerContextFactory().CreateDbContext([]))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Entries.AddRange(new LedgerEntry { Account = "DE89 3704 0044 0532 0130 00" }, new LedgerEntry { Account = "GB29 NWBK 6016 1331 9268 19" });
            await db.SaveChangesAsync(Ct);
        }

        database.Environment[LedgerContextFactory.DatabaseVariable] = file;
        var thisAssembly = typeof(LedgerContextFactory).Assembly.Location;
        var inventory = await Tool.RunAsync(database, Ct, "inventory", "-a", thisAssembly, "--json");
        var verify = await Tool.RunAsync(database, Ct, "verify", "-a", thisAssembly);

        Assert.True(inventory.ExitCode == 0, inventory.Stderr);
        using var json = JsonDocument.Parse(inventory.Stdout);
        var entries = Assert.Single(json.RootElement.GetProperty("entities").EnumerateArray());
        Assert.Equal(2, entries.GetProperty("byMasterKey").GetProperty("ledger-key").GetInt64());
        Assert.True(verify.ExitCode == 0, verify.Stdout + verify.Stderr);
        Assert.Contains("Verify: 2 rows examined", verify.Stdout, StringComparison.Ordinal);
    }
}
