using EfEnvelope.Pkcs11.Internal;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace EfEnvelope.Pkcs11;

/// <summary>Creates master keys on a token, for set-up scripts and tests; the provider itself never creates keys.</summary>
public static class Pkcs11KeySetup
{
    /// <summary>Creates a non-extractable AES-256 key labelled <paramref name="label"/> on the token, unless one exists.</summary>
    /// <param name="options">The module, token and PIN; <see cref="Pkcs11Options.KeyLabel"/> is not needed.</param>
    /// <param name="label">The <c>CKA_LABEL</c> of the key.</param>
    /// <param name="cancellationToken">Cancels the call before it reaches the token.</param>
    /// <returns>True when the key was created, false when an AES key with that label was already there.</returns>
    /// <remarks>
    /// The key is a token object (<c>CKA_TOKEN</c>), private, sensitive and never extractable: the token will use it
    /// but never reveal it. It is allowed to wrap and unwrap keys only (<c>CKA_WRAP</c>, <c>CKA_UNWRAP</c>) when the
    /// token offers <c>CKM_AES_KEY_WRAP</c>, and to encrypt and decrypt only otherwise. An existing key is left as it
    /// is, but must pass the checks the provider makes (<c>CKA_TOKEN</c>, <c>CKA_SENSITIVE</c>, not
    /// <c>CKA_EXTRACTABLE</c>, 32 bytes).
    /// </remarks>
    /// <exception cref="MasterKeyException">The existing key fails those checks.</exception>
    public static Task<bool> EnsureKeyAsync(Pkcs11Options options, string label, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentException.ThrowIfNullOrWhiteSpace(label);
        cancellationToken.ThrowIfCancellationRequested();
        var configuration = options.Build(requireKeys: false);
        var module = Pkcs11Module.Load(configuration.LibraryPath);
        var slot = Pkcs11Token.FindSlot(module, configuration);

        ISession session;
        try
        {
            session = slot.OpenSession(SessionType.ReadWrite);
        }
        catch (Pkcs11Exception ex)
        {
            throw Pkcs11Token.Unavailable(ex, configuration, "open a read-write session");
        }

        using (session)
        {
            Pkcs11Token.Login(session, configuration);
            try
            {
                var existing = Pkcs11Token.FindKeys(module, session, label);
                if (existing.Count > 1)
                {
                    throw Pkcs11Token.AmbiguousKey(label, configuration, null);
                }

                if (existing.Count == 1)
                {
                    Pkcs11Token.CheckKey(session, existing[0], label, configuration, null);
                    return Task.FromResult(false);
                }

                Generate(module, session, label, Pkcs11Token.OffersKeyWrap(slot));
                return Task.FromResult(true);
            }
            catch (Pkcs11Exception ex)
            {
                throw Pkcs11Token.Unavailable(ex, configuration, $"create master key '{label}'", label);
            }
        }
    }

    private static void Generate(Pkcs11Module module, ISession session, string label, bool keyWrap)
    {
        var attributes = module.Factories.ObjectAttributeFactory;
        using var template = new AttributeList(
        [
            attributes.Create(CKA.CKA_CLASS, CKO.CKO_SECRET_KEY),
            attributes.Create(CKA.CKA_KEY_TYPE, CKK.CKK_AES),
            attributes.Create(CKA.CKA_VALUE_LEN, 32UL),
            attributes.Create(CKA.CKA_LABEL, label),
            attributes.Create(CKA.CKA_TOKEN, true),
            attributes.Create(CKA.CKA_PRIVATE, true),
            attributes.Create(CKA.CKA_SENSITIVE, true),
            attributes.Create(CKA.CKA_EXTRACTABLE, false),
            attributes.Create(CKA.CKA_ENCRYPT, !keyWrap),
            attributes.Create(CKA.CKA_DECRYPT, !keyWrap),
            attributes.Create(CKA.CKA_WRAP, keyWrap),
            attributes.Create(CKA.CKA_UNWRAP, keyWrap),
            attributes.Create(CKA.CKA_SIGN, false),
            attributes.Create(CKA.CKA_VERIFY, false),
            attributes.Create(CKA.CKA_DERIVE, false),
        ]);
        using var mechanism = module.Factories.MechanismFactory.Create(CKM.CKM_AES_KEY_GEN);
        session.GenerateKey(mechanism, template.Items);
    }
}
