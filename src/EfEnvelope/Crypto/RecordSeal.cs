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
/// (HKDF-Expand) rather than using the data key as the seal's HMAC key, so the seal's key is never the AES key. The seal does not cover the
/// wrapped key, so rewrapping the data key under another key-encryption key (rotation) keeps it valid.
/// </para>
/// </remarks>
internal static class RecordSeal
{
    /// <summary>Derives a record's 32-byte seal key from its data key.</summary>
    /// <remarks>
    /// HKDF-Expand only: the data key is already 32 uniformly random bytes, so the extract step (RFC 5869, 3.3) would
    /// only cost another HMAC on every record read.
    /// </remarks>
    public static void DeriveKey(ReadOnlySpan<byte> dataKey, Span<byte> sealKey) =>
        HKDF.Expand(HashAlgorithmName.SHA256, dataKey, sealKey, EnvelopeFormat.SealKeyInfo);

    /// <summary>Computes the seal of a complete seal message.</summary>
    public static void Compute(ReadOnlySpan<byte> sealKey, ReadOnlySpan<byte> message, Span<byte> seal) =>
        HMACSHA256.HashData(sealKey, message, seal);
}
