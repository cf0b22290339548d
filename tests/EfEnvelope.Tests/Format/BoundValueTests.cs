using System.Buffers.Binary;
using System.Text;
using EfEnvelope.Metadata;
using EfEnvelope.Specification.Tests;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage.ValueConversion;

namespace EfEnvelope.Tests.Format;

/// <summary>
/// The seal's bound values in their canonical form (docs/FORMAT.md, "Record seal"): the expected bytes are written
/// from the page's table, and values a database hands back changed (kind, scale, offset, sub-microsecond ticks, sign
/// of zero, NaN payload) must encode as the value that was written.
/// </summary>
public sealed class BoundValueTests
{
    private static readonly DateTime Moment = new(2026, 12, 1, 7, 30, 0); // 639317070000000000 ticks

    public static TheoryData<string, object, object, string> Equivalents => new()
    {
        // property, as written, as read back, expected canonical plaintext encoding (hex, from the table)
        { "When", DateTime.SpecifyKind(Moment, DateTimeKind.Utc), Moment, Ticks(Moment.Ticks) },
        { "When", Moment.AddTicks(7), DateTime.SpecifyKind(Moment, DateTimeKind.Local), Ticks(Moment.Ticks) },
        { "Instant", new DateTimeOffset(Moment, TimeSpan.FromHours(2)), new DateTimeOffset(Moment.AddHours(-2), TimeSpan.Zero), Ticks(Moment.AddHours(-2).Ticks) + "0000" },
        { "Span", TimeSpan.FromTicks(-15), TimeSpan.FromTicks(-10), Ticks(-10) },
        { "Clock", new TimeOnly(123_456_789), new TimeOnly(123_456_780), Ticks(123_456_780) },
        { "Price", 1.00m, 1m, "01000000" + "00000000" + "00000000" + "00000000" },
        { "Price", 1.50m, 1.5m, "0F000000" + "00000000" + "00000000" + "00000100" },
        { "Price", -0.00m, 0m, "00000000" + "00000000" + "00000000" + "00000000" },
        { "Ratio", -0d, 0d, "0000000000000000" },
        { "Ratio", BitConverter.Int64BitsToDouble(0x7FF8000000000001), double.NaN, "000000000000F8FF" },
        { "Weight", -0f, 0f, "00000000" },
        { "Weight", BitConverter.Int32BitsToSingle(0x7FC00001), float.NaN, "0000C0FF" },
        { "Id", new BoundId(new Guid("00112233-4455-6677-8899-aabbccddeeff")), new BoundId(new Guid("00112233-4455-6677-8899-aabbccddeeff")), "33221100554477668899AABBCCDDEEFF" },
    };

    [Theory]
    [MemberData(nameof(Equivalents))]
    public void A_value_and_what_the_database_gives_back_for_it_bind_as_the_same_canonical_bytes(string property, object written, object read, string canonical)
    {
        using var db = new BoundContext();
        var column = new BoundColumn(db.Model.FindEntityType(typeof(BoundRow))!.FindProperty(property)!, named: true);
        var expected = Convert.FromHexString(canonical);
        Assert.Equal(Expected(column.Prefix, expected), Encode(column, written));
        Assert.Equal(Expected(column.Prefix, expected), Encode(column, read));
    }

    [Fact]
    public void A_strongly_typed_id_is_bound_by_its_provider_value_under_the_provider_types_tag()
    {
        using var db = new BoundContext();
        var property = db.Model.FindEntityType(typeof(BoundRow))!.FindProperty(nameof(BoundRow.Id))!;
        Assert.True(BoundColumn.CanBind(property));
        var column = new BoundColumn(property, named: false);
        Assert.Equal(Prefixed("guid"), column.Prefix);
    }

    [Fact]
    public void Values_that_differ_by_a_microsecond_or_more_bind_differently()
    {
        using var db = new BoundContext();
        var column = new BoundColumn(db.Model.FindEntityType(typeof(BoundRow))!.FindProperty(nameof(BoundRow.When))!, named: true);
        Assert.NotEqual(Encode(column, Moment), Encode(column, Moment.AddTicks(10)));
        var price = new BoundColumn(db.Model.FindEntityType(typeof(BoundRow))!.FindProperty(nameof(BoundRow.Price))!, named: true);
        Assert.NotEqual(Encode(price, 1.5m), Encode(price, 1.05m));
    }

    [Fact]
    public void A_bound_column_of_a_type_without_an_encoding_is_refused_naming_it()
    {
        using var db = new BoundContext();
        var property = db.Model.FindEntityType(typeof(BoundRow))!.FindProperty(nameof(BoundRow.Grade))!;
        Assert.False(BoundColumn.CanBind(property));
        var error = Assert.Throws<InvalidOperationException>(() => new BoundColumn(property, named: true));
        Assert.Contains("BoundRow.Grade", error.Message, StringComparison.Ordinal);
    }

    private static string Ticks(long ticks)
    {
        var bytes = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(bytes, ticks);
        return Convert.ToHexString(bytes);
    }

    private static byte[] Encode(BoundColumn column, object value)
    {
        var message = new byte[column.Length(value)];
        Assert.Equal(message.Length, column.Write(value, message, 0));
        return message;
    }

    // uint16 length || UTF-8 property name || uint16 length || UTF-8 type tag, then 0x01 || uint32 length (big-endian) || encoding.
    private static byte[] Expected(byte[] prefix, byte[] encoding)
    {
        var length = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(length, (uint)encoding.Length);
        return [.. prefix, 0x01, .. length, .. encoding];
    }

    private static byte[] Prefixed(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        return [(byte)(bytes.Length >> 8), (byte)bytes.Length, .. bytes];
    }

    public readonly record struct BoundId(Guid Value);

    public sealed class BoundRow
    {
        public BoundId Id { get; set; }

        public DateTime When { get; set; }

        public DateTimeOffset Instant { get; set; }

        public TimeSpan Span { get; set; }

        public TimeOnly Clock { get; set; }

        public decimal Price { get; set; }

        public double Ratio { get; set; }

        public float Weight { get; set; }

        public char Grade { get; set; }
    }

    private sealed class BoundContext : DbContext
    {
        protected override void OnConfiguring(DbContextOptionsBuilder optionsBuilder) => optionsBuilder.UseSqlite("Data Source=:memory:").ManyConfigurationsPerProcess();

        protected override void OnModelCreating(ModelBuilder modelBuilder) =>
            modelBuilder.Entity<BoundRow>().Property(r => r.Id).HasConversion(new ValueConverter<BoundId, Guid>(v => v.Value, v => new BoundId(v)));
    }
}
