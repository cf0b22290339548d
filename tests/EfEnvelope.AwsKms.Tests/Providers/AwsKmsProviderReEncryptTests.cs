using Amazon.KeyManagementService.Model;
using EfEnvelope.AwsKms.Tests.LocalKms;
using EfEnvelope.KeyManagement;

namespace EfEnvelope.AwsKms.Tests.Providers;

/// <summary>Moving wrapped keys to a new master key inside KMS, as a rotation does.</summary>
public sealed class AwsKmsProviderReEncryptTests : LocalKmsTestBase
{
    [Fact]
    public async Task ReEncrypted_key_unwraps_under_the_new_key_to_the_same_bytes_and_no_longer_under_the_old()
    {
        var provider = Kms.CreateProvider();
        using var old = await provider.GenerateDataKeyAsync(Kms.SecondKeyArn, Patients, Ct);

        var moved = await provider.ReEncryptDataKeyAsync(Kms.SecondKeyArn, old.WrappedKey, provider.PrimaryKeyId, Patients, Ct);

        Assert.Equal(Kms.PrimaryKeyArn, moved.KeyId);
        Assert.Equal(old.Plaintext, await provider.DecryptDataKeyAsync(moved.KeyId, moved.WrappedKey, Patients, Ct));
        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => provider.DecryptDataKeyAsync(Kms.SecondKeyArn, moved.WrappedKey, Patients, Ct));
        var request = Assert.Single(Kms.Server.Requests("ReEncrypt"));
        Assert.DoesNotContain("Plaintext", request.Body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ReEncrypt_checks_the_context_and_the_source_key_state()
    {
        var provider = Kms.CreateProvider();
        using var old = await provider.GenerateDataKeyAsync(Kms.SecondKeyArn, Patients, Ct);

        await Assert.ThrowsAsync<EnvelopeDecryptionException>(
            () => provider.ReEncryptDataKeyAsync(Kms.SecondKeyArn, old.WrappedKey, provider.PrimaryKeyId, KeyContext.For("clinic", "Clinic.Invoice"), Ct));
        await Kms.Client.DisableKeyAsync(new DisableKeyRequest { KeyId = Kms.SecondKeyArn }, Ct);
        var revoked = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(
            () => provider.ReEncryptDataKeyAsync(Kms.SecondKeyArn, old.WrappedKey, provider.PrimaryKeyId, Patients, Ct));

        Assert.Equal(Kms.SecondKeyArn, revoked.KeyId);
    }

    [Fact]
    public async Task ReEncrypt_failures_on_the_destination_name_the_destination_key()
    {
        var provider = Kms.CreateProvider();
        using var old = await provider.GenerateDataKeyAsync(Kms.SecondKeyArn, Patients, Ct);
        await Kms.Client.DisableKeyAsync(new DisableKeyRequest { KeyId = Kms.PrimaryKeyArn }, Ct);

        var disabled = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(
            () => provider.ReEncryptDataKeyAsync(Kms.SecondKeyArn, old.WrappedKey, provider.PrimaryKeyId, Patients, Ct));
        await Kms.Client.EnableKeyAsync(new EnableKeyRequest { KeyId = Kms.PrimaryKeyArn }, Ct);
        Kms.Server.FailNext(1, "AccessDeniedException", "User: arn:aws:iam::111122223333:user/app is not authorized to perform: kms:ReEncryptTo on this resource", operation: "ReEncrypt");
        var denied = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(
            () => provider.ReEncryptDataKeyAsync(Kms.SecondKeyArn, old.WrappedKey, provider.PrimaryKeyId, Patients, Ct));
        Kms.Server.FailNext(1, "AccessDeniedException", "User: arn:aws:iam::111122223333:user/app is not authorized to perform: kms:ReEncryptFrom on this resource", operation: "ReEncrypt");
        var deniedSource = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(
            () => provider.ReEncryptDataKeyAsync(Kms.SecondKeyArn, old.WrappedKey, provider.PrimaryKeyId, Patients, Ct));

        Assert.Equal(LocalKmsFixture.PrimaryAlias, disabled.KeyId);
        Assert.Contains("destination", disabled.Message, StringComparison.Ordinal);
        Assert.IsType<DisabledException>(disabled.InnerException);
        Assert.Equal(LocalKmsFixture.PrimaryAlias, denied.KeyId);
        Assert.Equal(Kms.SecondKeyArn, deniedSource.KeyId);
    }

    [Fact]
    public async Task ReEncrypt_to_or_from_an_unconfigured_key_is_refused_without_calling_KMS()
    {
        var provider = Kms.CreateProvider();
        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct);
        Kms.Server.ResetCounters();

        await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.ReEncryptDataKeyAsync(provider.PrimaryKeyId, key.WrappedKey, "alias/elsewhere", Patients, Ct));
        await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.ReEncryptDataKeyAsync("alias/elsewhere", key.WrappedKey, provider.PrimaryKeyId, Patients, Ct));

        Assert.Equal(0, Kms.Server.TotalCalls);
    }
}
