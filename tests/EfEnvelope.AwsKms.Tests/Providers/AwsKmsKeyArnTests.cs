using Amazon.KeyManagementService.Model;
using EfEnvelope.AwsKms.Tests.LocalKms;

namespace EfEnvelope.AwsKms.Tests.Providers;

/// <summary>Which key a blob records and which keys a provider trusts: key ARNs, aliases, rows from before ARNs, discovery.</summary>
public sealed class AwsKmsKeyArnTests : LocalKmsTestBase
{
    [Fact]
    public async Task A_row_naming_the_alias_itself_is_resolved_once_through_DescribeKey_and_Decrypt_is_pinned_to_the_key_ARN()
    {
        // Rows written before key ARNs were recorded name the configured alias; the wrapped key is the same.
        var provider = Kms.CreateProvider();
        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct);
        var reader = Kms.CreateProvider(Server.CreateClient());
        Server.ResetCounters();

        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(key.Plaintext, await reader.DecryptDataKeyAsync(LocalKmsFixture.PrimaryAlias, key.WrappedKey, Patients, Ct));
        }

        Assert.Equal(1, Server.CallCount("DescribeKey"));
        Assert.All(Server.Requests("Decrypt"), r => Assert.Equal(Kms.PrimaryKeyArn, r.KeyId));
    }

    [Fact]
    public async Task A_row_naming_a_moved_alias_is_decrypted_by_the_key_in_the_blob_only_if_that_key_is_trusted()
    {
        var provider = Kms.CreateProvider();
        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct);
        var newKey = await LocalKmsFixture.CreateKeyAsync(Kms.Client, "new");
        await Kms.Client.UpdateAliasAsync(new UpdateAliasRequest { AliasName = LocalKmsFixture.PrimaryAlias, TargetKeyId = newKey }, Ct);
        var trusting = Kms.CreateProvider(Server.CreateClient(), o => o.AdditionalKeyIds.Add(Kms.PrimaryKeyArn));
        var aliasOnly = Kms.CreateProvider(Server.CreateClient(), o => o.AdditionalKeyIds.Clear());

        Assert.Equal(key.Plaintext, await trusting.DecryptDataKeyAsync(LocalKmsFixture.PrimaryAlias, key.WrappedKey, Patients, Ct));
        var refused = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => aliasOnly.DecryptDataKeyAsync(LocalKmsFixture.PrimaryAlias, key.WrappedKey, Patients, Ct));

        Assert.Equal(LocalKmsFixture.PrimaryAlias, refused.KeyId);
        Assert.Contains(Kms.PrimaryKeyArn, refused.Message, StringComparison.Ordinal);
        Assert.Contains("not configured", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_discovery_filter_trusts_keys_of_its_accounts_and_partition_only()
    {
        var other = await LocalKmsFixture.CreateKeyAsync(Kms.Client, "unlisted");
        var writer = Kms.CreateProvider(o => o.KeyId = other);
        using var key = await writer.GenerateDataKeyAsync(other, Patients, Ct);
        var sameAccount = Kms.CreateProvider(o => (o.KeyId, o.Discovery) = (Kms.PrimaryKeyArn, new AwsKmsDiscoveryFilter("aws", LocalKmsServer.AccountId)));
        var otherAccount = Kms.CreateProvider(o => (o.KeyId, o.Discovery) = (Kms.PrimaryKeyArn, new AwsKmsDiscoveryFilter("aws", "999988887777")));
        var otherPartition = Kms.CreateProvider(o => (o.KeyId, o.Discovery) = (Kms.PrimaryKeyArn, new AwsKmsDiscoveryFilter("aws-cn", LocalKmsServer.AccountId)));

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
        var plain = Kms.CreateProvider();
        var discovering = Kms.CreateProvider(o => o.Discovery = new AwsKmsDiscoveryFilter("aws", LocalKmsServer.AccountId));
        var discoveringToo = Kms.CreateProvider(o => o.Discovery = new AwsKmsDiscoveryFilter("aws", LocalKmsServer.AccountId));

        Assert.NotEqual(plain, discovering);
        Assert.Equal(discovering, discoveringToo);
        Assert.Equal(discovering.GetHashCode(), discoveringToo.GetHashCode());
    }
}
