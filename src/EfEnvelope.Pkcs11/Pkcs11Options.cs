using System.Text;
using EfEnvelope.Pkcs11.Internal;

namespace EfEnvelope.Pkcs11;

/// <summary>Where the master keys live: the PKCS#11 module, the token, the key labels and the user PIN.</summary>
/// <remarks>
/// Setters refuse malformed values where they are configured; missing required values are reported when the provider
/// is built. <see cref="ToString"/> and every error message leave the <see cref="Pin"/> out. Set either
/// <see cref="Pin"/> or <see cref="PinSource"/>.
/// </remarks>
public sealed class Pkcs11Options
{
    // PKCS#11 pads token labels to 32 bytes (CK_TOKEN_INFO.label); a longer label can never match.
    private const int MaxTokenLabelBytes = 32;
    private const int MaxSessionsLimit = 1024;

    private string? _libraryPath;
    private string? _tokenLabel;
    private string? _keyLabel;
    private string? _pin;
    private int _maxSessions = Math.Max(2, Environment.ProcessorCount * 2);

    /// <summary>The path of the vendor's PKCS#11 module (for SoftHSM2 on Debian, <c>/usr/lib/softhsm/libsofthsm2.so</c>).</summary>
    public string? LibraryPath
    {
        get => _libraryPath;
        set => _libraryPath = RequireText(value, nameof(LibraryPath));
    }

    /// <summary>The label of the token holding the keys; the token is found by label, since slot numbers change.</summary>
    /// <remarks>At most 32 UTF-8 bytes, the size of a PKCS#11 token label.</remarks>
    public string? TokenLabel
    {
        get => _tokenLabel;
        set
        {
            var label = RequireText(value, nameof(TokenLabel));
            if (Encoding.UTF8.GetByteCount(label) > MaxTokenLabelBytes)
            {
                throw new ArgumentException($"{nameof(TokenLabel)} must be at most {MaxTokenLabelBytes} UTF-8 bytes, the size of a PKCS#11 token label.", nameof(TokenLabel));
            }

            _tokenLabel = label;
        }
    }

    /// <summary>The <c>CKA_LABEL</c> of the AES-256 key that wraps new data keys (the primary key).</summary>
    public string? KeyLabel
    {
        get => _keyLabel;
        set => _keyLabel = RequireText(value, nameof(KeyLabel));
    }

    /// <summary>Labels of further keys on the same token that data may name: the old keys of a rotation.</summary>
    /// <remarks>
    /// New data keys are wrapped under <see cref="KeyLabel"/> unless the application's key selector names one of
    /// these; data wrapped under any of them stays readable. Empty by default.
    /// </remarks>
    public IList<string> AdditionalKeyLabels { get; } = new List<string>();

    /// <summary>The token's user PIN; read it from configuration or a secret store, never from source code.</summary>
    /// <remarks>
    /// It never appears in <see cref="ToString"/>, in exception messages or in logs. A .NET string cannot be wiped, and
    /// the provider keeps this one for as long as it lives, to log in again after the token drops its login. To keep
    /// the PIN in memory only while logging in, set <see cref="PinSource"/> instead.
    /// </remarks>
    public string? Pin
    {
        get => _pin;
        set => _pin = string.IsNullOrEmpty(value)
            ? throw new ArgumentException($"{nameof(Pin)} must not be empty.", nameof(Pin))
            : value;
    }

    /// <summary>Reads the token's user PIN, as bytes, each time the provider logs in; an alternative to <see cref="Pin"/>.</summary>
    /// <remarks>
    /// Called at the first operation and again only when the provider must log in again (the token dropped its
    /// sessions or its login). The provider zeroes the returned array as soon as <c>C_Login</c> returns, so no PIN is
    /// held between logins; return a new array each time, for example
    /// <c>() =&gt; File.ReadAllBytes("/run/secrets/hsm-pin")</c> for a file holding the PIN without a trailing newline.
    /// A source that throws or returns no bytes fails the operation with a <see cref="MasterKeyException"/>, and is
    /// asked again next time; a PIN the token rejects is not tried again.
    /// </remarks>
    public Func<byte[]>? PinSource { get; set; }

    /// <summary>The most sessions opened for wrap and unwrap operations, each serving one operation at a time.</summary>
    /// <remarks>
    /// The default is twice the processor count (at least 2). Callers beyond it wait, asynchronously and cancellably,
    /// for a free session. One more session is held open to keep the login alive.
    /// </remarks>
    public int MaxSessions
    {
        get => _maxSessions;
        set => _maxSessions = value is > 0 and <= MaxSessionsLimit
            ? value
            : throw new ArgumentOutOfRangeException(nameof(MaxSessions), value, $"{nameof(MaxSessions)} must be between 1 and {MaxSessionsLimit}.");
    }

    /// <inheritdoc />
    public override string ToString() =>
        $"Pkcs11Options(LibraryPath={_libraryPath}, TokenLabel={_tokenLabel}, KeyLabel={_keyLabel}, "
        + $"AdditionalKeyLabels=[{string.Join(", ", AdditionalKeyLabels)}], MaxSessions={_maxSessions}, Pin={(_pin is null ? "not set" : "set")}, PinSource={(PinSource is null ? "not set" : "set")})";

    /// <summary>Checks that everything needed to reach the token is set and takes an immutable snapshot.</summary>
    internal Pkcs11Configuration Build(bool requireKeys = true)
    {
        Require(_libraryPath, nameof(LibraryPath));
        Require(_tokenLabel, nameof(TokenLabel));
        if (_pin is null && PinSource is null)
        {
            throw new InvalidOperationException($"{nameof(Pkcs11Options)}.{nameof(Pin)} (or {nameof(Pkcs11Options)}.{nameof(PinSource)}) is required.");
        }

        if (_pin is not null && PinSource is not null)
        {
            throw new InvalidOperationException($"Set {nameof(Pkcs11Options)}.{nameof(Pin)} or {nameof(Pkcs11Options)}.{nameof(PinSource)}, not both.");
        }

        if (requireKeys)
        {
            Require(_keyLabel, nameof(KeyLabel));
        }

        var additional = new List<string>(AdditionalKeyLabels.Count);
        foreach (var label in AdditionalKeyLabels)
        {
            if (string.IsNullOrWhiteSpace(label))
            {
                throw new ArgumentException($"{nameof(AdditionalKeyLabels)} must not contain an empty label.", nameof(AdditionalKeyLabels));
            }

            if (label == _keyLabel || additional.Contains(label, StringComparer.Ordinal))
            {
                throw new ArgumentException($"{nameof(AdditionalKeyLabels)} names '{label}' twice (or repeats {nameof(KeyLabel)}).", nameof(AdditionalKeyLabels));
            }

            additional.Add(label);
        }

        return new Pkcs11Configuration(_libraryPath!, _tokenLabel!, _keyLabel, additional, _pin, PinSource, _maxSessions);
    }

    private static void Require(string? value, string option)
    {
        if (value is null)
        {
            throw new InvalidOperationException($"{nameof(Pkcs11Options)}.{option} is required.");
        }
    }

    private static string RequireText(string? value, string option) =>
        string.IsNullOrWhiteSpace(value)
            ? throw new ArgumentException($"{option} must not be empty.", option)
            : value;
}
