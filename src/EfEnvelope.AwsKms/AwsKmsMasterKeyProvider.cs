using Amazon.KeyManagementService;
using Amazon.KeyManagementService.Model;
using Amazon.Runtime;
using EfEnvelope.KeyManagement;
using static EfEnvelope.AwsKms.KmsErrors;

namespace EfEnvelope.AwsKms;

/// <summary>Master keys held in AWS KMS: data keys come from <c>GenerateDataKey</c> and are unwrapped by <c>Decrypt</c>.</summary>
/// <remarks>
/// <para>
/// Every call sends the <see cref="KeyContext"/> pairs as the KMS encryption context, so KMS binds the wrapped key to
/// them and CloudTrail shows which application and entity type a key was used for.
/// </para>
/// <para>
/// Key ARNs, as in the AWS Encryption SDK's strict mode: a blob records the key ARN KMS generated it under (an alias
/// only chooses the key to write with), and <c>Decrypt</c> is pinned to that ARN. A blob naming a key the provider
/// does not trust (see <see cref="AwsKmsOptions.AdditionalKeyIds"/> and <see cref="AwsKmsOptions.Discovery"/>) is
/// refused before <c>Decrypt</c> is sent. A multi-Region key (<c>mrk-…</c>) named in another Region is decrypted
/// through the same key in the client's Region.
/// </para>
/// <para>
/// Errors: a disabled or pending-deletion key and a denied request raise <see cref="MasterKeyAccessRevokedException"/>;
/// a missing key, a key of the wrong kind, rejected credentials, throttling or server errors that outlast the SDK's
/// retries, timeouts and use after <see cref="Dispose"/> raise <see cref="MasterKeyException"/>; a blob KMS rejects as
/// not its own (wrong key, tampered, other context) raises <see cref="EnvelopeDecryptionException"/>. Cancelling the
/// caller's token raises <see cref="OperationCanceledException"/>.
/// </para>
/// <para>
/// Two providers with the same client instance (or equal client settings) and the same keys, discovery filter and
/// timeouts are equal, so separately built <c>DbContextOptions</c> share one key cache.
/// </para>
/// </remarks>
public sealed class AwsKmsMasterKeyProvider : IMasterKeyProvider, IDisposable, IEquatable<AwsKmsMasterKeyProvider>
{
    /// <summary>The provider name written into every blob: <c>aws-kms</c>.</summary>
    public const string ProviderName = "aws-kms";

    private const int DataKeySize = 32;

    private readonly string[] _keyIds;
    private readonly HashSet<string> _keyIdSet;
    private readonly AwsKmsDiscoveryFilter? _discovery;
    private readonly KeyTrust _trust;
    private readonly IAmazonKeyManagementService? _givenClient;
    private readonly ClientSettings _settings;
    private readonly Func<ClientSettings, IAmazonKeyManagementService> _createClient;
    private readonly TimeSpan _operationTimeout;
    private readonly Lock _clientGate = new();
    private IAmazonKeyManagementService? _ownClient;
    private volatile bool _disposed;

    /// <summary>Creates the provider from a snapshot of <paramref name="options"/>; later changes to them have no effect.</summary>
    public AwsKmsMasterKeyProvider(AwsKmsOptions options)
        : this(options, settings => settings.CreateClient())
    {
    }

    // The factory is a seam for tests that count the clients built.
    internal AwsKmsMasterKeyProvider(AwsKmsOptions options, Func<ClientSettings, IAmazonKeyManagementService> createClient)
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

        // Only a client the provider builds gets the attempt timeout; a given client keeps its own.
        if (options.Client is null
            && options.OperationTimeout != Timeout.InfiniteTimeSpan
            && (options.AttemptTimeout == Timeout.InfiniteTimeSpan || options.AttemptTimeout > options.OperationTimeout))
        {
            throw new ArgumentException(
                $"{nameof(AwsKmsOptions)}.{nameof(AwsKmsOptions.AttemptTimeout)} ({options.AttemptTimeout}) exceeds {nameof(AwsKmsOptions.OperationTimeout)} ({options.OperationTimeout}): no attempt could be retried.",
                nameof(options));
        }

        _keyIds = [options.KeyId, .. options.AdditionalKeyIds.Where(id => id != options.KeyId).Distinct(StringComparer.Ordinal)];
        _keyIdSet = new HashSet<string>(_keyIds, StringComparer.Ordinal);
        _discovery = options.Discovery;
        _trust = new KeyTrust(_keyIds, _discovery);
        _givenClient = options.Client;
        _settings = new ClientSettings(options.Region, options.ServiceUrl, options.AuthenticationRegion, options.Credentials, options.MaxErrorRetry, options.AttemptTimeout);
        _operationTimeout = options.OperationTimeout;
        _createClient = createClient;
    }

    /// <inheritdoc />
    public string Name => ProviderName;

    /// <inheritdoc />
    public string PrimaryKeyId => _keyIds[0];

    /// <summary>Every key configured by name, the primary first (aliases, key ids and ARNs as given).</summary>
    public IReadOnlyList<string> KeyIds => _keyIds;

    /// <inheritdoc />
    /// <remarks>
    /// True for a configured name, and for a key ARN that is configured, admitted by the discovery filter, or may be
    /// what a configured alias points at; that last case is confirmed through <c>DescribeKey</c> before any key
    /// operation, which refuses an ARN nothing vouches for without sending it to KMS.
    /// </remarks>
    public bool IsKeyConfigured(string keyId) => keyId is not null && _trust.MayTrust(keyId);

    /// <inheritdoc />
    /// <remarks>The returned key names the key ARN KMS generated under, whichever name <paramref name="keyId"/> used.</remarks>
    public async Task<GeneratedDataKey> GenerateDataKeyAsync(string keyId, KeyContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        using var deadline = StartDeadline(cancellationToken);
        await RequireWritableAsync(keyId, context, deadline.Token, cancellationToken).ConfigureAwait(false);

        var request = new GenerateDataKeyRequest
        {
            KeyId = keyId,
            KeySpec = DataKeySpec.AES_256,
            EncryptionContext = ToEncryptionContext(context),
        };
        var response = await CallAsync("GenerateDataKey", keyId, context, (client, ct) => client.GenerateDataKeyAsync(request, ct), deadline.Token, cancellationToken).ConfigureAwait(false);

        using var plaintextStream = response.Plaintext;
        using var ciphertextStream = response.CiphertextBlob;
        var plaintext = TakeBytes(plaintextStream);
        var arn = KmsKeyArn.TryParse(response.KeyId);
        if (plaintext.Length != DataKeySize || ciphertextStream is null || ciphertextStream.Length == 0 || arn is null)
        {
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(plaintext);
            throw new MasterKeyException(
                $"AWS KMS GenerateDataKey with key '{keyId}' returned a malformed reply (expected a 32-byte key, its ciphertext and the key ARN){ForEntity(context)}.",
                ProviderName, keyId, context.Entity);
        }

        _trust.Learn(keyId, arn);
        return new GeneratedDataKey(arn.ToString(), plaintext, ciphertextStream.ToArray());
    }

    /// <inheritdoc />
    public async Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, KeyContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        RequireMayTrust(keyId, context);
        if (wrappedKey.IsEmpty)
        {
            throw new EnvelopeDecryptionException("The wrapped key is empty.", context.Entity, null, keyId);
        }

        using var deadline = StartDeadline(cancellationToken);
        var pinned = await PinAsync(keyId, context, deadline.Token, cancellationToken).ConfigureAwait(false);
        var encryptionContext = ToEncryptionContext(context);
        DecryptResponse response;
        try
        {
            // Pinning the key makes KMS refuse a blob encrypted under any other key, even one the caller may use,
            // instead of silently decrypting with whatever key the blob names.
            response = await DecryptAsync(keyId, wrappedKey, pinned, encryptionContext, context, deadline.Token, cancellationToken).ConfigureAwait(false);
        }
        catch (EnvelopeDecryptionException ex) when (ex.InnerException is IncorrectKeyException && KmsKeyArn.TryParse(keyId) is null)
        {
            // A row from before key ARNs were stored names an alias that has since moved: the key that wrote it is
            // unknown. KMS finds it in the blob when no key is pinned; the plaintext is used only if that key is
            // trusted, so an alias cannot smuggle in a key the configuration does not admit.
            response = await DecryptAsync(keyId, wrappedKey, null, encryptionContext, context, deadline.Token, cancellationToken).ConfigureAwait(false);
            if (KmsKeyArn.TryParse(response.KeyId) is not { } actual || !await TrustsAsync(actual, context, deadline.Token, cancellationToken).ConfigureAwait(false))
            {
                using (response.Plaintext)
                {
                    System.Security.Cryptography.CryptographicOperations.ZeroMemory(TakeBytes(response.Plaintext));
                }

                throw NotTrusted(keyId, $"the data was written under key '{response.KeyId}' (the alias has moved since), which is not configured", context);
            }
        }

        using var plaintextStream = response.Plaintext;
        var plaintext = TakeBytes(plaintextStream);
        if (plaintext.Length != DataKeySize)
        {
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(plaintext);
            throw new EnvelopeDecryptionException("AWS KMS decrypted the blob, but it does not hold a 256-bit data key.", context.Entity, null, keyId);
        }

        return plaintext;
    }

    /// <inheritdoc />
    /// <remarks>
    /// A row names the key ARN KMS generated its data key under, while a master-key selector usually returns an alias,
    /// a key id or an alias ARN: string comparison would refuse every legitimate row. Both names are resolved to key
    /// ARNs (a configured alias or key id through the provider's cached <c>DescribeKey</c> resolution, any other name
    /// through <c>DescribeKey</c>, never remembered) and compared as keys, a multi-Region key matching its replicas.
    /// Asking never makes a key trusted: the answer only says whether two names denote one key.
    /// </remarks>
    public async Task<bool> IsSameKeyAsync(string storedKeyId, string selectedKeyId, KeyContext context, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(storedKeyId);
        ArgumentException.ThrowIfNullOrEmpty(selectedKeyId);
        ArgumentNullException.ThrowIfNull(context);
        if (string.Equals(storedKeyId, selectedKeyId, StringComparison.Ordinal))
        {
            return true;
        }

        using var deadline = StartDeadline(cancellationToken);
        var stored = await KeyArnOfAsync(storedKeyId, context, deadline.Token, cancellationToken).ConfigureAwait(false);
        var selected = await KeyArnOfAsync(selectedKeyId, context, deadline.Token, cancellationToken).ConfigureAwait(false);
        return stored.SameKeyAs(selected);
    }

    /// <summary>Moves a wrapped key to another master key inside KMS (<c>ReEncrypt</c>), for rotating stored data.</summary>
    /// <param name="sourceKeyId">The key the blob names; KMS is pinned to it (resolved as for <see cref="DecryptDataKeyAsync"/>).</param>
    /// <param name="wrappedKey">The blob from <see cref="GenerateDataKeyAsync"/>.</param>
    /// <param name="destinationKeyId">The configured key to wrap under instead.</param>
    /// <param name="context">The context the blob is bound to; the new blob is bound to the same one.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The blob wrapped under the destination, with the key ARN to record for it.</returns>
    /// <remarks>
    /// The plaintext key never leaves KMS. Needs <c>kms:ReEncryptFrom</c> on the source key and <c>kms:ReEncryptTo</c>
    /// on the destination key. Errors are mapped as for <see cref="DecryptDataKeyAsync"/> and name the key at fault:
    /// the destination when it is missing, unusable or not permitted, the source otherwise.
    /// </remarks>
    public async Task<ReEncryptedDataKey> ReEncryptDataKeyAsync(string sourceKeyId, ReadOnlyMemory<byte> wrappedKey, string destinationKeyId, KeyContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        RequireMayTrust(sourceKeyId, context);
        if (wrappedKey.IsEmpty)
        {
            throw new EnvelopeDecryptionException("The wrapped key is empty.", context.Entity, null, sourceKeyId);
        }

        using var deadline = StartDeadline(cancellationToken);
        await RequireWritableAsync(destinationKeyId, context, deadline.Token, cancellationToken).ConfigureAwait(false);
        var pinned = await PinAsync(sourceKeyId, context, deadline.Token, cancellationToken).ConfigureAwait(false);
        var encryptionContext = ToEncryptionContext(context);
        var request = new ReEncryptRequest
        {
            CiphertextBlob = new MemoryStream(wrappedKey.ToArray(), writable: false),
            SourceKeyId = pinned,
            SourceEncryptionContext = encryptionContext,
            DestinationKeyId = destinationKeyId,
            DestinationEncryptionContext = encryptionContext,
        };

        ReEncryptResponse response;
        try
        {
            response = await CallAsync("ReEncrypt", sourceKeyId, context, (client, ct) => client.ReEncryptAsync(request, ct), deadline.Token, cancellationToken, raw: true).ConfigureAwait(false);
        }
        catch (AmazonServiceException ex)
        {
            throw await IsDestinationAtFaultAsync(ex, destinationKeyId, deadline.Token).ConfigureAwait(false)
                ? Map(ex, "ReEncrypt", destinationKeyId, context, "destination")
                : Map(ex, "ReEncrypt", sourceKeyId, context, "source");
        }

        using var ciphertext = response.CiphertextBlob;
        return ciphertext is { Length: > 0 } && KmsKeyArn.TryParse(response.KeyId) is { } arn
            ? new ReEncryptedDataKey(arn.ToString(), ciphertext.ToArray())
            : throw new MasterKeyException($"AWS KMS ReEncrypt to key '{destinationKeyId}' returned no ciphertext or key ARN{ForEntity(context)}.", ProviderName, destinationKeyId, context.Entity);
    }

    /// <summary>Disposes the KMS client if this provider built it; a client that was passed in is left alone.</summary>
    /// <remarks>Later calls fail with a <see cref="MasterKeyException"/> saying the provider was disposed.</remarks>
    public void Dispose()
    {
        IAmazonKeyManagementService? own;
        lock (_clientGate)
        {
            _disposed = true;
            own = _ownClient;
            _ownClient = null;
        }

        own?.Dispose();
    }

    /// <inheritdoc />
    public bool Equals(AwsKmsMasterKeyProvider? other) =>
        other is not null
        && ReferenceEquals(_givenClient, other._givenClient)
        && (_givenClient is not null || _settings.Equals(other._settings))
        && _operationTimeout == other._operationTimeout
        && Equals(_discovery, other._discovery)
        && _keyIds[0] == other._keyIds[0]
        && _keyIdSet.SetEquals(other._keyIdSet);

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as AwsKmsMasterKeyProvider);

    /// <inheritdoc />
    public override int GetHashCode() =>
        HashCode.Combine(_givenClient is null ? _settings.GetHashCode() : System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(_givenClient), PrimaryKeyId, _keyIds.Length, _operationTimeout, _discovery);

    /// <inheritdoc />
    public override string ToString() => $"AwsKmsMasterKeyProvider(primary={PrimaryKeyId}, keys={_keyIds.Length}{(_discovery is null ? "" : $", discovery={_discovery}")})";

    private static Dictionary<string, string> ToEncryptionContext(KeyContext context) =>
        context.Pairs.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);

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

    private static MasterKeyConfigurationException NotTrusted(string keyId, string why, KeyContext context) => new(
        $"The data names AWS KMS key '{keyId}'{ForEntity(context)}, but {why}; it was not decrypted. " +
        $"Add the key ARN to {nameof(AwsKmsOptions)}.{nameof(AwsKmsOptions.AdditionalKeyIds)} (or set {nameof(AwsKmsOptions)}.{nameof(AwsKmsOptions.Discovery)}) if it should be trusted.",
        ProviderName, keyId, context.Entity);

    private CancellationTokenSource StartDeadline(CancellationToken cancellationToken)
    {
        // One deadline for the whole operation (alias lookups, every attempt and backoff): the per-attempt timeout
        // alone would let a throttled call run for minutes. Linked to the caller's token so either one stops it.
        var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(_operationTimeout);
        return deadline;
    }

    private void RequireMayTrust(string keyId, KeyContext context)
    {
        ArgumentException.ThrowIfNullOrEmpty(keyId);
        if (!_trust.MayTrust(keyId))
        {
            throw NotTrusted(keyId, "that key is not configured for this provider", context);
        }
    }

    // Writes go to a configured name (an alias, a key id, an ARN) or to a key ARN the configuration trusts, such as
    // the ARN the rotation job is told to target.
    private async Task RequireWritableAsync(string keyId, KeyContext context, CancellationToken deadline, CancellationToken cancellationToken)
    {
        RequireMayTrust(keyId, context);
        if (!_trust.IsConfiguredVerbatim(keyId)
            && !await TrustsAsync(KmsKeyArn.TryParse(keyId)!, context, deadline, cancellationToken).ConfigureAwait(false))
        {
            throw NotTrusted(keyId, "that key is not configured for this provider", context);
        }
    }

    private Task<bool> TrustsAsync(KmsKeyArn arn, KeyContext context, CancellationToken deadline, CancellationToken cancellationToken) =>
        _trust.TrustsAsync(arn, name => DescribeAsync(name, context, deadline, cancellationToken));

    // The key id to send to KMS for a blob naming keyId: its ARN (in this client's Region for a multi-Region key) once
    // trusted, or for an alias-era row the key ARN the alias resolves to.
    private async Task<string> PinAsync(string keyId, KeyContext context, CancellationToken deadline, CancellationToken cancellationToken)
    {
        if (KmsKeyArn.TryParse(keyId) is { } arn)
        {
            if (!await TrustsAsync(arn, context, deadline, cancellationToken).ConfigureAwait(false))
            {
                var resolutions = _trust.DescribeResolutions();
                throw NotTrusted(keyId, resolutions.Length == 0 ? "that key is not configured" : $"that key is not configured (the configured aliases resolve to: {resolutions})", context);
            }

            return arn.In(ClientRegion(keyId, context)).ToString();
        }

        var resolved = await _trust.ResolveAsync(keyId, name => DescribeAsync(name, context, deadline, cancellationToken)).ConfigureAwait(false);
        return resolved.ToString();
    }

    // The key ARN a name denotes. Only configured names are cached: a resolution in that cache vouches for the key it
    // points at (KeyTrust), which an unconfigured name the application happens to ask about must not do.
    private async Task<KmsKeyArn> KeyArnOfAsync(string name, KeyContext context, CancellationToken deadline, CancellationToken cancellationToken)
    {
        if (KmsKeyArn.TryParse(name) is { } arn)
        {
            return arn;
        }

        return _trust.IsConfiguredVerbatim(name)
            ? await _trust.ResolveAsync(name, n => DescribeAsync(n, context, deadline, cancellationToken)).ConfigureAwait(false)
            : await DescribeAsync(name, context, deadline, cancellationToken).ConfigureAwait(false);
    }

    private async Task<KmsKeyArn> DescribeAsync(string name, KeyContext context, CancellationToken deadline, CancellationToken cancellationToken)
    {
        var request = new DescribeKeyRequest { KeyId = name };
        var response = await CallAsync("DescribeKey", name, context, (client, ct) => client.DescribeKeyAsync(request, ct), deadline, cancellationToken).ConfigureAwait(false);
        return KmsKeyArn.TryParse(response.KeyMetadata?.Arn)
            ?? throw new MasterKeyException($"AWS KMS DescribeKey for '{name}' returned no key ARN{ForEntity(context)}.", ProviderName, name, context.Entity);
    }

    private Task<DecryptResponse> DecryptAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, string? pinned, Dictionary<string, string> encryptionContext, KeyContext context, CancellationToken deadline, CancellationToken cancellationToken)
    {
        var request = new DecryptRequest
        {
            CiphertextBlob = new MemoryStream(wrappedKey.ToArray(), writable: false),
            KeyId = pinned,
            EncryptionContext = encryptionContext,
        };
        return CallAsync("Decrypt", keyId, context, (client, ct) => client.DecryptAsync(request, ct), deadline, cancellationToken);
    }

    // Which key a failed ReEncrypt is about. A refusal of kms:ReEncryptTo is the destination's; otherwise the
    // destination is asked about (DescribeKey) and blamed only if it is missing, unusable or not a symmetric key, so
    // an operator is sent to the key that needs fixing.
    private async Task<bool> IsDestinationAtFaultAsync(AmazonServiceException ex, string destinationKeyId, CancellationToken deadline)
    {
        if (IsDeniedReEncryptTo(ex))
        {
            return true;
        }

        if (ex is not (NotFoundException or DisabledException or KMSInvalidStateException or InvalidKeyUsageException))
        {
            return false;
        }

        try
        {
            var described = await GetClient().DescribeKeyAsync(new DescribeKeyRequest { KeyId = destinationKeyId }, deadline).ConfigureAwait(false);
            var metadata = described.KeyMetadata;
            return metadata.KeyState != KeyState.Enabled || metadata.KeyUsage != KeyUsageType.ENCRYPT_DECRYPT || metadata.KeySpec != KeySpec.SYMMETRIC_DEFAULT;
        }
        catch (NotFoundException)
        {
            return true;
        }
        catch (Exception e) when (e is AmazonClientException or OperationCanceledException or HttpRequestException or IOException or ObjectDisposedException)
        {
            // The destination cannot be examined (denied, unreachable, out of time): the source's error stands.
            return false;
        }
    }

    private string? ClientRegion(string keyId, KeyContext context)
    {
        var config = AcquireClient(keyId, context).Config;
        return config.RegionEndpoint?.SystemName ?? config.AuthenticationRegion;
    }

    // The client, or the reason there is none as a MasterKeyException naming the key and entity.
    private IAmazonKeyManagementService AcquireClient(string keyId, KeyContext context)
    {
        try
        {
            return GetClient();
        }
        catch (AmazonClientException ex)
        {
            throw new MasterKeyConfigurationException(
                $"Could not create the AWS KMS client for key '{keyId}'{ForEntity(context)}: {ex.Message}. " +
                $"Set {nameof(AwsKmsOptions)}.{nameof(AwsKmsOptions.Region)} (or AWS_REGION, or a profile), or pass a configured client.",
                ProviderName, keyId, context.Entity, ex);
        }
        catch (ObjectDisposedException ex)
        {
            throw Disposed(keyId, context, ex);
        }
    }

    private static MasterKeyException Disposed(string keyId, KeyContext context, ObjectDisposedException ex) => new(
        $"AWS KMS was asked about key '{keyId}'{ForEntity(context)} after the provider or its KMS client was disposed; " +
        "dispose the provider only when no DbContext uses it any more.",
        ProviderName, keyId, context.Entity, ex);

    // The client is built on first use, not in the constructor, so that configuring a DbContext never fails for want
    // of a Region or credentials; the first KMS call reports that instead. Building under the lock means concurrent
    // first calls build exactly one client (the one Dispose releases), and a failed build is retried next call.
    private IAmazonKeyManagementService GetClient()
    {
        if (_givenClient is not null)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _givenClient;
        }

        lock (_clientGate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _ownClient ??= _createClient(_settings);
        }
    }

    private async Task<T> CallAsync<T>(
        string operation,
        string keyId,
        KeyContext context,
        Func<IAmazonKeyManagementService, CancellationToken, Task<T>> call,
        CancellationToken deadline,
        CancellationToken cancellationToken,
        bool raw = false)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var client = AcquireClient(keyId, context);
        try
        {
            return await call(client, deadline).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (OperationCanceledException ex) when (deadline.IsCancellationRequested)
        {
            throw new MasterKeyException(
                $"AWS KMS {operation} with key '{keyId}'{ForEntity(context)} timed out after {Describe(_operationTimeout)}, retries included.",
                ProviderName, keyId, context.Entity, ex);
        }
        catch (ObjectDisposedException ex)
        {
            throw Disposed(keyId, context, ex);
        }
        catch (AmazonServiceException ex) when (!raw)
        {
            throw Map(ex, operation, keyId, context);
        }
        catch (Exception ex) when (ex is AmazonClientException or HttpRequestException or IOException or OperationCanceledException)
        {
            // Raised before any KMS answer: no Region or credentials found, DNS, connection refused, TLS, or every
            // attempt timing out. The SDK's and the socket's messages say which, and hold no secrets (credential
            // errors name the source, not the keys).
            throw new MasterKeyException(
                $"AWS KMS {operation} with key '{keyId}'{ForEntity(context)} failed before KMS answered: {ex.Message}",
                ProviderName, keyId, context.Entity, ex);
        }
    }

    private static string Describe(TimeSpan timeout) =>
        timeout == Timeout.InfiniteTimeSpan ? "an infinite timeout" : $"{timeout.TotalSeconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture)} s";
}
