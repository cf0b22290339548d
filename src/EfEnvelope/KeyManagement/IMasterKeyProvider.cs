namespace EfEnvelope.KeyManagement;

/// <summary>A holder of master keys that generates and unwraps data keys without ever releasing the master key.</summary>
/// <remarks>
/// <para>
/// Implementations live in their own assemblies (AWS KMS, PKCS#11) and plug in through
/// <see cref="EnvelopeEncryptionOptionsBuilder.UseProvider(IMasterKeyProvider)"/>. The library calls a provider only
/// through one instrumented path (logging, metrics, tracing) and caches what it returns, so a provider should not cache.
/// </para>
/// <para>
/// Every method must bind the <see cref="KeyContext"/> to the wrapped key (as AES-GCM associated data, or as a KMS
/// encryption context) so that unwrapping under a different context fails.
/// Failures are reported as <see cref="MasterKeyException"/> (or <see cref="MasterKeyAccessRevokedException"/> when
/// access to the key was withdrawn), and a wrapped key that fails authentication as <see cref="EnvelopeDecryptionException"/>.
/// </para>
/// </remarks>
public interface IMasterKeyProvider
{
    /// <summary>A short, stable name written into every blob this provider wraps (for example <c>aws-kms</c>).</summary>
    /// <remarks>At most 255 ASCII characters. Changing it makes existing rows unreadable.</remarks>
    string Name { get; }

    /// <summary>The master key used for new writes unless a key selector chooses another.</summary>
    string PrimaryKeyId { get; }

    /// <summary>Whether data wrapped under <paramref name="keyId"/> may be unwrapped by this provider.</summary>
    /// <remarks>Blobs naming any other key are refused before the provider is asked.</remarks>
    bool IsKeyConfigured(string keyId);

    /// <summary>Generates a random 256-bit key and returns it together with its wrapped form.</summary>
    /// <param name="keyId">The master key to wrap under; one for which <see cref="IsKeyConfigured"/> is true.</param>
    /// <param name="context">Non-secret facts bound to the wrapped key.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<GeneratedDataKey> GenerateDataKeyAsync(string keyId, KeyContext context, CancellationToken cancellationToken);

    /// <summary>
    /// Whether a stored blob naming <paramref name="storedKeyId"/> was wrapped under the master key that
    /// <paramref name="selectedKeyId"/> (a master-key selector's choice, or <see cref="PrimaryKeyId"/>) names.
    /// </summary>
    /// <param name="storedKeyId">The key id read from a record that decrypted (so one this provider trusts).</param>
    /// <param name="selectedKeyId">The key id the selector (or, during a move, the previous selector) chose for the row the record was read from.</param>
    /// <param name="context">The application and entity the question is about (for audit logs and errors).</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>True when both name one key; false refuses the record.</returns>
    /// <remarks>
    /// Asked on reads when a master-key selector is configured, only when the two strings differ; the library
    /// remembers the answer per pair for the key cache's time to live. The default compares the strings ordinally. A
    /// provider whose keys have several names (an alias and a key ARN) answers by resolving both to one canonical
    /// identity, and must not come to trust a key by being asked. An exception fails the read, as a failed key
    /// operation does.
    /// </remarks>
    Task<bool> IsSameKeyAsync(string storedKeyId, string selectedKeyId, KeyContext context, CancellationToken cancellationToken) =>
        Task.FromResult(string.Equals(storedKeyId, selectedKeyId, StringComparison.Ordinal));

    /// <summary>Unwraps a key produced by <see cref="GenerateDataKeyAsync"/> under the same master key and context.</summary>
    /// <returns>The 32 plaintext key bytes; the caller owns and zeroes the array.</returns>
    Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, KeyContext context, CancellationToken cancellationToken);
}
