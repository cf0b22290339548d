using EfEnvelope.KeyManagement;

namespace EfEnvelope.Pkcs11.Tests;

public sealed class SeveralKeysTests
{
    private static readonly KeyContext Context = KeyContext.For("pkcs11-tests", "Clinic.Patient");

    public SeveralKeysTests() => SoftHsm.Require();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task After_rotation_new_keys_use_the_new_label_and_old_blobs_stay_readable()
    {
        var oldLabel = await SoftHsm.CreateKeyAsync("rotation-old");
        var newLabel = await SoftHsm.CreateKeyAsync("rotation-new");
        using var before = new Pkcs11MasterKeyProvider(SoftHsm.Options(oldLabel));
        using var oldKey = await before.GenerateDataKeyAsync(before.PrimaryKeyId, Context, Ct);

        using var after = new Pkcs11MasterKeyProvider(SoftHsm.Options(newLabel, oldLabel));
        using var newKey = await after.GenerateDataKeyAsync(after.PrimaryKeyId, Context, Ct);

        Assert.Equal(oldLabel, oldKey.KeyId);
        Assert.Equal(newLabel, newKey.KeyId);
        Assert.True(after.IsKeyConfigured(oldLabel));
        Assert.True(after.IsKeyConfigured(newLabel));
        Assert.Equal(oldKey.Plaintext, await after.DecryptDataKeyAsync(oldKey.KeyId, oldKey.WrappedKey, Context, Ct));
        Assert.Equal(newKey.Plaintext, await after.DecryptDataKeyAsync(newKey.KeyId, newKey.WrappedKey, Context, Ct));
    }

    [Fact]
    public async Task Blob_naming_a_key_the_provider_does_not_know_is_refused_before_the_token_is_asked()
    {
        var known = await SoftHsm.CreateKeyAsync("known");
        var other = await SoftHsm.CreateKeyAsync("unconfigured");
        using var writer = new Pkcs11MasterKeyProvider(SoftHsm.Options(other));
        using var key = await writer.GenerateDataKeyAsync(other, Context, Ct);
        using var reader = new Pkcs11MasterKeyProvider(SoftHsm.Options(known));

        var error = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => reader.DecryptDataKeyAsync(other, key.WrappedKey, Context, Ct));

        Assert.False(reader.IsKeyConfigured(other));
        Assert.Equal(other, error.KeyId);
        Assert.Contains(nameof(Pkcs11Options.AdditionalKeyLabels), error.Message, StringComparison.Ordinal);
    }
}
