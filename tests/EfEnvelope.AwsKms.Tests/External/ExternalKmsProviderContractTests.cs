using Amazon.KeyManagementService;
using Amazon.KeyManagementService.Model;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.Providers;

namespace EfEnvelope.AwsKms.Tests.External;

/// <summary>The client shared by one run of the contract suite against the external KMS.</summary>
public sealed class ExternalKmsClientFixture : IDisposable
{
    private readonly Lazy<AmazonKeyManagementServiceClient> _client = new(ExternalKms.CreateClient);

    public AmazonKeyManagementServiceClient Client => _client.Value;

    public void Dispose()
    {
        if (_client.IsValueCreated)
        {
            _client.Value.Dispose();
        }
    }
}

/// <summary>The shared provider contract against the KMS endpoint the environment names (see <see cref="ExternalKms"/>).</summary>
public sealed class ExternalKmsProviderContractTests : MasterKeyProviderContractTests, IClassFixture<ExternalKmsClientFixture>
{
    private readonly IAmazonKeyManagementService _client;
    private readonly AwsKmsMasterKeyProvider _provider;

    public ExternalKmsProviderContractTests(ExternalKmsClientFixture fixture)
    {
        if (ExternalKms.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        _client = fixture.Client;
        _provider = ExternalKms.CreateProvider(_client);
    }

    protected override IMasterKeyProvider Provider => _provider;

    protected override string SecondKeyId => ExternalKms.SecondKeyArn;

    protected override Task DisableKeyAsync(string keyId) =>
        _client.DisableKeyAsync(new DisableKeyRequest { KeyId = keyId }, TestContext.Current.CancellationToken);

    protected override Task EnableKeyAsync(string keyId) =>
        _client.EnableKeyAsync(new EnableKeyRequest { KeyId = keyId }, TestContext.Current.CancellationToken);
}
