using System.Security.Cryptography;

namespace EfEnvelope.Crypto;

/// <summary>The AES-256-GCM seal and open of one field blob: the single code path every encrypted value goes through.</summary>
/// <remarks>
/// Kept apart from the property plumbing so that known-answer vectors (Project Wycheproof) exercise exactly the
/// code that encrypts and decrypts stored values. Layout: version (1) || nonce (12) || ciphertext (n) || tag (16).
/// </remarks>
internal static class FieldCipher
{
    /// <summary>Encrypts the plaintext already written into the blob's body, in place, and writes the tag.</summary>
    /// <param name="dataKey">The record's data key.</param>
    /// <param name="blob">A field blob whose version and nonce are set and whose body holds the plaintext encoding.</param>
    /// <param name="associatedData">The field's associated data (version, record id, entity and property binding names).</param>
    public static void Seal(AesGcm dataKey, Span<byte> blob, ReadOnlySpan<byte> associatedData)
    {
        // AES-GCM allows the same buffer for input and output: the body is encrypted where the plaintext was written.
        var body = Body(blob);
        dataKey.Encrypt(Nonce(blob), body, body, Tag(blob), associatedData);
    }

    /// <summary>Authenticates and decrypts a field blob into <paramref name="plaintext"/> (exactly the body's length).</summary>
    /// <exception cref="EnvelopeDecryptionException">The tag did not verify: tampered, moved, or under another key.</exception>
    public static void Open(AesGcm dataKey, ReadOnlySpan<byte> blob, Span<byte> plaintext, ReadOnlySpan<byte> associatedData)
    {
        try
        {
            dataKey.Decrypt(Nonce(blob), Body(blob), Tag(blob), plaintext, associatedData);
        }
        catch (AuthenticationTagMismatchException ex)
        {
            // AesGcm has already zeroed the output on a mismatch: no unauthenticated plaintext escapes.
            throw new EnvelopeDecryptionException(
                "The stored ciphertext failed authentication: it was tampered with, or copied from another column, row or table.",
                ex);
        }
    }

    private static Span<byte> Nonce(Span<byte> blob) => blob.Slice(1, EnvelopeFormat.NonceSize);

    private static ReadOnlySpan<byte> Nonce(ReadOnlySpan<byte> blob) => blob.Slice(1, EnvelopeFormat.NonceSize);

    private static Span<byte> Body(Span<byte> blob) => blob[(1 + EnvelopeFormat.NonceSize)..^EnvelopeFormat.TagSize];

    private static ReadOnlySpan<byte> Body(ReadOnlySpan<byte> blob) => blob[(1 + EnvelopeFormat.NonceSize)..^EnvelopeFormat.TagSize];

    private static Span<byte> Tag(Span<byte> blob) => blob[^EnvelopeFormat.TagSize..];

    private static ReadOnlySpan<byte> Tag(ReadOnlySpan<byte> blob) => blob[^EnvelopeFormat.TagSize..];
}
