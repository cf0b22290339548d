using Amazon.KeyManagementService;
using EfEnvelope;
using EfEnvelope.AwsKms;

// In EF Core's namespace, like the other Use… extensions, so no extra using is needed where the context is configured.
namespace Microsoft.EntityFrameworkCore;

/// <summary>Plugs AWS KMS in as the master-key provider of envelope encryption.</summary>
public static class AwsKmsEnvelopeEncryptionOptionsBuilderExtensions
{
    /// <summary>Uses the AWS KMS key <paramref name="keyId"/>, with a client built from the SDK's default configuration.</summary>
    /// <param name="builder">The envelope encryption options.</param>
    /// <param name="keyId">A key id, key ARN, alias name (<c>alias/patients</c>) or alias ARN to write with; blobs record the key ARN it stands for.</param>
    /// <remarks>
    /// The Region and credentials come from the environment, the shared profile or the instance role, as for any AWS
    /// SDK client. Two contexts configured with the same key id share one provider configuration and one key cache.
    /// </remarks>
    public static EnvelopeEncryptionOptionsBuilder UseAwsKms(this EnvelopeEncryptionOptionsBuilder builder, string keyId)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(keyId);
        return builder.UseAwsKms(options => options.KeyId = keyId);
    }

    /// <summary>Uses the AWS KMS key <paramref name="keyId"/> through the given client (for example from dependency injection).</summary>
    /// <param name="builder">The envelope encryption options.</param>
    /// <param name="client">The KMS client; it is not disposed by the provider.</param>
    /// <param name="keyId">The primary key for new writes: a key id, key ARN, alias name or alias ARN.</param>
    /// <param name="additionalKeyIds">Further keys accepted for reads: key ARNs used before a rotation, or aliases older rows name.</param>
    /// <remarks>Pass the same client instance to every context so that they share one key cache.</remarks>
    public static EnvelopeEncryptionOptionsBuilder UseAwsKms(
        this EnvelopeEncryptionOptionsBuilder builder,
        IAmazonKeyManagementService client,
        string keyId,
        params IEnumerable<string> additionalKeyIds)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentException.ThrowIfNullOrWhiteSpace(keyId);
        ArgumentNullException.ThrowIfNull(additionalKeyIds);
        return builder.UseAwsKms(options =>
        {
            options.Client = client;
            options.KeyId = keyId;
            foreach (var id in additionalKeyIds)
            {
                options.AdditionalKeyIds.Add(id);
            }
        });
    }

    /// <summary>Uses AWS KMS configured in full: keys, discovery, client or client settings, timeouts.</summary>
    /// <param name="builder">The envelope encryption options.</param>
    /// <param name="configure">Sets at least <see cref="AwsKmsOptions.KeyId"/>.</param>
    /// <remarks>
    /// The options are read once, when this method runs. Contexts configured alike (same client instance, or equal
    /// client settings and credentials instance, same keys, discovery filter and timeouts) share one key cache.
    /// </remarks>
    public static EnvelopeEncryptionOptionsBuilder UseAwsKms(this EnvelopeEncryptionOptionsBuilder builder, Action<AwsKmsOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);
        var options = new AwsKmsOptions();
        configure(options);
        return builder.UseProvider(new AwsKmsMasterKeyProvider(options));
    }
}
