using System.Security.Cryptography;

namespace EfEnvelope.Crypto;

/// <summary>The version 2 record seal: one HMAC-SHA256 per record over everything the record must commit to.</summary>
/// <remarks>
/// <para>
/// AES-GCM authenticates each field on its own; nothing in version 1 ties the fields of a record together, so a
/// database writer could set one to NULL, write back an older ciphertext of it (same data key) or move the whole
/// record to another row. The seal authenticates, under a key only the data key's holder can derive: the record id
/// and entity, the row values the record is bound to (its key, and columns the application opted in), and for every
/// encrypted property that holds a value its binding name and the value's GCM tag. NULL is the absence of an entry.
/// </para>
/// <para>
/// The GCM tag stands for the whole field blob: a different blob with the same tag under the same data key and
/// associated data would be a GCM forgery. The seal key is derived from the data key with HKDF and its own label
/// rather than using the data key as an HMAC key, so the two uses can never collide. The seal does not cover the
/// wrapped key, so rewrapping the data key under another key-encryption key (rotation) keeps it valid.
/// </para>
/// </remarks>
internal static class RecordSeal
{
    /// <summary>Derives a record's 32-byte seal key from its data key.</summary>
    public static void DeriveKey(ReadOnlySpan<byte> dataKey, Span<byte> sealKey) =>
        HKDF.DeriveKey(HashAlgorithmName.SHA256, dataKey, sealKey, ReadOnlySpan<byte>.Empty, EnvelopeFormat.SealKeyInfo);

    /// <summary>Computes the seal of a complete seal message.</summary>
    public static void Compute(ReadOnlySpan<byte> sealKey, ReadOnlySpan<byte> message, Span<byte> seal) =>
        HMACSHA256.HashData(sealKey, message, seal);
}
