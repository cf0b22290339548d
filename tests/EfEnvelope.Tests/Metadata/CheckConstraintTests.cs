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

    public abstract class Doc
    {
        public int Id { get; set; }

        public string? Secret { get; set; }
    }

    public class Letter : Doc
    {
        public string To { get; set; } = "";
    }

    public class Holder
    {
        public int Id { get; set; }

        public Contact? Contact { get; set; }
    }

    public class Contact
    {
        public string Relation { get; set; } = "";

        public string? Phone { get; set; }
    }

    public class Wide
    {
        public int Id { get; set; }

        public string Kind { get; set; } = "";

        public string? Secret { get; set; }
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

    [Fact]
    public void A_string_literal_equal_to_an_encrypted_columns_name_is_not_a_reference_to_it()
    {
        foreach (var encrypted in new[] { false, true })
        {
            using var db = Create(encrypted, m => m.Entity<Wide>(w =>
            {
                w.ToTable(t => t.HasCheckConstraint("CK_Kind", "\"Kind\" IN ('Public', 'Secret')"));
                if (encrypted)
                {
                    w.Property(x => x.Secret).IsEncrypted();
                }
            }));
            db.Add(new Wide { Kind = "Secret", Secret = "x" });
            db.SaveChanges();
            db.Add(new Wide { Kind = "Other", Secret = "y" });
            Assert.Throws<DbUpdateException>(() => db.SaveChanges());
        }
    }

    [Fact]
    public void A_constraint_on_an_encrypted_value_inside_a_JSON_column_is_refused_where_plain_EF_enforces_it()
    {
        const string Constraint = "length(json_extract(\"Contact\", '$.Phone')) <= 12";
        using (var plain = Create(encrypted: false, Json(encrypted: false)))
        {
            plain.Add(new Holder { Contact = new Contact { Phone = "+1 555 0100" } });
            plain.SaveChanges();
            plain.Add(new Holder { Contact = new Contact { Phone = "+1 555 0100 0000" } });
            Assert.Throws<DbUpdateException>(() => plain.SaveChanges());
        }

        var error = Assert.Throws<InvalidOperationException>(() => Create(encrypted: true, Json(encrypted: true))).Message;
        Assert.Contains("refers to column 'Contact' (JSON property 'Phone') of encrypted property 'Contact.Phone'", error, StringComparison.Ordinal);

        // A constraint on another member of the document is not about the encrypted value.
        using var other = Create(encrypted: true, m => m.Entity<Holder>(h =>
        {
            h.OwnsOne(x => x.Contact, c =>
            {
                c.ToJson();
                c.Property(x => x.Phone).IsEncrypted();
            });
            h.ToTable(t => t.HasCheckConstraint("CK_Relation", "json_extract(\"Contact\", '$.Relation') <> ''"));
        }));
        other.Add(new Holder { Contact = new Contact { Relation = "sister", Phone = "+1 555 0100 0000" } });
        other.SaveChanges();

        static Action<ModelBuilder> Json(bool encrypted) => m => m.Entity<Holder>(h =>
        {
            h.OwnsOne(x => x.Contact, c =>
            {
                c.ToJson();
                if (encrypted)
                {
                    c.Property(x => x.Phone).IsEncrypted();
                }
            });
            h.ToTable(t => t.HasCheckConstraint("CK_Phone", Constraint));
        });
    }

    [Fact]
    public void A_constraint_declared_on_an_abstract_TPC_base_is_refused_and_its_encrypted_column_keeps_its_plain_name()
    {
        static string[] LetterColumns(bool encrypted)
        {
            using var db = Create(encrypted, Tpc(encrypted, constraint: false));
            return [.. db.Model.GetRelationalModel().Tables.Single(t => t.Name == "Letter").Columns.Select(c => c.Name)];
        }

        Assert.Contains("Secret", LetterColumns(encrypted: false));
        Assert.Equal(LetterColumns(encrypted: false).Order(), LetterColumns(encrypted: true).Where(c => c != "EfEnvelopeKey").Order());

        using (var plain = Create(encrypted: false, Tpc(encrypted: false, constraint: true)))
        {
            plain.Add(new Letter { Secret = "short" });
            plain.SaveChanges();
        }

        var error = Assert.Throws<InvalidOperationException>(() => Create(encrypted: true, Tpc(encrypted: true, constraint: true))).Message;
        Assert.Contains("Check constraint 'CK_Doc_Secret' of entity type 'Letter' refers to column 'Secret' of encrypted property 'Doc.Secret'", error, StringComparison.Ordinal);

        static Action<ModelBuilder> Tpc(bool encrypted, bool constraint) => m =>
        {
            m.Entity<Doc>().UseTpcMappingStrategy();
            if (constraint)
            {
                m.Entity<Doc>().ToTable(t => t.HasCheckConstraint("CK_Doc_Secret", "length(\"Secret\") <= 5"));
            }

            if (encrypted)
            {
                m.Entity<Doc>().Property(d => d.Secret).IsEncrypted();
            }

            m.Entity<Letter>();
        };
    }

    private static AnyContext Create(bool encrypted, Action<ModelBuilder> build)
    {
        var connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();
        var options = new DbContextOptionsBuilder<AnyContext>().UseSqlite(connection).ManyConfigurationsPerProcess()
            .ReplaceService<Microsoft.EntityFrameworkCore.Infrastructure.IModelCacheKeyFactory, NoModelCache>();
        if (encrypted)
        {
            options.UseEnvelopeEncryption(e => e.UseProvider(new InsecureInMemoryMasterKeyProvider()));
        }

        var db = new AnyContext(options.Options, build, connection);
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

    // The memo model, its table's constraints configured by the test: Note and Place.Street encrypted or not.
    private static AnyContext Open(bool encrypted, Action<Microsoft.EntityFrameworkCore.Metadata.Builders.TableBuilder<Memo>> table) =>
        Create(encrypted, m => m.Entity<Memo>(b =>
        {
            b.ToTable("Memos", table);
            b.OwnsOne(x => x.Place, p =>
            {
                if (encrypted)
                {
                    p.Property(x => x.Street).IsEncrypted();
                }
            });
            if (encrypted)
            {
                b.Property(x => x.Note).IsEncrypted();
            }
        }));

    private sealed class AnyContext(DbContextOptions options, Action<ModelBuilder> build, SqliteConnection connection) : DbContext(options)
    {
        public override void Dispose()
        {
            base.Dispose();
            connection.Dispose();
        }

        protected override void OnModelCreating(ModelBuilder modelBuilder) => build(modelBuilder);
    }

    private sealed class NoModelCache : Microsoft.EntityFrameworkCore.Infrastructure.IModelCacheKeyFactory
    {
        public object Create(DbContext context, bool designTime) => new object();
    }
}
