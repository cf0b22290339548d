using EfEnvelope.Crypto;
using EfEnvelope.KeyManagement;

namespace EfEnvelope;

/// <summary>Creates the wrapped index key that blind indexes are derived from.</summary>
/// <remarks>
/// Create it once per application with the production master-key provider and keep the returned bytes in
/// configuration (they are wrapped: useless without the master key). Every instance of the application must use the
/// same index key, or searches will not find each other's rows. Its layout is a wrapped-key blob in direct mode for
/// the entity name <c>efenvelope:blind-index</c> (docs/FORMAT.md).
/// </remarks>
public static class BlindIndexKey
{
    internal const string EntityName = "efenvelope:blind-index";

    /// <summary>Generates a fresh index key under the provider's master key and returns it wrapped.</summary>
    /// <param name="provider">The master-key provider; the index key is bound to it and to the application name.</param>
    /// <param name="applicationName">Must equal the name configured with <c>UseApplicationName</c> (default <c>efenvelope</c>).</param>
    /// <param name="keyId">The master key; the provider's primary key when null.</param>
    /// <param name="random">The source of the record id (tests only).</param>
    /// <param name="cancellationToken">Cancels the provider call.</param>
    public static async Task<byte[]> CreateAsync(IMasterKeyProvider provider, string applicationName = "efenvelope", string? keyId = null, IRandomSource? random = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(provider);
        ArgumentException.ThrowIfNullOrWhiteSpace(applicationName);
        var recordId = new byte[EnvelopeFormat.RecordIdSize];
        (random ?? SystemRandomSource.Instance).Fill(recordId);
        var context = KeyContext.For(applicationName, EntityName, Convert.ToHexStringLower(recordId));
        using var key = await provider.GenerateDataKeyAsync(keyId ?? provider.PrimaryKeyId, context, cancellationToken).ConfigureAwait(false);
        var tail = EnvelopeFormat.BuildTail(provider.Name, key.KeyId, EntityName, key.WrappedKey);
        var blob = new byte[EnvelopeFormat.TailOffset + tail.Length];
        blob[0] = EnvelopeFormat.Version;
        blob[1] = EnvelopeFormat.ModeDirect;
        recordId.CopyTo(blob, 2);
        tail.CopyTo(blob, EnvelopeFormat.TailOffset);
        return blob;
    }
}
