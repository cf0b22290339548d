using System.Text;
using EfEnvelope.KeyManagement;
using Net.Pkcs11Interop.Common;

namespace EfEnvelope.Pkcs11.Tests;

/// <summary>With <see cref="Pkcs11Options.PinSource"/> the provider holds no PIN: it reads one per login and wipes it.</summary>
public sealed class PinSourceTests
{
    private static readonly KeyContext Context = KeyContext.For("pkcs11-tests", "Clinic.Patient");

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task PIN_is_read_at_each_login_and_every_copy_handed_over_is_zeroed()
    {
        SoftHsm.Require();

        // A token of its own, which this process is not logged in to, so that C_Login really checks the PIN.
        var token = SoftHsm.CreateToken("pin-source");
        var label = await SoftHsm.CreateKeyAsync("pin-source", token);
        var handedOver = new List<byte[]>();
        var options = Options(token, label, () =>
        {
            var pin = Encoding.UTF8.GetBytes(SoftHsm.Pin);
            handedOver.Add(pin);
            return pin;
        });
        using var provider = new Pkcs11MasterKeyProvider(options);

        using var first = await provider.GenerateDataKeyAsync(label, Context, Ct);
        using var second = await provider.GenerateDataKeyAsync(label, Context, Ct);
        Assert.Single(handedOver);

        // The token drops the login: the provider logs in again, and needs the PIN again.
        SoftHsm.Logout(token);
        Assert.Equal(first.Plaintext, await provider.DecryptDataKeyAsync(label, first.WrappedKey, Context, Ct));

        Assert.Equal(2, handedOver.Count);
        Assert.All(handedOver, pin => Assert.All(pin, b => Assert.Equal(0, b)));
        Assert.Null(options.Pin);
    }

    [Fact]
    public async Task Rejected_PIN_from_a_source_is_not_asked_for_or_tried_again()
    {
        SoftHsm.Require();
        var token = SoftHsm.CreateToken("pin-source-wrong");
        var calls = 0;
        using var provider = new Pkcs11MasterKeyProvider(Options(token, "any-key", () =>
        {
            calls++;
            return "wrong-pin"u8.ToArray();
        }));

        var error = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.GenerateDataKeyAsync("any-key", Context, Ct));
        await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.GenerateDataKeyAsync("any-key", Context, Ct));

        Assert.Equal(CKR.CKR_PIN_INCORRECT, Assert.IsType<Pkcs11Exception>(error.InnerException).RV);
        Assert.Equal(1, calls);
    }

    [Fact]
    public async Task Failing_or_empty_source_is_named_and_asked_again_next_time()
    {
        SoftHsm.Require();
        var token = SoftHsm.CreateToken("pin-source-fails");
        var label = await SoftHsm.CreateKeyAsync("pin-source-fails", token);
        var answers = new Queue<Func<byte[]>>(
        [
            () => throw new IOException("secret store unreachable"),
            () => [],
            () => Encoding.UTF8.GetBytes(SoftHsm.Pin),
        ]);
        using var provider = new Pkcs11MasterKeyProvider(Options(token, label, () => answers.Dequeue()()));

        var thrown = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.GenerateDataKeyAsync(label, Context, Ct));
        var empty = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.GenerateDataKeyAsync(label, Context, Ct));
        using var key = await provider.GenerateDataKeyAsync(label, Context, Ct);

        Assert.Contains("Pkcs11Options.PinSource", thrown.Message, StringComparison.Ordinal);
        Assert.IsType<IOException>(thrown.InnerException);
        Assert.Contains("Pkcs11Options.PinSource", empty.Message, StringComparison.Ordinal);
        Assert.Contains("empty", empty.Message, StringComparison.Ordinal);
        Assert.Empty(answers);
    }

    [Fact]
    public void PIN_and_PIN_source_together_are_refused_naming_both()
    {
        var options = new Pkcs11Options { LibraryPath = "/usr/lib/softhsm/libsofthsm2.so", TokenLabel = "t", KeyLabel = "k", Pin = "1234", PinSource = () => [1] };

        var error = Assert.Throws<InvalidOperationException>(() => new Pkcs11MasterKeyProvider(options));

        Assert.Contains("Pkcs11Options.Pin ", error.Message, StringComparison.Ordinal);
        Assert.Contains("Pkcs11Options.PinSource", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Shared_providers_are_the_same_for_the_same_source_and_differ_for_another()
    {
        Func<byte[]> source = () => [1, 2, 3, 4];
        using var first = Pkcs11MasterKeyProvider.GetShared(Options("pin-source-sharing", "k", source));
        using var other = Pkcs11MasterKeyProvider.GetShared(Options("pin-source-sharing", "k", () => [1, 2, 3, 4]));

        Assert.Same(first, Pkcs11MasterKeyProvider.GetShared(Options("pin-source-sharing", "k", source)));
        Assert.NotSame(first, other);
        Assert.Contains("PinSource=set", Options("t", "k", source).ToString(), StringComparison.Ordinal);
    }

    private static Pkcs11Options Options(string token, string keyLabel, Func<byte[]> source) =>
        new() { LibraryPath = SoftHsm.ModulePath ?? "/usr/lib/softhsm/libsofthsm2.so", TokenLabel = token, KeyLabel = keyLabel, PinSource = source };
}
