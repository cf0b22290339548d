using Amazon.KeyManagementService.Model;
using EfEnvelope.AwsKms.Tests.LocalKms;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.Providers;
using Xunit;

namespace EfEnvelope.AwsKms.Tests.Providers;

/// <summary>The shared provider contract, run with the real SDK client against the local KMS endpoint.</summary>
public sealed class AwsKmsProviderContractTests(LocalKmsFixture kms) : MasterKeyProviderContractTests, IClassFixture<LocalKmsFixture>
{
    private readonly AwsKmsMasterKeyProvider _provider = kms.CreateProvider();

    protected override IMasterKeyProvider Provider => _provider;

    protected override string SecondKeyId => kms.SecondKeyArn;

    protected override Task DisableKeyAsync(string keyId) =>
        kms.Client.DisableKeyAsync(new DisableKeyRequest { KeyId = keyId }, TestContext.Current.CancellationToken);

    protected override Task EnableKeyAsync(string keyId) =>
        kms.Client.EnableKeyAsync(new EnableKeyRequest { KeyId = keyId }, TestContext.Current.CancellationToken);
}
