using Amazon.KeyManagementService;
using Amazon.Runtime;
using EfEnvelope.AwsKms.Tests.LocalKms;

namespace EfEnvelope.AwsKms.Tests.Providers;

/// <summary>Credential failures, a key of the wrong kind and use after disposal, each reported as what it is.</summary>
public sealed class AwsKmsProviderErrorTests : LocalKmsTestBase
{
    [Fact]
    public async Task A_wrong_secret_and_an_unknown_access_key_are_credential_errors_naming_the_cause_but_not_the_secret()
    {
        using var wrongSecret = Built(new BasicAWSCredentials("test", "wrong-secret-value"));
        using var unknownKey = Built(new BasicAWSCredentials("AKIDUNKNOWNKEY", "test"));

        var signature = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => wrongSecret.GenerateDataKeyAsync(wrongSecret.PrimaryKeyId, Patients, Ct));
        var unknown = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => unknownKey.GenerateDataKeyAsync(unknownKey.PrimaryKeyId, Patients, Ct));

        Assert.IsNotType<MasterKeyAccessRevokedException>(signature);
        Assert.Contains("rejected the application's credentials", signature.Message, StringComparison.Ordinal);
        Assert.Contains("InvalidSignatureException", signature.Message, StringComparison.Ordinal);
        Assert.Contains("secret access key", signature.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("wrong-secret-value", signature.Message, StringComparison.Ordinal);
        Assert.Contains("UnrecognizedClientException", unknown.Message, StringComparison.Ordinal);
        Assert.Contains("access key id", unknown.Message, StringComparison.Ordinal);
        Assert.Equal(LocalKmsFixture.PrimaryAlias, unknown.KeyId);
    }

    [Fact]
    public async Task Expired_temporary_credentials_are_reported_as_expired()
    {
        var provider = Kms.CreateProvider();
        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct);
        Server.FailNext(1, "ExpiredTokenException", "The security token included in the request is expired", operation: "Decrypt");

        var error = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.DecryptDataKeyAsync(key.KeyId, key.WrappedKey, Patients, Ct));

        Assert.IsNotType<MasterKeyAccessRevokedException>(error);
        Assert.Contains("ExpiredTokenException", error.Message, StringComparison.Ordinal);
        Assert.Contains("expired", error.Message, StringComparison.Ordinal);
        Assert.Equal(key.KeyId, error.KeyId);
    }

    [Fact]
    public async Task A_key_that_cannot_encrypt_is_reported_as_the_wrong_kind_of_key()
    {
        var provider = Kms.CreateProvider();
        Server.FailNext(1, "InvalidKeyUsageException", "KeyUsage SIGN_VERIFY is not compatible with GenerateDataKey", operation: "GenerateDataKey");

        var error = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct));

        Assert.IsType<Amazon.KeyManagementService.Model.InvalidKeyUsageException>(error.InnerException);
        Assert.Contains("symmetric ENCRYPT_DECRYPT", error.Message, StringComparison.Ordinal);
        Assert.Equal(LocalKmsFixture.PrimaryAlias, error.KeyId);
    }

    [Fact]
    public async Task Concurrent_first_calls_build_one_client_which_Dispose_releases_and_later_calls_say_the_provider_was_disposed()
    {
        var built = new List<IAmazonKeyManagementService>();
        var options = new AwsKmsOptions { KeyId = LocalKmsFixture.PrimaryAlias };
        var provider = new AwsKmsMasterKeyProvider(options, _ =>
        {
            // A slow construction widens the window in which a racing caller would build a second client.
            Thread.Sleep(50);
            var client = Server.CreateClient();
            lock (built)
            {
                built.Add(client);
            }

            return client;
        });

        var keys = await Task.WhenAll(Enumerable.Range(0, 16).Select(_ => Task.Run(() => provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct), Ct)));
        provider.Dispose();
        var error = await Assert.ThrowsAsync<MasterKeyException>(() => provider.DecryptDataKeyAsync(keys[0].KeyId, keys[0].WrappedKey, Patients, Ct));

        Assert.Single(built);
        Assert.IsType<ObjectDisposedException>(error.InnerException);
        Assert.Contains("disposed", error.Message, StringComparison.Ordinal);
        Assert.Equal(keys[0].KeyId, error.KeyId);
        await Assert.ThrowsAnyAsync<ObjectDisposedException>(() => built[0].DescribeKeyAsync(new Amazon.KeyManagementService.Model.DescribeKeyRequest { KeyId = LocalKmsFixture.PrimaryAlias }, Ct));
        foreach (var key in keys)
        {
            key.Dispose();
        }
    }

    [Fact]
    public async Task A_given_client_disposed_by_its_owner_is_reported_not_thrown_raw()
    {
        var client = Server.CreateClient();
        var provider = Kms.CreateProvider(client);
        client.Dispose();

        var error = await Assert.ThrowsAsync<MasterKeyException>(() => provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct));

        Assert.IsType<ObjectDisposedException>(error.InnerException);
        Assert.Contains("disposed", error.Message, StringComparison.Ordinal);
    }

    private AwsKmsMasterKeyProvider Built(AWSCredentials credentials) => new(new AwsKmsOptions
    {
        KeyId = LocalKmsFixture.PrimaryAlias,
        ServiceUrl = Server.Url.ToString(),
        AuthenticationRegion = LocalKmsServer.Region,
        Credentials = credentials,
        MaxErrorRetry = 0,
    });
}
