using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Migrations;

/// <summary>
/// Rows that hold no ciphertext for an encrypted property: every value was null when saved, or the column was added
/// by a migration to a table that already had rows (EF gives a new non-nullable binary column an empty default).
/// </summary>
public sealed class RowsWithoutEncryptedValuesTests : IDisposable
{
    private readonly SqliteConnection _connection = new("Data Source=:memory:");
    private readonly InsecureInMemoryMasterKeyProvider _provider = new("primary");

    public RowsWithoutEncryptedValuesTests()
    {
        _connection.Open();
        using var db = CreateContext();
        db.Database.EnsureCreated();
    }

    public void Dispose() => _connection.Dispose();

    [Fact]
    public void A_record_saved_with_every_encrypted_value_null_takes_values_later()
    {
        var id = Guid.NewGuid();
        using (var db = CreateContext())
        {
            db.Notes.Add(new Note { Id = id });
            db.SaveChanges();
        }

        using (var db = CreateContext())
        {
            var note = db.Notes.Single(n => n.Id == id);
            Assert.Null(note.Text);
            Assert.Equal(0, db.SaveChanges());
            note.Text = "written later";
            Assert.Equal(1, db.SaveChanges());
        }

        using var check = CreateContext();
        var reread = check.Notes.AsNoTracking().Single(n => n.Id == id);
        Assert.Equal("written later", reread.Text);
        Assert.Null(reread.Tag);
    }

    [Fact]
    public void A_column_added_by_a_migration_reads_as_the_types_default_like_plain_EF()
    {
        // What a generated migration leaves in existing rows: the new non-nullable columns hold EF's default for a
        // binary column (an empty value), the nullable one NULL, and there is no data key yet.
        var id = Guid.NewGuid();
        Execute("INSERT INTO \"Contacts\" (\"Id\", \"Name\", \"Email\", \"Phone\", \"Score\", \"EfEnvelopeKey\") VALUES ($id, 'Bo', NULL, X'', X'', NULL)", id);

        using (var db = CreateContext())
        {
            var contact = db.Contacts.Single(c => c.Id == id);
            Assert.Equal("", contact.Phone);
            Assert.Equal(0, contact.Score);
            Assert.Null(contact.Email);
            Assert.Equal(0, db.SaveChanges());

            contact.Phone = "+1-555-0100";
            db.SaveChanges();
        }

        using var check = CreateContext();
        var reread = check.Contacts.AsNoTracking().Single(c => c.Id == id);
        Assert.Equal("+1-555-0100", reread.Phone);
        Assert.Equal(0, reread.Score);
        Assert.NotEqual(0, RawLength(id, "Score"));
    }

    [Fact]
    public void A_column_added_to_rows_that_already_have_a_data_key_reads_as_the_default_and_takes_an_edit()
    {
        // Written by the model before Score existed; the migration that added Score gave the row an empty value. The
        // record's seal lists only the values it had, so the new column reads as the default without a seal failure.
        var id = Guid.NewGuid();
        using (var db = new ContactsBeforeScoreContext(new DbContextOptionsBuilder<ContactsBeforeScoreContext>().UseSqlite(_connection).ManyConfigurationsPerProcess().UseEnvelopeEncryption(e => e.UseProvider(_provider)).Options))
        {
            db.Contacts.Add(new ContactBeforeScore { Id = id, Name = "Cy", Email = "cy@example.org", Phone = "+1-555-0101" });
            db.SaveChanges();
        }

        using (var db = CreateContext())
        {
            var contact = db.Contacts.Single(c => c.Id == id);
            Assert.Equal(0, contact.Score);
            Assert.Equal("cy@example.org", contact.Email);
            contact.Score = 7;
            db.SaveChanges();
        }

        using var check = CreateContext();
        Assert.Equal(7, check.Contacts.AsNoTracking().Single(c => c.Id == id).Score);
    }

    private ContactsContext CreateContext() =>
        new(new DbContextOptionsBuilder<ContactsContext>().UseSqlite(_connection).ManyConfigurationsPerProcess().UseEnvelopeEncryption(e => e.UseProvider(_provider)).Options);

    private void Execute(string sql, Guid id)
    {
        using var command = _connection.CreateCommand();
        command.CommandText = sql;
        command.Parameters.AddWithValue("$id", id.ToString().ToUpperInvariant());
        Assert.Equal(1, command.ExecuteNonQuery());
    }

    private long RawLength(Guid id, string column)
    {
        using var command = _connection.CreateCommand();
        command.CommandText = $"SELECT length(\"{column}\") FROM \"Contacts\" WHERE \"Id\" = $id";
        command.Parameters.AddWithValue("$id", id.ToString().ToUpperInvariant());
        return (long)command.ExecuteScalar()!;
    }

    private sealed class ContactsContext(DbContextOptions<ContactsContext> options) : DbContext(options)
    {
        public DbSet<Contact> Contacts => Set<Contact>();

        public DbSet<Note> Notes => Set<Note>();
    }

    /// <summary>The model of an earlier release: Contact before its Score property was added (the column is the migration's).</summary>
    private sealed class ContactsBeforeScoreContext(DbContextOptions<ContactsBeforeScoreContext> options) : DbContext(options)
    {
        public DbSet<ContactBeforeScore> Contacts => Set<ContactBeforeScore>();

        protected override void OnModelCreating(ModelBuilder modelBuilder) =>
            modelBuilder.Entity<ContactBeforeScore>().ToTable("Contacts").HasEncryptionBindingName(typeof(Contact).FullName!)
                .Property(c => c.Score).HasDefaultValue(Array.Empty<byte>());
    }

    private sealed class ContactBeforeScore
    {
        public Guid Id { get; set; }

        public string Name { get; set; } = "";

        [Encrypted]
        public string? Email { get; set; }

        [Encrypted]
        public string Phone { get; set; } = "";

        /// <summary>Not in this model's encrypted properties: the empty value the migration writes.</summary>
        public byte[] Score { get; set; } = [];
    }

    private sealed class Note
    {
        public Guid Id { get; set; }

        [Encrypted]
        public string? Text { get; set; }

        [Encrypted]
        public string? Tag { get; set; }
    }

    private sealed class Contact
    {
        public Guid Id { get; set; }

        public string Name { get; set; } = "";

        [Encrypted]
        public string? Email { get; set; }

        [Encrypted]
        public string Phone { get; set; } = "";

        [Encrypted]
        public int Score { get; set; }
    }
}
