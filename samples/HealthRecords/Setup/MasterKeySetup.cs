using EfEnvelope;
using EfEnvelope.AwsKms;
using EfEnvelope.Pkcs11;

namespace HealthRecords.Setup;

/// <summary>The master-key choice made once at start-up, applied to every DbContext so that they all share one key cache.</summary>
public sealed class MasterKeySetup : IDisposable
{
    private readonly Action<EnvelopeEncryptionOptionsBuilder> _configure;

    private IDisposable? _owned;

    private MasterKeySetup(string provider, string keyId, KeyWrappingMode mode, string? notice, Action<EnvelopeEncryptionOptionsBuilder> configure)
    {
        Provider = provider;
        KeyId = keyId;
        Mode = mode;
        Notice = notice;
        _configure = configure;
    }

    /// <summary>The configured provider, as named in the settings.</summary>
    public string Provider { get; }

    /// <summary>The master key new records are wrapped under.</summary>
    public string KeyId { get; }

    public KeyWrappingMode Mode { get; }

    /// <summary>A warning to show wherever the key is described (the development key), or null.</summary>
    public string? Notice { get; }

    /// <summary>Set when the development key file was created at this start.</summary>
    public bool CreatedNewDevelopmentKey { get; private init; }

    public void Configure(EnvelopeEncryptionOptionsBuilder builder) => _configure(builder.UseKeyWrappingMode(Mode));

    public void Dispose() => _owned?.Dispose();

    /// <summary>Reads the settings and prepares the provider, failing with a message that names the setting at fault.</summary>
    public static MasterKeySetup Create(MasterKeyOptions options, string dataDirectory)
    {
        if (!Enum.TryParse<KeyWrappingMode>(options.Mode, ignoreCase: true, out var mode) || !Enum.IsDefined(mode))
        {
            throw new InvalidOperationException(
                $"HealthRecords:MasterKey:Mode is '{options.Mode}'; use '{KeyWrappingMode.CachedKeyEncryptionKey}' (the default) or '{KeyWrappingMode.Direct}'.");
        }

        switch (options.Provider.ToUpperInvariant())
        {
            case "DEVELOPMENT":
                var (provider, created) = DevelopmentMasterKey.LoadOrCreate(dataDirectory);
                return new MasterKeySetup(
                    "Development", provider.PrimaryKeyId, mode,
                    $"Development master key from {Path.Combine(dataDirectory, DevelopmentMasterKey.FileName)}: for local development only, never for real patient data.",
                    builder => builder.UseInsecureInMemoryMasterKey(provider))
                {
                    CreatedNewDevelopmentKey = created,
                };
            case "AWSKMS":
                return AwsKms(options.AwsKms, mode);
            case "PKCS11":
                return Pkcs11(options.Pkcs11, mode);
            default:
                throw new InvalidOperationException(
                    $"HealthRecords:MasterKey:Provider is '{options.Provider}'; use 'Development' (the default), 'AwsKms' or 'Pkcs11'.");
        }
    }

    private static MasterKeySetup AwsKms(AwsKmsSettings settings, KeyWrappingMode mode)
    {
        var options = new AwsKmsOptions
        {
            KeyId = Required(settings.KeyId, "AwsKms:KeyId", "AwsKms"),
            Region = Optional(settings.Region),
        };
        if (Optional(settings.ServiceUrl) is { } serviceUrl)
        {
            options.ServiceUrl = serviceUrl;
            options.AuthenticationRegion = Optional(settings.Region);
        }

        // One provider (and so one SDK client and one key cache) for the application's lifetime, handed to every
        // context: the pattern for a provider built from a client of its own.
        var provider = new AwsKmsMasterKeyProvider(options);
        return new MasterKeySetup("AwsKms", provider.PrimaryKeyId, mode, notice: null, builder => builder.UseProvider(provider))
        {
            _owned = provider,
        };
    }

    private static MasterKeySetup Pkcs11(Pkcs11Settings settings, KeyWrappingMode mode)
    {
        var options = new Pkcs11Options
        {
            LibraryPath = Required(settings.LibraryPath, "Pkcs11:LibraryPath", "Pkcs11"),
            TokenLabel = Required(settings.TokenLabel, "Pkcs11:TokenLabel", "Pkcs11"),
            KeyLabel = Required(settings.KeyLabel, "Pkcs11:KeyLabel", "Pkcs11"),
            Pin = Required(settings.Pin, "Pkcs11:Pin", "Pkcs11"),
        };
        if (settings.CreateKeyIfMissing)
        {
            // Start-up, before any request: blocking here holds up nothing else.
            Pkcs11KeySetup.EnsureKeyAsync(options, options.KeyLabel).GetAwaiter().GetResult();
        }

        // UsePkcs11 shares one provider (module, login, session pool, key cache) between equal option sets.
        return new MasterKeySetup("Pkcs11", options.KeyLabel, mode, notice: null, builder => builder.UsePkcs11(o =>
        {
            o.LibraryPath = options.LibraryPath;
            o.TokenLabel = options.TokenLabel;
            o.KeyLabel = options.KeyLabel;
            o.Pin = options.Pin;
        }));
    }

    private static string Required(string? value, string setting, string provider) =>
        string.IsNullOrWhiteSpace(value)
            ? throw new InvalidOperationException($"HealthRecords:MasterKey:Provider is '{provider}': set HealthRecords:MasterKey:{setting} as well.")
            : value;

    private static string? Optional(string? value) => string.IsNullOrWhiteSpace(value) ? null : value;
}
