using System.Diagnostics;
using Amazon.KeyManagementService.Model;
using EfEnvelope.AwsKms.Tests.LocalKms;
using Xunit;

namespace EfEnvelope.AwsKms.Tests.Providers;

/// <summary>How KMS faults reach the application: each one mapped to the library's exceptions, retried where it should be.</summary>
public sealed class AwsKmsProviderFaultTests : LocalKmsTestBase
{
    [Fact]
    public async Task Disabled_key_is_reported_as_revoked_access_naming_provider_key_and_entity()
    {
        var provider = Kms.CreateProvider();
        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct);
        await Kms.Client.DisableKeyAsync(new DisableKeyRequest { KeyId = Kms.PrimaryKeyArn }, Ct);

        var onDecrypt = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => provider.DecryptDataKeyAsync(key.KeyId, key.WrappedKey, Patients, Ct));
        var onGenerate = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct));

        // Each names the key as the caller did: the row's key ARN on reads, the configured alias on writes.
        foreach (var (error, keyId) in new[] { (onDecrypt, Kms.PrimaryKeyArn), (onGenerate, LocalKmsFixture.PrimaryAlias) })
        {
            Assert.IsType<DisabledException>(error.InnerException);
            Assert.Equal("aws-kms", error.Provider);
            Assert.Equal(keyId, error.KeyId);
            Assert.Equal("Clinic.Patient", error.Entity);
            Assert.Contains(keyId, error.Message, StringComparison.Ordinal);
            Assert.Contains("disabled", error.Message, StringComparison.Ordinal);
            Assert.Contains("Clinic.Patient", error.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Key_pending_deletion_is_reported_as_revoked_access()
    {
        var provider = Kms.CreateProvider();
        using var key = await provider.GenerateDataKeyAsync(Kms.SecondKeyArn, Patients, Ct);
        await Kms.Client.ScheduleKeyDeletionAsync(new ScheduleKeyDeletionRequest { KeyId = Kms.SecondKeyArn, PendingWindowInDays = 7 }, Ct);

        var error = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => provider.DecryptDataKeyAsync(key.KeyId, key.WrappedKey, Patients, Ct));

        Assert.IsType<KMSInvalidStateException>(error.InnerException);
        Assert.Equal(Kms.SecondKeyArn, error.KeyId);
        Assert.Contains("pending deletion", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Denied_access_is_reported_as_revoked_access()
    {
        var provider = Kms.CreateProvider();
        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct);
        Server.DenyAccess = true;

        var error = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => provider.DecryptDataKeyAsync(key.KeyId, key.WrappedKey, Patients, Ct));

        Assert.Contains("denied", error.Message, StringComparison.Ordinal);
        Assert.Contains(Kms.PrimaryKeyArn, error.Message, StringComparison.Ordinal);
        Assert.Equal(1, Server.CallCount("Decrypt"));
    }

    [Fact]
    public async Task Missing_key_is_a_master_key_error_naming_the_key_not_a_revocation()
    {
        const string missing = "alias/never-created";
        var provider = Kms.CreateProvider(o => o.KeyId = missing);

        var error = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.GenerateDataKeyAsync(missing, Patients, Ct));

        Assert.IsNotType<MasterKeyAccessRevokedException>(error);
        Assert.IsType<NotFoundException>(error.InnerException);
        Assert.Equal(missing, error.KeyId);
        Assert.Contains($"'{missing}' was not found", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Blob_of_another_key_is_refused_by_KMS_as_incorrect_key_and_reported_as_tamper()
    {
        var provider = Kms.CreateProvider();
        using var underSecond = await provider.GenerateDataKeyAsync(Kms.SecondKeyArn, Patients, Ct);

        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => provider.DecryptDataKeyAsync(Kms.PrimaryKeyArn, underSecond.WrappedKey, Patients, Ct));

        Assert.IsType<IncorrectKeyException>(error.InnerException);
        Assert.Equal(Kms.PrimaryKeyArn, error.KeyId);
        Assert.Equal("Clinic.Patient", error.Entity);
    }

    [Fact]
    public async Task Tampered_blob_is_refused_by_KMS_as_invalid_ciphertext_and_reported_as_tamper()
    {
        var provider = Kms.CreateProvider();
        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct);
        var tampered = key.WrappedKey.ToArray();
        tampered[^1] ^= 0x80;

        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => provider.DecryptDataKeyAsync(key.KeyId, tampered, Patients, Ct));

        Assert.IsType<InvalidCiphertextException>(error.InnerException);
        Assert.Equal(key.KeyId, error.KeyId);
    }

    [Fact]
    public async Task Throttled_calls_are_retried_by_the_SDK_and_then_succeed()
    {
        using var client = Server.CreateClient(maxErrorRetry: 3);
        var provider = Kms.CreateProvider(client);
        Server.ThrottleNext(2);

        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct);

        Assert.Equal(32, key.Plaintext.Length);
        Assert.Equal(3, Server.CallCount("GenerateDataKey"));
    }

    [Fact]
    public async Task Throttling_that_outlasts_the_retries_is_a_master_key_error()
    {
        using var client = Server.CreateClient(maxErrorRetry: 2);
        var provider = Kms.CreateProvider(client);
        Server.ThrottleNext(100);

        var error = await Assert.ThrowsAsync<MasterKeyException>(() => provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct));

        Assert.IsNotType<MasterKeyAccessRevokedException>(error);
        Assert.Contains("throttling", error.Message, StringComparison.Ordinal);
        Assert.Equal(3, Server.CallCount("GenerateDataKey"));
    }

    [Fact]
    public async Task Server_error_is_retried_and_then_succeeds()
    {
        using var client = Server.CreateClient(maxErrorRetry: 2);
        var provider = Kms.CreateProvider(client);
        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct);
        Server.ResetCounters();
        Server.FailNextWithServerError(1);

        var unwrapped = await provider.DecryptDataKeyAsync(key.KeyId, key.WrappedKey, Patients, Ct);

        Assert.Equal(key.Plaintext, unwrapped);
        Assert.Equal(2, Server.CallCount("Decrypt"));
    }

    [Fact]
    public async Task Server_errors_that_outlast_the_retries_are_reported_with_the_status()
    {
        using var client = Server.CreateClient(maxErrorRetry: 2);
        var provider = Kms.CreateProvider(client);
        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct);
        Server.ResetCounters();
        Server.FailNextWithServerError(100);

        var error = await Assert.ThrowsAsync<MasterKeyException>(() => provider.DecryptDataKeyAsync(key.KeyId, key.WrappedKey, Patients, Ct));

        Assert.IsNotType<MasterKeyAccessRevokedException>(error);
        Assert.Contains("HTTP 500", error.Message, StringComparison.Ordinal);
        Assert.Equal(3, Server.CallCount("Decrypt"));
    }

    [Fact]
    public async Task Endpoint_slower_than_the_configured_timeout_is_a_timed_out_master_key_error()
    {
        var provider = Kms.CreateProvider(o => o.OperationTimeout = TimeSpan.FromMilliseconds(300));
        Server.Latency = TimeSpan.FromSeconds(5);
        var clock = Stopwatch.StartNew();

        var error = await Assert.ThrowsAsync<MasterKeyException>(() => provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct));

        Assert.Contains("timed out after 0.3 s", error.Message, StringComparison.Ordinal);
        Assert.Equal(LocalKmsFixture.PrimaryAlias, error.KeyId);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(4), $"took {clock.Elapsed}");
    }

    [Fact]
    public async Task Caller_cancellation_of_a_slow_call_is_an_OperationCanceledException()
    {
        var provider = Kms.CreateProvider();
        Server.Latency = TimeSpan.FromSeconds(5);
        using var caller = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        caller.CancelAfter(TimeSpan.FromMilliseconds(200));
        var clock = Stopwatch.StartNew();

        var error = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, caller.Token));

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(4), $"took {clock.Elapsed}");
        Assert.True(error.CancellationToken.IsCancellationRequested || caller.IsCancellationRequested);
    }

    [Fact]
    public async Task Unreachable_endpoint_is_a_master_key_error()
    {
        await using var gone = LocalKmsServer.Start();
        using var client = gone.CreateClient(maxErrorRetry: 0);
        await gone.DisposeAsync();
        var provider = Kms.CreateProvider(client);

        var error = await Assert.ThrowsAsync<MasterKeyException>(() => provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct));

        Assert.Equal(LocalKmsFixture.PrimaryAlias, error.KeyId);
        Assert.Contains("failed before KMS answered", error.Message, StringComparison.Ordinal);
        Assert.IsNotType<MasterKeyAccessRevokedException>(error);
    }

    [Fact]
    public async Task Missing_region_fails_at_the_first_call_with_a_hint_not_at_configuration()
    {
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        if (Environment.GetEnvironmentVariable("AWS_REGION") is { Length: > 0 }
            || Environment.GetEnvironmentVariable("AWS_DEFAULT_REGION") is { Length: > 0 }
            || File.Exists(Path.Combine(home, ".aws", "config")))
        {
            Assert.Skip("An AWS Region is configured in this environment, so a client without one cannot be built here.");
        }

        using var provider = new AwsKmsMasterKeyProvider(new AwsKmsOptions { KeyId = "alias/patients", Credentials = new Amazon.Runtime.BasicAWSCredentials("AKIDNOREGION", "no-region-secret") });

        var error = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.GenerateDataKeyAsync("alias/patients", Patients, Ct));

        Assert.Contains("AWS_REGION", error.Message, StringComparison.Ordinal);
        Assert.Equal("alias/patients", error.KeyId);
        Assert.DoesNotContain("no-region-secret", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Blob_naming_an_unconfigured_key_is_refused_without_sending_it_to_KMS()
    {
        var other = await LocalKmsFixture.CreateKeyAsync(Kms.Client, "not configured");
        var writer = Kms.CreateProvider(o => o.KeyId = other);
        using var key = await writer.GenerateDataKeyAsync(other, Patients, Ct);
        var byArn = Kms.CreateProvider(o => o.KeyId = Kms.PrimaryKeyArn);
        var byAlias = Kms.CreateProvider();
        Server.ResetCounters();

        // With only key ARNs configured, the refusal needs no call at all.
        Assert.False(byArn.IsKeyConfigured(other));
        Assert.False(byArn.IsKeyConfigured("alias/elsewhere"));
        await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => byArn.DecryptDataKeyAsync(other, key.WrappedKey, Patients, Ct));
        Assert.Equal(0, Server.TotalCalls);

        // With an alias configured, an unknown ARN may be what the alias points at: DescribeKey tells, and the ARN is
        // refused without Decrypt or GenerateDataKey ever being sent.
        var onDecrypt = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => byAlias.DecryptDataKeyAsync(other, key.WrappedKey, Patients, Ct));
        var onGenerate = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => byAlias.GenerateDataKeyAsync(other, Patients, Ct));

        Assert.Contains("not configured", onDecrypt.Message, StringComparison.Ordinal);
        Assert.Contains($"{LocalKmsFixture.PrimaryAlias} -> {Kms.PrimaryKeyArn}", onDecrypt.Message, StringComparison.Ordinal);
        Assert.Equal(other, onDecrypt.KeyId);
        Assert.Equal(other, onGenerate.KeyId);
        Assert.Equal(0, Server.CallCount("Decrypt"));
        Assert.Equal(0, Server.CallCount("GenerateDataKey"));
        Assert.NotEqual(0, Server.CallCount("DescribeKey"));
    }

    [Fact]
    public async Task Error_messages_never_contain_key_bytes_or_credentials()
    {
        var provider = Kms.CreateProvider();
        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct);
        var tampered = key.WrappedKey.ToArray();
        tampered[^1] ^= 1;
        var errors = new List<Exception>
        {
            await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => provider.DecryptDataKeyAsync(key.KeyId, tampered, Patients, Ct)),
        };
        Server.DenyAccess = true;
        errors.Add(await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => provider.DecryptDataKeyAsync(key.KeyId, key.WrappedKey, Patients, Ct)));

        foreach (var message in errors.Select(e => e.Message))
        {
            Assert.DoesNotContain(Convert.ToBase64String(key.Plaintext), message, StringComparison.Ordinal);
            Assert.DoesNotContain(Convert.ToHexString(key.Plaintext), message, StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotContain(Convert.ToBase64String(key.WrappedKey), message, StringComparison.Ordinal);
            Assert.DoesNotContain(LocalKmsServer.Credentials.GetCredentials().SecretKey, message, StringComparison.Ordinal);
        }
    }
}
