using System.Buffers.Binary;
using System.Text;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Format;

/// <summary>
/// A record written while its properties map legacy plaintext columns (docs/FORMAT.md, "Record trailer", flag bit 2):
/// a NULL legacy-mapped property is listed with the all-zero tag, which the document decoder checks, and the record
/// still reads once the legacy columns are unmapped (the migration's last step).
/// </summary>
public sealed partial class KnownAnswerTests
{
    private static readonly string LegacyEntity = typeof(SealKatAccount).FullName!;

    // Account 5: Code holds "abc", Note is NULL; both map a legacy plaintext column.
    private static (SqliteConnection Connection, byte[] WrappedKey, byte[] Code) WriteKnownAccount()
    {
        var connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();
        using (var db = AccountContext(connection, legacy: true))
        {
            db.Database.EnsureCreated();
            db.Accounts.Add(new SealKatAccount { Id = 5, Code = "abc", Note = null });
            db.SaveChanges();
        }

        using var command = connection.CreateCommand();
        command.CommandText = "SELECT EfEnvelopeKey, Code, Note, Code_Plaintext, Note_Plaintext FROM Accounts";
        using var reader = command.ExecuteReader();
        Assert.True(reader.Read());
        Assert.True(reader.IsDBNull(2) && reader.IsDBNull(3) && reader.IsDBNull(4), "saving wrote no plaintext and no ciphertext for NULL");
        return (connection, (byte[])reader[0], (byte[])reader[1]);
    }

    // The same table, with the legacy columns mapped (migration under way) or not (after its last step).
    private static SealKatAccountContext AccountContext(SqliteConnection connection, bool legacy)
    {
        var provider = new InsecureInMemoryMasterKeyProvider(MasterKeyId, MasterKey, new CountingRandomSource(0xA0));
        var options = new DbContextOptionsBuilder().UseSqlite(connection).ManyConfigurationsPerProcess()
            .UseEnvelopeEncryption(e => e.UseProvider(provider).UseApplicationName(Application).UseRandomSource(new CountingRandomSource(0x50)))
            .Options;
        return legacy ? new SealKatLegacyAccountContext(options) : new SealKatAccountContext(options);
    }

    private static byte[][] AccountBoundValues()
    {
        var id = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(id, 5);
        return [DocumentDecoder.Concat(DocumentDecoder.LengthPrefixed16("int32"), DocumentDecoder.BoundValue(id))];
    }

    // Pinned once the decoder below had verified them: flags 0x05 (key bound, legacy NULLs listed), two entries.
    private const string ExpectedAccountWrappedKey =
        "0201707172737475767778797A7B7C7D7E7F09696E2D6D656D6F7279000A6B61742D6D617374657200264566456E76656C6F70652E54657374732E466F726D61742E5365616C4B61744163636F756E74003CC0C1C2C3C4C5C6C7C8C9CACBA0E985C4D3DD30F9307057099E0146F9FCC2518C8857A90D927AF1B18BC0C109047B230E902E5005FA17DE8EAFF8731B808182838485868788898A8B378693511C78F34A6C075DB4D6437FEC0109B2CE4927B8D883E386995E64BE4762B67C76F67EECE62E7CE9E45C4834330500020B436C2094415F15DAED2221A6C902B23850DF4ECABEE24900000000000000000000000000000000A4A5A6A7A8A9AAABACADAEAF2437BCC0D09BEF5FB4C3126993F61FE4";

    [Fact]
    public void A_decoder_written_from_the_format_document_checks_a_NULL_legacy_mapped_property_listed_with_the_zero_tag()
    {
        var (connection, wrappedKey, code) = WriteKnownAccount();
        using (connection)
        {
            Assert.Equal("abc", Encoding.UTF8.GetString(DocumentDecoder.DecryptField(wrappedKey, code, LegacyEntity, "Code", "string", null, flags: 0x05, AccountBoundValues())));
            Assert.Empty(DocumentDecoder.DecryptField(wrappedKey, null, LegacyEntity, "Note", "string", null, flags: 0x05, AccountBoundValues()));
            Assert.Equal(ExpectedAccountWrappedKey, Convert.ToHexString(wrappedKey));
        }
    }

    [Fact]
    public void A_zero_tag_entry_is_refused_without_flag_bit_2_by_the_library_and_the_document_decoder()
    {
        var (connection, wrappedKey, code) = WriteKnownAccount();
        using (connection)
        {
            // The same entries under flags 0x01, sealed again with the data key: only the missing bit 2 is wrong.
            var resealed = DocumentDecoder.Reseal(wrappedKey, LegacyEntity, flags: 0x01, AccountBoundValues());

            // The seal itself verifies (Code still decrypts); the zero-tag entry for NULL Note is what is refused.
            Assert.Equal("abc", Encoding.UTF8.GetString(DocumentDecoder.DecryptField(resealed, code, LegacyEntity, "Code", "string", null, flags: 0x01, AccountBoundValues())));
            Assert.ThrowsAny<Exception>(() => DocumentDecoder.DecryptField(resealed, null, LegacyEntity, "Note", "string", null, flags: 0x01, AccountBoundValues()));

            using (var command = connection.CreateCommand())
            {
                command.CommandText = "UPDATE Accounts SET EfEnvelopeKey = $key";
                command.Parameters.AddWithValue("$key", resealed);
                Assert.Equal(1, command.ExecuteNonQuery());
            }

            using var db = AccountContext(connection, legacy: true);
            var error = Assert.Throws<EnvelopeDecryptionException>(() => db.Accounts.AsNoTracking().Single());
            Assert.Equal(nameof(SealKatAccount.Note), error.Property);
        }
    }

    [Fact]
    public void A_record_with_listed_legacy_NULLs_reads_and_is_edited_once_the_legacy_columns_are_unmapped()
    {
        var (connection, _, _) = WriteKnownAccount();
        using (connection)
        {
            using (var db = AccountContext(connection, legacy: false))
            {
                var account = db.Accounts.Single();
                Assert.Equal(("abc", null), (account.Code, account.Note));
                account.Note = "now set";
                db.SaveChanges();
            }

            using var reader = AccountContext(connection, legacy: false);
            var read = reader.Accounts.AsNoTracking().Single();
            Assert.Equal(("abc", "now set"), (read.Code, read.Note));

            // The edit wrote the record without listed NULLs: flags 0x01.
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT EfEnvelopeKey, Note FROM Accounts";
            using var raw = command.ExecuteReader();
            Assert.True(raw.Read());
            Assert.Equal("now set", Encoding.UTF8.GetString(DocumentDecoder.DecryptField((byte[])raw[0], (byte[])raw[1], LegacyEntity, "Note", "string", null, flags: 0x01, AccountBoundValues())));
        }
    }
}

public class SealKatAccount
{
    public int Id { get; set; }

    public string? Code { get; set; }

    public string? Note { get; set; }
}

public class SealKatAccountContext(DbContextOptions options) : DbContext(options)
{
    public DbSet<SealKatAccount> Accounts => Set<SealKatAccount>();

    protected virtual bool MapsLegacyColumns => false;

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<SealKatAccount>(account =>
        {
            account.ToTable("Accounts");
            account.Property(a => a.Id).ValueGeneratedNever();
            var code = account.Property(a => a.Code).IsEncrypted();
            var note = account.Property(a => a.Note).IsEncrypted();
            if (MapsLegacyColumns)
            {
                code.HasLegacyPlaintextColumn("Code_Plaintext");
                note.HasLegacyPlaintextColumn("Note_Plaintext");
            }
        });
}

public sealed class SealKatLegacyAccountContext(DbContextOptions options) : SealKatAccountContext(options)
{
    protected override bool MapsLegacyColumns => true;
}
