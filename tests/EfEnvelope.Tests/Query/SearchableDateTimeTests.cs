using EfEnvelope.KeyManagement;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Query;

/// <summary>
/// An equality search on a searchable <see cref="DateTime"/> finds the values .NET and plain EF call equal, whatever
/// the kind of the stored or the searched value (a value saved from <c>DateTime.UtcNow</c>, searched with one parsed
/// from user input). Found by a user-style review: the index hashed the kind, and the search returned nothing.
/// (A <c>Local</c> value is indexed as its UTC time, as its ciphertext stores it: <c>KnownAnswerTests</c>.)
/// </summary>
public sealed class SearchableDateTimeTests : PlainAndEncryptedSqlite
{
    private static readonly DateTime Moment = new(1990, 1, 2, 3, 4, 5);

    private readonly byte[] _indexKey;

    public SearchableDateTimeTests() => _indexKey = BlindIndexKey.CreateAsync(Provider).GetAwaiter().GetResult();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [MemberData(nameof(Encryption))]
    public async Task A_value_saved_as_Utc_or_Unspecified_is_found_by_the_same_clock_time_of_either_kind(bool encrypted)
    {
        await using (var db = Create(encrypted))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Visits.AddRange(
                new Visit { Id = 1, At = DateTime.SpecifyKind(Moment, DateTimeKind.Utc) },
                new Visit { Id = 2, At = Moment },
                new Visit { Id = 3, At = Moment.AddSeconds(1) });
            await db.SaveChangesAsync(Ct);
        }

        foreach (var kind in new[] { DateTimeKind.Unspecified, DateTimeKind.Utc })
        {
            var searched = DateTime.SpecifyKind(Moment, kind);
            await using var db = Create(encrypted);
            Assert.Equal([1, 2], await db.Visits.Where(v => v.At == searched).Select(v => v.Id).OrderBy(id => id).ToListAsync(Ct));
            Assert.Equal([1, 2], (await db.Visits.AsNoTracking().Where(v => v.At == searched).ToListAsync(Ct)).Select(v => v.Id).Order());
            Assert.Equal([1, 2], (await db.Visits.Where(v => v.At == searched).ToListAsync(Ct)).Select(v => v.Id).Order());
        }
    }

    private VisitContext Create(bool encrypted)
    {
        var options = Options(encrypted, e => e.UseProvider(Provider).UseBlindIndexKey(_indexKey));
        return encrypted ? new EncryptedVisitContext(options) : new VisitContext(options);
    }

    private sealed class Visit
    {
        public int Id { get; set; }

        public DateTime At { get; set; }
    }

    // Two context types, because EF builds one model per context type.
    private class VisitContext(DbContextOptions options) : DbContext(options)
    {
        public DbSet<Visit> Visits => Set<Visit>();
    }

    private sealed class EncryptedVisitContext(DbContextOptions options) : VisitContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder) =>
            modelBuilder.Entity<Visit>().Property(v => v.At).IsEncrypted(search => search.IndexBytes = 32);
    }
}
