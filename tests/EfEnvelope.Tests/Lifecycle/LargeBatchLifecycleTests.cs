using System.Diagnostics;
using EfEnvelope.KeyManagement;
using EfEnvelope.Lifecycle;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Lifecycle;

/// <summary>A record with a composite key in a schema of its own, for a job's writes of more records than one statement carries.</summary>
public class Referral
{
    public string Region { get; set; } = "";

    public int Number { get; set; }

    [Encrypted]
    public string Ssn { get; set; } = "";

    [Encrypted]
    public string? Notes { get; set; }

    public ReferralContact? Contact { get; set; }
}

/// <summary>An owned record in its owner's row, with a key column of its own: a job writes it after its owner.</summary>
public class ReferralContact
{
    [Encrypted]
    public string Phone { get; set; } = "";
}

/// <summary>A context with <see cref="Referral"/> in schema <c>intake</c> (ignored by SQLite).</summary>
public sealed class ReferralContext(DbContextOptions<ReferralContext> options) : DbContext(options)
{
    public DbSet<Referral> Referrals => Set<Referral>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<Referral>(e =>
        {
            e.ToTable("Referrals", "intake");
            e.HasKey(r => new { r.Region, r.Number });
            e.OwnsOne(r => r.Contact);
        });
}

/// <summary>
/// A batch of 2,500 records, each with an owned record in its row, re-encrypted in one transaction: on PostgreSQL its
/// compare-and-swap writes go to the database as set-based statements of at most 10,000 parameters, two per shape
/// here, all in one round trip; elsewhere one statement per record.
/// </summary>
public abstract class LargeBatchLifecycleTests<TFixture> : IAsyncLifetime
    where TFixture : DatabaseFixture, new()
{
    private const int Rows = 2_500;

    private readonly InsecureInMemoryMasterKeyProvider _provider = new();
    private readonly LifecycleDatabase<TFixture> _database = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        if (_database.SkipReason is null)
        {
            await using var db = Create();
            await db.Database.EnsureDeletedAsync(Ct);
            await db.Database.EnsureCreatedAsync(Ct);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _database.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    [Fact]
    public async Task Every_record_of_a_batch_larger_than_one_statement_is_rewritten_and_a_row_changed_meanwhile_is_redone()
    {
        if (_database.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        await using (var db = Create())
        {
            for (var i = 0; i < Rows; i++)
            {
                db.Referrals.Add(new Referral { Region = "r" + (i % 2), Number = i, Ssn = Ssn(i), Notes = Notes(i), Contact = new ReferralContact { Phone = Phone(i) } });
            }

            await db.SaveChangesAsync(Ct);
        }

        var keysBefore = await KeysAsync();
        // Paged by region, then number: the 1,250 records of r0 fill the owners' first statement, so this one is in the
        // second.
        var edited = (Region: "r1", Number: 1_801);
        var options = new LifecycleOptions
        {
            BatchSize = Rows,
            AfterBatchRead = async token =>
            {
                // A row changes between the job's read and its write.
                await using var app = Create();
                var referral = await app.Referrals.SingleAsync(r => r.Region == edited.Region && r.Number == edited.Number, token);
                referral.Notes = "edited while the job ran";
                await app.SaveChangesAsync(token);
            },
        };

        await using (var db = Create())
        {
            using var writes = new SetBasedWrites();
            var result = await EnvelopeKeyLifecycle.ReencryptAsync(db, options, cancellationToken: Ct);
            Assert.True(result.Succeeded, string.Join("; ", result.Failures));
            Assert.Equal(1, result.ConflictsRetried);
            // Every owner and owned record once, and the edited row's owned record again with its owner's retry.
            Assert.Equal((2 * Rows) + 1, result.RecordsChanged);
            if (db.Database.IsNpgsql())
            {
                // The batch, then the retried record (its owner and owned record).
                Assert.Equal(2, writes.RoundTrips);
            }

            // The job turns automatic change detection off while it runs, and back on.
            Assert.True(db.ChangeTracker.AutoDetectChangesEnabled);
        }

        var keysAfter = await KeysAsync();
        Assert.Equal(Rows, keysAfter.Count);
        Assert.All(keysAfter, pair => Assert.NotEqual(keysBefore[pair.Key], pair.Value));

        await using (var db = Create())
        {
            db.ClearEnvelopeKeyCache();
            var referrals = await db.Referrals.AsNoTracking().ToListAsync(Ct);
            Assert.Equal(Rows, referrals.Count);
            foreach (var referral in referrals)
            {
                Assert.Equal(Ssn(referral.Number), referral.Ssn);
                Assert.Equal(Phone(referral.Number), referral.Contact!.Phone);
                Assert.Equal(
                    (referral.Region, referral.Number) == edited ? "edited while the job ran" : Notes(referral.Number),
                    referral.Notes);
            }
        }
    }

    [Fact]
    public async Task A_job_stopped_midway_leaves_the_contexts_change_detection_setting_as_it_was()
    {
        if (_database.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        await using (var db = Create())
        {
            for (var i = 0; i < 30; i++)
            {
                db.Referrals.Add(new Referral { Region = "r", Number = i, Ssn = Ssn(i), Contact = new ReferralContact { Phone = Phone(i) } });
            }

            await db.SaveChangesAsync(Ct);
        }

        foreach (var setting in new[] { true, false })
        {
            using var stop = new CancellationTokenSource();
            var options = new LifecycleOptions { BatchSize = 10, AfterBatchRead = _ => stop.CancelAsync() };
            await using var db = Create();
            db.ChangeTracker.AutoDetectChangesEnabled = setting;
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => EnvelopeKeyLifecycle.ReencryptAsync(db, options, cancellationToken: stop.Token));
            Assert.Equal(setting, db.ChangeTracker.AutoDetectChangesEnabled);
        }
    }

    private static string Ssn(int i) => $"SSN-{i:D5}";

    private static string? Notes(int i) => i % 3 == 0 ? null : "note " + i;

    private static string Phone(int i) => $"+1 555 {i:D4}";

    private ReferralContext Create() => new(_database.Options<ReferralContext>(e => e.UseProvider(_provider)));

    private async Task<Dictionary<(string, int), string>> KeysAsync()
    {
        await using var db = Create();
        var rows = await db.Referrals.AsNoTracking()
            .Select(r => new { r.Region, r.Number, Key = EF.Property<byte[]>(r, "EfEnvelopeKey") })
            .ToListAsync(Ct);
        return rows.ToDictionary(r => (r.Region, r.Number), r => Convert.ToBase64String(r.Key));
    }
}

/// <summary>Counts Npgsql's round trips (a command or a batch) that carry set-based writes of <see cref="Referral"/>.</summary>
internal sealed class SetBasedWrites : IDisposable
{
    private readonly ActivityListener _listener;
    private int _roundTrips;

    public SetBasedWrites()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Npgsql",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllData,
            ActivityStopped = activity =>
            {
                if ((activity.GetTagItem("db.query.text") ?? activity.GetTagItem("db.statement")) is string sql
                    && sql.Contains("\"Referrals\"", StringComparison.Ordinal) && sql.Contains("FROM (VALUES", StringComparison.Ordinal))
                {
                    Interlocked.Increment(ref _roundTrips);
                }
            },
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public int RoundTrips => _roundTrips;

    public void Dispose() => _listener.Dispose();
}

public sealed class LargeBatchLifecycleSqliteTests : LargeBatchLifecycleTests<SqliteFixture>;

public sealed class LargeBatchLifecyclePostgresTests : LargeBatchLifecycleTests<PostgresFixture>;
