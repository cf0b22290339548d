using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace EfEnvelope.LocalKms;

/// <summary>The ciphertext format of the local KMS: a blob names the key that can decrypt it, as KMS's do.</summary>
/// <remarks>
/// Ciphertext blob layout (this endpoint's own, opaque to clients like the real one):
/// <code>
/// [0]            format version, 0x01
/// [1]            n = length of the key id
/// [2, 2+n)       the key id (ASCII), so a blob names the key that can decrypt it
/// [2+n, 14+n)    AES-GCM nonce (12 bytes)
/// [14+n, end-16) ciphertext
/// [end-16, end)  AES-GCM tag (16 bytes)
/// </code>
/// The key's own 256-bit secret encrypts (a multi-Region key has the same id and secret in every Region, so a blob
/// from one Region decrypts in another); the associated data is the header (version, n, key id) followed by the
/// encryption context encoded unambiguously: a big-endian uint32 count of pairs, then for every pair in ordinal order
/// of names, a big-endian uint32 byte length and the UTF-8 bytes of the name, then the same for the value. So the
/// context must match exactly (same names, same values; order irrelevant as in KMS), and no two different contexts
/// share an encoding.
/// </remarks>
internal static class KeyCiphertext
{
    private const byte FormatVersion = 1;
    private const int NonceSize = 12;
    private const int TagSize = 16;

    public static byte[] Encrypt(LocalKey key, ReadOnlySpan<byte> plaintext, IReadOnlyDictionary<string, string> context)
    {
        var id = Encoding.ASCII.GetBytes(key.Id);
        var header = 2 + id.Length;
        var blob = new byte[header + NonceSize + plaintext.Length + TagSize];
        blob[0] = FormatVersion;
        blob[1] = (byte)id.Length;
        id.CopyTo(blob, 2);
        RandomNumberGenerator.Fill(blob.AsSpan(header, NonceSize));
        using var aes = new AesGcm(key.Secret, TagSize);
        aes.Encrypt(
            blob.AsSpan(header, NonceSize),
            plaintext,
            blob.AsSpan(header + NonceSize, plaintext.Length),
            blob.AsSpan(blob.Length - TagSize),
            AssociatedData(blob.AsSpan(0, header), context));
        return blob;
    }

    /// <summary>The id of the key a blob names, or an <c>InvalidCiphertextException</c> when it is not a blob of this format.</summary>
    public static string KeyIdOf(ReadOnlySpan<byte> blob)
    {
        if (blob.Length < 2 || blob[0] != FormatVersion || blob.Length < 2 + blob[1] + NonceSize + 1 + TagSize)
        {
            throw InvalidCiphertext();
        }

        var id = blob.Slice(2, blob[1]);
        foreach (var b in id)
        {
            if (b is < 0x21 or > 0x7E)
            {
                throw InvalidCiphertext();
            }
        }

        return Encoding.ASCII.GetString(id);
    }

    public static byte[] Decrypt(LocalKey key, ReadOnlySpan<byte> blob, IReadOnlyDictionary<string, string> context)
    {
        var header = 2 + blob[1];
        var plaintext = new byte[blob.Length - header - NonceSize - TagSize];
        try
        {
            using var aes = new AesGcm(key.Secret, TagSize);
            aes.Decrypt(
                blob.Slice(header, NonceSize),
                blob.Slice(header + NonceSize, plaintext.Length),
                blob[^TagSize..],
                plaintext,
                AssociatedData(blob[..header], context));
        }
        catch (AuthenticationTagMismatchException)
        {
            // Real KMS says nothing about why (tampered blob, other context): neither does this one.
            throw InvalidCiphertext();
        }

        return plaintext;
    }

    private static KmsErrorException InvalidCiphertext() => new("InvalidCiphertextException", "");

    private static byte[] AssociatedData(ReadOnlySpan<byte> header, IReadOnlyDictionary<string, string> context)
    {
        using var stream = new MemoryStream();
        stream.Write(header);
        Span<byte> length = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(length, (uint)context.Count);
        stream.Write(length);
        foreach (var (name, value) in context.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            foreach (var text in (ReadOnlySpan<string>)[name, value])
            {
                var bytes = Encoding.UTF8.GetBytes(text);
                BinaryPrimitives.WriteUInt32BigEndian(length, (uint)bytes.Length);
                stream.Write(length);
                stream.Write(bytes);
            }
        }

        return stream.ToArray();
    }
}
