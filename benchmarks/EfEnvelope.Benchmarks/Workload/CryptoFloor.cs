using System.Security.Cryptography;
using System.Text;

namespace EfEnvelope.Benchmarks.Workload;

/// <summary>
/// Per-record envelope crypto with no EF and no database: the floor under any per-record-key design. Each record gets
/// a fresh data key, wrapped with AES-GCM under a cached key-encryption key, and its three fields are AES-GCM
/// encrypted under that data key. Single-threaded: this is the CPU cost, not a wall-clock race.
/// </summary>
public sealed class CryptoFloor : IDisposable
{
    private const int KeySize = 32;
    private const int NonceSize = 12;
    private const int TagSize = 16;
    private const int WrappedKeySize = NonceSize + KeySize + TagSize;

    private readonly AesGcm _kek = new(RandomNumberGenerator.GetBytes(KeySize), TagSize);

    /// <summary>One record as stored: the wrapped data key and the three field blobs.</summary>
    public sealed record Sealed(byte[] WrappedKey, byte[] Ssn, byte[] Diagnosis, byte[] Notes);

    public Sealed Encrypt(Patient patient)
    {
        // Data key and the four nonces (one for the wrap, one per field) from one call to the generator.
        Span<byte> random = stackalloc byte[KeySize + 4 * NonceSize];
        RandomNumberGenerator.Fill(random);
        var dataKey = random[..KeySize];
        try
        {
            var wrapped = new byte[WrappedKeySize];
            random.Slice(KeySize, NonceSize).CopyTo(wrapped);
            _kek.Encrypt(wrapped.AsSpan(0, NonceSize), dataKey, wrapped.AsSpan(NonceSize, KeySize), wrapped.AsSpan(NonceSize + KeySize));
            using var cipher = new AesGcm(dataKey, TagSize);
            return new Sealed(
                wrapped,
                Seal(cipher, patient.Ssn, random.Slice(KeySize + NonceSize, NonceSize)),
                Seal(cipher, patient.Diagnosis, random.Slice(KeySize + 2 * NonceSize, NonceSize)),
                Seal(cipher, patient.Notes, random.Slice(KeySize + 3 * NonceSize, NonceSize)));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dataKey);
        }
    }

    public (string Ssn, string Diagnosis, string Notes) Decrypt(Sealed record)
    {
        Span<byte> dataKey = stackalloc byte[KeySize];
        try
        {
            var wrapped = record.WrappedKey;
            _kek.Decrypt(wrapped.AsSpan(0, NonceSize), wrapped.AsSpan(NonceSize, KeySize), wrapped.AsSpan(NonceSize + KeySize), dataKey);
            using var cipher = new AesGcm(dataKey, TagSize);
            return (Open(cipher, record.Ssn), Open(cipher, record.Diagnosis), Open(cipher, record.Notes));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dataKey);
        }
    }

    public void Dispose() => _kek.Dispose();

    private static byte[] Seal(AesGcm cipher, string value, ReadOnlySpan<byte> nonce)
    {
        var length = Encoding.UTF8.GetByteCount(value);
        var blob = new byte[NonceSize + length + TagSize];
        nonce.CopyTo(blob);
        var body = blob.AsSpan(NonceSize, length);
        Encoding.UTF8.GetBytes(value, body);
        cipher.Encrypt(blob.AsSpan(0, NonceSize), body, body, blob.AsSpan(NonceSize + length));
        return blob;
    }

    private static string Open(AesGcm cipher, byte[] blob)
    {
        var length = blob.Length - NonceSize - TagSize;
        Span<byte> plaintext = stackalloc byte[length];
        cipher.Decrypt(blob.AsSpan(0, NonceSize), blob.AsSpan(NonceSize, length), blob.AsSpan(NonceSize + length), plaintext);
        var value = Encoding.UTF8.GetString(plaintext);
        CryptographicOperations.ZeroMemory(plaintext);
        return value;
    }
}
