using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using EfEnvelope.Crypto;
using EfEnvelope.Infrastructure;
using EfEnvelope.KeyManagement;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace EfEnvelope.Diagnostics.HealthChecks;

/// <summary>
/// Proves that the context's master-key provider can generate a data key under the primary master key and unwrap it
/// again, through the configuration's key cache so that a check costs no provider call while the probe key is cached.
/// </summary>
/// <remarks>
/// The probe is a key-encryption key of its own entity name, <see cref="ProbeEntity"/>, bound like any other; it
/// wraps a random probe key, never application data. It is generated again once the cache's time to live has passed,
/// and the cached copy expires with the same time to live, so a revoked or deleted master key shows within that
/// time, as it does for the application's own reads.
/// </remarks>
internal sealed class EnvelopeEncryptionHealthCheck<TContext>(IServiceProvider services) : IHealthCheck
    where TContext : DbContext
{
    /// <summary>The entity name the probe key is bound to (it appears in provider logs and KMS audit trails).</summary>
    public const string ProbeEntity = "EfEnvelope.HealthCheck";

    // One probe per runtime (per encryption configuration), forgotten with it.
    private static readonly ConditionalWeakTable<EnvelopeRuntime, Probe> Probes = new();

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var failureStatus = context.Registration?.FailureStatus ?? HealthStatus.Unhealthy;
        EnvelopeRuntime runtime;
        try
        {
            runtime = services.GetRequiredService<TContext>().GetService<EnvelopeRuntime>();
        }
        catch (InvalidOperationException ex)
        {
            // No UseEnvelopeEncryption on the context, no provider in it, or no database provider: EF says which.
            return Failed(failureStatus, EnvelopeHealthCheck.Misconfigured, $"{typeof(TContext).Name} cannot use envelope encryption: {ex.Message}", ex, null, null);
        }

        var provider = runtime.Provider;
        var keyId = provider.PrimaryKeyId;
        if (!provider.IsKeyConfigured(keyId))
        {
            return Failed(failureStatus, EnvelopeHealthCheck.Misconfigured, $"Provider '{provider.Name}' does not accept its own primary master key '{keyId}'.", null, provider.Name, keyId);
        }

        try
        {
            var probe = Probes.GetValue(runtime, _ => new Probe());
            await probe.CheckAsync(runtime, keyId, cancellationToken).ConfigureAwait(false);
            return HealthCheckResult.Healthy(
                $"Provider '{provider.Name}' generated and unwrapped a data key under master key '{keyId}'.",
                new Dictionary<string, object> { [EnvelopeHealthCheck.ProviderKey] = provider.Name, [EnvelopeHealthCheck.KeyIdKey] = keyId });
        }
        catch (MasterKeyAccessRevokedException ex)
        {
            return Failed(failureStatus, EnvelopeHealthCheck.Revoked, ex.Message, ex, provider.Name, keyId);
        }
        catch (MasterKeyConfigurationException ex)
        {
            return Failed(failureStatus, EnvelopeHealthCheck.Misconfigured, ex.Message, ex, provider.Name, keyId);
        }
        catch (MasterKeyException ex)
        {
            return Failed(failureStatus, EnvelopeHealthCheck.Unreachable, ex.Message, ex, provider.Name, keyId);
        }
        catch (Exception ex) when (ex is EnvelopeDecryptionException or AuthenticationTagMismatchException)
        {
            return Failed(
                failureStatus,
                EnvelopeHealthCheck.Misconfigured,
                $"Provider '{provider.Name}' did not unwrap the key it generated under master key '{keyId}': it is not a consistent provider for this key.",
                ex,
                provider.Name,
                keyId);
        }
    }

    private static HealthCheckResult Failed(HealthStatus status, string failure, string description, Exception? exception, string? provider, string? keyId)
    {
        var data = new Dictionary<string, object> { [EnvelopeHealthCheck.FailureKey] = failure };
        if (provider is not null)
        {
            data[EnvelopeHealthCheck.ProviderKey] = provider;
        }

        if (keyId is not null)
        {
            data[EnvelopeHealthCheck.KeyIdKey] = keyId;
        }

        return new HealthCheckResult(status, $"{failure}: {description}", exception, data);
    }

    /// <summary>The probe blob of one configuration and when its key was generated.</summary>
    private sealed class Probe
    {
        private readonly SemaphoreSlim _generating = new(1, 1);
        private byte[]? _blob;
        private string? _keyId;
        private DateTimeOffset _generatedAt;

        public async Task CheckAsync(EnvelopeRuntime runtime, string keyId, CancellationToken cancellationToken)
        {
            var blob = await CurrentBlobAsync(runtime, keyId, cancellationToken).ConfigureAwait(false);
            WrappedKeyBlob.TryParse(blob, out var parsed, out _);

            // A cache hit while the probe key is cached; after its time to live, one DecryptDataKey call.
            var key = await runtime.Cache.GetAsync(ProbeEntity, parsed, null, cancellationToken).ConfigureAwait(false);
            try
            {
                // The unwrapped key must open what the generated key sealed: a provider that returns some other key
                // (wrong key material behind the same id) fails here instead of corrupting data later.
                var cipher = key.RentCipher();
                try
                {
                    var sealedKey = parsed.WrappedDek;
                    Span<byte> opened = stackalloc byte[EnvelopeFormat.KeySize];
                    cipher.Decrypt(sealedKey[..EnvelopeFormat.NonceSize], sealedKey.Slice(EnvelopeFormat.NonceSize, EnvelopeFormat.KeySize), sealedKey[^EnvelopeFormat.TagSize..], opened, AssociatedData(parsed));
                    CryptographicOperations.ZeroMemory(opened);
                }
                finally
                {
                    key.ReturnCipher(cipher);
                }
            }
            finally
            {
                key.Release();
            }
        }

        private async Task<byte[]> CurrentBlobAsync(EnvelopeRuntime runtime, string keyId, CancellationToken cancellationToken)
        {
            var settings = runtime.Settings;
            await _generating.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                if (_blob is not null && _keyId == keyId && settings.TimeProvider.GetUtcNow() < _generatedAt + settings.Cache.TimeToLive)
                {
                    return _blob;
                }

                var context = runtime.Cache.ContextFor(ProbeEntity, default, direct: false);
                using var generated = await runtime.Gateway.GenerateDataKeyAsync(keyId, context, cancellationToken).ConfigureAwait(false);
                _blob = Seal(runtime, generated);
                _keyId = keyId;
                _generatedAt = settings.TimeProvider.GetUtcNow();
                return _blob;
            }
            finally
            {
                _generating.Release();
            }
        }

        /// <summary>A mode-1 wrapped-key blob, as a record would store it, sealing a random probe key under the new key.</summary>
        private static byte[] Seal(EnvelopeRuntime runtime, GeneratedDataKey generated)
        {
            var tail = EnvelopeFormat.BuildTail(runtime.Provider.Name, generated.KeyId, ProbeEntity, generated.WrappedKey);
            var blob = new byte[EnvelopeFormat.TailOffset + tail.Length + EnvelopeFormat.WrappedDekSize];
            blob[0] = EnvelopeFormat.Version;
            blob[1] = EnvelopeFormat.ModeCachedKek;
            runtime.Random.Fill(blob.AsSpan(2, EnvelopeFormat.RecordIdSize));
            tail.CopyTo(blob.AsSpan(EnvelopeFormat.TailOffset));
            WrappedKeyBlob.TryParse(blob, out var parsed, out _);

            var sealedKey = blob.AsSpan(EnvelopeFormat.TailOffset + tail.Length);
            Span<byte> probeKey = stackalloc byte[EnvelopeFormat.KeySize];
            runtime.Random.Fill(probeKey);
            runtime.Random.Fill(sealedKey[..EnvelopeFormat.NonceSize]);
            using var cipher = new AesGcm(generated.Plaintext, EnvelopeFormat.TagSize);
            cipher.Encrypt(sealedKey[..EnvelopeFormat.NonceSize], probeKey, sealedKey.Slice(EnvelopeFormat.NonceSize, EnvelopeFormat.KeySize), sealedKey[^EnvelopeFormat.TagSize..], AssociatedData(parsed));
            CryptographicOperations.ZeroMemory(probeKey);
            return blob;
        }

        // As the format binds a record's data key: the blob's header, then the entity's binding name.
        private static byte[] AssociatedData(WrappedKeyBlob blob) => [.. blob.Header, .. EnvelopeFormat.BindingName(ProbeEntity)];
    }
}
