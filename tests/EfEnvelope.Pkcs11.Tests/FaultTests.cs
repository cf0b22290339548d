using EfEnvelope.KeyManagement;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace EfEnvelope.Pkcs11.Tests;

/// <summary>Each way the configuration or the token can be wrong gives a library error that names what to fix.</summary>
public sealed class FaultTests
{
    private static readonly KeyContext Context = KeyContext.For("pkcs11-tests", "Clinic.Patient");

    public FaultTests() => SoftHsm.Require();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData("/nonexistent/libvendor-pkcs11.so")]
    [InlineData("/etc/hostname")]
    public async Task Wrong_module_path_names_the_LibraryPath_option(string path)
    {
        var options = SoftHsm.Options("any-key");
        options.LibraryPath = path;
        using var provider = new Pkcs11MasterKeyProvider(options);

        var error = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.GenerateDataKeyAsync("any-key", Context, Ct));

        Assert.Contains("Pkcs11Options.LibraryPath", error.Message, StringComparison.Ordinal);
        Assert.Contains(path, error.Message, StringComparison.Ordinal);
        AssertNoPin(error);
    }

    [Fact]
    public async Task Missing_token_names_the_TokenLabel_option_and_the_tokens_present()
    {
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.OptionsOn("no-such-token", "any-key"));

        var error = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.GenerateDataKeyAsync("any-key", Context, Ct));

        Assert.Contains("Pkcs11Options.TokenLabel", error.Message, StringComparison.Ordinal);
        Assert.Contains("'no-such-token'", error.Message, StringComparison.Ordinal);
        Assert.Contains($"'{SoftHsm.TokenLabel}'", error.Message, StringComparison.Ordinal);
        AssertNoPin(error);
    }

    [Fact]
    public async Task Wrong_PIN_names_the_Pin_option_without_showing_any_PIN_and_is_not_tried_again()
    {
        // A token of its own: login is per process, so on a token this process is logged in to any PIN "works".
        var token = SoftHsm.CreateToken("wrong-pin");
        var wrongPin = "wrong-" + Guid.NewGuid().ToString("N");
        var options = SoftHsm.OptionsOn(token, "any-key");
        options.Pin = wrongPin;
        using var provider = new Pkcs11MasterKeyProvider(options);

        var first = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.GenerateDataKeyAsync("any-key", Context, Ct));
        var second = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.GenerateDataKeyAsync("any-key", Context, Ct));

        Assert.Contains("Pkcs11Options.Pin", first.Message, StringComparison.Ordinal);
        Assert.Contains("CKR_PIN_INCORRECT", first.Message, StringComparison.Ordinal);
        Assert.Equal(first.Message, second.Message);
        Assert.Equal(CKR.CKR_PIN_INCORRECT, Assert.IsType<Pkcs11Exception>(first.InnerException).RV);
        foreach (var error in new[] { first, second })
        {
            AssertNoPin(error);
            Assert.DoesNotContain(wrongPin, error.ToString(), StringComparison.Ordinal);
        }

        Assert.DoesNotContain(wrongPin, options.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain(wrongPin, provider.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Missing_key_names_the_KeyLabel_option_and_the_label()
    {
        var label = SoftHsm.UniqueLabel("missing");
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(label));

        var error = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.GenerateDataKeyAsync(label, Context, Ct));

        Assert.IsNotType<MasterKeyAccessRevokedException>(error);
        Assert.Contains("Pkcs11Options.KeyLabel", error.Message, StringComparison.Ordinal);
        Assert.Contains($"'{label}'", error.Message, StringComparison.Ordinal);
        Assert.Equal(label, error.KeyId);
        AssertNoPin(error);
    }

    [Fact]
    public async Task Key_without_any_usage_is_refused_with_the_revoked_access_error_naming_the_attributes()
    {
        var label = SoftHsm.GenerateKey("no-usage", (CKA.CKA_WRAP, false), (CKA.CKA_UNWRAP, false), (CKA.CKA_ENCRYPT, false), (CKA.CKA_DECRYPT, false));
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(label));
        var keyWrapForm = new byte[73];
        keyWrapForm[0] = 0x02;

        // Without CKA_WRAP the provider falls back to C_Encrypt, which the token refuses too.
        var onWrap = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => provider.GenerateDataKeyAsync(label, Context, Ct));
        var onGcmUnwrap = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => provider.DecryptDataKeyAsync(label, new byte[60], Context, Ct));
        var onKeyUnwrap = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => provider.DecryptDataKeyAsync(label, keyWrapForm, Context, Ct));

        Assert.Contains("CKA_ENCRYPT or CKA_DECRYPT", onWrap.Message, StringComparison.Ordinal);
        Assert.Contains("CKA_ENCRYPT or CKA_DECRYPT", onGcmUnwrap.Message, StringComparison.Ordinal);
        Assert.Contains("CKA_WRAP or CKA_UNWRAP", onKeyUnwrap.Message, StringComparison.Ordinal);
        foreach (var error in new[] { onWrap, onGcmUnwrap, onKeyUnwrap })
        {
            Assert.Contains("Set CKA_WRAP and CKA_UNWRAP to true", error.Message, StringComparison.Ordinal);
            Assert.Contains($"'{label}'", error.Message, StringComparison.Ordinal);
            Assert.Equal(CKR.CKR_KEY_FUNCTION_NOT_PERMITTED, Assert.IsType<Pkcs11Exception>(error.InnerException).RV);
            AssertNoPin(error);
        }
    }

    [Fact]
    public async Task Tampered_tag_is_a_tamper_error_although_SoftHSM_reports_it_as_a_general_error()
    {
        var label = await SoftHsm.CreateKeyAsync("tamper");
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(label));
        using var key = await provider.GenerateDataKeyAsync(label, Context, Ct);
        var tampered = key.WrappedKey.ToArray();
        tampered[^1] ^= 0x80;

        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => provider.DecryptDataKeyAsync(label, tampered, Context, Ct));

        Assert.Equal(label, error.KeyId);
        Assert.Equal("Clinic.Patient", error.Entity);
        Assert.Equal(CKR.CKR_GENERAL_ERROR, Assert.IsType<Pkcs11Exception>(error.InnerException).RV);
        AssertNoPin(error);
        // The session that saw the failure goes back to the pool in a usable state.
        Assert.Equal(key.Plaintext, await provider.DecryptDataKeyAsync(label, key.WrappedKey, Context, Ct));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(59)]
    [InlineData(61)]
    [InlineData(72)]
    [InlineData(74)]
    public async Task Wrapped_key_of_the_wrong_length_is_a_tamper_error(int length)
    {
        var label = await SoftHsm.CreateKeyAsync("length");
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(label));

        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => provider.DecryptDataKeyAsync(label, new byte[length], Context, Ct));

        Assert.Contains("wrong length", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Disposed_provider_refuses_further_use()
    {
        var label = await SoftHsm.CreateKeyAsync("disposed");
        var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(label));
        using (await provider.GenerateDataKeyAsync(label, Context, Ct))
        {
        }

        provider.Dispose();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => provider.GenerateDataKeyAsync(label, Context, Ct));
    }

    private static void AssertNoPin(Exception error)
    {
        for (var e = error; e is not null; e = e.InnerException)
        {
            Assert.DoesNotContain(SoftHsm.Pin, e.ToString(), StringComparison.Ordinal);
            Assert.DoesNotContain(SoftHsm.SoPin, e.ToString(), StringComparison.Ordinal);
        }
    }
}
