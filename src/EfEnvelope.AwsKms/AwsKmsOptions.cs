using Amazon.KeyManagementService;
using Amazon.Runtime;

namespace EfEnvelope.AwsKms;

/// <summary>Configures the AWS KMS master-key provider: which keys, and how to reach KMS.</summary>
/// <remarks>
/// <para>
/// Either set <see cref="Client"/> (typically the <see cref="IAmazonKeyManagementService"/> registered in dependency
/// injection), or leave it null and the provider builds its own client from <see cref="Region"/>,
/// <see cref="ServiceUrl"/>, <see cref="AuthenticationRegion"/>, <see cref="Credentials"/> and
/// <see cref="MaxErrorRetry"/> and <see cref="AttemptTimeout"/>; unset values fall back to the SDK's defaults (environment, profile, instance role).
/// </para>
/// <para>Options validate in their setters, so a bad value fails where it is configured.</para>
/// </remarks>
public sealed class AwsKmsOptions
{
    private string? _keyId;
    private TimeSpan _attemptTimeout = TimeSpan.FromSeconds(10);
    private TimeSpan _operationTimeout = TimeSpan.FromSeconds(30);
    private int? _maxErrorRetry;

    /// <summary>The primary KMS key: new data keys are generated under it.</summary>
    /// <remarks>
    /// A key id, key ARN, alias name (<c>alias/patients</c>) or alias ARN. It only chooses the key to write with: every
    /// blob records the key ARN KMS answers <c>GenerateDataKey</c> with, and <c>Decrypt</c> is pinned to that ARN. The
    /// key an alias points at is trusted for reads; after moving the alias (<c>UpdateAlias</c>), list the previous
    /// key's ARN in <see cref="AdditionalKeyIds"/> or set <see cref="Discovery"/> so that older rows stay readable.
    /// </remarks>
    public string? KeyId
    {
        get => _keyId;
        set
        {
            ArgumentException.ThrowIfNullOrWhiteSpace(value, nameof(KeyId));
            _keyId = value;
        }
    }

    /// <summary>Further KMS keys accepted for reads: key ARNs used before a rotation, or aliases older rows name.</summary>
    /// <remarks>
    /// Data naming a key that is neither <see cref="KeyId"/> (or what it resolves to), nor listed here, nor admitted by
    /// <see cref="Discovery"/> is refused without calling <c>Decrypt</c>. Rows written by versions that stored the
    /// configured string name an alias; list it here (or keep it as <see cref="KeyId"/>) and such rows are decrypted
    /// through the key the alias resolves to, or the key KMS finds in the blob if the alias has moved (accepted only
    /// if that key is trusted), until the rotation job rewrites them.
    /// </remarks>
    public IList<string> AdditionalKeyIds { get; } = [];

    /// <summary>Trusts, for reads, every key of the given accounts and partition; null (the default) trusts only the listed keys.</summary>
    /// <remarks>See <see cref="AwsKmsDiscoveryFilter"/>; the key policies in KMS still decide who may decrypt.</remarks>
    public AwsKmsDiscoveryFilter? Discovery { get; set; }

    /// <summary>A ready client (for example from dependency injection); when set, the client settings below are ignored.</summary>
    /// <remarks>The provider never disposes a client it was given.</remarks>
    public IAmazonKeyManagementService? Client { get; set; }

    /// <summary>The AWS Region of the KMS endpoint (for example <c>eu-west-1</c>) when the provider builds its client.</summary>
    /// <remarks>The default is the SDK's: <c>AWS_REGION</c>, the profile, or the instance metadata.</remarks>
    public string? Region { get; set; }

    /// <summary>An explicit endpoint URL (a VPC interface endpoint, a FIPS endpoint, a local KMS for tests).</summary>
    /// <remarks>When set, also set <see cref="AuthenticationRegion"/> (or <see cref="Region"/>) so requests are signed for the right Region.</remarks>
    public string? ServiceUrl { get; set; }

    /// <summary>The Region requests are signed for when <see cref="ServiceUrl"/> does not reveal it.</summary>
    public string? AuthenticationRegion { get; set; }

    /// <summary>The credentials of the client the provider builds.</summary>
    /// <remarks>The default is the SDK's credential chain (environment, profile, container or instance role).</remarks>
    public AWSCredentials? Credentials { get; set; }

    /// <summary>How many times the SDK retries a throttled or failed request before the provider reports it.</summary>
    /// <remarks>The default is the SDK's (its standard retry mode, with exponential backoff and jitter).</remarks>
    public int? MaxErrorRetry
    {
        get => _maxErrorRetry;
        set => _maxErrorRetry = value is null or >= 0
            ? value
            : throw new ArgumentOutOfRangeException(nameof(MaxErrorRetry), value, "Must not be negative.");
    }

    /// <summary>How long one HTTP attempt may take before the SDK abandons it and retries (when it builds its own client).</summary>
    /// <remarks>
    /// The default is 10 seconds. A hung connection then costs one attempt, not the whole <see cref="OperationTimeout"/>.
    /// Applies to the client the provider builds; a client passed in <see cref="Client"/> keeps its own
    /// <c>Timeout</c>. Must not exceed <see cref="OperationTimeout"/> (checked when the provider is built).
    /// </remarks>
    public TimeSpan AttemptTimeout
    {
        get => _attemptTimeout;
        set => _attemptTimeout = ValidTimeout(value, nameof(AttemptTimeout));
    }

    /// <summary>How long one provider operation may take, every attempt, backoff and alias lookup included.</summary>
    /// <remarks>
    /// The default is 30 seconds. Past it the operation is abandoned and reported as a <see cref="MasterKeyException"/>
    /// that says it timed out; the caller's <see cref="CancellationToken"/> is honoured as well.
    /// </remarks>
    public TimeSpan OperationTimeout
    {
        get => _operationTimeout;
        set => _operationTimeout = ValidTimeout(value, nameof(OperationTimeout));
    }

    private static TimeSpan ValidTimeout(TimeSpan value, string name) =>
        (value > TimeSpan.Zero && value.TotalMilliseconds <= int.MaxValue) || value == Timeout.InfiniteTimeSpan
            ? value
            : throw new ArgumentOutOfRangeException(name, value, "Must be positive (at most 24 days) or infinite.");
}
