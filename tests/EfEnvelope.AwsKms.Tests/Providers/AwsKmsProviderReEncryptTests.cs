using Amazon.KeyManagementService.Model;
using EfEnvelope.AwsKms.Tests.LocalKms;
using EfEnvelope.KeyManagement;

namespace EfEnvelope.AwsKms.Tests.Providers;

/// <summary>Moving wrapped keys to a new master key inside KMS, as a rotation does.</summary>
public sealed class AwsKmsProviderReEncryptTests : IAsyncLifetime
{
    private static readonly KeyContext Patients = KeyContext.For("clinic", "Clinic.Patient");

    private LocalKmsFixture _kms = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync() => _kms = await LocalKmsFixture.StartAsync();

    public ValueTask DisposeAsync() => _kms.DisposeAsync();

    [Fact]
    public async Task ReEncrypted_key_unwraps_under_the_new_key_to_the_same_bytes_and_no_longer_under_the_old()
    {
        var provider = _kms.CreateProvider();
        using var old = await provider.GenerateDataKeyAsync(_kms.SecondKeyArn, Patients, Ct);

        var moved = await provider.ReEncryptDataKeyAsync(_kms.SecondKeyArn, old.WrappedKey, provider.PrimaryKeyId, Patients, Ct);

        Assert.Equal(_kms.PrimaryKeyArn, moved.KeyId);
        Assert.Equal(old.Plaintext, await provider.DecryptDataKeyAsync(moved.KeyId, moved.WrappedKey, Patients, Ct));
        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => provider.DecryptDataKeyAsync(_kms.SecondKeyArn, moved.WrappedKey, Patients, Ct));
        var request = Assert.Single(_kms.Server.Requests("ReEncrypt"));
        Assert.DoesNotContain("Plaintext", request.Body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ReEncrypt_checks_the_context_and_the_source_key_state()
    {
        var provider = _kms.CreateProvider();
        using var old = await provider.GenerateDataKeyAsync(_kms.SecondKeyArn, Patients, Ct);

        await Assert.ThrowsAsync<EnvelopeDecryptionException>(
            () => provider.ReEncryptDataKeyAsync(_kms.SecondKeyArn, old.WrappedKey, provider.PrimaryKeyId, KeyContext.For("clinic", "Clinic.Invoice"), Ct));
        await _kms.Client.DisableKeyAsync(new DisableKeyRequest { KeyId = _kms.SecondKeyArn }, Ct);
        var revoked = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(
            () => provider.ReEncryptDataKeyAsync(_kms.SecondKeyArn, old.WrappedKey, provider.PrimaryKeyId, Patients, Ct));

        Assert.Equal(_kms.SecondKeyArn, revoked.KeyId);
    }

    [Fact]
    public async Task ReEncrypt_failures_on_the_destination_name_the_destination_key()
    {
        var provider = _kms.CreateProvider();
        using var old = await provider.GenerateDataKeyAsync(_kms.SecondKeyArn, Patients, Ct);
        await _kms.Client.DisableKeyAsync(new DisableKeyRequest { KeyId = _kms.PrimaryKeyArn }, Ct);

        var disabled = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(
            () => provider.ReEncryptDataKeyAsync(_kms.SecondKeyArn, old.WrappedKey, provider.PrimaryKeyId, Patients, Ct));
        await _kms.Client.EnableKeyAsync(new EnableKeyRequest { KeyId = _kms.PrimaryKeyArn }, Ct);
        _kms.Server.FailNext(1, "AccessDeniedException", "User: arn:aws:iam::111122223333:user/app is not authorized to perform: kms:ReEncryptTo on this resource", operation: "ReEncrypt");
        var denied = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(
            () => provider.ReEncryptDataKeyAsync(_kms.SecondKeyArn, old.WrappedKey, provider.PrimaryKeyId, Patients, Ct));
        _kms.Server.FailNext(1, "AccessDeniedException", "User: arn:aws:iam::111122223333:user/app is not authorized to perform: kms:ReEncryptFrom on this resource", operation: "ReEncrypt");
        var deniedSource = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(
            () => provider.ReEncryptDataKeyAsync(_kms.SecondKeyArn, old.WrappedKey, provider.PrimaryKeyId, Patients, Ct));

        Assert.Equal(LocalKmsFixture.PrimaryAlias, disabled.KeyId);
        Assert.Contains("destination", disabled.Message, StringComparison.Ordinal);
        Assert.IsType<DisabledException>(disabled.InnerException);
        Assert.Equal(LocalKmsFixture.PrimaryAlias, denied.KeyId);
        Assert.Equal(_kms.SecondKeyArn, deniedSource.KeyId);
    }

    [Fact]
    public async Task ReEncrypt_to_or_from_an_unconfigured_key_is_refused_without_calling_KMS()
    {
        var provider = _kms.CreateProvider();
        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct);
        _kms.Server.ResetCounters();

        await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.ReEncryptDataKeyAsync(provider.PrimaryKeyId, key.WrappedKey, "alias/elsewhere", Patients, Ct));
        await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.ReEncryptDataKeyAsync("alias/elsewhere", key.WrappedKey, provider.PrimaryKeyId, Patients, Ct));

        Assert.Equal(0, _kms.Server.TotalCalls);
    }
}
