using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Query;

/// <summary>
/// <c>ToString()</c> of an encrypted enum in a projection gives what EF's translation gives: the name of a defined
/// value, else the number; concatenated to a string, the number. Found by a user-style hunt: a combination of
/// <c>[Flags]</c> values read "R, W" where plain EF reads "3", and a concatenation was refused.
/// </summary>
public sealed class EnumTextProjectionTests : PlainAndEncryptedSqlite
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [MemberData(nameof(Encryption))]
    public async Task An_enum_reads_as_text_as_plain_EF_translates_it(bool encrypted)
    {
        await using (var db = Create(encrypted))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.AddRange(
                new Grant { Id = 1, Access = Access.Read, Level = Level.High, Previous = Access.Read },
                new Grant { Id = 2, Access = Access.Read | Access.Write, Level = (Level)7 },
                new Grant { Id = 3, Access = Access.None, Level = Level.Low },
                new Grant { Id = 4, Access = (Access)64, Level = Level.Low });
            await db.SaveChangesAsync(Ct);
        }

        await using var read = Create(encrypted);
        Assert.Equal(["Read", "3", "None", "64"], await read.Grants.OrderBy(g => g.Id).Select(g => g.Access.ToString()).ToListAsync(Ct));
        Assert.Equal(
            [("Read", "High"), ("3", "7"), ("None", "Low"), ("64", "Low")],
            (await read.Grants.AsNoTracking().OrderBy(g => g.Id).Select(g => new { A = g.Access.ToString(), L = g.Level.ToString() }).ToListAsync(Ct)).Select(x => (x.A, x.L)));

        // A nullable enum: null reads as "" (EF's translation), a value as above.
        Assert.Equal(["Read", ""], await read.Grants.Where(g => g.Id <= 2).OrderBy(g => g.Id).Select(g => g.Previous.ToString()).ToListAsync(Ct));

        // Concatenated, EF gives the number (the column's text), where .NET would give the name.
        Assert.Equal(["level 1, access 1", "level 7, access 3", "level 0, access 0", "level 0, access 64"], await read.Grants.OrderBy(g => g.Id).Select(g => "level " + g.Level + ", access " + g.Access).ToListAsync(Ct));

        // Through ?? and ?: too (from a review: the names came through).
        Assert.Equal(["was 1", "was 3", "was 0", "was 64"], await read.Grants.OrderBy(g => g.Id).Select(g => "was " + (g.Previous ?? g.Access)).ToListAsync(Ct));
        Assert.Equal(["1", "7", "0", "0"], await read.Grants.OrderBy(g => g.Id).Select(g => "" + (g.Id > 0 ? g.Level : Level.Low)).ToListAsync(Ct));
    }

    private GrantContext Create(bool encrypted) => encrypted ? new EncryptedGrantContext(Options(true)) : new GrantContext(Options(false));

    [Flags]
    private enum Access : byte
    {
        None = 0,
        Read = 1,
        Write = 2,
    }

    private enum Level
    {
        Low,
        High,
    }

    private sealed class Grant
    {
        public int Id { get; set; }

        public Access Access { get; set; }

        public Level Level { get; set; }

        public Access? Previous { get; set; }
    }

    private class GrantContext(DbContextOptions options) : DbContext(options)
    {
        public DbSet<Grant> Grants => Set<Grant>();
    }

    private sealed class EncryptedGrantContext(DbContextOptions options) : GrantContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            modelBuilder.Entity<Grant>().Property(g => g.Access).IsEncrypted();
            modelBuilder.Entity<Grant>().Property(g => g.Level).IsEncrypted();
            modelBuilder.Entity<Grant>().Property(g => g.Previous).IsEncrypted();
        }
    }
}
