using Amazon;
using Amazon.KeyManagementService;
using Amazon.Runtime;

namespace EfEnvelope.AwsKms;

/// <summary>The settings of a client the provider builds itself.</summary>
/// <remarks>Equal settings build equivalent clients, which is what lets two providers configured alike count as one configuration.</remarks>
internal sealed record ClientSettings(
    string? Region,
    string? ServiceUrl,
    string? AuthenticationRegion,
    AWSCredentials? Credentials,
    int? MaxErrorRetry,
    TimeSpan AttemptTimeout)
{
    public IAmazonKeyManagementService CreateClient()
    {
        var config = new AmazonKeyManagementServiceConfig();

        // RegionEndpoint and ServiceURL exclude each other in the SDK (setting one clears the other), so the
        // Region is set first and, with an explicit URL, becomes the signing Region instead.
        if (Region is not null)
        {
            config.RegionEndpoint = RegionEndpoint.GetBySystemName(Region);
        }

        if (ServiceUrl is not null)
        {
            config.ServiceURL = ServiceUrl;
            config.AuthenticationRegion = AuthenticationRegion ?? Region;
        }
        else if (AuthenticationRegion is not null)
        {
            config.AuthenticationRegion = AuthenticationRegion;
        }

        if (MaxErrorRetry is { } retries)
        {
            config.MaxErrorRetry = retries;
        }

        // The SDK's Timeout bounds each HTTP attempt; a timed-out attempt is retried like a dropped connection. The
        // operation's overall deadline is the provider's own (a cancellation token), so both are bounded separately.
        if (AttemptTimeout != Timeout.InfiniteTimeSpan)
        {
            config.Timeout = AttemptTimeout;
        }

        return Credentials is null
            ? new AmazonKeyManagementServiceClient(config)
            : new AmazonKeyManagementServiceClient(Credentials, config);
    }

    // The generated record ToString would print the credentials object; never let it near a log.
    public override string ToString() => $"ClientSettings(Region={Region}, ServiceUrl={ServiceUrl})";
}
