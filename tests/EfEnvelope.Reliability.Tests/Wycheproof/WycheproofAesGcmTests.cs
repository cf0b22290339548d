using System.Security.Cryptography;
using System.Text.Json;
using EfEnvelope.Crypto;

namespace EfEnvelope.Reliability.Tests.Wycheproof;

/// <summary>
/// Project Wycheproof's AES-GCM vectors (Vectors/aes_gcm_test.json, Apache-2.0, see Vectors/NOTICE) run through
/// <see cref="FieldCipher"/>, the seal and open that every stored field value goes through. The library uses
/// 256-bit keys, 96-bit nonces and 128-bit tags only, so those groups are the ones that apply.
/// </summary>
public sealed class WycheproofAesGcmTests
{
    public static TheoryData<int, string, string, string, string, string, string, string> Vectors()
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Wycheproof", "Vectors", "aes_gcm_test.json")));
        var data = new TheoryData<int, string, string, string, string, string, string, string>();
        foreach (var group in json.RootElement.GetProperty("testGroups").EnumerateArray())
        {
            if (group.GetProperty("keySize").GetInt32() != 256 || group.GetProperty("ivSize").GetInt32() != 96 || group.GetProperty("tagSize").GetInt32() != 128)
            {
                continue;
            }

            foreach (var test in group.GetProperty("tests").EnumerateArray())
            {
                string Field(string name) => test.GetProperty(name).GetString()!;
                data.Add(test.GetProperty("tcId").GetInt32(), Field("key"), Field("iv"), Field("aad"), Field("msg"), Field("ct"), Field("tag"), Field("result"));
            }
        }

        return data;
    }

    [Fact]
    public void The_vector_file_has_the_expected_applicable_vectors()
    {
        // 66 vectors of the unmodified file (commit dac1dd4) apply; fewer would mean a truncated or different file.
        Assert.Equal(66, Vectors().Count);
    }

    [Theory]
    [MemberData(nameof(Vectors))]
    public void Field_seal_and_open_match_the_vector(int id, string key, string iv, string aad, string msg, string ct, string tag, string result)
    {
        using var cipher = new AesGcm(Convert.FromHexString(key), EnvelopeFormat.TagSize);
        var nonce = Convert.FromHexString(iv);
        var associated = Convert.FromHexString(aad);
        var message = Convert.FromHexString(msg);

        // The stored layout: version || nonce || ciphertext || tag.
        byte[] stored = [EnvelopeFormat.Version, .. nonce, .. Convert.FromHexString(ct), .. Convert.FromHexString(tag)];
        var plaintext = new byte[message.Length];
        if (result == "valid")
        {
            var refused = Record.Exception(() => FieldCipher.Open(cipher, stored, plaintext, associated));
            Assert.True(refused is null, $"valid vector {id} was refused: {refused}");
            Assert.Equal(message, plaintext);

            byte[] sealedBlob = [EnvelopeFormat.Version, .. nonce, .. message, .. new byte[EnvelopeFormat.TagSize]];
            FieldCipher.Seal(cipher, sealedBlob, associated);
            Assert.Equal(stored, sealedBlob);
        }
        else
        {
            Assert.Equal("invalid", result);
            var error = Assert.Throws<EnvelopeDecryptionException>(() => FieldCipher.Open(cipher, stored, plaintext, associated));
            Assert.IsType<AuthenticationTagMismatchException>(error.InnerException);

            // Nothing of the unauthenticated decryption is left in the output buffer.
            Assert.All(plaintext, b => Assert.Equal(0, b));
        }
    }
}
