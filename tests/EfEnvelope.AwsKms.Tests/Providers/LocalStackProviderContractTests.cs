using Amazon.KeyManagementService;
using Amazon.KeyManagementService.Model;
using Amazon.Runtime;
using DotNet.Testcontainers.Builders;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.Providers;
using Testcontainers.LocalStack;

namespace EfEnvelope.AwsKms.Tests.Providers;

/// <summary>LocalStack's KMS in a container, where Docker is available; otherwise the reason is kept for the skip.</summary>
public sealed class LocalStackKmsFixture : IAsyncLifetime
{
    // A pinned release: the tests depend on LocalStack's KMS behaviour, which changes between versions.
    private const string Image = "localstack/localstack:4.4";

    private LocalStackContainer? _container;

    /// <summary>Why the suite cannot run here (no Docker), or null when LocalStack is up.</summary>
    public string? SkipReason { get; private set; }

    public AmazonKeyManagementServiceClient Client { get; private set; } = null!;

    public string PrimaryKeyArn { get; private set; } = null!;

    public string SecondKeyArn { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        try
        {
            _container = new LocalStackBuilder(Image).Build();
            await _container.StartAsync();
        }
        catch (DockerUnavailableException ex)
        {
            // Only a missing Docker skips the suite; any other failure to start LocalStack fails it.
            SkipReason = $"Docker is not available, so the contract suite does not run against LocalStack here ({ex.Message.Split('\n')[0]}).";
            return;
        }

        Client = new AmazonKeyManagementServiceClient(
            new BasicAWSCredentials("test", "test"),
            new AmazonKeyManagementServiceConfig { ServiceURL = _container.GetConnectionString(), AuthenticationRegion = "us-east-1" });
        PrimaryKeyArn = (await Client.CreateKeyAsync(new CreateKeyRequest { Description = "primary" })).KeyMetadata.Arn;
        SecondKeyArn = (await Client.CreateKeyAsync(new CreateKeyRequest { Description = "second" })).KeyMetadata.Arn;
    }

    public async ValueTask DisposeAsync()
    {
        Client?.Dispose();
        if (_container is not null)
        {
            await _container.DisposeAsync();
        }
    }
}

/// <summary>The shared provider contract against LocalStack's KMS: a second, independent KMS implementation.</summary>
public sealed class LocalStackProviderContractTests : MasterKeyProviderContractTests, IClassFixture<LocalStackKmsFixture>
{
    private readonly LocalStackKmsFixture _localStack;
    private readonly AwsKmsMasterKeyProvider _provider;

    public LocalStackProviderContractTests(LocalStackKmsFixture localStack)
    {
        if (localStack.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        _localStack = localStack;
        var options = new AwsKmsOptions { Client = localStack.Client, KeyId = localStack.PrimaryKeyArn };
        options.AdditionalKeyIds.Add(localStack.SecondKeyArn);
        _provider = new AwsKmsMasterKeyProvider(options);
    }

    protected override IMasterKeyProvider Provider => _provider;

    protected override string SecondKeyId => _localStack.SecondKeyArn;

    protected override Task DisableKeyAsync(string keyId) =>
        _localStack.Client.DisableKeyAsync(new DisableKeyRequest { KeyId = keyId }, TestContext.Current.CancellationToken);

    protected override Task EnableKeyAsync(string keyId) =>
        _localStack.Client.EnableKeyAsync(new EnableKeyRequest { KeyId = keyId }, TestContext.Current.CancellationToken);
}
