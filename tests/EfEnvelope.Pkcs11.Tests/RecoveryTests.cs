using EfEnvelope.KeyManagement;

namespace EfEnvelope.Pkcs11.Tests;

/// <summary>The token drops the provider's sessions or login while the process keeps running.</summary>
/// <remarks>Each test uses a token of its own, since closing every session or logging out affects the whole process.</remarks>
public sealed class RecoveryTests
{
    private static readonly KeyContext Context = KeyContext.For("pkcs11-tests", "Clinic.Patient");

    public RecoveryTests() => SoftHsm.Require();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Provider_reopens_and_logs_in_again_after_all_its_sessions_were_closed_under_it()
    {
        var (token, provider, label) = await ProviderOnOwnTokenAsync("closed");
        using var _ = provider;
        using var before = await provider.GenerateDataKeyAsync(label, Context, Ct);

        SoftHsm.CloseAllSessions(token);

        Assert.Equal(before.Plaintext, await provider.DecryptDataKeyAsync(label, before.WrappedKey, Context, Ct));
        using var after = await provider.GenerateDataKeyAsync(label, Context, Ct);
        Assert.Equal(after.Plaintext, await provider.DecryptDataKeyAsync(label, after.WrappedKey, Context, Ct));
        Assert.Equal(2, provider.ConnectionsOpened);
    }

    [Fact]
    public async Task Provider_logs_in_again_after_the_token_logged_the_process_out()
    {
        var (token, provider, label) = await ProviderOnOwnTokenAsync("logout");
        using var _ = provider;
        using var before = await provider.GenerateDataKeyAsync(label, Context, Ct);

        SoftHsm.Logout(token);

        using var after = await provider.GenerateDataKeyAsync(label, Context, Ct);
        Assert.Equal(before.Plaintext, await provider.DecryptDataKeyAsync(label, before.WrappedKey, Context, Ct));
        Assert.Equal(2, provider.ConnectionsOpened);
    }

    [Fact]
    public async Task Parallel_callers_all_recover_from_one_loss_with_one_new_login()
    {
        var (token, provider, label) = await ProviderOnOwnTokenAsync("parallel");
        using var _ = provider;
        var keys = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => provider.GenerateDataKeyAsync(label, Context, Ct)));

        SoftHsm.CloseAllSessions(token);

        var unwrapped = await Task.WhenAll(keys.Select(k => Task.Run(() => provider.DecryptDataKeyAsync(label, k.WrappedKey, Context, Ct), Ct)));
        Assert.All(keys.Zip(unwrapped), pair => Assert.Equal(pair.First.Plaintext, pair.Second));
        Assert.Equal(2, provider.ConnectionsOpened);
        foreach (var key in keys)
        {
            key.Dispose();
        }
    }

    [Fact]
    public async Task Token_deleted_under_the_running_provider_is_reported_by_its_label()
    {
        var (token, provider, label) = await ProviderOnOwnTokenAsync("deleted");
        using var _ = provider;
        using var before = await provider.GenerateDataKeyAsync(label, Context, Ct);

        // What an administrator would do from another process; the running module sees the token's objects vanish.
        SoftHsm.DeleteToken(token);

        var error = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.DecryptDataKeyAsync(label, before.WrappedKey, Context, Ct));
        Assert.Contains("Pkcs11Options.TokenLabel", error.Message, StringComparison.Ordinal);
        Assert.Contains($"'{token}'", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(SoftHsm.Pin, error.ToString(), StringComparison.Ordinal);
    }

    private static async Task<(string Token, Pkcs11MasterKeyProvider Provider, string Label)> ProviderOnOwnTokenAsync(string purpose)
    {
        var token = SoftHsm.CreateToken(purpose);
        var label = await SoftHsm.CreateKeyAsync(purpose, token);
        var options = SoftHsm.OptionsOn(token, label);
        options.MaxSessions = 4;
        return (token, new Pkcs11MasterKeyProvider(options), label);
    }
}
