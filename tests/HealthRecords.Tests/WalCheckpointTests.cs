using System.Net;
using HealthRecords.Setup;
using Microsoft.Extensions.DependencyInjection;

namespace HealthRecords.Tests;

/// <summary>The SQLite write-ahead log under constant reads, with and without the sample's checkpointer.</summary>
/// <remarks>
/// Alone, not beside other tests: they clear SQLite's connection pools when they finish, and SQLite empties the log
/// of a database whose last connection closes, which would pass these tests for the wrong reason.
/// </remarks>
[Collection(nameof(WalCheckpointTests))]
[CollectionDefinition(nameof(WalCheckpointTests), DisableParallelization = true)]
public class WalCheckpointTests
{
    private static CancellationToken Cancel => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_write_ahead_log_is_emptied_while_reads_never_stop()
    {
        await using var app = new SampleApp(settings: new Dictionary<string, string?> { ["HealthRecords:Database:WalCheckpointInterval"] = "00:00:01" });
        using var client = app.CreateClient();
        await WriteAsync(client);

        var emptied = await UnderConstantReadsAsync(client, () => WalLength(app) == 0, TimeSpan.FromSeconds(20));

        Assert.True(emptied, $"The WAL still holds {WalLength(app)} bytes after 20 s of checkpoints under constant reads.");
    }

    [Fact]
    public async Task Without_the_checkpointer_the_log_keeps_its_size_which_the_test_above_would_see()
    {
        await using var app = new SampleApp(settings: new Dictionary<string, string?> { ["HealthRecords:Database:WalCheckpointInterval"] = "00:00:00" });
        using var client = app.CreateClient();
        await WriteAsync(client);

        var emptied = await UnderConstantReadsAsync(client, () => WalLength(app) == 0, TimeSpan.FromSeconds(4));

        Assert.False(emptied);
        Assert.True(WalLength(app) > 0);
    }

    [Fact]
    public async Task A_checkpoint_run_directly_empties_the_log()
    {
        await using var app = new SampleApp(settings: new Dictionary<string, string?> { ["HealthRecords:Database:WalCheckpointInterval"] = "00:00:00" });
        using var client = app.CreateClient();
        await WriteAsync(client);
        Assert.True(WalLength(app) > 0);

        var emptied = await app.Services.GetRequiredService<WalCheckpointer>().CheckpointAsync(Cancel);

        Assert.True(emptied);
        Assert.Equal(0, WalLength(app));
    }

    private static async Task WriteAsync(HttpClient client)
    {
        for (var i = 0; i < 30; i++)
        {
            await SampleUnderAttackTests.CreateAsync(client, $"Wal Patient {i:D2}-Test", $"200-00-{i:D4}", new string('x', 2000));
        }
    }

    // Four clients read the list back to back (always at least one read open) until the condition holds or time is up.
    private static async Task<bool> UnderConstantReadsAsync(HttpClient client, Func<bool> condition, TimeSpan limit)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Cancel);
        var readers = Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
        {
            var reads = 0;
            while (!stop.IsCancellationRequested)
            {
                using var response = await client.GetAsync("/api/patients?pageSize=100", CancellationToken.None);
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                reads++;
            }

            return reads;
        })).ToList();

        var deadline = DateTime.UtcNow + limit;
        var met = false;
        while (!met && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100, Cancel);
            met = condition();
        }

        await stop.CancelAsync();
        var total = (await Task.WhenAll(readers)).Sum();
        Assert.True(total > 4, $"Only {total} reads ran: the load this test relies on did not happen.");
        return met;
    }

    private static long WalLength(SampleApp app)
    {
        var wal = new FileInfo(app.DatabaseFile + "-wal");
        return wal.Exists ? wal.Length : 0;
    }
}
