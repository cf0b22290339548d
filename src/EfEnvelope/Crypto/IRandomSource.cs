using System.Security.Cryptography;

namespace EfEnvelope;

/// <summary>The source of keys, nonces and record ids.</summary>
/// <remarks>Replace it only in known-answer tests; the default is the operating system's CSPRNG.</remarks>
public interface IRandomSource
{
    /// <summary>Fills <paramref name="buffer"/> with unpredictable bytes.</summary>
    void Fill(Span<byte> buffer);
}

/// <summary>The operating system's cryptographic random number generator.</summary>
public sealed class SystemRandomSource : IRandomSource
{
    /// <summary>The shared instance.</summary>
    public static SystemRandomSource Instance { get; } = new();

    /// <inheritdoc />
    public void Fill(Span<byte> buffer) => RandomNumberGenerator.Fill(buffer);
}
