using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Update;

/// <summary>
/// Editing an encrypted property of an attached instance reads the record's stored key by its primary key. Found by a
/// user-style hunt: the key went into that query as a constant, which EF writes into the SQL as a literal, and SQLite
/// refused a string key holding NUL ("unrecognized token") where plain EF's update, with a parameter, succeeded.
/// </summary>
public sealed class AttachedKeyLookupTests : PlainAndEncryptedSqlite
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [MemberData(nameof(Encryption))]
    public async Task An_attached_record_whose_string_key_holds_NUL_or_quotes_is_edited(bool encrypted)
    {
        string[] keys = ["a\0b", "it's", "plain"];
        await using (var db = Create(encrypted))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.AddRange(keys.Select(k => new Tag { Id = k, Secret = "s", Label = "l" }));
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = Create(encrypted))
        {
            foreach (var key in keys)
            {
                var tag = new Tag { Id = key, Secret = "s", Label = "l" };
                db.Attach(tag);
                tag.Secret = "edited " + key.Length;
            }

            Assert.Equal(3, await db.SaveChangesAsync(Ct));
        }

        await using var read = Create(encrypted);
        Assert.Equal(["edited 3", "edited 4", "edited 5"], await read.Tags.OrderBy(t => t.Label).ThenBy(t => t.Id).Select(t => t.Secret).ToListAsync(Ct));
    }

    private TagContext Create(bool encrypted) => encrypted ? new EncryptedTagContext(Options(true)) : new TagContext(Options(false));

    private sealed class Tag
    {
        public string Id { get; set; } = "";

        public string Secret { get; set; } = "";

        public string Label { get; set; } = "";
    }

    private class TagContext(DbContextOptions options) : DbContext(options)
    {
        public DbSet<Tag> Tags => Set<Tag>();
    }

    private sealed class EncryptedTagContext(DbContextOptions options) : TagContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.Entity<Tag>().Property(t => t.Secret).IsEncrypted();
    }
}
