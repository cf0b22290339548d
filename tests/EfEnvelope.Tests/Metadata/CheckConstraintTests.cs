using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Metadata;

/// <summary>
/// A check constraint is enforced by the database on the value; on an encrypted column it would see ciphertext. The
/// same model runs plain and encrypted: a constraint on an encrypted column is refused when the model is built, one on
/// a plain column of the same table behaves as in plain EF.
/// </summary>
public sealed class CheckConstraintTests
{
    public class Memo
    {
        public int Id { get; set; }

        public string Title { get; set; } = "";

        public int NoteCount { get; set; }

        public string? Note { get; set; }

        public Place? Place { get; set; }
    }

    public class Place
    {
        public string? Street { get; set; }
    }

    [Fact]
    public void A_constraint_on_an_encrypted_column_is_refused_where_plain_EF_enforces_it()
    {
        const string Constraint = "length(\"Note\") <= 5";

        // Plain EF: the database enforces the constraint on the value.
        using (var plain = Open(encrypted: false, t => t.HasCheckConstraint("CK_Memo_Note", Constraint)))
        {
            plain.Add(new Memo { Title = "a", Note = "short" });
            plain.SaveChanges();
            plain.Add(new Memo { Title = "b", Note = "too long" });
            Assert.Throws<DbUpdateException>(() => plain.SaveChanges());
        }

        // Encrypted: the database would measure the ciphertext (every note would fail), so the model is refused.
        var error = Assert.Throws<InvalidOperationException>(() => Open(encrypted: true, t => t.HasCheckConstraint("CK_Memo_Note", Constraint))).Message;
        Assert.Contains("Check constraint 'CK_Memo_Note' of entity type 'Memo' refers to column 'Note' of encrypted property 'Memo.Note'", error, StringComparison.Ordinal);
        Assert.Contains("validate the value in the application", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("[Place_Street] <> ''")]
    [InlineData("place_street IS NOT NULL")]
    [InlineData("`Place_Street` <> 'x'")]
    public void An_owned_encrypted_column_is_found_whatever_its_quoting_and_case(string sql)
    {
        var error = Assert.Throws<InvalidOperationException>(() => Open(encrypted: true, t => t.HasCheckConstraint("CK_Street", sql))).Message;
        Assert.Contains("column 'Place_Street' of encrypted property 'Place.Street'", error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_constraint_on_plain_columns_of_an_encrypted_table_is_enforced_as_in_plain_EF()
    {
        // "NoteCount" contains the encrypted column's name, but is another column.
        const string Constraint = "\"Title\" <> '' AND \"NoteCount\" >= 0";
        foreach (var encrypted in new[] { false, true })
        {
            using var db = Open(encrypted, t => t.HasCheckConstraint("CK_Memo_Plain", Constraint));
            db.Add(new Memo { Title = "a", NoteCount = 1, Note = "a note of any length", Place = new Place { Street = "s" } });
            db.SaveChanges();
            db.Add(new Memo { Title = "", Note = "n" });
            Assert.Throws<DbUpdateException>(() => db.SaveChanges());
            db.ChangeTracker.Clear();
            Assert.Equal("a note of any length", db.Set<Memo>().AsNoTracking().Single().Note);
        }
    }

    private static MemoContext Open(bool encrypted, Action<Microsoft.EntityFrameworkCore.Metadata.Builders.TableBuilder<Memo>> table)
    {
        var connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();
        var options = new DbContextOptionsBuilder<MemoContext>().UseSqlite(connection).ManyConfigurationsPerProcess()
            .ReplaceService<Microsoft.EntityFrameworkCore.Infrastructure.IModelCacheKeyFactory, NoModelCache>();
        if (encrypted)
        {
            options.UseEnvelopeEncryption(e => e.UseProvider(new InsecureInMemoryMasterKeyProvider()));
        }

        var db = new MemoContext(options.Options, encrypted, table, connection);
        try
        {
            db.Database.EnsureCreated();
            return db;
        }
        catch
        {
            db.Dispose();
            throw;
        }
    }

    private sealed class MemoContext(
        DbContextOptions options,
        bool encrypted,
        Action<Microsoft.EntityFrameworkCore.Metadata.Builders.TableBuilder<Memo>> table,
        SqliteConnection connection) : DbContext(options)
    {
        public override void Dispose()
        {
            base.Dispose();
            connection.Dispose();
        }

        protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.Entity<Memo>(b =>
        {
            b.ToTable("Memos", table);
            b.OwnsOne(m => m.Place, p =>
            {
                if (encrypted)
                {
                    p.Property(x => x.Street).IsEncrypted();
                }
            });
            if (encrypted)
            {
                b.Property(m => m.Note).IsEncrypted();
            }
        });
    }

    private sealed class NoModelCache : Microsoft.EntityFrameworkCore.Infrastructure.IModelCacheKeyFactory
    {
        public object Create(DbContext context, bool designTime) => new object();
    }
}
