using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Query;

/// <summary>
/// <c>HasValue</c> of an encrypted nullable value in a projection gives what plain EF gives, for rows where some or
/// all encrypted values are null. Found by a user-style review: the projection threw "Nullable object must have a
/// value", although filters with <c>HasValue</c> worked.
/// </summary>
public sealed class NullTestProjectionTests : PlainAndEncryptedSqlite
{


    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [MemberData(nameof(Encryption))]
    public async Task HasValue_in_a_projection_reads_the_nullness_of_each_value(bool encrypted)
    {
        await using (var db = Create(encrypted))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Readings.AddRange(
                new Reading { Id = 1, Score = 5, At = DateTimeOffset.UnixEpoch },
                new Reading { Id = 2, Score = 7 },
                new Reading { Id = 3 });
            await db.SaveChangesAsync(Ct);
        }

        await using var read = Create(encrypted);
        Assert.Equal([true, true, false], await read.Readings.OrderBy(r => r.Id).Select(r => r.Score.HasValue).ToListAsync(Ct));
        Assert.Equal([true, false, false], read.Readings.OrderBy(r => r.Id).Select(r => r.At.HasValue).ToList());
        Assert.Equal(
            [(1, true, false), (2, true, true), (3, false, true)],
            (await read.Readings.AsNoTracking().OrderBy(r => r.Id).Select(r => new { r.Id, Scored = r.Score.HasValue, Unseen = !r.At.HasValue }).ToListAsync(Ct))
                .Select(x => (x.Id, x.Scored, x.Unseen)));
    }

    private ReadingContext Create(bool encrypted)
    {
        var options = Options(encrypted);
        return encrypted ? new EncryptedReadingContext(options) : new ReadingContext(options);
    }

    private sealed class Reading
    {
        public int Id { get; set; }

        public int? Score { get; set; }

        public DateTimeOffset? At { get; set; }
    }

    // Two context types, because EF builds one model per context type.
    private class ReadingContext(DbContextOptions options) : DbContext(options)
    {
        public DbSet<Reading> Readings => Set<Reading>();
    }

    private sealed class EncryptedReadingContext(DbContextOptions options) : ReadingContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            modelBuilder.Entity<Reading>().Property(r => r.Score).IsEncrypted();
            modelBuilder.Entity<Reading>().Property(r => r.At).IsEncrypted();
        }
    }
}
