namespace EfEnvelope.Diagnostics.HealthChecks;

/// <summary>Names used by the envelope-encryption health check in its registration and its results.</summary>
/// <remarks>
/// A failed result carries <see cref="FailureKey"/> in <c>HealthCheckResult.Data</c> with one of
/// <see cref="Unreachable"/>, <see cref="Revoked"/> or <see cref="Misconfigured"/>, and every result carries
/// <see cref="ProviderKey"/> and <see cref="KeyIdKey"/> when the configuration got that far.
/// </remarks>
public static class EnvelopeHealthCheck
{
    /// <summary>The registration name used unless another is given.</summary>
    public const string DefaultName = "efenvelope";

    /// <summary>Data key of the failure kind.</summary>
    public const string FailureKey = "failure";

    /// <summary>Data key of the master-key provider's name.</summary>
    public const string ProviderKey = "provider";

    /// <summary>Data key of the primary master key's id.</summary>
    public const string KeyIdKey = "keyId";

    /// <summary>The provider did not answer, timed out or failed: retrying later may succeed.</summary>
    public const string Unreachable = "unreachable";

    /// <summary>Access to the primary master key was withdrawn (disabled, scheduled for deletion, denied).</summary>
    public const string Revoked = "revoked";

    /// <summary>
    /// The configuration cannot work: the context has no envelope encryption or no provider, the primary key is not
    /// configured or does not exist, a PIN or token label is wrong, or the provider unwrapped a different key.
    /// </summary>
    public const string Misconfigured = "misconfigured";
}
