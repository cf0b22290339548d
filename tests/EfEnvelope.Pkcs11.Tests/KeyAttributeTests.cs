using EfEnvelope.KeyManagement;
using Net.Pkcs11Interop.Common;

namespace EfEnvelope.Pkcs11.Tests;

/// <summary>A key that merely carries the right label is not enough: the provider refuses keys that could leave the token.</summary>
public sealed class KeyAttributeTests
{
    private static readonly KeyContext Context = KeyContext.For("pkcs11-tests", "Clinic.Patient");

    public KeyAttributeTests() => SoftHsm.Require();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static TheoryData<string, CKA, object> WeakKeys => new()
    {
        { "CKA_SENSITIVE", CKA.CKA_SENSITIVE, false },
        { "CKA_EXTRACTABLE", CKA.CKA_EXTRACTABLE, true },
        { "CKA_VALUE_LEN", CKA.CKA_VALUE_LEN, 16UL },
    };

    [Theory]
    [MemberData(nameof(WeakKeys))]
    public async Task Token_key_lacking_a_required_attribute_is_refused_for_wrapping_and_unwrapping(string named, CKA attribute, object value)
    {
        var label = SoftHsm.GenerateKey("weak", (attribute, value));
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(label));

        var onWrap = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.GenerateDataKeyAsync(label, Context, Ct));
        var onUnwrap = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.DecryptDataKeyAsync(label, new byte[73], Context, Ct));

        foreach (var error in new[] { onWrap, onUnwrap })
        {
            Assert.IsNotType<MasterKeyAccessRevokedException>(error);
            Assert.Contains($"Master key '{label}'", error.Message, StringComparison.Ordinal);
            Assert.Contains(named, error.Message, StringComparison.Ordinal);
            Assert.Equal(label, error.KeyId);
            Assert.DoesNotContain(SoftHsm.Pin, error.ToString(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Session_object_carrying_the_label_is_refused_as_not_a_token_key()
    {
        var label = SoftHsm.UniqueLabel("session-object");

        // A session object lives only while the session that made it is open, and is visible to this process's other
        // sessions meanwhile: keep it open while the provider looks.
        using var session = SoftHsm.OpenSession();
        SoftHsm.GenerateKey(session, label, (CKA.CKA_TOKEN, false));
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(label));

        var error = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.GenerateDataKeyAsync(label, Context, Ct));

        Assert.Contains($"Master key '{label}'", error.Message, StringComparison.Ordinal);
        Assert.Contains("CKA_TOKEN", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Every_failing_attribute_is_named_at_once()
    {
        var label = SoftHsm.GenerateKey("weak-all", (CKA.CKA_SENSITIVE, false), (CKA.CKA_EXTRACTABLE, true));
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(label));

        var error = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.GenerateDataKeyAsync(label, Context, Ct));

        Assert.Contains("CKA_SENSITIVE", error.Message, StringComparison.Ordinal);
        Assert.Contains("CKA_EXTRACTABLE", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("CKA_TOKEN is", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Weak_key_named_as_an_old_key_is_refused_too()
    {
        var primary = await SoftHsm.CreateKeyAsync("strong-primary");
        var old = SoftHsm.GenerateKey("weak-old", (CKA.CKA_EXTRACTABLE, true));
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(primary, old));
        using var fine = await provider.GenerateDataKeyAsync(primary, Context, Ct);

        var error = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.DecryptDataKeyAsync(old, new byte[73], Context, Ct));

        Assert.Contains($"Master key '{old}'", error.Message, StringComparison.Ordinal);
        Assert.Contains("CKA_EXTRACTABLE", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Setup_helper_refuses_an_existing_key_that_fails_the_checks()
    {
        var label = SoftHsm.GenerateKey("weak-existing", (CKA.CKA_EXTRACTABLE, true));
        var options = new Pkcs11Options { LibraryPath = SoftHsm.ModulePath, TokenLabel = SoftHsm.TokenLabel, Pin = SoftHsm.Pin };

        var error = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => Pkcs11KeySetup.EnsureKeyAsync(options, label, Ct));

        Assert.Contains("CKA_EXTRACTABLE", error.Message, StringComparison.Ordinal);
    }
}
