using System.Security.Cryptography;
using System.Text;
using Microsoft.EntityFrameworkCore.Storage.ValueConversion;

namespace EfEnvelope.Benchmarks.Workload;

/// <summary>
/// The do-it-yourself approach: one fixed application key, AES-256-GCM with a random nonce per value, stored as
/// base64 text. Roughly what existing EF encryption libraries do. Made as fast as a converter reasonably can be (one
/// cached AesGcm per thread, one allocation per buffer) so that the comparison is fair to it.
/// </summary>
public sealed class FixedKeyAesGcmConverter() : ValueConverter<string, string>(v => Encrypt(v), v => Decrypt(v))
{
    private const int NonceSize = 12;
    private const int TagSize = 16;

    // A benchmark constant: the approach's weakness (one key for every row, forever) is the point of the comparison.
    private static readonly byte[] Key = SHA256.HashData("EfEnvelope.Benchmarks fixed key"u8);

    // AesGcm instances are not thread-safe: one per thread.
    [ThreadStatic]
    private static AesGcm? t_cipher;

    private static AesGcm Cipher => t_cipher ??= new AesGcm(Key, TagSize);

    public static string Encrypt(string plaintext)
    {
        var length = Encoding.UTF8.GetByteCount(plaintext);
        var blob = new byte[NonceSize + length + TagSize];
        RandomNumberGenerator.Fill(blob.AsSpan(0, NonceSize));
        var body = blob.AsSpan(NonceSize, length);
        Encoding.UTF8.GetBytes(plaintext, body);
        Cipher.Encrypt(blob.AsSpan(0, NonceSize), body, body, blob.AsSpan(NonceSize + length, TagSize));
        return Convert.ToBase64String(blob);
    }

    public static string Decrypt(string stored)
    {
        var blob = Convert.FromBase64String(stored);
        var length = blob.Length - NonceSize - TagSize;
        var body = blob.AsSpan(NonceSize, length);
        Cipher.Decrypt(blob.AsSpan(0, NonceSize), body, blob.AsSpan(NonceSize + length, TagSize), body);
        return Encoding.UTF8.GetString(body);
    }
}
