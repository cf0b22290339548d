using System.Text;

namespace EfEnvelope.Pkcs11.Internal;

/// <summary>A validated, immutable snapshot of <see cref="Pkcs11Options"/>; equal snapshots share one provider.</summary>
internal sealed class Pkcs11Configuration : IEquatable<Pkcs11Configuration>
{
    public Pkcs11Configuration(string libraryPath, string tokenLabel, string? keyLabel, IReadOnlyList<string> additionalKeyLabels, string? pin, Func<byte[]>? pinSource, int maxSessions)
    {
        LibraryPath = libraryPath;
        TokenLabel = tokenLabel;
        KeyLabel = keyLabel;
        AdditionalKeyLabels = additionalKeyLabels;
        Pin = pin;
        PinSource = pinSource;
        MaxSessions = maxSessions;
    }

    public string LibraryPath { get; }
    public string TokenLabel { get; }
    public string? KeyLabel { get; }
    public IReadOnlyList<string> AdditionalKeyLabels { get; }
    public string? Pin { get; }
    public Func<byte[]>? PinSource { get; }
    public int MaxSessions { get; }

    // The PIN takes part in equality so that a configuration with a different (perhaps wrong) PIN gets its own
    // provider and its own login attempt, instead of silently riding on another configuration's login.
    public bool Equals(Pkcs11Configuration? other) =>
        other is not null
        && LibraryPath == other.LibraryPath
        && TokenLabel == other.TokenLabel
        && KeyLabel == other.KeyLabel
        && AdditionalKeyLabels.SequenceEqual(other.AdditionalKeyLabels, StringComparer.Ordinal)
        && Pin == other.Pin
        && Equals(PinSource, other.PinSource)
        && MaxSessions == other.MaxSessions;

    public override bool Equals(object? obj) => Equals(obj as Pkcs11Configuration);

    // The PIN is left out of the hash: equality still checks it, and nothing derived from it leaves this object.
    public override int GetHashCode() => HashCode.Combine(LibraryPath, TokenLabel, KeyLabel, AdditionalKeyLabels.Count, MaxSessions);

    /// <summary>The PIN as a new byte array, which the caller zeroes after the login.</summary>
    public byte[] ReadPin()
    {
        if (PinSource is null)
        {
            return Encoding.UTF8.GetBytes(Pin!);
        }

        byte[]? pin;
        try
        {
            pin = PinSource();
        }
        catch (Exception ex)
        {
            throw new MasterKeyConfigurationException(
                $"{nameof(Pkcs11Options)}.{nameof(Pkcs11Options.PinSource)} failed to give the PIN for token '{TokenLabel}' ({ex.GetType().Name}).",
                Pkcs11MasterKeyProvider.ProviderName, null, null, ex);
        }

        return pin is { Length: > 0 }
            ? pin
            : throw new MasterKeyConfigurationException(
                $"{nameof(Pkcs11Options)}.{nameof(Pkcs11Options.PinSource)} gave no PIN for token '{TokenLabel}' (null or empty).",
                Pkcs11MasterKeyProvider.ProviderName);
    }

    public override string ToString() => $"token '{TokenLabel}' of module '{LibraryPath}'";
}
