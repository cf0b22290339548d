using System.Buffers;
using System.Security.Cryptography;
using EfEnvelope.Crypto;
using EfEnvelope.KeyManagement;

namespace EfEnvelope.Search;

/// <summary>Computes blind indexes: HMAC-SHA256 under a key derived per property from the configured index key.</summary>
/// <remarks>
/// The index key is unwrapped through the key cache like any other key, so it expires and is asked for again
/// (revocation applies to searches too). Per-property keys are derived with HKDF-SHA256, info =
/// "efenvelope/blind-index/v1" || entity binding name || property binding name, so two properties never share an
/// index space and no index key equals a data key.
/// </remarks>
internal sealed class BlindIndexer(KeyCache cache, byte[]? wrappedIndexKey)
{
    private static readonly byte[] InfoPrefix = "efenvelope/blind-index/v1"u8.ToArray();

    private CachedKey? _last;

    public bool IsConfigured => wrappedIndexKey is not null;

    /// <summary>Whether the index key is cached now (so computing an index will not call the provider).</summary>
    public bool IsCached()
    {
        if (wrappedIndexKey is null || !cache.TryGet(BlindIndexKey.EntityName, Parse(), _last, out var key))
        {
            return false;
        }

        _last = key;
        key.Release();
        return true;
    }

    /// <summary>Makes sure the index key is cached, asking the provider asynchronously if needed.</summary>
    public async Task EnsureAsync(CancellationToken cancellationToken)
    {
        if (wrappedIndexKey is not null)
        {
            var key = await cache.GetAsync(BlindIndexKey.EntityName, Parse(), hint: null, cancellationToken).ConfigureAwait(false);
            key.Release();
        }
    }

    public BlindIndexProperty<T> For<T>(string entity, string property, BlindIndexOptions options) => new(this, entity, property, options);

    /// <summary>Writes the index of <paramref name="plaintext"/> for one property into <paramref name="destination"/> (32 bytes).</summary>
    public void Compute(ReadOnlySpan<byte> info, ReadOnlySpan<byte> plaintext, Span<byte> destination)
    {
        if (wrappedIndexKey is null)
        {
            throw new InvalidOperationException(
                "Searchable encrypted properties need a blind index key: create one once with BlindIndexKey.CreateAsync(provider) and configure it with UseBlindIndexKey(bytes).");
        }

        var root = cache.Get(BlindIndexKey.EntityName, Parse(), _last);
        _last = root;
        Span<byte> propertyKey = stackalloc byte[32];
        try
        {
            root.DeriveKey(info, propertyKey);
            HMACSHA256.HashData(propertyKey, plaintext, destination);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(propertyKey);
            root.Release();
        }
    }

    public static byte[] Info(string entity, string property) =>
        [.. InfoPrefix, .. EnvelopeFormat.BindingName(entity), .. EnvelopeFormat.BindingName(property)];

    private WrappedKeyBlob Parse() =>
        WrappedKeyBlob.TryParse(wrappedIndexKey!, out var blob, out var error)
            ? blob
            : throw new EnvelopeDecryptionException("The configured blind index key is not a valid wrapped key: " + error, BlindIndexKey.EntityName);
}

/// <summary>The blind index of one property: normalisation, encoding, truncation.</summary>
internal sealed class BlindIndexProperty<T>(BlindIndexer indexer, string entity, string property, BlindIndexOptions options)
{
    private readonly byte[] _info = BlindIndexer.Info(entity, property);
    private readonly ValueCodec<T> _codec = (ValueCodec<T>)ValueCodecs.For(typeof(T));

    public BlindIndexOptions Options => options;

    public byte[] Compute(T value)
    {
        value = Canonical(value);

        var length = _codec.GetByteCount(value);
        var rented = ArrayPool<byte>.Shared.Rent(length);
        Span<byte> mac = stackalloc byte[32];
        try
        {
            _codec.Write(value, rented);
            indexer.Compute(_info, rented.AsSpan(0, length), mac);
            return mac[..options.IndexBytes].ToArray();
        }
        finally
        {
            CryptographicOperations.ZeroMemory(rented.AsSpan(0, length));
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Whether a decrypted value matches a searched one under this property's normalisation.</summary>
    public bool Matches(T stored, T searched) => (Canonical(stored), Canonical(searched)) switch
    {
        (byte[] a, byte[] b) => a.AsSpan().SequenceEqual(b),
        var (a, b) => EqualityComparer<T>.Default.Equals(a, b),
    };

    // Values that compare equal in .NET must index equally: strings by the configured normalisation, decimals
    // without trailing zeros (1.0 == 1.00), instants in UTC (same moment, other offset), clock times without their
    // kind (DateTime's == compares ticks only, and so do the databases: a value saved from DateTime.UtcNow must be
    // found by one parsed from text), and zero without sign. A Local time is its UTC time: the ciphertext stores a
    // Local value as an instant and reads it back in the reader's time zone, so its wall-clock ticks would index the
    // same record differently on machines in other zones (a reader's search, or a rebuild run in a UTC container).
    private T Canonical(T value) => value switch
    {
        string text => (T)(object)options.ApplyTo(text),
        decimal number => (T)(object)(number / 1.000000000000000000000000000000000m),
        DateTimeOffset instant => (T)(object)instant.ToUniversalTime(),
        DateTime { Kind: DateTimeKind.Local } clock => (T)(object)DateTime.SpecifyKind(clock.ToUniversalTime(), DateTimeKind.Unspecified),
        DateTime clock => (T)(object)DateTime.SpecifyKind(clock, DateTimeKind.Unspecified),
        double number when number == 0 => (T)(object)0d,
        float number when number == 0 => (T)(object)0f,
        _ => value,
    };

    public override string ToString() => $"BlindIndex({entity}.{property})";
}
