using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;

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

    private const string ExpectedWrappedKey =
        "0101606162636465666768696A6B6C6D6E6F09696E2D6D656D6F7279000A6B61742D6D617374657200364566456E76656C6F70652E53706563696669636174696F6E2E54657374732E456E746974794672616D65776F726B2E496E766F696365003CC0C1C2C3C4C5C6C7C8C9CACBA0E985C4D3DD30F9307057099E0146F9FCC2518C8857A90D927AF1B18BC0C109CF0E2CF3C02460AFB8CFC83C52FDE891707172737475767778797A7B40B498C20520753BBEE2FDE4D4864A698716A3A8F4154D994154B5F0BDE89F37E2BEFA9C86AC7D91A3BC7CD686C6ABFC";
    private const string ExpectedCardNumber =
        "017C7D7E7F80818283848586879C292AA61D362613439A595807113F8568D65FE14EDF13463D085A094DDEBAB5";

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
    }

    [Fact]
    public void A_decoder_written_from_the_format_document_decrypts_a_stored_row()
    {
        var (wrappedKey, cardNumber) = WriteKnownInvoice();

        Assert.Equal("4111111111111111", Encoding.UTF8.GetString(DocumentDecoder.DecryptField(wrappedKey, cardNumber, Entity, "CardNumber")));
    }

    [Fact]
    public void A_decoder_written_from_the_format_document_decrypts_a_direct_mode_row()
    {
        var (wrappedKey, cardNumber) = WriteKnownInvoice(KeyWrappingMode.Direct);

        Assert.Equal(2, wrappedKey[1]);
        Assert.Equal("4111111111111111", Encoding.UTF8.GetString(DocumentDecoder.DecryptField(wrappedKey, cardNumber, Entity, "CardNumber")));
    }

    /// <summary>Follows docs/FORMAT.md step by step, with nothing but AES-GCM.</summary>
    private static partial class DocumentDecoder
    {
        public static byte[] DecryptField(byte[] keyBlob, byte[] field, string entity, string property)
        {
            // Wrapped-key blob.
            Assert.Equal(1, keyBlob[0]);
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
                contextPairs.Add(("efenvelope:record", Convert.ToHexStringLower(recordId)));
            }

            var providerAad = Concat([LengthPrefixed32(keyId), .. contextPairs.SelectMany(p => new[] { LengthPrefixed32(p.Item1), LengthPrefixed32(p.Item2) })]);
            var unwrapped = Open(MasterKey, providerWrapped, providerAad);

            byte[] dataKey;
            if (mode == 1)
            {
                var dekAad = Concat(keyBlob.AsSpan(0, at).ToArray(), LengthPrefixed16(entity));
                dataKey = Open(unwrapped, keyBlob.AsSpan(at).ToArray(), dekAad);
            }
            else
            {
                Assert.Equal(at, keyBlob.Length);
                dataKey = unwrapped;
            }

            // Field blob.
            Assert.Equal(1, field[0]);
            var fieldAad = Concat([1], recordId, LengthPrefixed16(entity), LengthPrefixed16(property));
            return Open(dataKey, field.AsSpan(1).ToArray(), fieldAad);
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

        private static byte[] LengthPrefixed16(string text)
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

        private static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();
    }
}
