using Amazon.KeyManagementService.Model;
using EfEnvelope.AwsKms.Tests.LocalKms;
using EfEnvelope.KeyManagement;

namespace EfEnvelope.AwsKms.Tests.Providers;

/// <summary>Which key a blob records and which keys a provider trusts: key ARNs, aliases, rows from before ARNs, discovery.</summary>
public sealed class AwsKmsKeyArnTests : IAsyncLifetime
{
    private static readonly KeyContext Patients = KeyContext.For("clinic", "Clinic.Patient");

    private LocalKmsFixture _kms = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private LocalKmsServer Server => _kms.Server;

    public async ValueTask InitializeAsync() => _kms = await LocalKmsFixture.StartAsync();

    public ValueTask DisposeAsync() => _kms.DisposeAsync();

    [Fact]
    public async Task A_row_naming_the_alias_itself_is_resolved_once_through_DescribeKey_and_Decrypt_is_pinned_to_the_key_ARN()
    {
        // Rows written before key ARNs were recorded name the configured alias; the wrapped key is the same.
        var provider = _kms.CreateProvider();
        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct);
        var reader = _kms.CreateProvider(Server.CreateClient());
        Server.ResetCounters();

        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(key.Plaintext, await reader.DecryptDataKeyAsync(LocalKmsFixture.PrimaryAlias, key.WrappedKey, Patients, Ct));
        }

        Assert.Equal(1, Server.CallCount("DescribeKey"));
        Assert.All(Server.Requests("Decrypt"), r => Assert.Equal(_kms.PrimaryKeyArn, r.KeyId));
    }

    [Fact]
    public async Task A_row_naming_a_moved_alias_is_decrypted_by_the_key_in_the_blob_only_if_that_key_is_trusted()
    {
        var provider = _kms.CreateProvider();
        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct);
        var newKey = await LocalKmsFixture.CreateKeyAsync(_kms.Client, "new");
        await _kms.Client.UpdateAliasAsync(new UpdateAliasRequest { AliasName = LocalKmsFixture.PrimaryAlias, TargetKeyId = newKey }, Ct);
        var trusting = _kms.CreateProvider(Server.CreateClient(), o => o.AdditionalKeyIds.Add(_kms.PrimaryKeyArn));
        var aliasOnly = _kms.CreateProvider(Server.CreateClient(), o => o.AdditionalKeyIds.Clear());

        Assert.Equal(key.Plaintext, await trusting.DecryptDataKeyAsync(LocalKmsFixture.PrimaryAlias, key.WrappedKey, Patients, Ct));
        var refused = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => aliasOnly.DecryptDataKeyAsync(LocalKmsFixture.PrimaryAlias, key.WrappedKey, Patients, Ct));

        Assert.Equal(LocalKmsFixture.PrimaryAlias, refused.KeyId);
        Assert.Contains(_kms.PrimaryKeyArn, refused.Message, StringComparison.Ordinal);
        Assert.Contains("not configured", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_discovery_filter_trusts_keys_of_its_accounts_and_partition_only()
    {
        var other = await LocalKmsFixture.CreateKeyAsync(_kms.Client, "unlisted");
        var writer = _kms.CreateProvider(o => o.KeyId = other);
        using var key = await writer.GenerateDataKeyAsync(other, Patients, Ct);
        var sameAccount = _kms.CreateProvider(o => (o.KeyId, o.Discovery) = (_kms.PrimaryKeyArn, new AwsKmsDiscoveryFilter("aws", LocalKmsServer.AccountId)));
        var otherAccount = _kms.CreateProvider(o => (o.KeyId, o.Discovery) = (_kms.PrimaryKeyArn, new AwsKmsDiscoveryFilter("aws", "999988887777")));
        var otherPartition = _kms.CreateProvider(o => (o.KeyId, o.Discovery) = (_kms.PrimaryKeyArn, new AwsKmsDiscoveryFilter("aws-cn", LocalKmsServer.AccountId)));

        Assert.Equal(key.Plaintext, await sameAccount.DecryptDataKeyAsync(other, key.WrappedKey, Patients, Ct));
        Assert.False(otherAccount.IsKeyConfigured(other));
        Assert.False(otherPartition.IsKeyConfigured(other));
        await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => otherAccount.DecryptDataKeyAsync(other, key.WrappedKey, Patients, Ct));
        Assert.Throws<ArgumentException>(() => new AwsKmsDiscoveryFilter("aws"));
        Assert.Throws<ArgumentException>(() => new AwsKmsDiscoveryFilter("aws", "12345"));
    }

    [Fact]
    public void Providers_differing_only_in_their_discovery_filter_are_different_configurations()
    {
        var plain = _kms.CreateProvider();
        var discovering = _kms.CreateProvider(o => o.Discovery = new AwsKmsDiscoveryFilter("aws", LocalKmsServer.AccountId));
        var discoveringToo = _kms.CreateProvider(o => o.Discovery = new AwsKmsDiscoveryFilter("aws", LocalKmsServer.AccountId));

        Assert.NotEqual(plain, discovering);
        Assert.Equal(discovering, discoveringToo);
        Assert.Equal(discovering.GetHashCode(), discoveringToo.GetHashCode());
    }
}
