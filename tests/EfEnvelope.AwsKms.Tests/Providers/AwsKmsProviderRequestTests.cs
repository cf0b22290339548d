using System.Text.Json;
using Amazon.Runtime;
using EfEnvelope.AwsKms.Tests.LocalKms;
using EfEnvelope.KeyManagement;
using Xunit;

namespace EfEnvelope.AwsKms.Tests.Providers;

/// <summary>What the provider sends to KMS: the calls, the pinned key, the encryption context, and nothing secret.</summary>
public sealed class AwsKmsProviderRequestTests : LocalKmsTestBase
{
    [Fact]
    public async Task Generated_key_is_named_by_the_key_ARN_KMS_answers_with_not_the_configured_alias()
    {
        var provider = Kms.CreateProvider();

        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, KeyContext.For("clinic", "Clinic.Patient"), Ct);

        Assert.Equal(Kms.PrimaryKeyArn, key.KeyId);
        Assert.Equal(LocalKmsFixture.PrimaryAlias, Server.Requests("GenerateDataKey").Single().KeyId);
        Assert.True(provider.IsKeyConfigured(key.KeyId));
    }

    [Fact]
    public async Task GenerateDataKey_asks_for_AES_256_under_the_requested_key()
    {
        var provider = Kms.CreateProvider();
        Server.ResetCounters();

        using var key = await provider.GenerateDataKeyAsync(Kms.SecondKeyArn, KeyContext.For("clinic", "Clinic.Patient"), Ct);

        var request = Assert.Single(Server.Requests("GenerateDataKey"));
        using var body = JsonDocument.Parse(request.Body);
        Assert.Equal("AES_256", body.RootElement.GetProperty("KeySpec").GetString());
        Assert.False(body.RootElement.TryGetProperty("NumberOfBytes", out _));
        Assert.Equal(Kms.SecondKeyArn, request.KeyId);
        Assert.Equal(1, Server.TotalCalls);
    }

    [Fact]
    public async Task Encryption_context_holds_application_and_entity_and_nothing_else()
    {
        var provider = Kms.CreateProvider();
        var context = KeyContext.For("clinic", "Clinic.Patient");
        Server.ResetCounters();

        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, context, Ct);
        var unwrapped = await provider.DecryptDataKeyAsync(key.KeyId, key.WrappedKey, context, Ct);

        var expected = new Dictionary<string, string>
        {
            [KeyContext.ApplicationKey] = "clinic",
            [KeyContext.EntityKey] = "Clinic.Patient",
        };
        var requests = Server.Requests("GenerateDataKey").Concat(Server.Requests("Decrypt")).ToList();
        Assert.Equal(2, requests.Count);
        foreach (var request in requests)
        {
            Assert.Equal(expected, request.EncryptionContext);
            Assert.DoesNotContain(Convert.ToBase64String(key.Plaintext), request.Body, StringComparison.Ordinal);
            Assert.DoesNotContain("local-kms-test-secret", request.Body + request.Authorization, StringComparison.Ordinal);
            using var body = JsonDocument.Parse(request.Body);
            Assert.False(body.RootElement.TryGetProperty("Plaintext", out _));
        }

        Assert.Equal(key.Plaintext, unwrapped);
    }

    [Fact]
    public async Task Direct_mode_context_carries_the_record_as_well()
    {
        var provider = Kms.CreateProvider();
        var context = KeyContext.For("clinic", "Clinic.Patient", "3f2a9c1e");
        Server.ResetCounters();

        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, context, Ct);

        var request = Assert.Single(Server.Requests("GenerateDataKey"));
        Assert.Equal(3, request.EncryptionContext.Count);
        Assert.Equal("3f2a9c1e", request.EncryptionContext[KeyContext.RecordKey]);
        await Assert.ThrowsAsync<EnvelopeDecryptionException>(
            () => provider.DecryptDataKeyAsync(key.KeyId, key.WrappedKey, KeyContext.For("clinic", "Clinic.Patient", "another-record"), Ct));
    }

    [Fact]
    public async Task Decrypt_is_pinned_to_the_key_the_blob_names()
    {
        var provider = Kms.CreateProvider();
        var context = KeyContext.For("clinic", "Clinic.Patient");
        using var underPrimary = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, context, Ct);
        using var underSecond = await provider.GenerateDataKeyAsync(Kms.SecondKeyArn, context, Ct);
        Server.ResetCounters();

        await provider.DecryptDataKeyAsync(underPrimary.KeyId, underPrimary.WrappedKey, context, Ct);
        await provider.DecryptDataKeyAsync(underSecond.KeyId, underSecond.WrappedKey, context, Ct);

        Assert.Equal([Kms.PrimaryKeyArn, Kms.SecondKeyArn], Server.Requests("Decrypt").Select(r => r.KeyId));
    }

    [Fact]
    public async Task Every_request_is_signed_with_SigV4_for_the_configured_region()
    {
        var provider = Kms.CreateProvider();
        Server.ResetCounters();

        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, KeyContext.For("clinic", "Clinic.Patient"), Ct);

        var request = Assert.Single(Server.Requests("GenerateDataKey"));
        Assert.StartsWith("AWS4-HMAC-SHA256 Credential=test/", request.Authorization, StringComparison.Ordinal);
        Assert.Contains($"/{LocalKmsServer.Region}/kms/aws4_request", request.Authorization, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Provider_builds_its_own_client_from_service_url_region_and_credentials()
    {
        using var provider = new AwsKmsMasterKeyProvider(new AwsKmsOptions
        {
            KeyId = LocalKmsFixture.PrimaryAlias,
            ServiceUrl = Server.Url.ToString(),
            AuthenticationRegion = LocalKmsServer.Region,
            Credentials = new BasicAWSCredentials("test", "test"),
            MaxErrorRetry = 0,
        });
        var context = KeyContext.For("clinic", "Clinic.Patient");
        Server.ResetCounters();

        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, context, Ct);
        var unwrapped = await provider.DecryptDataKeyAsync(key.KeyId, key.WrappedKey, context, Ct);

        Assert.Equal(key.Plaintext, unwrapped);
        Assert.StartsWith("AWS4-HMAC-SHA256 Credential=test/", Server.Requests("Decrypt").Single().Authorization, StringComparison.Ordinal);
    }
}
