using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Format;

/// <summary>
/// Known answers for the blind index, the index-key blob and every plaintext encoding of docs/FORMAT.md, checked by
/// the document decoder: the expected bytes below are written from the page's tables and formulas, not from the code.
/// </summary>
public sealed partial class KnownAnswerTests
{
    private static readonly string PersonEntity = typeof(Person).FullName!;
    private static readonly string AllTypesEntity = typeof(AllTypes).FullName!;

    private const string ExpectedIndexKey =
        "0102303132333435363738393A3B3C3D3E3F09696E2D6D656D6F7279000A6B61742D6D617374657200166566656E76656C6F70653A626C696E642D696E646578003CC0C1C2C3C4C5C6C7C8C9CACBA0E985C4D3DD30F9307057099E0146F9FCC2518C8857A90D927AF1B18BC0C109EA68CD6591CF590D3AB839BC1C502171";

    private const string ExpectedSsnIndex = "10DE0AAC4D616E23605C3C1CD41B057ABD615FC1AD3F57B4CDEEFC1E156F933D";

    /// <summary>Every type of the plaintext-encoding table, with the bytes the table gives for the value.</summary>
    private static readonly (string Property, string Hex)[] ExpectedEncodings =
    [
        ("Text", "4772C3BCC39F65"),                       // "Grüße": UTF-8
        ("Bytes", "00FF10"),                              // the bytes
        ("Flag", "01"),                                   // true
        ("Small", "C8"),                                  // byte 200
        ("Short", "FEFF"),                                // -2, two's complement LE
        ("Int", "FBFFFFFF"),                              // -5
        ("Long", "0807060504030201"),                     // 0x0102030405060708
        ("Float", "0000C03F"),                            // 1.5f, IEEE 754 LE
        ("Double", "00000000000000C0"),                   // -2.0
        ("Decimal", "96000000" + "00000000" + "00000000" + "00000280"), // -1.50m: lo 150, mid, hi, flags (scale 2, sign)
        ("Guid", "33221100554477668899AABBCCDDEEFF"),     // 00112233-4455-6677-8899-aabbccddeeff
        ("DateTime", "0040E4470222C148"),                 // 2000-01-01T00:00Z: ticks | kind Utc << 62
        ("DateTimeOffset", "00A8A8A90A22C108" + "3C00"),  // 2000-01-01T01:00+01:00: clock ticks, then +60 minutes
        ("DateOnly", "01000000"),                         // 0001-01-02: day 1 (day 0 is 0001-01-01)
        ("TimeOnly", "8096980000000000"),                 // 00:00:01: 10,000,000 ticks
        ("TimeSpan", "FFFFFFFFFFFFFFFF"),                 // -1 tick
        ("Enum", "0700"),                                 // BloodType.ONegative: short underlying type
        ("NullableInt", "02010000"),                      // 258, as int
        ("NullableEnum", "0100"),                         // BloodType.APositive
    ];

    // The version 2 type tag of each property's encoding (FORMAT.md, "Type tags"): bound into its field's associated data.
    private static readonly Dictionary<string, string> TypeTags = new()
    {
        ["Text"] = "string", ["Bytes"] = "bytes", ["Flag"] = "bool", ["Small"] = "uint8", ["Short"] = "int16", ["Int"] = "int32",
        ["Long"] = "int64", ["Float"] = "float32", ["Double"] = "float64", ["Decimal"] = "decimal", ["Guid"] = "guid",
        ["DateTime"] = "datetime", ["DateTimeOffset"] = "datetimeoffset", ["DateOnly"] = "dateonly", ["TimeOnly"] = "timeonly",
        ["TimeSpan"] = "timespan", ["Enum"] = "int16", ["NullableInt"] = "int32", ["NullableEnum"] = "int16",
    };

    private static AllTypes KnownValues() => new()
    {
        Id = 1,
        Text = "Grüße",
        Bytes = [0x00, 0xFF, 0x10],
        Flag = true,
        Small = 200,
        Short = -2,
        Int = -5,
        Long = 0x0102030405060708,
        Float = 1.5f,
        Double = -2.0,
        Decimal = -1.50m,
        Guid = new Guid("00112233-4455-6677-8899-aabbccddeeff"),
        DateTime = new DateTime(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc),
        DateTimeOffset = new DateTimeOffset(2000, 1, 1, 1, 0, 0, TimeSpan.FromHours(1)),
        DateOnly = new DateOnly(1, 1, 2),
        TimeOnly = new TimeOnly(0, 0, 1),
        TimeSpan = TimeSpan.FromTicks(-1),
        Enum = BloodType.ONegative,
        NullableInt = 258,
        NullableGuid = null,
        NullableEnum = BloodType.APositive,
        NullableDateTime = null,
    };

    [Fact]
    public void Every_plaintext_encoding_of_the_table_decrypts_to_the_bytes_the_table_gives()
    {
        var provider = new InsecureInMemoryMasterKeyProvider(MasterKeyId, MasterKey, new CountingRandomSource(0xA0));
        using var clinic = new InMemoryClinic(provider, e => e.UseProvider(provider).UseApplicationName(Application).UseRandomSource(new CountingRandomSource(0x40)));
        using (var db = clinic.CreateContext())
        {
            db.AllTypes.Add(KnownValues());
            db.SaveChanges();
        }

        var keyBlob = clinic.ReadRaw("SELECT EfEnvelopeKey FROM AllTypes");
        foreach (var (property, hex) in ExpectedEncodings)
        {
            var stored = clinic.ReadRaw($"SELECT \"{property}\" FROM AllTypes");
            Assert.True(hex == Convert.ToHexString(DocumentDecoder.DecryptField(keyBlob, stored, AllTypesEntity, property, invoiceId: 1, TypeTags[property])), $"{property}: the decrypted encoding differs from the table's");
        }

        // Null stays a NULL column: no blob at all.
        using var command = clinic.Connection.CreateCommand();
        command.CommandText = "SELECT NullableGuid IS NULL AND NullableDateTime IS NULL FROM AllTypes";
        Assert.Equal(1L, command.ExecuteScalar());
    }

    [Fact]
    public async Task The_index_key_blob_and_a_blind_index_have_the_pinned_bytes_and_the_document_decoder_recomputes_them()
    {
        var (indexKey, stored) = await WriteKnownPersonAsync(new Person { Id = 1, Name = "kat", Ssn = "078-05-1120" });

        Assert.Equal(ExpectedIndexKey, Convert.ToHexString(indexKey));
        Assert.Equal(ExpectedSsnIndex, Convert.ToHexString(stored["Ssn_Index"]!));
        Assert.Equal(ExpectedSsnIndex, Convert.ToHexString(DocumentDecoder.BlindIndex(indexKey, PersonEntity, "Ssn", Encoding.UTF8.GetBytes("078-05-1120"), 32)));
    }

    [Fact]
    public async Task Trim_removes_exactly_the_documented_white_space_and_IgnoreCase_maps_case_as_documented()
    {
        // Leading and trailing: every character of the page's white-space set, then characters the set leaves out.
        var kept = "\u200B\u180E\uFEFF";
        var email = DocumentDecoder.WhiteSpace + kept + "MiXeD.İΣK@Example.ORG" + DocumentDecoder.WhiteSpace;
        var (indexKey, stored) = await WriteKnownPersonAsync(new Person { Id = 2, Name = "kat", Ssn = "1", Email = email, City = "Springfield" });

        // The page: trim that set, then the invariant simple lowercase mapping: one code point to one, no language
        // or context rules (Σ becomes σ even at the end of a word), and U+0130 İ left as it is.
        var normalised = kept + "mixed.İσk@example.org";
        Assert.Equal(normalised, DocumentDecoder.Normalise(email, trim: true, ignoreCase: true));
        Assert.Equal(
            Convert.ToHexString(DocumentDecoder.BlindIndex(indexKey, PersonEntity, "Email", Encoding.UTF8.GetBytes(normalised), 32)),
            Convert.ToHexString(stored["Email_Index"]!));

        // IndexBytes = 1: the first byte of the same HMAC; BadgeNumber (int?) is null: a NULL index.
        Assert.Equal(
            Convert.ToHexString(DocumentDecoder.BlindIndex(indexKey, PersonEntity, "City", Encoding.UTF8.GetBytes("Springfield"), 1)),
            Convert.ToHexString(stored["City_Index"]!));
        Assert.Null(stored["BadgeNumber_Index"]);
    }

    [Fact]
    public async Task A_number_is_indexed_by_its_plaintext_encoding()
    {
        var (indexKey, stored) = await WriteKnownPersonAsync(new Person { Id = 3, Name = "kat", Ssn = "2", BadgeNumber = -5 });
        Assert.Equal(
            Convert.ToHexString(DocumentDecoder.BlindIndex(indexKey, PersonEntity, "BadgeNumber", Convert.FromHexString("FBFFFFFF"), 32)),
            Convert.ToHexString(stored["BadgeNumber_Index"]!));
    }

    [Fact]
    public async Task Decimals_instants_and_zeros_are_indexed_in_their_canonical_form()
    {
        var provider = new InsecureInMemoryMasterKeyProvider(MasterKeyId, MasterKey, new CountingRandomSource(0xA0));
        var indexKey = await BlindIndexKey.CreateAsync(provider, Application, random: new CountingRandomSource(0x30), cancellationToken: TestContext.Current.CancellationToken);
        using var cache = new KeyCache(new ProviderGateway(provider, TimeSpan.FromSeconds(30), Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance), new KeyCacheOptions(), TimeProvider.System, Application);
        var indexer = new Search.BlindIndexer(cache, indexKey);
        string Expected(string property, string encoding) =>
            Convert.ToHexString(DocumentDecoder.BlindIndex(indexKey, "E", property, Convert.FromHexString(encoding), 32));

        // 1.50m and 1.5m: both as 1.5 (lo 15, scale 1).
        var number = indexer.For<decimal>("E", "Amount", new BlindIndexOptions());
        Assert.Equal(Expected("Amount", "0F000000" + "00000000" + "00000000" + "00000100"), Convert.ToHexString(number.Compute(1.50m)));
        Assert.Equal(Convert.ToHexString(number.Compute(1.5m)), Convert.ToHexString(number.Compute(1.50m)));

        // 01:00+01:00 is indexed as 00:00+00:00, the same instant.
        var instant = indexer.For<DateTimeOffset>("E", "At", new BlindIndexOptions());
        Assert.Equal(Expected("At", "0040E4470222C108" + "0000"), Convert.ToHexString(instant.Compute(new DateTimeOffset(2000, 1, 1, 1, 0, 0, TimeSpan.FromHours(1)))));

        // A DateTime of kind Utc or Unspecified is indexed by its ticks (.NET's == and the databases ignore the kind):
        // the encoding of kind Unspecified. 2000-01-01 00:00 is 630,822,816,000,000,000 ticks. A Local time is indexed
        // as its UTC time, whatever the machine's time zone.
        var clock = indexer.For<DateTime>("E", "Born", new BlindIndexOptions());
        foreach (var kind in new[] { DateTimeKind.Unspecified, DateTimeKind.Utc })
        {
            Assert.Equal(Expected("Born", "0040E4470222C108"), Convert.ToHexString(clock.Compute(new DateTime(2000, 1, 1, 0, 0, 0, kind))));
        }

        Assert.Equal(Expected("Born", "0040E4470222C108"), Convert.ToHexString(clock.Compute(new DateTime(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc).ToLocalTime())));

        // -0.0 is indexed as +0.0.
        var real = indexer.For<double>("E", "Ratio", new BlindIndexOptions());
        Assert.Equal(Expected("Ratio", "0000000000000000"), Convert.ToHexString(real.Compute(-0.0)));
    }

    /// <summary>Writes one person with fixed keys and randomness; returns the index key and the stored index columns.</summary>
    private static async Task<(byte[] IndexKey, Dictionary<string, byte[]?> Stored)> WriteKnownPersonAsync(Person person)
    {
        var provider = new InsecureInMemoryMasterKeyProvider(MasterKeyId, MasterKey, new CountingRandomSource(0xA0));
        var indexKey = await BlindIndexKey.CreateAsync(provider, Application, random: new CountingRandomSource(0x30), cancellationToken: TestContext.Current.CancellationToken);
        using var connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();
        var options = new DbContextOptionsBuilder<SearchContext>()
            .UseSqlite(connection)
            .ManyConfigurationsPerProcess()
            .UseEnvelopeEncryption(e => e.UseProvider(provider).UseApplicationName(Application).UseBlindIndexKey(indexKey).UseRandomSource(new CountingRandomSource(0x40)))
            .Options;
        await using (var db = new SearchContext(options))
        {
            await db.Database.EnsureCreatedAsync(TestContext.Current.CancellationToken);
            db.People.Add(person);
            await db.SaveChangesAsync(TestContext.Current.CancellationToken);
        }

        var stored = new Dictionary<string, byte[]?>();
        foreach (var column in new[] { "Ssn_Index", "Email_Index", "City_Index", "BadgeNumber_Index" })
        {
            using var command = connection.CreateCommand();
            command.CommandText = $"SELECT \"{column}\" FROM People WHERE Id = {person.Id}";
            stored[column] = command.ExecuteScalar() as byte[];
        }

        return (indexKey, stored);
    }

    private static partial class DocumentDecoder
    {
        /// <summary>The white-space set of <c>Trim</c>, as the page lists it.</summary>
        public const string WhiteSpace =
            "\u0009\u000A\u000B\u000C\u000D\u0020\u0085\u00A0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200A\u2028\u2029\u202F\u205F\u3000";

        /// <summary>The page's normalisation of a string (no NFC here: the inputs are already composed).</summary>
        public static string Normalise(string value, bool trim, bool ignoreCase)
        {
            if (trim)
            {
                value = value.Trim(WhiteSpace.ToCharArray());
            }

            // Simple (one-to-one) lowercase mapping of each code point, with no language or context rules.
            return ignoreCase ? string.Concat(value.EnumerateRunes().Select(r => Rune.ToLowerInvariant(r).ToString())) : value;
        }

        /// <summary>Unwraps the index key (a direct-mode blob) and computes a property's blind index, as the page says.</summary>
        public static byte[] BlindIndex(byte[] indexKeyBlob, string entity, string property, byte[] encoding, int indexBytes)
        {
            Assert.Equal([1, 2], indexKeyBlob[..2]);
            var recordId = indexKeyBlob.AsSpan(2, 16).ToArray();
            var at = 18 + 1 + indexKeyBlob[18];
            var keyIdLength = BinaryPrimitives.ReadUInt16BigEndian(indexKeyBlob.AsSpan(at));
            var keyId = Encoding.UTF8.GetString(indexKeyBlob, at + 2, keyIdLength);
            at += 2 + keyIdLength;
            var entityLength = BinaryPrimitives.ReadUInt16BigEndian(indexKeyBlob.AsSpan(at));
            Assert.Equal("efenvelope:blind-index", Encoding.UTF8.GetString(indexKeyBlob, at + 2, entityLength));
            at += 2 + entityLength;
            var wrappedLength = BinaryPrimitives.ReadUInt16BigEndian(indexKeyBlob.AsSpan(at));
            var wrapped = indexKeyBlob.AsSpan(at + 2, wrappedLength).ToArray();
            Assert.Equal(indexKeyBlob.Length, at + 2 + wrappedLength);

            // The application name is part of the provider context and is not stored in the blob.
            var pairs = new[] { ("efenvelope:application", Application), ("efenvelope:entity", "efenvelope:blind-index"), ("efenvelope:record", Convert.ToHexStringLower(recordId)) };
            var aad = Concat([LengthPrefixed32(keyId), .. pairs.SelectMany(p => new[] { LengthPrefixed32(p.Item1), LengthPrefixed32(p.Item2) })]);
            var indexKey = Open(MasterKey, wrapped, aad);

            var info = Concat(Encoding.ASCII.GetBytes("efenvelope/blind-index/v1"), LengthPrefixed16(entity), LengthPrefixed16(property));
            var propertyKey = HKDF.DeriveKey(HashAlgorithmName.SHA256, indexKey, 32, salt: [], info: info);
            return HMACSHA256.HashData(propertyKey, encoding)[..indexBytes];
        }
    }
}
