using EfEnvelope.KeyManagement;

namespace EfEnvelope.Pkcs11.Tests;

/// <summary>Runs alone: deleting a token from another process while this one creates tokens and keys races in SoftHSM.</summary>
/// <remarks>
/// softhsm2-util rewrites the token directory that the running module reads; with tokens being created beside it,
/// SoftHSM has been seen to fail the delete or to lose sight of other tokens, which is SoftHSM's doing, not the
/// provider's, and would make unrelated tests fail.
/// </remarks>
[CollectionDefinition(nameof(TokenDeletion), DisableParallelization = true)]
public sealed class TokenDeletion;

/// <summary>A token deleted under the running provider.</summary>
[Collection(nameof(TokenDeletion))]
public sealed class TokenDeletionTests
{
    private static readonly KeyContext Context = KeyContext.For("pkcs11-tests", "Clinic.Patient");

    public TokenDeletionTests() => SoftHsm.Require();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Token_deleted_under_the_running_provider_is_reported_by_its_label()
    {
        var (token, provider, label) = await SoftHsm.ProviderOnOwnTokenAsync("deleted");
        using var _ = provider;
        using var before = await provider.GenerateDataKeyAsync(label, Context, Ct);

        // What an administrator would do from another process; the running module sees the token's objects vanish.
        SoftHsm.DeleteToken(token);

        var error = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => provider.DecryptDataKeyAsync(label, before.WrappedKey, Context, Ct));
        Assert.Contains("Pkcs11Options.TokenLabel", error.Message, StringComparison.Ordinal);
        Assert.Contains($"'{token}'", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(SoftHsm.Pin, error.ToString(), StringComparison.Ordinal);
    }
}
