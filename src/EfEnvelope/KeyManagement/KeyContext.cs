using System.Buffers.Binary;
using System.Text;

namespace EfEnvelope.KeyManagement;

/// <summary>The non-secret facts a wrapped key is bound to: where the key is used.</summary>
/// <remarks>
/// KMS providers send the pairs as the encryption context (so CloudTrail shows them); providers that use
/// AES-GCM bind <see cref="ToAssociatedData"/>. Never put a secret or a plaintext value here.
/// </remarks>
public sealed class KeyContext : IEquatable<KeyContext>
{
    /// <summary>The pair naming the application.</summary>
    public const string ApplicationKey = "efenvelope:application";

    /// <summary>The pair naming the entity type.</summary>
    public const string EntityKey = "efenvelope:entity";

    /// <summary>The pair naming the record (direct mode only).</summary>
    public const string RecordKey = "efenvelope:record";

    /// <summary>The context name of a direct-mode data key's record format (<c>2</c>): version 1 contexts do not have it.</summary>
    public const string FormatKey = "efenvelope:format";

    private readonly KeyValuePair<string, string>[] _pairs;

    /// <summary>Creates a context from pairs; names must be distinct.</summary>
    public KeyContext(IEnumerable<KeyValuePair<string, string>> pairs)
    {
        ArgumentNullException.ThrowIfNull(pairs);
        _pairs = pairs.OrderBy(p => p.Key, StringComparer.Ordinal).ToArray();
        for (var i = 1; i < _pairs.Length; i++)
        {
            if (_pairs[i].Key == _pairs[i - 1].Key)
            {
                throw new ArgumentException($"The context names '{_pairs[i].Key}' twice.", nameof(pairs));
            }
        }
    }

    /// <summary>Creates the context the library uses for a key of an entity type, and in direct mode of one record.</summary>
    /// <param name="application">The configured application name.</param>
    /// <param name="entity">The entity binding name.</param>
    /// <param name="record">Direct mode: the record id as lowercase hexadecimal; null otherwise.</param>
    /// <param name="format">Direct mode, format version 2 records: <c>2</c>; null otherwise.</param>
    public static KeyContext For(string application, string entity, string? record = null, string? format = null)
    {
        var pairs = new List<KeyValuePair<string, string>>(4)
        {
            new(ApplicationKey, application),
            new(EntityKey, entity),
        };
        if (record is not null)
        {
            pairs.Add(new(RecordKey, record));
        }

        if (format is not null)
        {
            pairs.Add(new(FormatKey, format));
        }

        return new KeyContext(pairs);
    }

    /// <summary>The pairs, ordered by name (ordinal).</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Pairs => _pairs;

    /// <summary>The value of <see cref="EntityKey"/>, if present.</summary>
    public string? Entity => _pairs.FirstOrDefault(p => p.Key == EntityKey).Value;

    /// <summary>An unambiguous byte encoding of the pairs, for use as AES-GCM associated data.</summary>
    /// <remarks>
    /// Layout: for each pair in ordinal order of names, a big-endian uint32 length and the UTF-8 bytes of the name,
    /// then the same for the value. Length prefixes make <c>("ab","c")</c> and <c>("a","bc")</c> different.
    /// </remarks>
    public byte[] ToAssociatedData()
    {
        using var stream = new MemoryStream();
        Span<byte> length = stackalloc byte[4];
        foreach (var (name, value) in _pairs)
        {
            foreach (var text in (ReadOnlySpan<string>)[name, value])
            {
                var bytes = Encoding.UTF8.GetBytes(text);
                BinaryPrimitives.WriteUInt32BigEndian(length, (uint)bytes.Length);
                stream.Write(length);
                stream.Write(bytes);
            }
        }

        return stream.ToArray();
    }

    /// <inheritdoc />
    public bool Equals(KeyContext? other) =>
        other is not null && _pairs.AsSpan().SequenceEqual(other._pairs);

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as KeyContext);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (var pair in _pairs)
        {
            hash.Add(pair.Key);
            hash.Add(pair.Value);
        }

        return hash.ToHashCode();
    }

    /// <inheritdoc />
    public override string ToString() => string.Join(", ", _pairs.Select(p => $"{p.Key}={p.Value}"));
}
