using System.Buffers.Binary;
using System.Text;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Format;

/// <summary>
/// The record seal of an owned collection item (docs/FORMAT.md, "Record seal", flag bit 3): the document decoder
/// rebuilds the seal over the owner's key and then the item's own key, and an item sealed before item keys were bound
/// (flags 0x01, the owner's key only) still reads.
/// </summary>
public sealed partial class KnownAnswerTests
{
    private static readonly string LineEntity = typeof(SealKatLine).FullName!;

    private static SqliteConnection OpenBookDatabase(out DbContextOptions<SealKatBookContext> options, byte randomFrom = 0x40)
    {
        var connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();
        var provider = new InsecureInMemoryMasterKeyProvider(MasterKeyId, MasterKey, new CountingRandomSource(0xA0));
        options = new DbContextOptionsBuilder<SealKatBookContext>().UseSqlite(connection).ManyConfigurationsPerProcess()
            .UseEnvelopeEncryption(e => e.UseProvider(provider).UseApplicationName(Application).UseRandomSource(new CountingRandomSource(randomFrom)))
            .Options;
        using var db = new SealKatBookContext(options);
        db.Database.EnsureCreated();
        return connection;
    }

    // Book 3 with one line, number 2: the item's key is (BookId 3, Line 2), of which BookId is its owner's key.
    private static (byte[] WrappedKey, byte[] Text) WriteKnownLine(SqliteConnection connection, DbContextOptions<SealKatBookContext> options)
    {
        using (var db = new SealKatBookContext(options))
        {
            db.Books.Add(new SealKatBook { Id = 3, Lines = [new SealKatLine { Line = 2, Text = "line two" }] });
            db.SaveChanges();
        }

        using var command = connection.CreateCommand();
        command.CommandText = "SELECT EfEnvelopeKey, Text FROM BookLines";
        using var reader = command.ExecuteReader();
        Assert.True(reader.Read());
        return ((byte[])reader[0], (byte[])reader[1]);
    }

    // The page's bound values for the line: the owner's key (BookId, int32), then the item's own key (Line, int32).
    private static byte[][] LineBoundValues(int bookId = 3, int? line = 2)
    {
        byte[] Int32(int value)
        {
            var bytes = new byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(bytes, value);
            return DocumentDecoder.Concat(DocumentDecoder.LengthPrefixed16("int32"), DocumentDecoder.BoundValue(bytes));
        }

        return line is { } number ? [Int32(bookId), Int32(number)] : [Int32(bookId)];
    }

    // Pinned once the decoder below had verified them: flags 0x09 (key and item key bound), one entry (Text).
    private const string ExpectedLineWrappedKey =
        "0201606162636465666768696A6B6C6D6E6F09696E2D6D656D6F7279000A6B61742D6D617374657200234566456E76656C6F70652E54657374732E466F726D61742E5365616C4B61744C696E65003CC0C1C2C3C4C5C6C7C8C9CACBA0E985C4D3DD30F9307057099E0146F9FCC2518C8857A90D927AF1B18BC0C109A9BC6994496AA6FBB5603281F75AA28C707172737475767778797A7B40B498C20520753BBEE2FDE4D4864A698716A3A8F4154D994154B5F0BDE89F37FDD4B486791079C44B5552FECE96FF39090001D711EEAC9A2D224482954E4E6414763B1920033F88898A8B8C8D8E8F90919293B4F1397DEE542C9D7226CB0A69DE30F4";

    [Fact]
    public void A_decoder_written_from_the_format_document_checks_the_seal_of_an_owned_collection_item_over_its_own_key()
    {
        using var connection = OpenBookDatabase(out var options);
        var (wrappedKey, text) = WriteKnownLine(connection, options);

        Assert.Equal("line two", Encoding.UTF8.GetString(DocumentDecoder.DecryptField(wrappedKey, text, LineEntity, "Text", "string", null, flags: 0x09, LineBoundValues())));
        Assert.Equal(ExpectedLineWrappedKey, Convert.ToHexString(wrappedKey));
    }

    [Fact]
    public void The_document_decoder_refuses_the_items_seal_under_another_item_key_or_without_it()
    {
        using var connection = OpenBookDatabase(out var options);
        var (wrappedKey, text) = WriteKnownLine(connection, options);

        Assert.ThrowsAny<Exception>(() => DocumentDecoder.DecryptField(wrappedKey, text, LineEntity, "Text", "string", null, flags: 0x09, LineBoundValues(line: 1)));
        Assert.ThrowsAny<Exception>(() => DocumentDecoder.DecryptField(wrappedKey, text, LineEntity, "Text", "string", null, flags: 0x09, LineBoundValues(line: null)));
    }

    [Fact]
    public void An_item_sealed_before_item_keys_were_bound_still_reads_and_its_next_edit_binds_its_key()
    {
        using var connection = OpenBookDatabase(out var options);
        var (wrappedKey, _) = WriteKnownLine(connection, options);

        // What earlier releases wrote: the same trailer with flags 0x01, sealed over the owner's key alone.
        var old = DocumentDecoder.Reseal(wrappedKey, LineEntity, flags: 0x01, LineBoundValues(line: null));

        using (var command = connection.CreateCommand())
        {
            command.CommandText = "UPDATE BookLines SET EfEnvelopeKey = $key";
            command.Parameters.AddWithValue("$key", old);
            Assert.Equal(1, command.ExecuteNonQuery());
        }

        using (var db = new SealKatBookContext(options))
        {
            var book = db.Books.Include(b => b.Lines).Single();
            Assert.Equal("line two", Assert.Single(book.Lines).Text);
            book.Lines[0].Text = "line two, edited";
            db.SaveChanges();
        }

        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT EfEnvelopeKey, Text FROM BookLines";
            using var reader = command.ExecuteReader();
            Assert.True(reader.Read());
            Assert.Equal("line two, edited", Encoding.UTF8.GetString(DocumentDecoder.DecryptField((byte[])reader[0], (byte[])reader[1], LineEntity, "Text", "string", null, flags: 0x09, LineBoundValues())));
        }
    }
}

public class SealKatBook
{
    public int Id { get; set; }

    public List<SealKatLine> Lines { get; set; } = [];
}

public class SealKatLine
{
    public int Line { get; set; }

    [Encrypted]
    public string? Text { get; set; }
}

public sealed class SealKatBookContext(DbContextOptions<SealKatBookContext> options) : DbContext(options)
{
    public DbSet<SealKatBook> Books => Set<SealKatBook>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<SealKatBook>(book =>
        {
            book.ToTable("Books");
            book.Property(b => b.Id).ValueGeneratedNever();
            book.OwnsMany(b => b.Lines, line =>
            {
                line.ToTable("BookLines");
                line.WithOwner().HasForeignKey("BookId");
                line.HasKey("BookId", nameof(SealKatLine.Line));
                line.Property(l => l.Line).ValueGeneratedNever();
            });
        });
}
