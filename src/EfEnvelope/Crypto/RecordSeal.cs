using System.Security.Cryptography;

namespace EfEnvelope.Crypto;

/// <summary>The version 2 record seal: one GMAC per record over everything the record must commit to.</summary>
/// <remarks>
/// <para>
/// AES-GCM authenticates each field on its own; nothing in version 1 ties the fields of a record together, so a
/// database writer could set one to NULL, write back an older ciphertext of it (same data key) or move the whole
/// record to another row. The seal authenticates, under the record's data key: the record id and entity, the row
/// values the record is bound to (its key, and columns the application opted in), and for every encrypted property
/// that holds a value its name id and the value's GCM tag. NULL is the absence of an entry.
/// </para>
/// <para>
/// The seal is AES-GCM with an empty plaintext and the seal message as associated data (GMAC), under the data key
/// with its own random nonce: the data key stays under the one primitive it already serves, and the AES-GCM instance
/// the record's fields are decrypted with computes it, so a read pays no key setup or key derivation for it. The
/// message starts with its own label, so no field's associated data can ever equal it, and a seal tag can never
/// stand in for a field's. The GCM tag of a field stands for its whole blob: a different blob with the same tag under
/// the same key and associated data would be a GCM forgery. The seal does not cover the wrapped key, so rewrapping the
/// data key under another key-encryption key (rotation) keeps it valid.
/// </para>
/// </remarks>
internal static class RecordSeal
{
    /// <summary>Computes the seal (a 16-byte tag) of a complete seal message under the record's data key.</summary>
    public static void Compute(AesGcm dataKey, ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> message, Span<byte> seal) =>
        dataKey.Encrypt(nonce, ReadOnlySpan<byte>.Empty, Span<byte>.Empty, seal, message);

    /// <summary>Whether <paramref name="seal"/> is the seal of the message (the tag comparison is constant-time).</summary>
    public static bool Verify(AesGcm dataKey, ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> message, ReadOnlySpan<byte> seal)
    {
        try
        {
            dataKey.Decrypt(nonce, ReadOnlySpan<byte>.Empty, seal, Span<byte>.Empty, message);
            return true;
        }
        catch (AuthenticationTagMismatchException)
        {
            return false;
        }
    }
}
