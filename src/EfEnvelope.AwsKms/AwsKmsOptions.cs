using Amazon.KeyManagementService;
using Amazon.Runtime;

namespace EfEnvelope.AwsKms;

/// <summary>Configures the AWS KMS master-key provider: which keys, and how to reach KMS.</summary>
/// <remarks>
/// <para>
/// Either set <see cref="Client"/> (typically the <see cref="IAmazonKeyManagementService"/> registered in dependency
/// injection), or leave it null and the provider builds its own client from <see cref="Region"/>,
/// <see cref="ServiceUrl"/>, <see cref="AuthenticationRegion"/>, <see cref="Credentials"/> and
/// <see cref="MaxErrorRetry"/>; unset values fall back to the SDK's defaults (environment, profile, instance role).
/// </para>
/// <para>Options validate in their setters, so a bad value fails where it is configured.</para>
/// </remarks>
public sealed class AwsKmsOptions
{
    private string? _keyId;
    private TimeSpan _requestTimeout = TimeSpan.FromSeconds(30);
    private int? _maxErrorRetry;

    /// <summary>The primary KMS key: new data keys are generated under it.</summary>
    /// <remarks>
    /// A key id, key ARN, alias name (<c>alias/patients</c>) or alias ARN. It is written into every blob exactly as
    /// given here and sent back to KMS to decrypt, so keep it stable: changing how the key is named makes existing rows
    /// name a key that is no longer configured (list the old name in <see cref="AdditionalKeyIds"/>).
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

    /// <summary>Further KMS keys accepted for reads only: keys used before a rotation, or other names of the key.</summary>
    /// <remarks>
    /// Data naming a key that is neither <see cref="KeyId"/> nor listed here is refused without calling KMS.
    /// </remarks>
    public IList<string> AdditionalKeyIds { get; } = [];

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

    /// <summary>How long one provider operation (the KMS request with all its retries) may take.</summary>
    /// <remarks>
    /// The default is 30 seconds. Past it the operation is abandoned and reported as a <see cref="MasterKeyException"/>
    /// that says it timed out; the caller's <see cref="CancellationToken"/> is honoured as well.
    /// </remarks>
    public TimeSpan RequestTimeout
    {
        get => _requestTimeout;
        set => _requestTimeout = (value > TimeSpan.Zero && value.TotalMilliseconds <= int.MaxValue) || value == Timeout.InfiniteTimeSpan
            ? value
            : throw new ArgumentOutOfRangeException(nameof(RequestTimeout), value, "Must be positive (at most 24 days) or infinite.");
    }
}
