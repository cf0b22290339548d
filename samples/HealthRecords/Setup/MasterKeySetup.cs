using EfEnvelope;
using EfEnvelope.AwsKms;
using EfEnvelope.KeyManagement;
using EfEnvelope.Pkcs11;

namespace HealthRecords.Setup;

/// <summary>The master-key choice made once at start-up, applied to every DbContext so that they all share one key cache.</summary>
public sealed class MasterKeySetup : IDisposable
{
    private readonly IMasterKeyProvider _provider;

    private IDisposable? _owned;

    private byte[]? _blindIndexKey;

    private MasterKeySetup(string provider, string keyId, KeyWrappingMode mode, string? notice, IMasterKeyProvider masterKeyProvider)
    {
        Provider = provider;
        KeyId = keyId;
        Mode = mode;
        Notice = notice;
        _provider = masterKeyProvider;
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

    /// <summary>Whether stored data naming <paramref name="keyId"/> can be unwrapped with this configuration.</summary>
    /// <remarks>A record naming any other key was written elsewhere or had its key id rewritten: no retry will read it.</remarks>
    public bool AcceptsKey(string keyId) => _provider.IsKeyConfigured(keyId);

    public void Configure(EnvelopeEncryptionOptionsBuilder builder)
    {
        builder.UseProvider(_provider).UseKeyWrappingMode(Mode);
        if (_blindIndexKey is not null)
        {
            builder.UseBlindIndexKey(_blindIndexKey);
        }
    }

    /// <summary>
    /// Loads the wrapped blind index key (SSN search) from configuration, or from a file beside the database,
    /// creating it there on first start.
    /// </summary>
    /// <remarks>
    /// The key is wrapped under the master key, so the file is useless without it; in production keep it in
    /// configuration (<c>HealthRecords:MasterKey:BlindIndexKey</c>, base64) so every instance shares it.
    /// </remarks>
    public void LoadBlindIndexKey(string? configured, string dataDirectory)
    {
        if (!string.IsNullOrWhiteSpace(configured))
        {
            _blindIndexKey = Convert.FromBase64String(configured);
            return;
        }

        var path = Path.Combine(dataDirectory, $"blind-index-key.{Provider.ToLowerInvariant()}.bin");
        if (!File.Exists(path))
        {
            // Start-up, before any request: blocking here holds up nothing else.
            File.WriteAllBytes(path, BlindIndexKey.CreateAsync(_provider).GetAwaiter().GetResult());
        }

        _blindIndexKey = File.ReadAllBytes(path);
    }

    public void Dispose() => _owned?.Dispose();

    /// <summary>Reads the settings and prepares the provider, failing with a message that names the setting at fault.</summary>
    public static MasterKeySetup Create(MasterKeyOptions options, string dataDirectory)
    {
        var setup = CreateProvider(options, dataDirectory);
        setup.LoadBlindIndexKey(options.BlindIndexKey, dataDirectory);
        return setup;
    }

    private static MasterKeySetup CreateProvider(MasterKeyOptions options, string dataDirectory)
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
                    provider)
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
        foreach (var keyId in settings.AdditionalKeyIds.Where(k => !string.IsNullOrWhiteSpace(k)))
        {
            options.AdditionalKeyIds.Add(keyId);
        }

        if (Optional(settings.ServiceUrl) is { } serviceUrl)
        {
            options.ServiceUrl = serviceUrl;
            options.AuthenticationRegion = Optional(settings.Region);
        }

        // One provider (and so one SDK client and one key cache) for the application's lifetime, handed to every
        // context: the pattern for a provider built from a client of its own.
        var provider = new AwsKmsMasterKeyProvider(options);
        return new MasterKeySetup("AwsKms", provider.PrimaryKeyId, mode, notice: null, provider)
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

        // The shared provider (module, login, session pool) for these options, as UsePkcs11 would use.
        return new MasterKeySetup("Pkcs11", options.KeyLabel, mode, notice: null, Pkcs11MasterKeyProvider.GetShared(options));
    }

    private static string Required(string? value, string setting, string provider) =>
        string.IsNullOrWhiteSpace(value)
            ? throw new InvalidOperationException($"HealthRecords:MasterKey:Provider is '{provider}': set HealthRecords:MasterKey:{setting} as well.")
            : value;

    private static string? Optional(string? value) => string.IsNullOrWhiteSpace(value) ? null : value;
}
