using System.Security.Cryptography;
using EfEnvelope.KeyManagement;
using Xunit;

namespace EfEnvelope.Specification.Tests.Providers;

/// <summary>
/// What every master-key provider must do. Each provider's test project subclasses this once with a real
/// instance of the provider (in-memory, AWS KMS through the local endpoint, PKCS#11 on SoftHSM2).
/// </summary>
public abstract class MasterKeyProviderContractTests
{
    /// <summary>A provider whose primary key and <see cref="SecondKeyId"/> are both configured and enabled.</summary>
    protected abstract IMasterKeyProvider Provider { get; }

    /// <summary>A second configured key (a rotation's old key).</summary>
    protected abstract string SecondKeyId { get; }

    /// <summary>Makes the key refuse every use, as disabling it in the KMS or HSM would.</summary>
    protected abstract Task DisableKeyAsync(string keyId);

    /// <summary>Undoes <see cref="DisableKeyAsync"/>.</summary>
    protected abstract Task EnableKeyAsync(string keyId);

    private static readonly KeyContext PatientContext = KeyContext.For("contract-tests", "Clinic.Patient");

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Generated_key_is_32_random_bytes_named_by_the_primary_key()
    {
        using var first = await Provider.GenerateDataKeyAsync(Provider.PrimaryKeyId, PatientContext, Ct);
        using var second = await Provider.GenerateDataKeyAsync(Provider.PrimaryKeyId, PatientContext, Ct);

        Assert.Equal(32, first.Plaintext.Length);
        Assert.True(Provider.IsKeyConfigured(first.KeyId));
        Assert.False(first.Plaintext.AsSpan().SequenceEqual(second.Plaintext));
        Assert.False(first.WrappedKey.AsSpan().SequenceEqual(second.WrappedKey));
        Assert.Equal(-1, first.WrappedKey.AsSpan().IndexOf(first.Plaintext.AsSpan(0, 16)));
    }

    [Fact]
    public async Task Wrapped_key_unwraps_to_the_generated_key()
    {
        using var key = await Provider.GenerateDataKeyAsync(Provider.PrimaryKeyId, PatientContext, Ct);

        var unwrapped = await Provider.DecryptDataKeyAsync(key.KeyId, key.WrappedKey, PatientContext, Ct);

        Assert.Equal(key.Plaintext, unwrapped);
    }

    [Fact]
    public async Task Second_key_wraps_and_unwraps_independently()
    {
        using var key = await Provider.GenerateDataKeyAsync(SecondKeyId, PatientContext, Ct);

        var unwrapped = await Provider.DecryptDataKeyAsync(key.KeyId, key.WrappedKey, PatientContext, Ct);

        Assert.Equal(key.Plaintext, unwrapped);
        Assert.True(Provider.IsKeyConfigured(key.KeyId));
    }

    [Fact]
    public async Task Unwrapping_under_another_context_is_a_tamper_error()
    {
        using var key = await Provider.GenerateDataKeyAsync(Provider.PrimaryKeyId, PatientContext, Ct);
        var otherEntity = KeyContext.For("contract-tests", "Clinic.Invoice");
        var otherApplication = KeyContext.For("other-app", "Clinic.Patient");

        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => Provider.DecryptDataKeyAsync(key.KeyId, key.WrappedKey, otherEntity, Ct));
        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => Provider.DecryptDataKeyAsync(key.KeyId, key.WrappedKey, otherApplication, Ct));
    }

    [Fact]
    public async Task Unwrapping_under_another_configured_key_is_a_tamper_error()
    {
        using var key = await Provider.GenerateDataKeyAsync(Provider.PrimaryKeyId, PatientContext, Ct);

        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(
            () => Provider.DecryptDataKeyAsync(SecondKeyId, key.WrappedKey, PatientContext, Ct));

        Assert.Equal(SecondKeyId, error.KeyId);
    }

    [Fact]
    public async Task Every_flipped_byte_of_a_wrapped_key_is_a_tamper_error()
    {
        using var key = await Provider.GenerateDataKeyAsync(Provider.PrimaryKeyId, PatientContext, Ct);

        for (var i = 0; i < key.WrappedKey.Length; i++)
        {
            var tampered = key.WrappedKey.ToArray();
            tampered[i] ^= 0x01;
            await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => Provider.DecryptDataKeyAsync(key.KeyId, tampered, PatientContext, Ct));
        }
    }

    [Fact]
    public async Task Truncated_or_empty_wrapped_key_is_a_tamper_error()
    {
        using var key = await Provider.GenerateDataKeyAsync(Provider.PrimaryKeyId, PatientContext, Ct);

        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => Provider.DecryptDataKeyAsync(key.KeyId, key.WrappedKey.AsMemory(0, key.WrappedKey.Length - 1), PatientContext, Ct));
        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => Provider.DecryptDataKeyAsync(key.KeyId, ReadOnlyMemory<byte>.Empty, PatientContext, Ct));
    }

    [Fact]
    public async Task Disabled_key_refuses_with_the_revoked_access_error_and_works_again_when_enabled()
    {
        using var key = await Provider.GenerateDataKeyAsync(SecondKeyId, PatientContext, Ct);
        await DisableKeyAsync(SecondKeyId);
        try
        {
            var onDecrypt = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => Provider.DecryptDataKeyAsync(key.KeyId, key.WrappedKey, PatientContext, Ct));
            await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => Provider.GenerateDataKeyAsync(SecondKeyId, PatientContext, Ct));
            Assert.Contains(SecondKeyId, onDecrypt.Message, StringComparison.Ordinal);
        }
        finally
        {
            await EnableKeyAsync(SecondKeyId);
        }

        Assert.Equal(key.Plaintext, await Provider.DecryptDataKeyAsync(key.KeyId, key.WrappedKey, PatientContext, Ct));
    }

    [Fact]
    public void Unknown_key_is_not_configured()
    {
        Assert.False(Provider.IsKeyConfigured("no-such-key-" + Guid.NewGuid().ToString("N")));
        Assert.True(Provider.IsKeyConfigured(Provider.PrimaryKeyId));
    }

    [Fact]
    public async Task Cancelled_token_cancels_the_call()
    {
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Provider.GenerateDataKeyAsync(Provider.PrimaryKeyId, PatientContext, cancelled.Token));
    }

    [Fact]
    public async Task Parallel_calls_each_round_trip_their_own_key()
    {
        var contexts = Enumerable.Range(0, 32).Select(i => KeyContext.For("contract-tests", $"Clinic.Entity{i % 4}")).ToArray();

        var results = await Task.WhenAll(contexts.Select(async context =>
        {
            using var key = await Provider.GenerateDataKeyAsync(Provider.PrimaryKeyId, context, Ct);
            var unwrapped = await Provider.DecryptDataKeyAsync(key.KeyId, key.WrappedKey, context, Ct);
            return key.Plaintext.AsSpan().SequenceEqual(unwrapped);
        }));

        Assert.All(results, Assert.True);
    }

    [Fact]
    public async Task Nothing_secret_appears_in_ToString()
    {
        using var key = await Provider.GenerateDataKeyAsync(Provider.PrimaryKeyId, PatientContext, Ct);

        foreach (var text in new[] { key.ToString(), Provider.ToString() ?? "" })
        {
            Assert.DoesNotContain(Convert.ToHexString(key.Plaintext), text, StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotContain(Convert.ToBase64String(key.Plaintext), text, StringComparison.Ordinal);
        }

        CryptographicOperations.ZeroMemory(key.Plaintext);
    }
}
