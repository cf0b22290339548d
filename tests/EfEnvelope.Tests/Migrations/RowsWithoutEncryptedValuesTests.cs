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
        var id = Guid.NewGuid();
        using (var db = CreateContext())
        {
            db.Contacts.Add(new Contact { Id = id, Name = "Cy", Email = "cy@example.org", Phone = "+1-555-0101", Score = 5 });
            db.SaveChanges();
        }

        // The migration that added Score ran after this row was written.
        Execute("UPDATE \"Contacts\" SET \"Score\" = X'' WHERE \"Id\" = $id", id);
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
