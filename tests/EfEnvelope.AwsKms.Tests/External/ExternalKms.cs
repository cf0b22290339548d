using Amazon;
using Amazon.KeyManagementService;
using Amazon.Runtime;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;

namespace EfEnvelope.AwsKms.Tests.External;

/// <summary>A KMS endpoint named by environment variables: real AWS KMS, LocalStack, or the local KMS program.</summary>
/// <remarks>
/// <list type="bullet">
/// <item><c>EFENVELOPE_KMS_KEY_ARN</c> and <c>EFENVELOPE_KMS_SECOND_KEY_ARN</c>: two symmetric keys dedicated to
/// tests (the contract suite disables and re-enables each). Setting the first turns the suites on.</item>
/// <item><c>EFENVELOPE_KMS_ENDPOINT</c>: an endpoint URL; unset, the Region's public endpoint.</item>
/// <item><c>EFENVELOPE_KMS_REGION</c>: the Region; unset, the one in the key ARN.</item>
/// </list>
/// Credentials come from <c>EFENVELOPE_KMS_ACCESS_KEY_ID</c>, <c>EFENVELOPE_KMS_SECRET_ACCESS_KEY</c> (and
/// <c>EFENVELOPE_KMS_SESSION_TOKEN</c>) when set, so that they reach no other test; otherwise from the SDK's default
/// chain (environment, profile, role). Without the key variables the suites skip, except under CI, where they fail.
/// </remarks>
public static class ExternalKms
{
    public const string KeyVariable = "EFENVELOPE_KMS_KEY_ARN";
    public const string SecondKeyVariable = "EFENVELOPE_KMS_SECOND_KEY_ARN";
    public const string EndpointVariable = "EFENVELOPE_KMS_ENDPOINT";
    public const string RegionVariable = "EFENVELOPE_KMS_REGION";
    public const string AccessKeyVariable = "EFENVELOPE_KMS_ACCESS_KEY_ID";
    public const string SecretKeyVariable = "EFENVELOPE_KMS_SECRET_ACCESS_KEY";
    public const string SessionTokenVariable = "EFENVELOPE_KMS_SESSION_TOKEN";

    private const string What = "An external KMS endpoint with test keys";

    /// <summary>Why the suites cannot run here, or null.</summary>
    public static string? SkipReason =>
        TestEnvironment.Require(KeyVariable, What) is null ? TestEnvironment.SkipMessage(KeyVariable, What) : null;

    public static string PrimaryKeyArn => Required(KeyVariable);

    public static string SecondKeyArn => Required(SecondKeyVariable);

    /// <summary>A client for the endpoint, with the SDK's default credentials.</summary>
    public static AmazonKeyManagementServiceClient CreateClient()
    {
        var region = Environment.GetEnvironmentVariable(RegionVariable) is { Length: > 0 } configured
            ? configured
            : KmsKeyArn.TryParse(PrimaryKeyArn)?.Region ?? throw new InvalidOperationException($"{KeyVariable} is not a key ARN and {RegionVariable} is not set.");
        var config = new AmazonKeyManagementServiceConfig();
        if (Environment.GetEnvironmentVariable(EndpointVariable) is { Length: > 0 } endpoint)
        {
            config.ServiceURL = endpoint;
            config.AuthenticationRegion = region;
        }
        else
        {
            config.RegionEndpoint = RegionEndpoint.GetBySystemName(region);
        }

        if (Environment.GetEnvironmentVariable(AccessKeyVariable) is not { Length: > 0 } accessKey)
        {
            return new AmazonKeyManagementServiceClient(config);
        }

        var secret = Environment.GetEnvironmentVariable(SecretKeyVariable) is { Length: > 0 } s
            ? s
            : throw new InvalidOperationException($"{SecretKeyVariable} must be set with {AccessKeyVariable}.");
        AWSCredentials credentials = Environment.GetEnvironmentVariable(SessionTokenVariable) is { Length: > 0 } token
            ? new SessionAWSCredentials(accessKey, secret, token)
            : new BasicAWSCredentials(accessKey, secret);
        return new AmazonKeyManagementServiceClient(credentials, config);
    }

    /// <summary>A provider writing under the first key and reading the second, as after a rotation.</summary>
    public static AwsKmsMasterKeyProvider CreateProvider(IAmazonKeyManagementService client)
    {
        var options = new AwsKmsOptions { Client = client, KeyId = PrimaryKeyArn };
        options.AdditionalKeyIds.Add(SecondKeyArn);
        return new AwsKmsMasterKeyProvider(options);
    }

    // Once the suites are on, a missing or malformed second key is a misconfiguration, never a skip.
    private static string Required(string variable) =>
        Environment.GetEnvironmentVariable(variable) is { Length: > 0 } value && KmsKeyArn.TryParse(value) is not null
            ? value
            : throw new InvalidOperationException($"{variable} must be set to a KMS key ARN when {KeyVariable} is set.");
}

/// <summary>The external KMS as the key source of the shared EF behaviour suite.</summary>
public sealed class ExternalKmsKeys : IFixtureKeySource
{
    private AmazonKeyManagementServiceClient? _client;

    public string? SkipReason { get; } = ExternalKms.SkipReason;

    public Task InitializeAsync()
    {
        _client = ExternalKms.CreateClient();
        return Task.CompletedTask;
    }

    public IMasterKeyProvider CreateProvider() =>
        ExternalKms.CreateProvider(_client ?? throw new InvalidOperationException("The external KMS client is created before the database fixture asks for the provider."));

    public ValueTask DisposeAsync()
    {
        _client?.Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>SQLite with master keys in the external KMS.</summary>
public sealed class ExternalKmsSqliteFixture : SqliteFixture
{
    protected override IFixtureKeySource KeySource { get; } = new ExternalKmsKeys();
}

/// <summary>The EF behaviour suite end to end against the external KMS.</summary>
public sealed class ExternalKmsEncryptionBehaviourTests(ExternalKmsSqliteFixture fixture) : EncryptionBehaviourTests<ExternalKmsSqliteFixture>(fixture);
