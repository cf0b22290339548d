using Net.Pkcs11Interop.Common;

namespace EfEnvelope.Pkcs11.Tests;

public sealed class KeySetupTests
{
    private static readonly CKA[] Flags =
        [CKA.CKA_TOKEN, CKA.CKA_PRIVATE, CKA.CKA_SENSITIVE, CKA.CKA_ALWAYS_SENSITIVE, CKA.CKA_EXTRACTABLE, CKA.CKA_NEVER_EXTRACTABLE, CKA.CKA_ENCRYPT, CKA.CKA_DECRYPT, CKA.CKA_WRAP, CKA.CKA_UNWRAP];

    public KeySetupTests() => SoftHsm.Require();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Created_key_is_a_sensitive_non_extractable_AES_256_token_key_for_key_wrapping_only()
    {
        var label = await SoftHsm.CreateKeyAsync("setup-attributes");

        var flags = SoftHsm.WithSession((session, module) =>
        {
            var values = session.GetAttributeValue(SoftHsm.FindKey(session, module, label), [.. Flags, CKA.CKA_VALUE_LEN, CKA.CKA_KEY_TYPE]);
            return values.ToDictionary(v => (CKA)v.Type, v => v);
        });

        Assert.True(flags[CKA.CKA_TOKEN].GetValueAsBool());
        Assert.True(flags[CKA.CKA_PRIVATE].GetValueAsBool());
        Assert.True(flags[CKA.CKA_SENSITIVE].GetValueAsBool());
        Assert.True(flags[CKA.CKA_ALWAYS_SENSITIVE].GetValueAsBool());
        Assert.False(flags[CKA.CKA_EXTRACTABLE].GetValueAsBool());
        Assert.True(flags[CKA.CKA_NEVER_EXTRACTABLE].GetValueAsBool());
        // SoftHSM offers CKM_AES_KEY_WRAP, so the key may wrap and unwrap keys and do nothing else.
        Assert.False(flags[CKA.CKA_ENCRYPT].GetValueAsBool());
        Assert.False(flags[CKA.CKA_DECRYPT].GetValueAsBool());
        Assert.True(flags[CKA.CKA_WRAP].GetValueAsBool());
        Assert.True(flags[CKA.CKA_UNWRAP].GetValueAsBool());
        Assert.Equal(32UL, flags[CKA.CKA_VALUE_LEN].GetValueAsUlong());
        Assert.Equal((ulong)CKK.CKK_AES, flags[CKA.CKA_KEY_TYPE].GetValueAsUlong());
    }

    [Fact]
    public async Task Key_value_cannot_be_read_from_the_token()
    {
        var label = await SoftHsm.CreateKeyAsync("setup-value");

        var value = SoftHsm.WithSession((session, module) =>
            Assert.Single(session.GetAttributeValue(SoftHsm.FindKey(session, module, label), [CKA.CKA_VALUE])));

        // The token answers CKR_ATTRIBUTE_SENSITIVE for this attribute; Pkcs11Interop marks it unreadable and refuses to give a value.
        Assert.True(value.CannotBeRead);
        Assert.Throws<AttributeValueException>(value.GetValueAsByteArray);
    }

    [Fact]
    public async Task Ensuring_an_existing_key_leaves_it_alone()
    {
        var label = await SoftHsm.CreateKeyAsync("setup-twice");
        var options = new Pkcs11Options { LibraryPath = SoftHsm.ModulePath, TokenLabel = SoftHsm.TokenLabel, Pin = SoftHsm.Pin };
        var context = KeyManagement.KeyContext.For("app", "Entity");
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(label));
        using var before = await provider.GenerateDataKeyAsync(label, context, Ct);

        var created = await Pkcs11KeySetup.EnsureKeyAsync(options, label, Ct);

        // Still one key, and the same one: what it wrapped before still unwraps.
        Assert.False(created);
        SoftHsm.WithSession((session, module) => SoftHsm.FindKey(session, module, label));
        Assert.Equal(before.Plaintext, await provider.DecryptDataKeyAsync(label, before.WrappedKey, context, Ct));
    }

    [Fact]
    public async Task Key_created_with_pkcs11_tool_as_the_guide_shows_serves_the_provider()
    {
        var label = SoftHsm.UniqueLabel("pkcs11-tool");
        var start = new System.Diagnostics.ProcessStartInfo("pkcs11-tool",
            ["--module", SoftHsm.ModulePath, "--token-label", SoftHsm.TokenLabel, "--login", "--pin", SoftHsm.Pin,
             "--keygen", "--key-type", "AES:32", "--label", label, "--usage-wrap", "--sensitive", "--private"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using (var tool = System.Diagnostics.Process.Start(start)!)
        {
            await tool.WaitForExitAsync(Ct);
            Assert.Equal(0, tool.ExitCode);
        }

        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(label));
        var context = KeyManagement.KeyContext.For("app", "Entity");
        using var key = await provider.GenerateDataKeyAsync(label, context, Ct);

        Assert.Equal(key.Plaintext, await provider.DecryptDataKeyAsync(label, key.WrappedKey, context, Ct));
        Assert.Equal(73, key.WrappedKey.Length);
        Assert.Equal(0x02, key.WrappedKey[0]);
        var flags = SoftHsm.WithSession((session, module) =>
            session.GetAttributeValue(SoftHsm.FindKey(session, module, label), [CKA.CKA_TOKEN, CKA.CKA_SENSITIVE, CKA.CKA_EXTRACTABLE, CKA.CKA_WRAP, CKA.CKA_UNWRAP])
                .Select(a => a.GetValueAsBool()).ToArray());
        Assert.Equal([true, true, false, true, true], flags);
    }

    [Fact]
    public async Task Provider_never_creates_a_missing_key()
    {
        var label = SoftHsm.UniqueLabel("setup-absent");
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(label));

        await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.GenerateDataKeyAsync(label, KeyManagement.KeyContext.For("app", "Entity"), Ct));

        Assert.Empty(SoftHsm.WithSession((session, module) => Internal.Pkcs11Token.FindKeys(module, session, label)));
    }
}
