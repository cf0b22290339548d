using EfEnvelope.Pkcs11;

// In the builder's namespace so that UsePkcs11 shows up wherever the builder does, with no extra using.
namespace EfEnvelope;

/// <summary>Plugs the PKCS#11 HSM provider into envelope encryption.</summary>
public static class Pkcs11EnvelopeEncryptionOptionsBuilderExtensions
{
    /// <summary>Uses AES-256 keys held in a PKCS#11 token (an HSM) as master keys.</summary>
    /// <param name="builder">The envelope encryption options.</param>
    /// <param name="configure">Sets the module path, token label, key labels and PIN.</param>
    /// <returns>The same builder, for chaining.</returns>
    /// <remarks>
    /// <para>
    /// <c>e.UsePkcs11(o => { o.LibraryPath = "/usr/lib/softhsm/libsofthsm2.so"; o.TokenLabel = "clinic";
    /// o.KeyLabel = "patients-kek"; o.Pin = configuration["Hsm:Pin"]; })</c>
    /// </para>
    /// <para>
    /// Options are validated here. The token is reached on the first wrap or unwrap. Equal options share one provider
    /// (<see cref="Pkcs11MasterKeyProvider.GetShared"/>) for the whole process, so contexts configured separately share
    /// the module, the login, the session pool and the key cache.
    /// </para>
    /// </remarks>
    /// <exception cref="InvalidOperationException">A required option is missing.</exception>
    /// <exception cref="ArgumentException">An option is malformed.</exception>
    public static EnvelopeEncryptionOptionsBuilder UsePkcs11(this EnvelopeEncryptionOptionsBuilder builder, Action<Pkcs11Options> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);
        var options = new Pkcs11Options();
        configure(options);
        return builder.UseProvider(Pkcs11MasterKeyProvider.GetShared(options));
    }
}
