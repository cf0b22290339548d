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
        });
}

/// <summary>
/// A batch of 2,500 records re-encrypted in one transaction: on PostgreSQL its compare-and-swap writes go to the
/// database as set-based statements of at most 10,000 parameters each (two here), elsewhere one statement per record.
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
                db.Referrals.Add(new Referral { Region = "r" + (i % 2), Number = i, Ssn = Ssn(i), Notes = Notes(i) });
            }

            await db.SaveChangesAsync(Ct);
        }

        var keysBefore = await KeysAsync();
        var edited = (Region: "r0", Number: 1_800);
        var options = new LifecycleOptions
        {
            BatchSize = Rows,
            AfterBatchRead = async token =>
            {
                // A row in the second statement changes between the job's read and its write.
                await using var app = Create();
                var referral = await app.Referrals.SingleAsync(r => r.Region == edited.Region && r.Number == edited.Number, token);
                referral.Notes = "edited while the job ran";
                await app.SaveChangesAsync(token);
            },
        };

        await using (var db = Create())
        {
            var result = await EnvelopeKeyLifecycle.ReencryptAsync(db, options, cancellationToken: Ct);
            Assert.True(result.Succeeded, string.Join("; ", result.Failures));
            Assert.Equal(1, result.ConflictsRetried);
            Assert.Equal(Rows, result.RecordsChanged);
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
                Assert.Equal(
                    (referral.Region, referral.Number) == edited ? "edited while the job ran" : Notes(referral.Number),
                    referral.Notes);
            }
        }
    }

    private static string Ssn(int i) => $"SSN-{i:D5}";

    private static string? Notes(int i) => i % 3 == 0 ? null : "note " + i;

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

public sealed class LargeBatchLifecycleSqliteTests : LargeBatchLifecycleTests<SqliteFixture>;

public sealed class LargeBatchLifecyclePostgresTests : LargeBatchLifecycleTests<PostgresFixture>;
