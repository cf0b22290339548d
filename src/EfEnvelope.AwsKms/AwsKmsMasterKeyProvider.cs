using System.Globalization;
using Amazon;
using Amazon.KeyManagementService;
using Amazon.KeyManagementService.Model;
using Amazon.Runtime;
using EfEnvelope.KeyManagement;

namespace EfEnvelope.AwsKms;

/// <summary>Master keys held in AWS KMS: data keys come from <c>GenerateDataKey</c> and are unwrapped by <c>Decrypt</c>.</summary>
/// <remarks>
/// <para>
/// Every call sends the <see cref="KeyContext"/> pairs as the KMS encryption context, so KMS binds the wrapped key to
/// them and CloudTrail shows which application and entity type a key was used for. <c>Decrypt</c> always pins
/// <c>KeyId</c> to the key the stored blob names, and a blob naming a key that is not configured is refused before
/// any request is sent.
/// </para>
/// <para>
/// Errors: a disabled or pending-deletion key and a denied request raise <see cref="MasterKeyAccessRevokedException"/>;
/// a missing key, throttling or server errors that outlast the SDK's retries, and timeouts raise
/// <see cref="MasterKeyException"/>; a blob KMS rejects as not its own (wrong key, tampered, other context) raises
/// <see cref="EnvelopeDecryptionException"/>. Cancelling the caller's token raises <see cref="OperationCanceledException"/>.
/// </para>
/// <para>
/// Two providers with the same client instance (or equal client settings) and the same key ids are equal, so
/// separately built <c>DbContextOptions</c> share one key cache.
/// </para>
/// </remarks>
public sealed class AwsKmsMasterKeyProvider : IMasterKeyProvider, IDisposable, IEquatable<AwsKmsMasterKeyProvider>
{
    /// <summary>The provider name written into every blob: <c>aws-kms</c>.</summary>
    public const string ProviderName = "aws-kms";

    private const int DataKeySize = 32;

    private readonly string[] _keyIds;
    private readonly HashSet<string> _keyIdSet;
    private readonly IAmazonKeyManagementService? _givenClient;
    private readonly ClientSettings _settings;
    private readonly TimeSpan _requestTimeout;
    private readonly Lazy<IAmazonKeyManagementService> _client;

    /// <summary>Creates the provider from a snapshot of <paramref name="options"/>; later changes to them have no effect.</summary>
    public AwsKmsMasterKeyProvider(AwsKmsOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.KeyId is null)
        {
            throw new ArgumentException($"{nameof(AwsKmsOptions)}.{nameof(AwsKmsOptions.KeyId)} must name the primary KMS key.", nameof(options));
        }

        foreach (var id in options.AdditionalKeyIds)
        {
            if (string.IsNullOrWhiteSpace(id))
            {
                throw new ArgumentException($"{nameof(AwsKmsOptions)}.{nameof(AwsKmsOptions.AdditionalKeyIds)} contains an empty key id.", nameof(options));
            }
        }

        _keyIds = [options.KeyId, .. options.AdditionalKeyIds.Where(id => id != options.KeyId).Distinct(StringComparer.Ordinal)];
        _keyIdSet = new HashSet<string>(_keyIds, StringComparer.Ordinal);
        _givenClient = options.Client;
        _settings = new ClientSettings(options.Region, options.ServiceUrl, options.AuthenticationRegion, options.Credentials, options.MaxErrorRetry, options.RequestTimeout);
        _requestTimeout = options.RequestTimeout;

        // The client is built on first use, not here, so that configuring a DbContext never fails for want of a
        // Region or credentials; the first KMS call reports that as a MasterKeyException instead. PublicationOnly
        // keeps a failed construction from being cached for the life of the process.
        _client = _givenClient is not null
            ? new Lazy<IAmazonKeyManagementService>(_givenClient)
            : new Lazy<IAmazonKeyManagementService>(_settings.CreateClient, LazyThreadSafetyMode.PublicationOnly);
    }

    /// <inheritdoc />
    public string Name => ProviderName;

    /// <inheritdoc />
    public string PrimaryKeyId => _keyIds[0];

    /// <summary>Every key this provider accepts for reads, the primary first.</summary>
    public IReadOnlyList<string> KeyIds => _keyIds;

    /// <inheritdoc />
    public bool IsKeyConfigured(string keyId) => keyId is not null && _keyIdSet.Contains(keyId);

    /// <inheritdoc />
    public async Task<GeneratedDataKey> GenerateDataKeyAsync(string keyId, KeyContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        RequireConfigured(keyId, context);

        var request = new GenerateDataKeyRequest
        {
            KeyId = keyId,
            KeySpec = DataKeySpec.AES_256,
            EncryptionContext = ToEncryptionContext(context),
        };
        var response = await CallAsync("GenerateDataKey", keyId, context, (client, ct) => client.GenerateDataKeyAsync(request, ct), cancellationToken).ConfigureAwait(false);

        using var plaintextStream = response.Plaintext;
        using var ciphertextStream = response.CiphertextBlob;
        var plaintext = TakeBytes(plaintextStream);
        if (plaintext.Length != DataKeySize || ciphertextStream is null || ciphertextStream.Length == 0)
        {
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(plaintext);
            throw new MasterKeyException(
                $"AWS KMS GenerateDataKey with key '{keyId}' returned a malformed reply (expected a 32-byte key and its ciphertext){ForEntity(context)}.",
                ProviderName, keyId, context.Entity);
        }

        // The configured id, not the ARN KMS answers with, is what the blob records: IsKeyConfigured must
        // recognise it on read, and Decrypt accepts an alias or ARN just as GenerateDataKey did.
        return new GeneratedDataKey(keyId, plaintext, ciphertextStream.ToArray());
    }

    /// <inheritdoc />
    public async Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, KeyContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        RequireConfigured(keyId, context);
        if (wrappedKey.IsEmpty)
        {
            throw new EnvelopeDecryptionException("The wrapped key is empty.", context.Entity, null, keyId);
        }

        var request = new DecryptRequest
        {
            CiphertextBlob = new MemoryStream(wrappedKey.ToArray(), writable: false),

            // Pinning the key makes KMS refuse a blob encrypted under any other key, even one the caller may use,
            // instead of silently decrypting with whatever key the blob names.
            KeyId = keyId,
            EncryptionContext = ToEncryptionContext(context),
        };
        var response = await CallAsync("Decrypt", keyId, context, (client, ct) => client.DecryptAsync(request, ct), cancellationToken).ConfigureAwait(false);

        using var plaintextStream = response.Plaintext;
        var plaintext = TakeBytes(plaintextStream);
        if (plaintext.Length != DataKeySize)
        {
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(plaintext);
            throw new EnvelopeDecryptionException("AWS KMS decrypted the blob, but it does not hold a 256-bit data key.", context.Entity, null, keyId);
        }

        return plaintext;
    }

    /// <summary>Moves a wrapped key to another master key inside KMS (<c>ReEncrypt</c>), for rotating stored data.</summary>
    /// <param name="sourceKeyId">The configured key the blob is wrapped under; KMS is pinned to it.</param>
    /// <param name="wrappedKey">The blob from <see cref="GenerateDataKeyAsync"/>.</param>
    /// <param name="destinationKeyId">The configured key to wrap under instead.</param>
    /// <param name="context">The context the blob is bound to; the new blob is bound to the same one.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The blob wrapped under <paramref name="destinationKeyId"/>.</returns>
    /// <remarks>
    /// The plaintext key never leaves KMS. Needs <c>kms:ReEncryptFrom</c> on the source key and <c>kms:ReEncryptTo</c>
    /// on the destination key. Errors are mapped as for <see cref="DecryptDataKeyAsync"/>.
    /// </remarks>
    public async Task<byte[]> ReEncryptDataKeyAsync(string sourceKeyId, ReadOnlyMemory<byte> wrappedKey, string destinationKeyId, KeyContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        RequireConfigured(sourceKeyId, context);
        RequireConfigured(destinationKeyId, context);
        if (wrappedKey.IsEmpty)
        {
            throw new EnvelopeDecryptionException("The wrapped key is empty.", context.Entity, null, sourceKeyId);
        }

        var encryptionContext = ToEncryptionContext(context);
        var request = new ReEncryptRequest
        {
            CiphertextBlob = new MemoryStream(wrappedKey.ToArray(), writable: false),
            SourceKeyId = sourceKeyId,
            SourceEncryptionContext = encryptionContext,
            DestinationKeyId = destinationKeyId,
            DestinationEncryptionContext = encryptionContext,
        };

        // Errors name the source key: it is the one whose state (disabled, wrong key, tampered blob) most often
        // explains a refusal. A missing or disabled destination is still reported, with KMS's exception inside.
        var response = await CallAsync("ReEncrypt", sourceKeyId, context, (client, ct) => client.ReEncryptAsync(request, ct), cancellationToken).ConfigureAwait(false);
        using var ciphertext = response.CiphertextBlob;
        return ciphertext is { Length: > 0 }
            ? ciphertext.ToArray()
            : throw new MasterKeyException($"AWS KMS ReEncrypt from key '{sourceKeyId}' returned no ciphertext{ForEntity(context)}.", ProviderName, sourceKeyId, context.Entity);
    }

    /// <summary>Disposes the KMS client if this provider built it; a client that was passed in is left alone.</summary>
    public void Dispose()
    {
        if (_givenClient is null && _client.IsValueCreated)
        {
            _client.Value.Dispose();
        }
    }

    /// <inheritdoc />
    public bool Equals(AwsKmsMasterKeyProvider? other) =>
        other is not null
        && ReferenceEquals(_givenClient, other._givenClient)
        && (_givenClient is not null || _settings.Equals(other._settings))
        && _requestTimeout == other._requestTimeout
        && _keyIds[0] == other._keyIds[0]
        && _keyIdSet.SetEquals(other._keyIdSet);

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as AwsKmsMasterKeyProvider);

    /// <inheritdoc />
    public override int GetHashCode() =>
        HashCode.Combine(_givenClient is null ? _settings.GetHashCode() : System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(_givenClient), PrimaryKeyId, _keyIds.Length, _requestTimeout);

    /// <inheritdoc />
    public override string ToString() => $"AwsKmsMasterKeyProvider(primary={PrimaryKeyId}, keys={_keyIds.Length})";

    private static Dictionary<string, string> ToEncryptionContext(KeyContext context) =>
        context.Pairs.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);

    private static string ForEntity(KeyContext context) =>
        context.Entity is null ? "" : $" for entity '{context.Entity}'";

    // Copies the key out of the SDK's reply stream and then overwrites the stream's own buffer, so the only copy of
    // the plaintext key left is the array the caller owns (and zeroes). The SDK builds these streams over its own
    // arrays, which are not exposed, so writing zeros through the stream is the one way to clear them.
    private static byte[] TakeBytes(MemoryStream? stream)
    {
        if (stream is null)
        {
            return [];
        }

        var bytes = stream.ToArray();
        if (stream.CanWrite)
        {
            stream.Position = 0;
            stream.Write(new byte[bytes.Length]);
        }

        return bytes;
    }

    private void RequireConfigured(string keyId, KeyContext context)
    {
        ArgumentException.ThrowIfNullOrEmpty(keyId);
        if (!IsKeyConfigured(keyId))
        {
            throw new MasterKeyConfigurationException(
                $"The data names AWS KMS key '{keyId}', which is not configured for this provider{ForEntity(context)}; it was not sent to KMS. " +
                $"Add it to {nameof(AwsKmsOptions)}.{nameof(AwsKmsOptions.AdditionalKeyIds)} if it should be trusted.",
                ProviderName, keyId, context.Entity);
        }
    }

    private async Task<T> CallAsync<T>(
        string operation,
        string keyId,
        KeyContext context,
        Func<IAmazonKeyManagementService, CancellationToken, Task<T>> call,
        CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        IAmazonKeyManagementService client;
        try
        {
            client = _client.Value;
        }
        catch (AmazonClientException ex)
        {
            throw new MasterKeyConfigurationException(
                $"Could not create the AWS KMS client for key '{keyId}'{ForEntity(context)}: {ex.Message}. " +
                $"Set {nameof(AwsKmsOptions)}.{nameof(AwsKmsOptions.Region)} (or AWS_REGION, or a profile), or pass a configured client.",
                ProviderName, keyId, context.Entity, ex);
        }

        // One deadline for the whole operation, SDK retries and backoff included: a per-attempt HTTP timeout alone
        // would let a throttled call run for minutes. It is linked to the caller's token so either one stops the call.
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(_requestTimeout);
        try
        {
            return await call(client, deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (OperationCanceledException ex)
        {
            // Not the caller: our deadline, or the HTTP client's own per-attempt timeout.
            throw new MasterKeyException(
                $"AWS KMS {operation} with key '{keyId}'{ForEntity(context)} timed out after {Describe(_requestTimeout)}.",
                ProviderName, keyId, context.Entity, ex);
        }
        catch (AmazonServiceException ex)
        {
            throw Map(ex, operation, keyId, context);
        }
        catch (Exception ex) when (ex is AmazonClientException or HttpRequestException or IOException)
        {
            // Raised before any KMS answer: no Region or credentials found, DNS, connection refused, TLS. The SDK's and
            // the socket's messages say which, and hold no secrets (credential errors name the source, not the keys).
            throw new MasterKeyException(
                $"AWS KMS {operation} with key '{keyId}'{ForEntity(context)} failed before KMS answered: {ex.Message}",
                ProviderName, keyId, context.Entity, ex);
        }
    }

    private static Exception Map(AmazonServiceException ex, string operation, string keyId, KeyContext context)
    {
        var entity = context.Entity;
        var where = ForEntity(context);
        return ex switch
        {
            DisabledException => new MasterKeyAccessRevokedException(
                $"AWS KMS key '{keyId}' is disabled{where}; data under it cannot be read or written until it is enabled.",
                ProviderName, keyId, entity, ex),
            KMSInvalidStateException => new MasterKeyAccessRevokedException(
                $"AWS KMS key '{keyId}' is not usable{where}: it is disabled, pending deletion or otherwise unavailable.",
                ProviderName, keyId, entity, ex),
            _ when ex.ErrorCode is "AccessDeniedException" or "AccessDenied" => new MasterKeyAccessRevokedException(
                $"AWS KMS denied {operation} with key '{keyId}'{where}: check the key policy and the IAM permissions of the application's role.",
                ProviderName, keyId, entity, ex),
            NotFoundException => new MasterKeyConfigurationException(
                $"AWS KMS key '{keyId}' was not found{where}: deleted, misspelt, or in another Region or account.",
                ProviderName, keyId, entity, ex),
            IncorrectKeyException => new EnvelopeDecryptionException(
                "The wrapped key was not encrypted under this AWS KMS key.", entity, null, keyId, ex),
            InvalidCiphertextException => new EnvelopeDecryptionException(
                "AWS KMS rejected the wrapped key: tampered, truncated, or bound to another encryption context.", entity, null, keyId, ex),
            _ when IsThrottling(ex) => new MasterKeyException(
                $"AWS KMS kept throttling {operation} with key '{keyId}'{where} after the SDK's retries ({ex.ErrorCode}); raise the KMS request quota or the key cache's time to live.",
                ProviderName, keyId, entity, ex),
            _ when (int)ex.StatusCode >= 500 => new MasterKeyException(
                $"AWS KMS failed {operation} with key '{keyId}'{where} after the SDK's retries (HTTP {((int)ex.StatusCode).ToString(CultureInfo.InvariantCulture)}, {ex.ErrorCode}).",
                ProviderName, keyId, entity, ex),
            _ => new MasterKeyException(
                $"AWS KMS refused {operation} with key '{keyId}'{where} ({ex.ErrorCode}).",
                ProviderName, keyId, entity, ex),
        };
    }

    private static bool IsThrottling(AmazonServiceException ex) =>
        ex.Retryable?.Throttling == true
        || ex.ErrorCode is "ThrottlingException" or "Throttling" or "TooManyRequestsException" or "RequestLimitExceeded";

    private static string Describe(TimeSpan timeout) =>
        timeout == Timeout.InfiniteTimeSpan ? "an infinite timeout" : $"{timeout.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture)} s";

    // The settings of a client the provider builds itself; equal settings build equivalent clients, which is what
    // lets two providers configured alike count as one configuration.
    private sealed record ClientSettings(
        string? Region,
        string? ServiceUrl,
        string? AuthenticationRegion,
        AWSCredentials? Credentials,
        int? MaxErrorRetry,
        TimeSpan RequestTimeout)
    {
        public IAmazonKeyManagementService CreateClient()
        {
            var config = new AmazonKeyManagementServiceConfig();

            // RegionEndpoint and ServiceURL exclude each other in the SDK (setting one clears the other), so the
            // Region is set first and, with an explicit URL, becomes the signing Region instead.
            if (Region is not null)
            {
                config.RegionEndpoint = RegionEndpoint.GetBySystemName(Region);
            }

            if (ServiceUrl is not null)
            {
                config.ServiceURL = ServiceUrl;
                config.AuthenticationRegion = AuthenticationRegion ?? Region;
            }
            else if (AuthenticationRegion is not null)
            {
                config.AuthenticationRegion = AuthenticationRegion;
            }

            if (MaxErrorRetry is { } retries)
            {
                config.MaxErrorRetry = retries;
            }

            if (RequestTimeout != Timeout.InfiniteTimeSpan)
            {
                config.Timeout = RequestTimeout;
            }

            return Credentials is null
                ? new AmazonKeyManagementServiceClient(config)
                : new AmazonKeyManagementServiceClient(Credentials, config);
        }

        // The generated record ToString would print the credentials object; never let it near a log.
        public override string ToString() => $"ClientSettings(Region={Region}, ServiceUrl={ServiceUrl})";
    }
}
