using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Format;

/// <summary>
/// Pins the stored format (docs/FORMAT.md): fixed keys and randomness must give fixed bytes, and a decoder written
/// from the document alone, sharing no code with the library, must decrypt them.
/// </summary>
public sealed partial class KnownAnswerTests
{
    private const string MasterKeyId = "kat-master";
    private const string Application = "kat";
    private static readonly string Entity = typeof(Invoice).FullName!;
    private static readonly byte[] MasterKey = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray();

    // Format version 1, as every release before version 2 wrote it (the same keys and randomness): still readable.
    private const string Version1WrappedKey =
        "0101606162636465666768696A6B6C6D6E6F09696E2D6D656D6F7279000A6B61742D6D617374657200364566456E76656C6F70652E53706563696669636174696F6E2E54657374732E456E746974794672616D65776F726B2E496E766F696365003CC0C1C2C3C4C5C6C7C8C9CACBA0E985C4D3DD30F9307057099E0146F9FCC2518C8857A90D927AF1B18BC0C109CF0E2CF3C02460AFB8CFC83C52FDE891707172737475767778797A7B40B498C20520753BBEE2FDE4D4864A698716A3A8F4154D994154B5F0BDE89F37E2BEFA9C86AC7D91A3BC7CD686C6ABFC";
    private const string Version1CardNumber =
        "017C7D7E7F80818283848586879C292AA61D362613439A595807113F8568D65FE14EDF13463D085A094DDEBAB5";

    // Format version 2 (docs/FORMAT.md, worked example): the same data key and nonces as above, labelled associated
    // data, and the trailer (flags 0x01, one entry: CardNumber's name id and tag) and record seal.
    private const string ExpectedWrappedKey =
        "0201606162636465666768696A6B6C6D6E6F09696E2D6D656D6F7279000A6B61742D6D617374657200364566456E76656C6F70652E53706563696669636174696F6E2E54657374732E456E746974794672616D65776F726B2E496E766F696365003CC0C1C2C3C4C5C6C7C8C9CACBA0E985C4D3DD30F9307057099E0146F9FCC2518C8857A90D927AF1B18BC0C109CF0E2CF3C02460AFB8CFC83C52FDE891707172737475767778797A7B40B498C20520753BBEE2FDE4D4864A698716A3A8F4154D994154B5F0BDE89F37185CED3E6FCDF17AB5791441F4F62F8201000134AFF7AE54199B11468B21D22E50A0C03503658B88898A8B8C8D8E8F909192930F0ED61CB8AD1062DD7176055ABEBE55";
    private const string ExpectedCardNumber =
        "027C7D7E7F80818283848586879C292AA61D362613439A595807113F8554199B11468B21D22E50A0C03503658B";
    private const string ExpectedDirectWrappedKey =
        "0202404142434445464748494A4B4C4D4E4F09696E2D6D656D6F7279000A6B61742D6D617374657200364566456E76656C6F70652E53706563696669636174696F6E2E54657374732E456E746974794672616D65776F726B2E496E766F696365003CC0C1C2C3C4C5C6C7C8C9CACBA0E985C4D3DD30F9307057099E0146F9FCC2518C8857A90D927AF1B18BC0C10953DD982D186F4B9B7D8F47458DA4CE3601000134AFF7AEBE8071CFFF8944CCA94F3D63B7664F095C5D5E5F6061626364656667C26A73EE167973083149FD4971DB0AF6";

    private static (byte[] WrappedKey, byte[] CardNumber) WriteKnownInvoice(KeyWrappingMode mode = KeyWrappingMode.CachedKeyEncryptionKey)
    {
        var provider = new InsecureInMemoryMasterKeyProvider(MasterKeyId, MasterKey, new CountingRandomSource(0xA0));
        using var clinic = new InMemoryClinic(provider, e => e
            .UseProvider(provider)
            .UseApplicationName(Application)
            .UseKeyWrappingMode(mode)
            .UseRandomSource(new CountingRandomSource(0x40)));
        using (var db = clinic.CreateContext())
        {
            db.Invoices.Add(new Invoice { Id = 1, CardNumber = "4111111111111111", Amount = 1 });
            db.SaveChanges();
        }

        return (clinic.ReadRaw("SELECT EfEnvelopeKey FROM Invoices"), clinic.ReadRaw("SELECT CardNumber FROM Invoices"));
    }

    [Fact]
    public void Fixed_keys_and_randomness_give_the_pinned_bytes()
    {
        var (wrappedKey, cardNumber) = WriteKnownInvoice();

        Assert.Equal(ExpectedWrappedKey, Convert.ToHexString(wrappedKey));
        Assert.Equal(ExpectedCardNumber, Convert.ToHexString(cardNumber));
        Assert.Equal(ExpectedDirectWrappedKey, Convert.ToHexString(WriteKnownInvoice(KeyWrappingMode.Direct).WrappedKey));
    }

    [Fact]
    public void A_decoder_written_from_the_format_document_decrypts_a_stored_row_and_checks_its_seal()
    {
        var (wrappedKey, cardNumber) = WriteKnownInvoice();

        Assert.Equal("4111111111111111", Encoding.UTF8.GetString(DocumentDecoder.DecryptField(wrappedKey, cardNumber, Entity, "CardNumber", invoiceId: 1)));
    }

    [Fact]
    public void A_decoder_written_from_the_format_document_decrypts_a_direct_mode_row_and_checks_its_seal()
    {
        var (wrappedKey, cardNumber) = WriteKnownInvoice(KeyWrappingMode.Direct);

        Assert.Equal(2, wrappedKey[1]);
        Assert.Equal("4111111111111111", Encoding.UTF8.GetString(DocumentDecoder.DecryptField(wrappedKey, cardNumber, Entity, "CardNumber", invoiceId: 1)));
    }

    [Fact]
    public void The_document_decoder_refuses_a_seal_over_another_row_or_a_NULLed_value()
    {
        // The decoder's seal check is what the two tests above rely on: it must be able to fail.
        var (wrappedKey, cardNumber) = WriteKnownInvoice();

        Assert.ThrowsAny<Exception>(() => DocumentDecoder.DecryptField(wrappedKey, cardNumber, Entity, "CardNumber", invoiceId: 2));
        Assert.ThrowsAny<Exception>(() => DocumentDecoder.DecryptField(wrappedKey, null, Entity, "CardNumber", invoiceId: 1));
    }

    private static InMemoryClinic ClinicWithVersion1Invoice()
    {
        var provider = new InsecureInMemoryMasterKeyProvider(MasterKeyId, MasterKey);
        var clinic = new InMemoryClinic(provider, e => e.UseProvider(provider).UseApplicationName(Application));
        using var command = clinic.Connection.CreateCommand();
        command.CommandText = "INSERT INTO Invoices (Id, CardNumber, Amount, EfEnvelopeKey) VALUES (1, $card, '1.0', $key)";
        command.Parameters.AddWithValue("$card", Convert.FromHexString(Version1CardNumber));
        command.Parameters.AddWithValue("$key", Convert.FromHexString(Version1WrappedKey));
        Assert.Equal(1, command.ExecuteNonQuery());
        return clinic;
    }

    [Fact]
    public void A_version_1_row_is_refused_once_sealed_records_are_required()
    {
        using var clinic = ClinicWithVersion1Invoice();
        using var db = clinic.CreateContext(e => e.UseProvider(clinic.Provider).UseApplicationName(Application).RequireSealedRecords());

        var error = Assert.Throws<EnvelopeDecryptionException>(() => db.Invoices.AsNoTracking().Single());
        Assert.Equal(Entity, error.Entity);
        Assert.Contains("RequireSealedRecords", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_version_1_row_from_fixed_bytes_still_reads_and_its_next_edit_writes_version_2()
    {
        using var clinic = ClinicWithVersion1Invoice();

        using (var db = clinic.CreateContext())
        {
            var invoice = db.Invoices.Single();
            Assert.Equal("4111111111111111", invoice.CardNumber);
            invoice.CardNumber = "5500000000000004";
            db.SaveChanges();
        }

        var (key, card) = (clinic.ReadRaw("SELECT EfEnvelopeKey FROM Invoices"), clinic.ReadRaw("SELECT CardNumber FROM Invoices"));
        Assert.Equal((2, 2), (key[0], card[0]));
        Assert.NotEqual(Convert.FromHexString(Version1WrappedKey)[2..18], key[2..18]);
        Assert.Equal("5500000000000004", Encoding.UTF8.GetString(DocumentDecoder.DecryptField(key, card, Entity, "CardNumber", invoiceId: 1)));
        using var reader = clinic.CreateContext(e => e.UseProvider(clinic.Provider).UseApplicationName(Application).RequireSealedRecords());
        Assert.Equal("5500000000000004", reader.Invoices.AsNoTracking().Single().CardNumber);
    }

    /// <summary>Follows docs/FORMAT.md step by step (version 2), with nothing but AES-GCM and SHA-256.</summary>
    private static partial class DocumentDecoder
    {
        public static byte[] DecryptField(byte[] keyBlob, byte[]? field, string entity, string property, int invoiceId, string typeTag = "string")
        {
            // An invoice: flags 0x01, one bound value, its client-set int32 primary key.
            var boundKey = new byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(boundKey, invoiceId);
            return DecryptField(keyBlob, field, entity, property, typeTag, concreteType: null, flags: 1, [Concat(LengthPrefixed16("int32"), BoundValue(boundKey))]);
        }

        /// <summary>A bound value as the seal lists it after its prefix: <c>0x01 || uint32 length || encoding</c>.</summary>
        public static byte[] BoundValue(byte[] encoding)
        {
            var length = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(length, (uint)encoding.Length);
            return Concat([0x01], length, encoding);
        }

        /// <param name="concreteType">The concrete type's name for a type of an inheritance hierarchy, else null.</param>
        /// <param name="flags">The binding flags the trailer must carry.</param>
        /// <param name="boundValues">Each bound value with its prefix, in the page's order.</param>
        public static byte[] DecryptField(byte[] keyBlob, byte[]? field, string entity, string property, string typeTag, string? concreteType, byte flags, byte[][] boundValues)
        {
            var (recordId, dataKey, at) = OpenDataKey(keyBlob, entity);

            // Trailer: flags, N, N × (name id, tag), seal nonce (12), seal (16).
            var trailer = keyBlob.AsSpan(at, keyBlob.Length - 28 - at).ToArray();
            var sealNonce = keyBlob.AsSpan(keyBlob.Length - 28, 12).ToArray();
            var seal = keyBlob.AsSpan(keyBlob.Length - 16).ToArray();
            var count = BinaryPrimitives.ReadUInt16BigEndian(trailer.AsSpan(1));
            Assert.Equal(3 + 20 * count, trailer.Length);
            Assert.Equal(flags, trailer[0]);

            // The seal: AES-GCM under the data key, empty plaintext, the message as associated data (GMAC).
            using (var gmac = new AesGcm(dataKey, 16))
            {
                gmac.Decrypt(sealNonce, Array.Empty<byte>(), seal, Array.Empty<byte>(), SealMessage(recordId, entity, concreteType, trailer, boundValues));
            }

            // The property's entry: present exactly when the field holds a value, with the field's tag; under flag bit 2
            // a NULL property mapped to a legacy plaintext column is listed too, with an all-zero tag.
            var nameId = SHA256.HashData(LengthPrefixed16(property))[..4];
            var entry = Enumerable.Range(0, count).Select(i => trailer.AsSpan(3 + 20 * i, 20).ToArray()).SingleOrDefault(e => e.AsSpan(0, 4).SequenceEqual(nameId));
            if (field is null)
            {
                Assert.True(entry is null || ((flags & 0x04) != 0 && entry[4..].All(b => b == 0)), "a NULL property is listed only under flag bit 2, with the zero tag");
                return [];
            }

            Assert.NotNull(entry);

            Assert.Equal(entry![4..], field[^16..]);

            // Field blob.
            Assert.Equal(2, field[0]);
            var fieldAad = Concat(LengthPrefixed16("efenvelope/v2/field"), recordId, LengthPrefixed16(entity), LengthPrefixed16(property), LengthPrefixed16(typeTag));
            return Open(dataKey, field.AsSpan(1).ToArray(), fieldAad);
        }

        /// <summary>The message a record seal authenticates: label, record id, entity, concrete type, trailer (up to the seal's nonce), count and bound values.</summary>
        public static byte[] SealMessage(byte[] recordId, string entity, string? concreteType, byte[] trailer, byte[][] boundValues)
        {
            var boundCount = new byte[2];
            BinaryPrimitives.WriteUInt16BigEndian(boundCount, (ushort)boundValues.Length);
            return Concat(
                [LengthPrefixed16("efenvelope/v2/record-seal"), recordId, LengthPrefixed16(entity),
                 concreteType is null ? [] : LengthPrefixed16(concreteType), trailer, boundCount, .. boundValues]);
        }

        /// <summary>The blob with its trailer's flags replaced and its seal computed again with the data key: what only a key holder can write.</summary>
        public static byte[] Reseal(byte[] keyBlob, string entity, byte flags, byte[][] boundValues)
        {
            var (recordId, dataKey, at) = OpenDataKey(keyBlob, entity);
            var resealed = keyBlob.ToArray();
            resealed[at] = flags;
            var trailer = resealed.AsSpan(at, resealed.Length - 28 - at).ToArray();
            using var gmac = new AesGcm(dataKey, 16);
            gmac.Encrypt(resealed.AsSpan(resealed.Length - 28, 12), [], [], resealed.AsSpan(resealed.Length - 16), SealMessage(recordId, entity, null, trailer, boundValues));
            return resealed;
        }

        /// <summary>Reads a version 2 wrapped-key blob up to its trailer: the record id, the unwrapped data key, and where the trailer starts.</summary>
        public static (byte[] RecordId, byte[] DataKey, int TrailerAt) OpenDataKey(byte[] keyBlob, string entity)
        {
            // Wrapped-key blob.
            Assert.Equal(2, keyBlob[0]);
            var mode = keyBlob[1];
            var recordId = keyBlob.AsSpan(2, 16).ToArray();
            var at = 18;
            var provider = Encoding.ASCII.GetString(keyBlob, at + 1, keyBlob[at]);
            at += 1 + keyBlob[at];
            var keyId = ReadString(keyBlob, ref at);
            var storedEntity = ReadString(keyBlob, ref at);
            var wrappedLength = BinaryPrimitives.ReadUInt16BigEndian(keyBlob.AsSpan(at));
            var providerWrapped = keyBlob.AsSpan(at + 2, wrappedLength).ToArray();
            at += 2 + wrappedLength;
            Assert.Equal("in-memory", provider);
            Assert.Equal(MasterKeyId, keyId);
            Assert.Equal(entity, storedEntity);

            // The in-memory provider's wrapping: AES-256-GCM under the master key, associated data = key id, then context pairs.
            var contextPairs = new List<(string, string)> { ("efenvelope:application", Application), ("efenvelope:entity", entity) };
            if (mode == 2)
            {
                // Sorted by name: "efenvelope:format" before "efenvelope:record".
                contextPairs.Add(("efenvelope:format", "2"));
                contextPairs.Add(("efenvelope:record", Convert.ToHexStringLower(recordId)));
            }

            var providerAad = Concat([LengthPrefixed32(keyId), .. contextPairs.SelectMany(p => new[] { LengthPrefixed32(p.Item1), LengthPrefixed32(p.Item2) })]);
            var unwrapped = Open(MasterKey, providerWrapped, providerAad);

            byte[] dataKey;
            if (mode == 1)
            {
                var dekAad = Concat(LengthPrefixed16("efenvelope/v2/data-key"), keyBlob.AsSpan(0, at).ToArray(), LengthPrefixed16(entity));
                dataKey = Open(unwrapped, keyBlob.AsSpan(at, 60).ToArray(), dekAad);
                at += 60;
            }
            else
            {
                dataKey = unwrapped;
            }

            return (recordId, dataKey, at);
        }

        private static string ReadString(byte[] blob, ref int at)
        {
            var length = BinaryPrimitives.ReadUInt16BigEndian(blob.AsSpan(at));
            var text = Encoding.UTF8.GetString(blob, at + 2, length);
            at += 2 + length;
            return text;
        }

        // nonce (12) || ciphertext || tag (16)
        private static byte[] Open(byte[] key, byte[] sealedData, byte[] aad)
        {
            var plaintext = new byte[sealedData.Length - 28];
            using var aes = new AesGcm(key, 16);
            aes.Decrypt(sealedData.AsSpan(0, 12), sealedData.AsSpan(12, plaintext.Length), sealedData.AsSpan(12 + plaintext.Length), plaintext, aad);
            return plaintext;
        }

        public static byte[] LengthPrefixed16(string text)
        {
            var bytes = Encoding.UTF8.GetBytes(text);
            var result = new byte[2 + bytes.Length];
            BinaryPrimitives.WriteUInt16BigEndian(result, (ushort)bytes.Length);
            bytes.CopyTo(result, 2);
            return result;
        }

        private static byte[] LengthPrefixed32(string text)
        {
            var bytes = Encoding.UTF8.GetBytes(text);
            var result = new byte[4 + bytes.Length];
            BinaryPrimitives.WriteUInt32BigEndian(result, (uint)bytes.Length);
            bytes.CopyTo(result, 4);
            return result;
        }

        public static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();
    }
}
