using System.Net;
using System.Text;
using Amazon.KeyManagementService;
using Amazon.KeyManagementService.Model;
using Xunit;

namespace EfEnvelope.AwsKms.Tests.LocalKms;

/// <summary>The local endpoint behaves like KMS where the provider's tests depend on it (the SDK client drives it).</summary>
public sealed class LocalKmsServerTests : LocalKmsTestBase
{
    private AmazonKeyManagementServiceClient Client => Kms.Client;

    private static Dictionary<string, string> Context(params (string Name, string Value)[] pairs) =>
        pairs.ToDictionary(p => p.Name, p => p.Value);

    private async Task<MemoryStream> EncryptAsync(string keyId, string text, Dictionary<string, string> context)
    {
        var reply = await Client.EncryptAsync(new EncryptRequest { KeyId = keyId, Plaintext = new MemoryStream(Encoding.UTF8.GetBytes(text)), EncryptionContext = context }, Ct);
        return reply.CiphertextBlob;
    }

    private Task<DecryptResponse> DecryptAsync(MemoryStream blob, Dictionary<string, string> context, string? keyId = null) =>
        Client.DecryptAsync(new DecryptRequest { CiphertextBlob = new MemoryStream(blob.ToArray()), EncryptionContext = context, KeyId = keyId }, Ct);

    [Fact]
    public async Task Ciphertext_names_its_key_so_Decrypt_needs_no_key_id()
    {
        var blob = await EncryptAsync(LocalKmsFixture.PrimaryAlias, "hello", Context(("a", "1")));

        var reply = await DecryptAsync(blob, Context(("a", "1")));

        Assert.Equal("hello", Encoding.UTF8.GetString(reply.Plaintext.ToArray()));
        Assert.Equal(Kms.PrimaryKeyArn, reply.KeyId);
    }

    [Fact]
    public async Task Decrypt_pinned_to_another_key_is_refused_as_incorrect_key()
    {
        var blob = await EncryptAsync(LocalKmsFixture.PrimaryAlias, "hello", Context());

        await Assert.ThrowsAsync<IncorrectKeyException>(() => DecryptAsync(blob, Context(), Kms.SecondKeyArn));
    }

    [Fact]
    public async Task Every_way_of_naming_a_key_resolves_to_it()
    {
        var keyId = Kms.PrimaryKeyArn[(Kms.PrimaryKeyArn.LastIndexOf('/') + 1)..];
        var aliasArn = $"arn:aws:kms:{LocalKmsServer.Region}:{LocalKmsServer.AccountId}:{LocalKmsFixture.PrimaryAlias}";

        foreach (var name in new[] { keyId, Kms.PrimaryKeyArn, LocalKmsFixture.PrimaryAlias, aliasArn })
        {
            var described = await Client.DescribeKeyAsync(new DescribeKeyRequest { KeyId = name }, Ct);
            Assert.Equal(Kms.PrimaryKeyArn, described.KeyMetadata.Arn);
            Assert.Equal(KeyState.Enabled, described.KeyMetadata.KeyState);
        }
    }

    [Fact]
    public async Task Unknown_keys_and_aliases_are_not_found()
    {
        await Assert.ThrowsAsync<NotFoundException>(() => Client.DescribeKeyAsync(new DescribeKeyRequest { KeyId = "alias/missing" }, Ct));
        await Assert.ThrowsAsync<NotFoundException>(() => Client.GenerateDataKeyAsync(new GenerateDataKeyRequest { KeyId = Guid.NewGuid().ToString(), KeySpec = DataKeySpec.AES_256 }, Ct));
    }

    [Fact]
    public async Task Encryption_context_must_match_exactly_and_is_encoded_unambiguously()
    {
        var blob = await EncryptAsync(LocalKmsFixture.PrimaryAlias, "hello", Context(("ab", "c"), ("d", "e")));

        Assert.Equal("hello", Encoding.UTF8.GetString((await DecryptAsync(blob, Context(("d", "e"), ("ab", "c")))).Plaintext.ToArray()));
        await Assert.ThrowsAsync<InvalidCiphertextException>(() => DecryptAsync(blob, Context(("a", "bc"), ("d", "e"))));
        await Assert.ThrowsAsync<InvalidCiphertextException>(() => DecryptAsync(blob, Context(("ab", "c"))));
        await Assert.ThrowsAsync<InvalidCiphertextException>(() => DecryptAsync(blob, Context(("ab", "c"), ("d", "e"), ("f", "g"))));
        await Assert.ThrowsAsync<InvalidCiphertextException>(() => DecryptAsync(blob, Context(("ab", "cd"), ("", "e"))));
    }

    [Fact]
    public async Task Disabled_and_pending_deletion_keys_refuse_and_only_enabling_restores()
    {
        var blob = await EncryptAsync(Kms.SecondKeyArn, "hello", Context());

        await Client.DisableKeyAsync(new DisableKeyRequest { KeyId = Kms.SecondKeyArn }, Ct);
        await Assert.ThrowsAsync<DisabledException>(() => DecryptAsync(blob, Context()));
        await Client.EnableKeyAsync(new EnableKeyRequest { KeyId = Kms.SecondKeyArn }, Ct);
        Assert.Equal("hello", Encoding.UTF8.GetString((await DecryptAsync(blob, Context())).Plaintext.ToArray()));

        var scheduled = await Client.ScheduleKeyDeletionAsync(new ScheduleKeyDeletionRequest { KeyId = Kms.SecondKeyArn, PendingWindowInDays = 7 }, Ct);
        Assert.Equal(KeyState.PendingDeletion, scheduled.KeyState);
        await Assert.ThrowsAsync<KMSInvalidStateException>(() => DecryptAsync(blob, Context()));
        await Assert.ThrowsAsync<KMSInvalidStateException>(() => Client.EnableKeyAsync(new EnableKeyRequest { KeyId = Kms.SecondKeyArn }, Ct));
        var described = await Client.DescribeKeyAsync(new DescribeKeyRequest { KeyId = Kms.SecondKeyArn }, Ct);
        Assert.NotNull(described.KeyMetadata.DeletionDate);
    }

    [Fact]
    public async Task Data_key_without_plaintext_decrypts_to_a_key_of_the_requested_size()
    {
        var context = Context(("app", "x"));
        var withoutPlaintext = await Client.GenerateDataKeyWithoutPlaintextAsync(
            new GenerateDataKeyWithoutPlaintextRequest { KeyId = LocalKmsFixture.PrimaryAlias, KeySpec = DataKeySpec.AES_128, EncryptionContext = context }, Ct);
        var withPlaintext = await Client.GenerateDataKeyAsync(
            new GenerateDataKeyRequest { KeyId = LocalKmsFixture.PrimaryAlias, NumberOfBytes = 64, EncryptionContext = context }, Ct);

        Assert.Equal(16, (await DecryptAsync(withoutPlaintext.CiphertextBlob, context)).Plaintext.Length);
        Assert.Equal(withPlaintext.Plaintext.ToArray(), (await DecryptAsync(withPlaintext.CiphertextBlob, context)).Plaintext.ToArray());
    }

    [Fact]
    public async Task ReEncrypt_moves_a_ciphertext_to_another_key_and_context()
    {
        var blob = await EncryptAsync(LocalKmsFixture.PrimaryAlias, "hello", Context(("v", "1")));

        var moved = await Client.ReEncryptAsync(new ReEncryptRequest
        {
            CiphertextBlob = blob,
            SourceKeyId = LocalKmsFixture.PrimaryAlias,
            SourceEncryptionContext = Context(("v", "1")),
            DestinationKeyId = Kms.SecondKeyArn,
            DestinationEncryptionContext = Context(("v", "2")),
        }, Ct);

        Assert.Equal(Kms.PrimaryKeyArn, moved.SourceKeyId);
        Assert.Equal(Kms.SecondKeyArn, moved.KeyId);
        Assert.Equal("hello", Encoding.UTF8.GetString((await DecryptAsync(moved.CiphertextBlob, Context(("v", "2")), Kms.SecondKeyArn)).Plaintext.ToArray()));
        await Assert.ThrowsAsync<IncorrectKeyException>(() => DecryptAsync(moved.CiphertextBlob, Context(("v", "2")), LocalKmsFixture.PrimaryAlias));
    }

    [Fact]
    public async Task Aliases_are_unique_and_cannot_use_the_reserved_prefix()
    {
        await Assert.ThrowsAsync<AlreadyExistsException>(() => Client.CreateAliasAsync(new CreateAliasRequest { AliasName = LocalKmsFixture.PrimaryAlias, TargetKeyId = Kms.SecondKeyArn }, Ct));
        await Assert.ThrowsAsync<InvalidAliasNameException>(() => Client.CreateAliasAsync(new CreateAliasRequest { AliasName = "alias/aws/mine", TargetKeyId = Kms.SecondKeyArn }, Ct));
    }

    [Fact]
    public async Task Calls_are_counted_per_operation_including_refused_ones()
    {
        Kms.Server.ResetCounters();
        Kms.Server.DenyAccess = true;

        await Assert.ThrowsAsync<AmazonKeyManagementServiceException>(() => Client.DescribeKeyAsync(new DescribeKeyRequest { KeyId = LocalKmsFixture.PrimaryAlias }, Ct));
        Kms.Server.DenyAccess = false;
        await Client.DescribeKeyAsync(new DescribeKeyRequest { KeyId = LocalKmsFixture.PrimaryAlias }, Ct);

        Assert.Equal(2, Kms.Server.CallCount("DescribeKey"));
        Assert.Equal(0, Kms.Server.CallCount("Decrypt"));
        Assert.Equal(2, Kms.Server.TotalCalls);
    }

    [Fact]
    public async Task Replies_have_a_content_length_and_errors_are_json_with_a_type()
    {
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, Kms.Server.Url)
        {
            Content = new StringContent("""{"KeyId":"alias/missing"}""", Encoding.UTF8, "application/x-amz-json-1.1"),
        };
        request.Headers.Add("X-Amz-Target", "TrentService.DescribeKey");
        request.Headers.TryAddWithoutValidation("Authorization", "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kms/aws4_request");

        using var response = await http.SendAsync(request, Ct);
        var body = await response.Content.ReadAsStringAsync(Ct);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(Encoding.UTF8.GetByteCount(body), response.Content.Headers.ContentLength);
        Assert.NotEqual(true, response.Headers.TransferEncodingChunked);
        Assert.Contains("\"__type\":\"IncompleteSignatureException\"", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unsigned_requests_are_refused()
    {
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, Kms.Server.Url)
        {
            Content = new StringContent("{}", Encoding.UTF8, "application/x-amz-json-1.1"),
        };
        request.Headers.Add("X-Amz-Target", "TrentService.CreateKey");

        using var response = await http.SendAsync(request, Ct);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("MissingAuthenticationTokenException", await response.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
    }
}
