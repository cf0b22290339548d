using EfEnvelope.KeyManagement;
using EfEnvelope.Lifecycle;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Lifecycle;

/// <summary>A lifecycle job shared by several workers through the partition table: every record exactly once, and takeover of a stalled worker's partition.</summary>
public abstract class PartitionedLifecycleTests<TFixture> : IAsyncLifetime
    where TFixture : DatabaseFixture, new()
{
    private const int Members = 90;
    private const int Claims = 40;

    private readonly InsecureInMemoryMasterKeyProvider _provider = new("old-key");

    private LifecycleDatabase<TFixture> Database { get; } = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        if (Database.SkipReason is null)
        {
            await using var db = Create();
            await db.Database.EnsureDeletedAsync(Ct);
            await db.Database.EnsureCreatedAsync(Ct);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Database.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    private LifecycleContext Create() => Database.Create(e => e.UseProvider(_provider));

    private void SkipIfUnavailable()
    {
        if (Database.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }
    }

    /// <summary>Members (every other one with an owned address, a record of its own) and claims; returns the number of records.</summary>
    private async Task<int> SeedAsync()
    {
        await using var db = Create();
        for (var i = 0; i < Members; i++)
        {
            db.Members.Add(new Member { Id = Guid.NewGuid(), Subject = "s", Ssn = "ssn " + i, Notes = i % 3 == 0 ? null : "note " + i, Address = i % 2 == 0 ? new MemberAddress { Street = i + " Partition Road" } : null });
        }

        for (var i = 0; i < Claims; i++)
        {
            db.Claims.Add(new Claim { Amount = i + 0.5m });
        }

        await db.SaveChangesAsync(Ct);
        return Members + (Members / 2) + Claims;
    }

    private async Task<Dictionary<string, byte[]?>> StoredKeysAsync()
    {
        await using var db = Create();
        var members = await db.Members.AsNoTracking().Select(m => new { m.Id, Key = EF.Property<byte[]?>(m, "EfEnvelopeKey") }).ToListAsync(Ct);
        var claims = await db.Claims.AsNoTracking().Select(c => new { c.Id, Key = EF.Property<byte[]?>(c, "EfEnvelopeKey") }).ToListAsync(Ct);
        return members.Select(m => ("m" + m.Id, m.Key)).Concat(claims.Select(c => ("c" + c.Id, c.Key))).ToDictionary(p => p.Item1, p => p.Key);
    }

    private async Task AssertEverythingReadsAsync()
    {
        await using var db = Create();
        db.ClearEnvelopeKeyCache();
        var members = await db.Members.AsNoTracking().OrderBy(m => m.Subject).ToListAsync(Ct);
        Assert.Equal(Members, members.Count);
        Assert.Equal(Enumerable.Range(0, Members).Select(i => "ssn " + i).Order(), members.Select(m => m.Ssn).Order());
        Assert.Equal(Members / 2, members.Count(m => m.Address?.Street.EndsWith(" Partition Road", StringComparison.Ordinal) == true));
        var claims = await db.Claims.AsNoTracking().ToListAsync(Ct);
        Assert.Equal(Enumerable.Range(0, Claims).Select(i => i + 0.5m), claims.Select(c => c.Amount).Order());
    }

    private async Task<List<(int Done, string? Owner)>> PartitionRowsAsync(string job)
    {
        await using var db = Create();
        return [.. (await db.Database.SqlQueryRaw<PartitionRow>($"SELECT \"Done\", \"Owner\" FROM \"{JobPartitionTableName}\" WHERE \"Job\" = {{0}}", job).ToListAsync(Ct))
            .Select(r => (r.Done, r.Owner))];
    }

    private const string JobPartitionTableName = "EfEnvelopeJobPartitions";

    private sealed record PartitionRow(int Done, string? Owner);

    [Fact]
    public async Task Three_concurrent_workers_reencrypt_every_record_exactly_once()
    {
        SkipIfUnavailable();
        var records = await SeedAsync();
        var before = await StoredKeysAsync();

        var workers = Enumerable.Range(1, 3).Select(async worker =>
        {
            await using var db = Create();
            var options = new PartitionedJobOptions("reencrypt-three") { WorkerId = "worker-" + worker, Partitions = 7 };
            options.Job.BatchSize = 8;
            return await EnvelopeKeyLifecycle.RunPartitionedAsync(db, LifecycleOperation.Reencrypt, options, cancellationToken: Ct);
        }).ToList();
        var results = await Task.WhenAll(workers);

        Assert.All(results, r => Assert.True(r.Succeeded, string.Join("; ", r.Failures)));
        // Re-encryption cannot tell a finished record from an unfinished one: a record done twice would count twice.
        Assert.Equal(records, results.Sum(r => r.RecordsChanged));
        Assert.Equal(Members + Claims, results.Sum(r => r.RowsExamined));
        var after = await StoredKeysAsync();
        Assert.All(before, row => Assert.NotEqual(row.Value, after[row.Key]));
        Assert.All(await PartitionRowsAsync("reencrypt-three"), p => Assert.Equal((1, (string?)null), p));
        // Seven ranges each for members and claims; the empty prescriptions table is one open range.
        Assert.Equal((7 * 2) + 1, (await PartitionRowsAsync("reencrypt-three")).Count);
        await AssertEverythingReadsAsync();
    }

    [Fact]
    public async Task Rotation_by_two_workers_leaves_nothing_under_the_old_key()
    {
        SkipIfUnavailable();
        var records = await SeedAsync();
        _provider.AddKey("new-key");
        _provider.SetPrimaryKey("new-key");

        var results = await Task.WhenAll(Enumerable.Range(1, 2).Select(async worker =>
        {
            await using var db = Create();
            var options = new PartitionedJobOptions("rotate-two") { WorkerId = "worker-" + worker, Partitions = 5 };
            options.Job.BatchSize = 10;
            return await EnvelopeKeyLifecycle.RunPartitionedAsync(db, LifecycleOperation.Rotate, options, cancellationToken: Ct);
        }));

        Assert.Equal(records, results.Sum(r => r.RecordsChanged));
        Assert.Equal(0, results.Sum(r => r.RecordsAlreadyDone));
        _provider.DisableKey("old-key");
        await AssertEverythingReadsAsync();
    }

    [Fact]
    public async Task A_stalled_worker_loses_its_partition_to_another_and_its_late_batch_rolls_back()
    {
        SkipIfUnavailable();
        var records = await SeedAsync();
        var before = await StoredKeysAsync();
        var stalled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var resume = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var batches = 0;

        // One partition, so both workers want the same one. Worker A commits its first batch, then stalls past its
        // lease while holding its second batch (read, not yet written).
        var first = Task.Run(async () =>
        {
            await using var db = Create();
            var options = new PartitionedJobOptions("takeover") { WorkerId = "worker-a", Partitions = 1, LeaseDuration = TimeSpan.FromSeconds(1) };
            options.Job.BatchSize = 20;
            options.Job.EntityTypes.Add(typeof(Member));
            options.Job.AfterBatchRead = async token =>
            {
                if (++batches == 2)
                {
                    stalled.SetResult();
                    await resume.Task.WaitAsync(token);
                }
            };
            return await EnvelopeKeyLifecycle.RunPartitionedAsync(db, LifecycleOperation.Reencrypt, options, cancellationToken: Ct);
        }, Ct);

        await stalled.Task.WaitAsync(Ct);
        LifecycleResult second;
        await using (var db = Create())
        {
            var options = new PartitionedJobOptions("takeover") { WorkerId = "worker-b", Partitions = 1, LeaseDuration = TimeSpan.FromSeconds(1) };
            options.Job.BatchSize = 20;
            options.Job.EntityTypes.Add(typeof(Member));
            second = await EnvelopeKeyLifecycle.RunPartitionedAsync(db, LifecycleOperation.Reencrypt, options, cancellationToken: Ct);
        }

        resume.SetResult();
        var firstResult = await first;

        // A committed its first batch only (its second rolled back when it found the partition gone); B did the rest.
        Assert.Equal(1, firstResult.Batches);
        Assert.Equal(20, firstResult.RowsExamined);
        Assert.Equal(Members - 20, second.RowsExamined);
        Assert.Equal(records - Claims, firstResult.RecordsChanged + second.RecordsChanged);
        var after = await StoredKeysAsync();
        Assert.All(before.Where(r => r.Key.StartsWith('m')), row => Assert.NotEqual(row.Value, after[row.Key]));
        Assert.All(before.Where(r => r.Key.StartsWith('c')), row => Assert.Equal(row.Value, after[row.Key]));
        Assert.Equal([(1, (string?)null)], await PartitionRowsAsync("takeover"));
        await AssertEverythingReadsAsync();
    }

    [Fact]
    public async Task A_checkpoint_of_its_own_is_refused()
    {
        SkipIfUnavailable();
        await using var db = Create();
        var options = new PartitionedJobOptions("refused");
        options.Job.ResumeFrom = "{}";
        var error = await Assert.ThrowsAsync<ArgumentException>(() => EnvelopeKeyLifecycle.RunPartitionedAsync(db, LifecycleOperation.Rotate, options, cancellationToken: Ct));
        Assert.Contains("ResumeFrom", error.Message, StringComparison.Ordinal);
    }
}

public sealed class PartitionedLifecycleSqliteTests : PartitionedLifecycleTests<SqliteFixture>;

public sealed class PartitionedLifecyclePostgresTests : PartitionedLifecycleTests<PostgresFixture>;
