using EfEnvelope.KeyManagement;
using EfEnvelope.Pkcs11.Internal;

namespace EfEnvelope.Pkcs11.Tests;

/// <summary>Key ids read from stored blobs and labels read from the token reach messages escaped and bounded.</summary>
public sealed class UntrustedTextTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData("plain-label", "'plain-label'")]
    [InlineData("a\u001b[2Jb", "'a\\u001b[2Jb'")]
    [InlineData("line\r\nFORGED", "'line\\u000d\\u000aFORGED'")]
    [InlineData("right\u202eto-left", "'right\\u202eto-left'")]
    [InlineData("quote' and \\", "'quote\\' and \\\\'")]
    [InlineData("pair \ud83d\udd11 kept", "'pair \ud83d\udd11 kept'")]
    public void Control_format_and_quote_characters_are_escaped(string text, string expected)
    {
        Assert.Equal(expected, Untrusted.Quote(text));
    }

    [Fact]
    public void Unpaired_surrogate_is_escaped()
    {
        // Built here: attribute arguments cannot carry an unpaired surrogate intact.
        Assert.Equal("'lone \\ud800 surrogate'", Untrusted.Quote("lone " + (char)0xD800 + " surrogate"));
    }

    [Fact]
    public void Long_text_is_cut_with_a_count_and_never_splits_a_surrogate_pair()
    {
        var text = new string('x', 127) + "\ud83d\udd11" + new string('y', 65536);

        var quoted = Untrusted.Quote(text);

        Assert.Equal($"'{new string('x', 127)}' (and {65538} more characters)", quoted);
    }

    [Fact]
    public async Task Forged_key_id_from_a_blob_reaches_the_message_escaped_and_bounded()
    {
        // Refused before any token is touched, so no SoftHSM is needed.
        var options = new Pkcs11Options { LibraryPath = "/usr/lib/softhsm/libsofthsm2.so", TokenLabel = "clinic", KeyLabel = "patients-kek", Pin = "1234" };
        using var provider = new Pkcs11MasterKeyProvider(options);
        var forged = "kek\u001b[2J\r\n2026-12-01 INFO forged line" + new string('A', 65536);

        var error = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() =>
            provider.DecryptDataKeyAsync(forged, new byte[73], KeyContext.For("app", "Clinic.Patient"), Ct));

        Assert.DoesNotContain(error.Message, char.IsControl);
        Assert.Contains("kek\\u001b[2J\\u000d\\u000a2026", error.Message, StringComparison.Ordinal);
        Assert.True(error.Message.Length < 400, error.Message.Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task Token_label_with_an_escape_sequence_is_listed_escaped()
    {
        SoftHsm.Require();
        var token = SoftHsm.CreateToken("esc\u001b[31m");
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.OptionsOn("no-such-token-here", "any-key"));

        var error = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.GenerateDataKeyAsync("any-key", KeyContext.For("app", "Clinic.Patient"), Ct));

        Assert.Contains(Untrusted.Quote(token), error.Message, StringComparison.Ordinal);
        Assert.Contains("esc\\u001b[31m", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(error.Message, char.IsControl);
    }
}
