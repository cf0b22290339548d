using EfEnvelope;
using EfEnvelope.KeyManagement;

namespace HealthRecords.Setup;

/// <summary>The master-key choice made once at start-up, applied to every DbContext so that they all share one key cache.</summary>
public sealed class MasterKeySetup
{
    private readonly Action<EnvelopeEncryptionOptionsBuilder> _configure;

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
                throw ProviderPackageMissing("AwsKms", "EfEnvelope.AwsKms", "UseAwsKms");
            case "PKCS11":
                throw ProviderPackageMissing("Pkcs11", "EfEnvelope.Pkcs11", "UsePkcs11");
            default:
                throw new InvalidOperationException(
                    $"HealthRecords:MasterKey:Provider is '{options.Provider}'; use 'Development' (the default), 'AwsKms' or 'Pkcs11'.");
        }
    }

    private static InvalidOperationException ProviderPackageMissing(string setting, string package, string method) =>
        new($"HealthRecords:MasterKey:Provider is '{setting}', but this build of the sample does not include the {package} package "
            + $"({method}), which is not in the repository yet. Use 'Development' for now.");
}
