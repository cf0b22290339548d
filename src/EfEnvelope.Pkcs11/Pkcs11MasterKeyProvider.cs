using System.Security.Cryptography;
using EfEnvelope.KeyManagement;
using EfEnvelope.Pkcs11.Internal;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace EfEnvelope.Pkcs11;

/// <summary>Master keys held in a PKCS#11 token (an HSM): the token wraps and unwraps data keys under them.</summary>
/// <remarks>
/// <para>
/// The key never leaves the token, and a key that could (not a token object, not sensitive, extractable, not AES-256)
/// is refused. A data key is 32 bytes from <see cref="RandomNumberGenerator"/>, bound to the key label and the
/// <see cref="KeyContext"/>. When the master key has <c>CKA_WRAP</c> and <c>CKA_UNWRAP</c> and the token offers
/// <c>CKM_AES_KEY_WRAP</c>, the token wraps it with <c>C_WrapKey</c>; otherwise it encrypts it with <c>C_Encrypt</c>
/// and <c>CKM_AES_GCM</c>, the only form earlier versions wrote. Both forms are read (docs/pkcs11.md, "What is stored").
/// </para>
/// <para>
/// The module is loaded once per process and the application logs in once. Operations run on a pool of at most
/// <see cref="Pkcs11Options.MaxSessions"/> sessions, one operation per session at a time; callers beyond that wait
/// asynchronously. When the token drops the sessions or the login (closed sessions, logout, a token that was removed
/// and came back), the pool is discarded, the provider logs in again and retries the operation once.
/// </para>
/// <para>
/// The provider never creates keys: <see cref="Pkcs11KeySetup"/> does that for set-up scripts. Create providers once
/// per configuration (<see cref="GetShared"/> does), since each holds its own sessions.
/// </para>
/// </remarks>
public sealed class Pkcs11MasterKeyProvider : IMasterKeyProvider, IDisposable
{
    /// <summary>The provider name written into every blob it wraps.</summary>
    public const string ProviderName = "pkcs11";

    private static readonly Lock SharedGate = new();
    private static readonly Dictionary<Pkcs11Configuration, Pkcs11MasterKeyProvider> Shared = [];

    private readonly Pkcs11Configuration _configuration;
    private readonly HashSet<string> _keyIds;
    private readonly SemaphoreSlim _permits;
    private readonly Lock _connectGate = new();
    private Pkcs11Module? _module;
    private Pkcs11Connection? _connection;
    private MasterKeyException? _loginRefused;
    private bool _shared;
    private volatile bool _disposed;

    /// <summary>Creates a provider for the configured token and keys; nothing is loaded until the first operation.</summary>
    /// <exception cref="InvalidOperationException">A required option is missing.</exception>
    /// <exception cref="ArgumentException">An option is malformed.</exception>
    public Pkcs11MasterKeyProvider(Pkcs11Options options)
        : this(Validate(options))
    {
    }

    private Pkcs11MasterKeyProvider(Pkcs11Configuration configuration)
    {
        _configuration = configuration;
        _keyIds = new HashSet<string>(configuration.AdditionalKeyLabels.Prepend(configuration.KeyLabel!), StringComparer.Ordinal);
        _permits = new SemaphoreSlim(configuration.MaxSessions, configuration.MaxSessions);
    }

    /// <inheritdoc />
    public string Name => ProviderName;

    /// <inheritdoc />
    public string PrimaryKeyId => _configuration.KeyLabel!;

    /// <summary>The token the keys live in.</summary>
    public string TokenLabel => _configuration.TokenLabel;

    internal ISessionObserver? SessionObserver { get; set; }

    /// <summary>How many times the provider logged in (once, plus once per recovery).</summary>
    internal int ConnectionsOpened { get; private set; }

    /// <summary>Returns the process-wide provider for this configuration, creating it on first use.</summary>
    /// <remarks>
    /// Equal options (module, token, key labels, PIN, session count) give the same instance, so separately built
    /// <c>DbContextOptions</c> share one provider, one pool of sessions and one key cache. Disposing a shared provider
    /// removes it, and the next call creates a new one.
    /// </remarks>
    public static Pkcs11MasterKeyProvider GetShared(Pkcs11Options options)
    {
        var configuration = Validate(options);
        lock (SharedGate)
        {
            if (!Shared.TryGetValue(configuration, out var provider))
            {
                provider = new Pkcs11MasterKeyProvider(configuration) { _shared = true };
                Shared.Add(configuration, provider);
            }

            return provider;
        }
    }

    /// <inheritdoc />
    public bool IsKeyConfigured(string keyId) => keyId is not null && _keyIds.Contains(keyId);

    /// <inheritdoc />
    public Task<GeneratedDataKey> GenerateDataKeyAsync(string keyId, KeyContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        RequireConfigured(keyId, context.Entity);
        return RunAsync(keyId, context.Entity, (session, key, wrapByToken) => Wrap(session, key, wrapByToken, keyId, context), cancellationToken);
    }

    /// <inheritdoc />
    public Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, KeyContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        RequireConfigured(keyId, context.Entity);
        if (!DataKeyWrapping.IsKnownLength(wrappedKey.Length))
        {
            // Checked here, not left to the token: SoftHSM reports a short input as a general error, not a length error.
            throw new EnvelopeDecryptionException(
                $"The wrapped key has the wrong length ({wrappedKey.Length} bytes, expected {DataKeyWrapping.ExpectedLengths}).", context.Entity, null, keyId);
        }

        var wrapped = wrappedKey.ToArray();
        return RunAsync(keyId, context.Entity, (session, key, _) => Unwrap(session, key, keyId, wrapped, context), cancellationToken);
    }

    /// <summary>Closes this provider's sessions; the module stays loaded for the rest of the process.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (_shared)
        {
            lock (SharedGate)
            {
                if (Shared.TryGetValue(_configuration, out var registered) && ReferenceEquals(registered, this))
                {
                    Shared.Remove(_configuration);
                }
            }
        }

        // The permit semaphore is left undisposed: operations still in flight release their permits after this,
        // and it holds no wait handle (AvailableWaitHandle is never used), so there is nothing to free.
        lock (_connectGate)
        {
            _connection?.Close();
            _connection = null;
        }
    }

    /// <inheritdoc />
    public override string ToString() =>
        $"Pkcs11MasterKeyProvider(token={_configuration.TokenLabel}, primary={PrimaryKeyId}, keys={_keyIds.Count}, module={_configuration.LibraryPath})";

    private static Pkcs11Configuration Validate(Pkcs11Options options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.Build();
    }

    private void RequireConfigured(string keyId, string? entity)
    {
        if (!IsKeyConfigured(keyId))
        {
            // When unwrapping, the key id comes from the stored blob: it is whatever a database writer put there.
            throw new MasterKeyConfigurationException(
                $"Master key {Untrusted.Quote(keyId)} is not configured for token '{_configuration.TokenLabel}': add it to {nameof(Pkcs11Options)}.{nameof(Pkcs11Options.AdditionalKeyLabels)} to use it.",
                ProviderName, keyId, entity);
        }
    }

    private async Task<T> RunAsync<T>(string keyId, string? entity, Func<ISession, IObjectHandle, bool, T> operation, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        ObjectDisposedException.ThrowIf(_disposed, this);

        // One permit per session: a caller holding a permit is guaranteed a session no one else is using.
        await _permits.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            for (var attempt = 0; ; attempt++)
            {
                var connection = Connect();
                ISession session;
                try
                {
                    session = connection.Rent();
                }
                catch (Pkcs11Exception ex) when (IsConnectionLost(ex.RV))
                {
                    Drop(connection);
                    if (attempt == 0)
                    {
                        continue;
                    }

                    throw Pkcs11Token.Unavailable(ex, _configuration, "open a session", keyId, entity);
                }
                catch (Pkcs11Exception ex)
                {
                    throw Pkcs11Token.Unavailable(ex, _configuration, "open a session", keyId, entity);
                }

                Pkcs11MasterKey? key = null;
                try
                {
                    key = connection.FindKey(session, keyId, entity);
                    return Observe(session, key.Handle, key.WrapAllowed && connection.SupportsKeyWrap, operation);
                }
                catch (Pkcs11Exception ex) when (IsConnectionLost(ex.RV) || (key is not null && !connection.StillHolds(session, key)))
                {
                    // The token dropped our sessions or our login (or renumbered the key after a new login):
                    // start over with a fresh connection, once.
                    Drop(connection);
                    if (attempt > 0)
                    {
                        throw Translate(ex, keyId, entity);
                    }
                }
                catch (Pkcs11Exception ex)
                {
                    throw Translate(ex, keyId, entity);
                }
                finally
                {
                    // A failed C_Encrypt/C_Decrypt ends its operation and the wrap path destroys its session objects,
                    // so the session is clean for the next caller; a session of a dropped connection is closed instead.
                    connection.Return(session);
                }
            }
        }
        finally
        {
            _permits.Release();
        }
    }

    private T Observe<T>(ISession session, IObjectHandle key, bool wrapByToken, Func<ISession, IObjectHandle, bool, T> operation)
    {
        var observer = SessionObserver;
        observer?.OperationStarting(session.SessionId);
        try
        {
            return operation(session, key, wrapByToken);
        }
        finally
        {
            observer?.OperationEnded(session.SessionId);
        }
    }

    private Pkcs11Connection Connect()
    {
        // Connecting is rare (first use, after the token dropped us), so callers simply queue on a lock for it.
        lock (_connectGate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_connection is not null)
            {
                return _connection;
            }

            if (_loginRefused is not null)
            {
                // Trying a rejected PIN again would count towards the token's lockout: repeat the refusal instead.
                throw _loginRefused is MasterKeyAccessRevokedException
                    ? new MasterKeyAccessRevokedException(_loginRefused.Message, ProviderName, null, null, _loginRefused.InnerException)
                    : new MasterKeyConfigurationException(_loginRefused.Message, ProviderName, null, null, _loginRefused.InnerException);
            }

            _module ??= Pkcs11Module.Load(_configuration.LibraryPath);
            try
            {
                _connection = Pkcs11Connection.Open(_module, _configuration);
                ConnectionsOpened++;
            }
            catch (MasterKeyException ex) when (ex.InnerException is Pkcs11Exception { Method: "C_Login" } login && IsPinRefusal(login.RV))
            {
                _loginRefused = ex;
                throw;
            }

            return _connection;
        }
    }

    private void Drop(Pkcs11Connection connection)
    {
        lock (_connectGate)
        {
            // Several callers may see the same loss; only the first drops the connection, the others reuse the new one.
            if (ReferenceEquals(_connection, connection))
            {
                _connection = null;
            }
        }

        connection.Close();
    }

    private GeneratedDataKey Wrap(ISession session, IObjectHandle key, bool wrapByToken, string keyId, KeyContext context)
    {
        var plaintext = new byte[DataKeyWrapping.KeySize];
        RandomNumberGenerator.Fill(plaintext);
        try
        {
            var factories = _module!.Factories;
            var wrapped = wrapByToken
                ? DataKeyWrapping.WrapWithKeyWrap(factories, session, key, plaintext, keyId, context)
                : DataKeyWrapping.EncryptWithGcm(factories, session, key, plaintext, keyId, context);
            return new GeneratedDataKey(keyId, plaintext, wrapped);
        }
        catch
        {
            CryptographicOperations.ZeroMemory(plaintext);
            throw;
        }
    }

    // The stored form decides, not the key's current attributes: data wrapped before the key was allowed C_WrapKey
    // stays readable (through CKA_DECRYPT) after it was.
    private byte[] Unwrap(ISession session, IObjectHandle key, string keyId, byte[] wrapped, KeyContext context) =>
        wrapped.Length == DataKeyWrapping.GcmSize
            ? DataKeyWrapping.DecryptGcm(_module!.Factories, session, key, wrapped, keyId, context)
            : DataKeyWrapping.UnwrapKeyWrap(_module!.Factories, session, key, wrapped, keyId, context);

    private Exception Translate(Pkcs11Exception ex, string keyId, string? entity)
    {
        var action = ex.Method is "C_Decrypt" or "C_DecryptInit" or "C_UnwrapKey" ? "unwrap" : "wrap";
        var byKeyWrap = ex.Method is "C_WrapKey" or "C_UnwrapKey";
        var mechanism = byKeyWrap ? "CKM_AES_KEY_WRAP" : "CKM_AES_GCM with a 96-bit IV and a 128-bit tag";
        return ex.RV switch
        {
            // SoftHSM reports a failed GCM tag check as CKR_GENERAL_ERROR; the standard codes are CKR_ENCRYPTED_DATA_INVALID
            // for decryption and CKR_WRAPPED_KEY_INVALID for an RFC 3394 integrity failure.
            CKR.CKR_GENERAL_ERROR or CKR.CKR_ENCRYPTED_DATA_INVALID or CKR.CKR_ENCRYPTED_DATA_LEN_RANGE when ex.Method == "C_Decrypt" =>
                Tampered(ex, keyId, entity),
            CKR.CKR_GENERAL_ERROR or CKR.CKR_WRAPPED_KEY_INVALID or CKR.CKR_WRAPPED_KEY_LEN_RANGE when ex.Method == "C_UnwrapKey" =>
                Tampered(ex, keyId, entity),
            CKR.CKR_KEY_FUNCTION_NOT_PERMITTED => new MasterKeyAccessRevokedException(
                $"Token '{_configuration.TokenLabel}' refuses to {action} with master key '{keyId}' (CKR_KEY_FUNCTION_NOT_PERMITTED): the key's "
                + (byKeyWrap ? "CKA_WRAP or CKA_UNWRAP" : "CKA_ENCRYPT or CKA_DECRYPT")
                + " attribute is false, so its use was withdrawn or never granted. Set CKA_WRAP and CKA_UNWRAP to true on the key (and CKA_DECRYPT while data "
                + $"wrapped by C_Encrypt remains), or name another key in {nameof(Pkcs11Options)}.{nameof(Pkcs11Options.KeyLabel)}.",
                ProviderName, keyId, entity, ex),
            CKR.CKR_MECHANISM_INVALID or CKR.CKR_MECHANISM_PARAM_INVALID => new MasterKeyConfigurationException(
                $"Token '{_configuration.TokenLabel}' does not support {mechanism} ({ex.RV}), which this provider needs to {action} with master key '{keyId}'.",
                ProviderName, keyId, entity, ex),
            CKR.CKR_KEY_TYPE_INCONSISTENT or CKR.CKR_KEY_SIZE_RANGE or CKR.CKR_WRAPPING_KEY_TYPE_INCONSISTENT or CKR.CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT => new MasterKeyConfigurationException(
                $"Master key '{keyId}' on token '{_configuration.TokenLabel}' is not usable for {mechanism} ({ex.RV}): give {nameof(Pkcs11Options)}.{nameof(Pkcs11Options.KeyLabel)} an AES-256 key.",
                ProviderName, keyId, entity, ex),
            _ => Pkcs11Token.Unavailable(ex, _configuration, $"{action} with master key '{keyId}'", keyId, entity),
        };
    }

    private static EnvelopeDecryptionException Tampered(Pkcs11Exception ex, string keyId, string? entity) =>
        new("The wrapped key failed authentication: tampered, or wrapped under another key or context.", entity, null, keyId, ex);

    // Codes meaning our sessions, our login or our key handles are gone, not that the request was wrong.
    // SoftHSM answers a stale key handle after a logout with CKR_OBJECT_HANDLE_INVALID rather than CKR_USER_NOT_LOGGED_IN,
    // and C_WrapKey/C_UnwrapKey name the stale master key as the (un)wrapping key.
    private static bool IsConnectionLost(CKR rv) => rv is CKR.CKR_SESSION_HANDLE_INVALID or CKR.CKR_SESSION_CLOSED
        or CKR.CKR_USER_NOT_LOGGED_IN or CKR.CKR_TOKEN_NOT_PRESENT or CKR.CKR_DEVICE_REMOVED
        or CKR.CKR_OBJECT_HANDLE_INVALID or CKR.CKR_KEY_HANDLE_INVALID
        or CKR.CKR_WRAPPING_KEY_HANDLE_INVALID or CKR.CKR_UNWRAPPING_KEY_HANDLE_INVALID;

    private static bool IsPinRefusal(CKR rv) => rv is CKR.CKR_PIN_INCORRECT or CKR.CKR_PIN_INVALID or CKR.CKR_PIN_LEN_RANGE
        or CKR.CKR_PIN_LOCKED or CKR.CKR_PIN_EXPIRED;
}
