using System.Buffers.Binary;
using System.Text;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Format;

/// <summary>
/// The record seal of a type in an inheritance hierarchy with bound columns (docs/FORMAT.md, "Record seal"): the
/// document decoder rebuilds the seal's message from the page (concrete type after the entity, the key, then the
/// opted-in columns in their canonical form) and checks it.
/// </summary>
public sealed partial class KnownAnswerTests
{
    private static readonly string PaymentEntity = typeof(SealKatPayment).FullName!;

    // 2026-12-01T07:30:00.1234567Z: written with kind Utc and sub-microsecond ticks, bound as Unspecified .123456.
    private static readonly DateTime SealKatMoment = new DateTime(2026, 12, 1, 7, 30, 0, DateTimeKind.Utc).AddTicks(1_234_567);

    private static (byte[] WrappedKey, byte[] Memo) WriteKnownCard()
    {
        using var connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();
        var provider = new InsecureInMemoryMasterKeyProvider(MasterKeyId, MasterKey, new CountingRandomSource(0xA0));
        var options = new DbContextOptionsBuilder<SealKatContext>().UseSqlite(connection).ManyConfigurationsPerProcess()
            .UseEnvelopeEncryption(e => e.UseProvider(provider).UseApplicationName(Application).UseRandomSource(new CountingRandomSource(0x40)))
            .Options;
        using (var db = new SealKatContext(options))
        {
            db.Database.EnsureCreated();
            db.Payments.Add(new SealKatCard { Id = 7, Memo = "card memo", Amount = 1.50m, At = SealKatMoment });
            db.SaveChanges();
        }

        using var command = connection.CreateCommand();
        command.CommandText = "SELECT EfEnvelopeKey, Memo FROM Payments";
        using var reader = command.ExecuteReader();
        Assert.True(reader.Read());
        return ((byte[])reader[0], (byte[])reader[1]);
    }

    // The bound values the page gives for the card: key Id 7 (int32), then At (prefix length 2) before Amount (6).
    private static byte[][] CardBoundValues(int id = 7, long atTicks = 639_317_070_001_234_560)
    {
        var key = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(key, id);
        var at = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(at, atTicks);
        // 1.50m without trailing zeros is 1.5: lo 15, mid 0, hi 0, flags scale 1 (0x00010000).
        var amount = Convert.FromHexString("0F000000" + "00000000" + "00000000" + "00000100");
        return
        [
            DocumentDecoder.Concat(DocumentDecoder.LengthPrefixed16("int32"), DocumentDecoder.BoundValue(key)),
            DocumentDecoder.Concat(DocumentDecoder.LengthPrefixed16("At"), DocumentDecoder.LengthPrefixed16("datetime"), DocumentDecoder.BoundValue(at)),
            DocumentDecoder.Concat(DocumentDecoder.LengthPrefixed16("Amount"), DocumentDecoder.LengthPrefixed16("decimal"), DocumentDecoder.BoundValue(amount)),
        ];
    }

    // Pinned once the decoder below had verified them.
    private const string ExpectedCardWrappedKey =
        "0201606162636465666768696A6B6C6D6E6F09696E2D6D656D6F7279000A6B61742D6D617374657200264566456E76656C6F70652E54657374732E466F726D61742E5365616C4B61745061796D656E74003CC0C1C2C3C4C5C6C7C8C9CACBA0E985C4D3DD30F9307057099E0146F9FCC2518C8857A90D927AF1B18BC0C1090D1A38A0B66251D6493B31B142157360707172737475767778797A7B40B498C20520753BBEE2FDE4D4864A698716A3A8F4154D994154B5F0BDE89F37A00853F3B41713403656F95D2C68E57D0300013DC360D5F9560210267568EA48EC8E9E5CC7AD8188898A8B8C8D8E8F9091929329CACCD76E5934D9DD7A7DD7B39B9850";

    [Fact]
    public void A_decoder_written_from_the_format_document_checks_the_seal_of_a_derived_type_with_bound_columns()
    {
        var (wrappedKey, memo) = WriteKnownCard();

        Assert.Equal(639_317_070_001_234_567, SealKatMoment.Ticks); // the page truncates the last digit
        Assert.Equal("card memo", Encoding.UTF8.GetString(DocumentDecoder.DecryptField(wrappedKey, memo, PaymentEntity, "Memo", "string", "card", flags: 3, CardBoundValues())));
        Assert.Equal(ExpectedCardWrappedKey, Convert.ToHexString(wrappedKey));
    }

    [Fact]
    public void The_document_decoder_refuses_the_derived_types_seal_under_another_type_or_another_bound_value()
    {
        var (wrappedKey, memo) = WriteKnownCard();

        Assert.ThrowsAny<Exception>(() => DocumentDecoder.DecryptField(wrappedKey, memo, PaymentEntity, "Memo", "string", "payment", flags: 3, CardBoundValues()));
        Assert.ThrowsAny<Exception>(() => DocumentDecoder.DecryptField(wrappedKey, memo, PaymentEntity, "Memo", "string", null, flags: 3, CardBoundValues()));
        Assert.ThrowsAny<Exception>(() => DocumentDecoder.DecryptField(wrappedKey, memo, PaymentEntity, "Memo", "string", "card", flags: 3, CardBoundValues(atTicks: 639_317_070_001_234_570)));
    }
}

public class SealKatPayment
{
    public int Id { get; set; }

    public decimal Amount { get; set; }

    public DateTime At { get; set; }

    [Encrypted]
    public string? Memo { get; set; }
}

public class SealKatCard : SealKatPayment;

public sealed class SealKatContext(DbContextOptions<SealKatContext> options) : DbContext(options)
{
    public DbSet<SealKatPayment> Payments => Set<SealKatPayment>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<SealKatPayment>(payment =>
        {
            payment.ToTable("Payments");
            payment.Property(p => p.Id).ValueGeneratedNever();
            payment.Property(p => p.Amount).IsBoundToRecord();
            payment.Property(p => p.At).IsBoundToRecord();
            payment.HasDiscriminator<string>("Kind").HasValue<SealKatPayment>("payment").HasValue<SealKatCard>("card");
        });
}
