using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;

namespace EfEnvelope.KeyManagement;

/// <summary>Master keys held in process memory: for tests and local development only, never production.</summary>
/// <remarks>
/// <para>
/// Anyone who can read the process memory or the key file of the sample has the keys; there is no revocation
/// beyond <see cref="DisableKey"/>, no audit trail outside this process. It exists so that tests and samples run
/// without a KMS or HSM, with the same semantics as the real providers: wrapped keys are AES-256-GCM under the master
/// key with the key id and the <see cref="KeyContext"/> as associated data, disabled keys refuse with
/// <see cref="MasterKeyAccessRevokedException"/>, destroyed keys are gone.
/// </para>
/// <para>Wrapped key layout: 12-byte nonce, 32-byte ciphertext, 16-byte tag.</para>
/// </remarks>
public sealed class InsecureInMemoryMasterKeyProvider : IMasterKeyProvider
{
    private const int NonceSize = 12;
    private const int TagSize = 16;
    private const int KeySize = 32;

    private readonly ConcurrentDictionary<string, MasterKey> _keys = new(StringComparer.Ordinal);

    // Ids of destroyed keys: still known, so that data under them reports the revoked-access error (shredded), like a
    // KMS key pending deletion, rather than "not configured", which would suggest adding the key back.
    private readonly ConcurrentDictionary<string, byte> _destroyed = new(StringComparer.Ordinal);
    private readonly IRandomSource _random;
    private long _generateCalls;
    private long _decryptCalls;

    /// <summary>Creates a provider with one random primary key named <paramref name="primaryKeyId"/>.</summary>
    public InsecureInMemoryMasterKeyProvider(string primaryKeyId = "local-master-key", IRandomSource? random = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(primaryKeyId);
        _random = random ?? SystemRandomSource.Instance;
        PrimaryKeyId = primaryKeyId;
        AddKey(primaryKeyId);
    }

    /// <summary>Creates a provider whose primary key has the given bytes (a development key file, known-answer tests).</summary>
    public InsecureInMemoryMasterKeyProvider(string primaryKeyId, ReadOnlySpan<byte> primaryKey, IRandomSource? random = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(primaryKeyId);
        _random = random ?? SystemRandomSource.Instance;
        PrimaryKeyId = primaryKeyId;
        AddKey(primaryKeyId, primaryKey);
    }

    /// <inheritdoc />
    public string Name => "in-memory";

    /// <inheritdoc />
    public string PrimaryKeyId { get; private set; }

    /// <summary>How many keys this provider generated (every call, successful or not).</summary>
    public long GenerateDataKeyCalls => Interlocked.Read(ref _generateCalls);

    /// <summary>How many keys this provider was asked to unwrap (every call, successful or not).</summary>
    public long DecryptDataKeyCalls => Interlocked.Read(ref _decryptCalls);

    /// <summary>Adds a master key with random bytes; returns this provider.</summary>
    public InsecureInMemoryMasterKeyProvider AddKey(string keyId)
    {
        Span<byte> key = stackalloc byte[KeySize];
        _random.Fill(key);
        AddKey(keyId, key);
        CryptographicOperations.ZeroMemory(key);
        return this;
    }

    /// <summary>Adds a master key with the given 32 bytes; returns this provider.</summary>
    public InsecureInMemoryMasterKeyProvider AddKey(string keyId, ReadOnlySpan<byte> key)
    {
        ArgumentException.ThrowIfNullOrEmpty(keyId);
        if (key.Length != KeySize)
        {
            throw new ArgumentException("A master key must be 32 bytes.", nameof(key));
        }

        if (!_keys.TryAdd(keyId, new MasterKey(key.ToArray())))
        {
            throw new ArgumentException($"Master key '{keyId}' already exists.", nameof(keyId));
        }

        _destroyed.TryRemove(keyId, out _);

        return this;
    }

    /// <summary>Makes <paramref name="keyId"/> the key for new writes (rotation).</summary>
    public void SetPrimaryKey(string keyId)
    {
        _ = Find(keyId, entity: null);
        PrimaryKeyId = keyId;
    }

    /// <summary>Refuses every use of the key until <see cref="EnableKey"/>, like a disabled KMS key.</summary>
    public void DisableKey(string keyId) => Find(keyId, null).Enabled = false;

    /// <summary>Allows the key again.</summary>
    public void EnableKey(string keyId) => Find(keyId, null).Enabled = true;

    /// <summary>Zeroes and forgets the key: data under it is unreadable for good (crypto-shredding); later uses fail with <see cref="MasterKeyAccessRevokedException"/>.</summary>
    public void DestroyKey(string keyId)
    {
        if (_keys.TryRemove(keyId, out var key))
        {
            _destroyed[keyId] = 0;
            CryptographicOperations.ZeroMemory(key.Bytes);
        }
    }

    /// <inheritdoc />
    public bool IsKeyConfigured(string keyId) => _keys.ContainsKey(keyId) || _destroyed.ContainsKey(keyId);

    /// <inheritdoc />
    public Task<GeneratedDataKey> GenerateDataKeyAsync(string keyId, KeyContext context, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _generateCalls);
        cancellationToken.ThrowIfCancellationRequested();
        var master = FindUsable(keyId, context.Entity);

        var plaintext = new byte[KeySize];
        var wrapped = new byte[NonceSize + KeySize + TagSize];
        _random.Fill(plaintext);
        _random.Fill(wrapped.AsSpan(0, NonceSize));
        using (var aes = new AesGcm(master.Bytes, TagSize))
        {
            aes.Encrypt(
                wrapped.AsSpan(0, NonceSize),
                plaintext,
                wrapped.AsSpan(NonceSize, KeySize),
                wrapped.AsSpan(NonceSize + KeySize, TagSize),
                AssociatedData(keyId, context));
        }

        return Task.FromResult(new GeneratedDataKey(keyId, plaintext, wrapped));
    }

    /// <inheritdoc />
    public Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, KeyContext context, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _decryptCalls);
        cancellationToken.ThrowIfCancellationRequested();
        var master = FindUsable(keyId, context.Entity);
        var wrapped = wrappedKey.Span;
        if (wrapped.Length != NonceSize + KeySize + TagSize)
        {
            throw new EnvelopeDecryptionException("The wrapped key has the wrong length.", context.Entity, null, keyId);
        }

        var plaintext = new byte[KeySize];
        try
        {
            using var aes = new AesGcm(master.Bytes, TagSize);
            aes.Decrypt(
                wrapped[..NonceSize],
                wrapped.Slice(NonceSize, KeySize),
                wrapped.Slice(NonceSize + KeySize, TagSize),
                plaintext,
                AssociatedData(keyId, context));
        }
        catch (AuthenticationTagMismatchException ex)
        {
            throw new EnvelopeDecryptionException(
                "The wrapped key failed authentication: tampered, or wrapped under another key or context.",
                context.Entity, null, keyId, ex);
        }

        return Task.FromResult(plaintext);
    }

    /// <inheritdoc />
    public override string ToString() => $"InsecureInMemoryMasterKeyProvider(primary={PrimaryKeyId}, keys={_keys.Count})";

    // The key id is bound too, so a blob cannot be relabelled as belonging to another key of this provider.
    private static byte[] AssociatedData(string keyId, KeyContext context)
    {
        var id = Encoding.UTF8.GetBytes(keyId);
        var rest = context.ToAssociatedData();
        var data = new byte[4 + id.Length + rest.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(data, (uint)id.Length);
        id.CopyTo(data, 4);
        rest.CopyTo(data, 4 + id.Length);
        return data;
    }

    private MasterKey FindUsable(string keyId, string? entity)
    {
        var key = Find(keyId, entity);
        if (!key.Enabled)
        {
            throw new MasterKeyAccessRevokedException($"Master key '{keyId}' is disabled.", Name, keyId, entity);
        }

        return key;
    }

    private MasterKey Find(string keyId, string? entity) =>
        _keys.TryGetValue(keyId, out var key)
            ? key
            : _destroyed.ContainsKey(keyId)
                ? throw new MasterKeyAccessRevokedException($"Master key '{keyId}' was destroyed: data under it cannot be read any more.", Name, keyId, entity)
                : throw new MasterKeyConfigurationException($"Master key '{keyId}' does not exist in the in-memory provider.", Name, keyId, entity);

    private sealed class MasterKey(byte[] bytes)
    {
        public byte[] Bytes { get; } = bytes;

        public volatile bool Enabled = true;
    }
}
