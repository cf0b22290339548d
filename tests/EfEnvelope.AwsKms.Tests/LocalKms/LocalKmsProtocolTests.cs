using System.Net;
using System.Text;
using Amazon.KeyManagementService;
using Amazon.KeyManagementService.Model;
using Amazon.Runtime;
using EfEnvelope.LocalKms;

namespace EfEnvelope.AwsKms.Tests.LocalKms;

/// <summary>The local KMS checks what KMS checks: signatures, Regions, dry runs, grant tokens, and refuses what it lacks.</summary>
public sealed class LocalKmsProtocolTests : LocalKmsTestBase
{
    [Fact]
    public async Task A_wrong_secret_an_unknown_access_key_and_an_unexpected_session_token_are_refused()
    {
        using var wrongSecret = Kms.Server.CreateClient(credentials: new BasicAWSCredentials("test", "not-the-secret"));
        using var unknownKey = Kms.Server.CreateClient(credentials: new BasicAWSCredentials("AKIDUNKNOWN", "test"));
        using var withToken = Kms.Server.CreateClient(credentials: new SessionAWSCredentials("test", "test", "a-session-token"));
        var describe = new DescribeKeyRequest { KeyId = LocalKmsFixture.PrimaryAlias };
        Kms.Server.ResetCounters();

        var signature = await Assert.ThrowsAsync<AmazonKeyManagementServiceException>(() => wrongSecret.DescribeKeyAsync(describe, Ct));
        var unknown = await Assert.ThrowsAsync<AmazonKeyManagementServiceException>(() => unknownKey.DescribeKeyAsync(describe, Ct));
        var token = await Assert.ThrowsAsync<AmazonKeyManagementServiceException>(() => withToken.DescribeKeyAsync(describe, Ct));

        Assert.Equal("InvalidSignatureException", signature.ErrorCode);
        Assert.Equal("UnrecognizedClientException", unknown.ErrorCode);
        Assert.Equal("UnrecognizedClientException", token.ErrorCode);
        // Refused before the operation runs: the server's request hook never saw them.
        Assert.Equal(0, Kms.Server.TotalCalls);
    }

    [Fact]
    public async Task A_signature_dated_more_than_five_minutes_from_the_server_clock_has_expired()
    {
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var server = EfEnvelope.LocalKms.LocalKmsServer.Start(new LocalKmsOptions { TimeProvider = clock });
        using var client = new AmazonKeyManagementServiceClient(LocalKmsServer.Credentials, new AmazonKeyManagementServiceConfig { ServiceURL = server.Url.ToString(), AuthenticationRegion = "us-east-1", MaxErrorRetry = 0 });

        await client.CreateKeyAsync(new CreateKeyRequest(), Ct);
        clock.Advance(TimeSpan.FromMinutes(6));
        var expired = await Assert.ThrowsAnyAsync<AmazonKeyManagementServiceException>(() => client.CreateKeyAsync(new CreateKeyRequest(), Ct));

        Assert.Equal("InvalidSignatureException", expired.ErrorCode);
        Assert.Contains("Signature expired", expired.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_tampered_body_fails_the_signature_even_with_the_right_credentials()
    {
        using var http = new HttpClient();
        var body = """{"KeyId":"alias/efenvelope-tests"}""";
        using var request = new HttpRequestMessage(HttpMethod.Post, Kms.Server.Url)
        {
            Content = new StringContent(body, Encoding.UTF8, "application/x-amz-json-1.1"),
        };
        request.Headers.Add("X-Amz-Target", "TrentService.DescribeKey");
        var date = DateTime.UtcNow;
        request.Headers.Add("X-Amz-Date", date.ToString("yyyyMMdd'T'HHmmss'Z'", System.Globalization.CultureInfo.InvariantCulture));
        request.Headers.TryAddWithoutValidation("Authorization", $"AWS4-HMAC-SHA256 Credential=test/{date:yyyyMMdd}/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature={new string('0', 64)}");

        using var response = await http.SendAsync(request, Ct);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("InvalidSignatureException", await response.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Keys_and_aliases_belong_to_the_Region_a_request_is_signed_for()
    {
        using var west = Kms.Server.CreateClient(region: "eu-west-1");

        await Assert.ThrowsAsync<NotFoundException>(() => west.DescribeKeyAsync(new DescribeKeyRequest { KeyId = LocalKmsFixture.PrimaryAlias }, Ct));
        await Assert.ThrowsAsync<NotFoundException>(() => west.DescribeKeyAsync(new DescribeKeyRequest { KeyId = Kms.PrimaryKeyArn }, Ct));
        var created = await west.CreateKeyAsync(new CreateKeyRequest(), Ct);
        Assert.StartsWith($"arn:aws:kms:eu-west-1:{LocalKmsServer.AccountId}:key/", created.KeyMetadata.Arn, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UpdateAlias_moves_an_alias_ListAliases_shows_it_and_DeleteAlias_removes_it()
    {
        var client = Kms.Client;
        await client.CreateAliasAsync(new CreateAliasRequest { AliasName = "alias/b-second", TargetKeyId = Kms.SecondKeyArn }, Ct);

        await client.UpdateAliasAsync(new UpdateAliasRequest { AliasName = LocalKmsFixture.PrimaryAlias, TargetKeyId = Kms.SecondKeyArn }, Ct);
        var moved = await client.DescribeKeyAsync(new DescribeKeyRequest { KeyId = LocalKmsFixture.PrimaryAlias }, Ct);
        var all = await client.ListAliasesAsync(new ListAliasesRequest(), Ct);
        var page = await client.ListAliasesAsync(new ListAliasesRequest { Limit = 1 }, Ct);
        var next = await client.ListAliasesAsync(new ListAliasesRequest { Limit = 1, Marker = page.NextMarker }, Ct);
        var ofSecond = await client.ListAliasesAsync(new ListAliasesRequest { KeyId = Kms.SecondKeyArn }, Ct);
        await client.DeleteAliasAsync(new DeleteAliasRequest { AliasName = "alias/b-second" }, Ct);

        Assert.Equal(Kms.SecondKeyArn, moved.KeyMetadata.Arn);
        Assert.Equal(["alias/b-second", LocalKmsFixture.PrimaryAlias], all.Aliases.Select(a => a.AliasName));
        Assert.All(all.Aliases, a => Assert.Equal($"arn:aws:kms:us-east-1:{LocalKmsServer.AccountId}:{a.AliasName}", a.AliasArn));
        Assert.True(page.Truncated);
        Assert.Equal("alias/b-second", Assert.Single(page.Aliases).AliasName);
        Assert.Equal(LocalKmsFixture.PrimaryAlias, Assert.Single(next.Aliases).AliasName);
        Assert.False(next.Truncated);
        Assert.Equal(2, ofSecond.Aliases.Count);
        await Assert.ThrowsAsync<NotFoundException>(() => client.DescribeKeyAsync(new DescribeKeyRequest { KeyId = "alias/b-second" }, Ct));
        await Assert.ThrowsAsync<NotFoundException>(() => client.DeleteAliasAsync(new DeleteAliasRequest { AliasName = "alias/b-second" }, Ct));
        await Assert.ThrowsAsync<NotFoundException>(() => client.UpdateAliasAsync(new UpdateAliasRequest { AliasName = "alias/missing", TargetKeyId = Kms.SecondKeyArn }, Ct));
    }

    [Fact]
    public async Task DryRun_checks_the_key_and_answers_DryRunOperationException_without_doing_the_work()
    {
        var client = Kms.Client;
        var encrypted = await client.EncryptAsync(new EncryptRequest { KeyId = LocalKmsFixture.PrimaryAlias, Plaintext = new MemoryStream([1, 2, 3]) }, Ct);

        var generate = await Assert.ThrowsAsync<DryRunOperationException>(() => client.GenerateDataKeyAsync(new GenerateDataKeyRequest { KeyId = LocalKmsFixture.PrimaryAlias, KeySpec = DataKeySpec.AES_256, DryRun = true }, Ct));
        var decrypt = await Assert.ThrowsAsync<DryRunOperationException>(() => client.DecryptAsync(new DecryptRequest { CiphertextBlob = encrypted.CiphertextBlob, DryRun = true }, Ct));
        await client.DisableKeyAsync(new DisableKeyRequest { KeyId = Kms.PrimaryKeyArn }, Ct);
        await Assert.ThrowsAsync<DisabledException>(() => client.GenerateDataKeyAsync(new GenerateDataKeyRequest { KeyId = LocalKmsFixture.PrimaryAlias, KeySpec = DataKeySpec.AES_256, DryRun = true }, Ct));

        Assert.Equal(HttpStatusCode.PreconditionFailed, generate.StatusCode);
        Assert.Contains("DryRun", decrypt.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unsupported_operations_and_parameters_are_refused_not_ignored()
    {
        var client = Kms.Client;

        // ListKeys does not declare this error, so the SDK raises its base exception with KMS's error code.
        var listKeys = await Assert.ThrowsAnyAsync<AmazonKeyManagementServiceException>(() => client.ListKeysAsync(new ListKeysRequest(), Ct));
        Assert.Equal("UnsupportedOperationException", listKeys.ErrorCode);
        await Assert.ThrowsAsync<UnsupportedOperationException>(() => client.CreateKeyAsync(new CreateKeyRequest { KeySpec = KeySpec.RSA_2048, KeyUsage = KeyUsageType.ENCRYPT_DECRYPT }, Ct));
        await Assert.ThrowsAsync<UnsupportedOperationException>(() => client.CreateKeyAsync(new CreateKeyRequest { Tags = [new Tag { TagKey = "team", TagValue = "clinic" }] }, Ct));
        await Assert.ThrowsAsync<UnsupportedOperationException>(() => client.CreateKeyAsync(new CreateKeyRequest { Policy = "{}" }, Ct));
        await Assert.ThrowsAsync<InvalidGrantTokenException>(() => client.GenerateDataKeyAsync(new GenerateDataKeyRequest { KeyId = LocalKmsFixture.PrimaryAlias, KeySpec = DataKeySpec.AES_256, GrantTokens = ["a-grant-token"] }, Ct));
        await Assert.ThrowsAsync<InvalidKeyUsageException>(() => client.EncryptAsync(new EncryptRequest { KeyId = LocalKmsFixture.PrimaryAlias, Plaintext = new MemoryStream([1]), EncryptionAlgorithm = EncryptionAlgorithmSpec.RSAES_OAEP_SHA_256 }, Ct));
    }

    [Fact]
    public async Task A_multi_Region_key_replicated_to_another_Region_decrypts_there_what_the_primary_encrypted()
    {
        using var west = Kms.Server.CreateClient(region: "eu-west-1");
        var primary = (await Kms.Client.CreateKeyAsync(new CreateKeyRequest { MultiRegion = true }, Ct)).KeyMetadata;
        var replica = (await Kms.Client.ReplicateKeyAsync(new ReplicateKeyRequest { KeyId = primary.Arn, ReplicaRegion = "eu-west-1" }, Ct)).ReplicaKeyMetadata;
        var blob = (await Kms.Client.EncryptAsync(new EncryptRequest { KeyId = primary.Arn, Plaintext = new MemoryStream([7, 7]) }, Ct)).CiphertextBlob;

        var decrypted = await west.DecryptAsync(new DecryptRequest { CiphertextBlob = blob, KeyId = replica.Arn }, Ct);
        var described = (await west.DescribeKeyAsync(new DescribeKeyRequest { KeyId = replica.Arn }, Ct)).KeyMetadata;

        Assert.StartsWith("mrk-", primary.KeyId, StringComparison.Ordinal);
        Assert.Equal(primary.KeyId, replica.KeyId);
        Assert.Equal(primary.Arn.Replace("us-east-1", "eu-west-1", StringComparison.Ordinal), replica.Arn);
        Assert.Equal([7, 7], decrypted.Plaintext.ToArray());
        Assert.True(described.MultiRegion);
        Assert.Equal(MultiRegionKeyType.REPLICA, described.MultiRegionConfiguration.MultiRegionKeyType);
        Assert.Equal(primary.Arn, described.MultiRegionConfiguration.PrimaryKey.Arn);
        await Assert.ThrowsAsync<AlreadyExistsException>(() => Kms.Client.ReplicateKeyAsync(new ReplicateKeyRequest { KeyId = primary.Arn, ReplicaRegion = "eu-west-1" }, Ct));
        await Assert.ThrowsAsync<UnsupportedOperationException>(() => Kms.Client.ReplicateKeyAsync(new ReplicateKeyRequest { KeyId = Kms.PrimaryKeyArn, ReplicaRegion = "eu-west-1" }, Ct));
    }

    [Fact]
    public async Task Keys_and_aliases_survive_a_restart_on_the_same_data_directory()
    {
        var data = Directory.CreateTempSubdirectory("localkms-test-").FullName;
        try
        {
            string arn;
            MemoryStream blob;
            await using (var first = LocalKmsServer.Start(data))
            {
                using var client = first.CreateClient();
                arn = (await client.CreateKeyAsync(new CreateKeyRequest { Description = "kept" }, Ct)).KeyMetadata.Arn;
                await client.CreateAliasAsync(new CreateAliasRequest { AliasName = "alias/kept", TargetKeyId = arn }, Ct);
                await client.DisableKeyAsync(new DisableKeyRequest { KeyId = arn }, Ct);
                await client.EnableKeyAsync(new EnableKeyRequest { KeyId = arn }, Ct);
                blob = (await client.EncryptAsync(new EncryptRequest { KeyId = "alias/kept", Plaintext = new MemoryStream([4, 2]) }, Ct)).CiphertextBlob;
            }

            await using var second = LocalKmsServer.Start(data);
            using var again = second.CreateClient();
            var decrypted = await again.DecryptAsync(new DecryptRequest { CiphertextBlob = blob, KeyId = "alias/kept" }, Ct);

            Assert.Equal([4, 2], decrypted.Plaintext.ToArray());
            Assert.Equal(arn, decrypted.KeyId);
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(data, "keys.json")));
            }

            Assert.Throws<InvalidDataException>(() => EfEnvelope.LocalKms.LocalKmsServer.Start(new LocalKmsOptions { DataDirectory = data, AccountId = "999988887777" }));
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }
}
