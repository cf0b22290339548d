using System.Security.Cryptography;

namespace EfEnvelope.KeyManagement;

/// <summary>A fresh 256-bit key in plaintext and wrapped under a master key.</summary>
/// <remarks>Dispose it to zero the plaintext. <see cref="ToString"/> never shows key bytes.</remarks>
public sealed class GeneratedDataKey : IDisposable
{
    /// <summary>Creates the pair; takes ownership of <paramref name="plaintext"/>.</summary>
    public GeneratedDataKey(string keyId, byte[] plaintext, byte[] wrappedKey)
    {
        ArgumentException.ThrowIfNullOrEmpty(keyId);
        ArgumentNullException.ThrowIfNull(plaintext);
        ArgumentNullException.ThrowIfNull(wrappedKey);
        if (plaintext.Length != 32)
        {
            throw new ArgumentException("A data key must be 32 bytes (AES-256).", nameof(plaintext));
        }

        KeyId = keyId;
        Plaintext = plaintext;
        WrappedKey = wrappedKey;
    }

    /// <summary>The master key that wrapped it, as it must be named to unwrap.</summary>
    public string KeyId { get; }

    /// <summary>The 32 plaintext key bytes.</summary>
    public byte[] Plaintext { get; }

    /// <summary>The key wrapped under the master key; opaque to the library.</summary>
    public byte[] WrappedKey { get; }

    /// <inheritdoc />
    public void Dispose() => CryptographicOperations.ZeroMemory(Plaintext);

    /// <inheritdoc />
    public override string ToString() => $"GeneratedDataKey(KeyId={KeyId}, {WrappedKey.Length} wrapped bytes)";
}
