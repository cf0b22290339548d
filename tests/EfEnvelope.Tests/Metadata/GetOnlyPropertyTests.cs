using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Metadata;

/// <summary>A get-only auto-property mapped explicitly: EF writes its readonly backing field, and so must EfEnvelope.</summary>
public sealed class GetOnlyPropertyTests : PlainAndEncryptedSqlite
{
    private static int _issued;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public class Badge
    {
        public int Id { get; set; }

        /// <summary>Each new instance gets another code, so a read shows whether the stored one replaced it.</summary>
        public string Code { get; } = $"code-{Interlocked.Increment(ref _issued)}";
    }

    private sealed class BadgeContext(DbContextOptions options, bool encrypted) : DbContext(options)
    {
        public DbSet<Badge> Badges => Set<Badge>();

        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            var code = modelBuilder.Entity<Badge>().Property(b => b.Code);
            if (encrypted)
            {
                code.IsEncrypted();
            }
        }
    }

    [Theory]
    [MemberData(nameof(Encryption))]
    public async Task Its_stored_value_is_written_to_the_backing_field_on_every_read(bool encrypted)
    {
        string stored;
        await using (var db = new BadgeContext(Options(encrypted), encrypted))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            var badge = new Badge { Id = 1 };
            stored = badge.Code;
            db.Badges.Add(badge);
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = new BadgeContext(Options(encrypted), encrypted))
        {
            Assert.Equal(stored, (await db.Badges.SingleAsync(Ct)).Code);
            Assert.Equal(stored, (await db.Badges.AsNoTracking().SingleAsync(Ct)).Code);
            Assert.Equal([stored], await db.Badges.Select(b => b.Code).ToListAsync(Ct));
        }
    }
}
