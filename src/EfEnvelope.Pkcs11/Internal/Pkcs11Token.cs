using System.Security.Cryptography;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace EfEnvelope.Pkcs11.Internal;

/// <summary>Finding a token by label, logging in and finding keys: shared by the provider and the key set-up helper.</summary>
internal static class Pkcs11Token
{
    private const string ProviderName = Pkcs11MasterKeyProvider.ProviderName;

    /// <summary>The slot whose token carries the configured label; slot numbers are not stable, labels are.</summary>
    public static ISlot FindSlot(Pkcs11Module module, Pkcs11Configuration configuration)
    {
        var labels = new List<string>();
        var unreadable = new List<string>();
        ISlot? found = null;
        foreach (var slot in Call(() => module.Library.GetSlotList(SlotsType.WithTokenPresent), configuration, "list the slots"))
        {
            ITokenInfo info;
            try
            {
                info = slot.GetTokenInfo();
            }
            catch (Pkcs11Exception ex)
            {
                // A token deleted or broken under a running module can leave its slot answering errors; the token
                // we want may still be in another slot, so one bad slot must not hide it.
                unreadable.Add($"slot {slot.SlotId} ({ex.RV})");
                continue;
            }

            if (!info.TokenFlags.TokenInitialized)
            {
                continue;
            }

            labels.Add(info.Label);
            if (info.Label == configuration.TokenLabel)
            {
                if (found is not null)
                {
                    throw new MasterKeyConfigurationException(
                        $"Two tokens of module '{configuration.LibraryPath}' are labelled '{configuration.TokenLabel}' ({nameof(Pkcs11Options)}.{nameof(Pkcs11Options.TokenLabel)}): relabel one of them so the label names one token.",
                        ProviderName);
                }

                found = slot;
            }
        }

        return found ?? throw new MasterKeyConfigurationException(
            $"No token labelled '{configuration.TokenLabel}' ({nameof(Pkcs11Options)}.{nameof(Pkcs11Options.TokenLabel)}) is present in module '{configuration.LibraryPath}'. "
            + (labels.Count == 0 ? "The module reports no initialised token." : $"Tokens present: {string.Join(", ", labels.Select(Untrusted.Quote))}.")
            + (unreadable.Count == 0 ? "" : $" Unreadable: {string.Join(", ", unreadable)}."),
            ProviderName);
    }

    /// <summary>Logs the application in as the token's user; a login held by another session of this process counts.</summary>
    public static void Login(ISession session, Pkcs11Configuration configuration)
    {
        // The PIN goes to the module as bytes that are zeroed as soon as C_Login returns: with a PIN source, that
        // array is the only copy this library ever holds.
        var pin = configuration.ReadPin();
        try
        {
            session.Login(CKU.CKU_USER, pin);
        }
        catch (Pkcs11Exception ex) when (ex.RV == CKR.CKR_USER_ALREADY_LOGGED_IN)
        {
            // PKCS#11 login state belongs to the application, not the session: another provider or the set-up helper
            // in this process logged in already, and every session shares that login.
        }
        catch (Pkcs11Exception ex)
        {
            throw LoginFailed(ex, configuration);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(pin);
        }
    }

    /// <summary>Asks the token whether it can wrap and unwrap with <c>CKM_AES_KEY_WRAP</c>; a token that cannot say, cannot.</summary>
    public static bool OffersKeyWrap(ISlot slot)
    {
        try
        {
            var flags = slot.GetMechanismInfo(CKM.CKM_AES_KEY_WRAP).MechanismFlags;
            return flags.Wrap && flags.Unwrap;
        }
        catch (Pkcs11Exception)
        {
            return false;
        }
    }

    /// <summary>Finds the token's AES secret keys carrying <paramref name="label"/>.</summary>
    public static List<IObjectHandle> FindKeys(Pkcs11Module module, ISession session, string label)
    {
        var attributes = module.Factories.ObjectAttributeFactory;
        using var template = new AttributeList(
        [
            attributes.Create(CKA.CKA_CLASS, CKO.CKO_SECRET_KEY),
            attributes.Create(CKA.CKA_KEY_TYPE, CKK.CKK_AES),
            attributes.Create(CKA.CKA_LABEL, label),
        ]);
        return session.FindAllObjects(template.Items);
    }

    /// <summary>
    /// Reads the attributes docs/pkcs11.md requires of a master key and refuses a key that lacks any of them.
    /// </summary>
    /// <returns>The key, and whether the token may wrap data keys under it with <c>C_WrapKey</c>.</returns>
    /// <remarks>
    /// The label alone proves nothing: anyone logged in can create a key with any label. A session object
    /// (<c>CKA_TOKEN</c> false) vanishes with its session and cannot be a master key; a key that is not sensitive, or
    /// is extractable, can be read out of the token, which defeats keeping it in an HSM. PKCS#11 forbids turning
    /// <c>CKA_SENSITIVE</c> off or <c>CKA_EXTRACTABLE</c> on once set, so a key that passes once passes for its lifetime
    /// and the result may be cached with the handle. An attribute the token will not reveal counts as failing.
    /// </remarks>
    public static Pkcs11MasterKey CheckKey(ISession session, IObjectHandle handle, string label, Pkcs11Configuration configuration, string? entity)
    {
        using var read = new AttributeList(session.GetAttributeValue(handle, [CKA.CKA_TOKEN, CKA.CKA_SENSITIVE, CKA.CKA_EXTRACTABLE, CKA.CKA_VALUE_LEN, CKA.CKA_WRAP, CKA.CKA_UNWRAP]));
        var values = read.Items;
        bool? Flag(int index) => values[index].CannotBeRead ? null : values[index].GetValueAsBool();

        var failing = new List<string>();
        if (Flag(0) != true)
        {
            failing.Add("CKA_TOKEN is not true (a session object disappears with its session)");
        }

        if (Flag(1) != true)
        {
            failing.Add("CKA_SENSITIVE is not true (the token would reveal the key's value)");
        }

        if (Flag(2) != false)
        {
            failing.Add("CKA_EXTRACTABLE is not false (the key could be wrapped out of the token)");
        }

        var length = values[3].CannotBeRead ? 0UL : values[3].GetValueAsUlong();
        if (length != 32)
        {
            failing.Add($"CKA_VALUE_LEN is {length}, not 32 (an AES-256 key is required)");
        }

        if (failing.Count > 0)
        {
            throw new MasterKeyConfigurationException(
                $"Master key '{label}' on token '{configuration.TokenLabel}' is refused: {string.Join("; ", failing)}. "
                + "Create a token key with CKA_TOKEN and CKA_SENSITIVE true and CKA_EXTRACTABLE false "
                + $"({nameof(Pkcs11KeySetup)}.{nameof(Pkcs11KeySetup.EnsureKeyAsync)} does), and name it in {nameof(Pkcs11Options)}.{nameof(Pkcs11Options.KeyLabel)}.",
                ProviderName,
                label,
                entity);
        }

        return new Pkcs11MasterKey(handle, WrapAllowed: Flag(4) == true && Flag(5) == true);
    }

    public static MasterKeyConfigurationException KeyNotFound(string label, Pkcs11Configuration configuration, string? entity) =>
        new(
            $"Token '{configuration.TokenLabel}' has no AES secret key labelled '{label}' "
            + $"(named by {nameof(Pkcs11Options)}.{nameof(Pkcs11Options.KeyLabel)} or {nameof(Pkcs11Options.AdditionalKeyLabels)}). "
            + $"Fix the label, or create the key (pkcs11-tool --keygen --key-type aes:32, or {nameof(Pkcs11KeySetup)}.{nameof(Pkcs11KeySetup.EnsureKeyAsync)}).",
            ProviderName,
            label,
            entity);

    public static MasterKeyConfigurationException AmbiguousKey(string label, Pkcs11Configuration configuration, string? entity) =>
        new(
            $"Token '{configuration.TokenLabel}' has several AES keys labelled '{label}': give each key a distinct CKA_LABEL so that the label names one key.",
            ProviderName,
            label,
            entity);

    internal static MasterKeyException LoginFailed(Pkcs11Exception ex, Pkcs11Configuration configuration)
    {
        var option = $"{nameof(Pkcs11Options)}.{nameof(Pkcs11Options.Pin)}";
        return ex.RV switch
        {
            CKR.CKR_PIN_INCORRECT or CKR.CKR_PIN_INVALID or CKR.CKR_PIN_LEN_RANGE => new MasterKeyConfigurationException(
                $"Token '{configuration.TokenLabel}' rejected the user PIN set in {option} ({ex.RV}). Set the token's user PIN; "
                + "this provider does not try the same PIN again, so that it cannot lock the token.",
                ProviderName, null, null, ex),
            CKR.CKR_PIN_LOCKED => new MasterKeyAccessRevokedException(
                $"The user PIN of token '{configuration.TokenLabel}' is locked (CKR_PIN_LOCKED): the token's security officer must unlock it before {option} works again.",
                ProviderName, null, null, ex),
            CKR.CKR_PIN_EXPIRED => new MasterKeyConfigurationException(
                $"The user PIN of token '{configuration.TokenLabel}' has expired (CKR_PIN_EXPIRED): change it on the token and update {option}.",
                ProviderName, null, null, ex),
            _ => Unavailable(ex, configuration, "log in"),
        };
    }

    /// <summary>A failure of the token itself (absent, removed, erroring) while doing <paramref name="action"/>.</summary>
    public static MasterKeyException Unavailable(Pkcs11Exception ex, Pkcs11Configuration configuration, string action, string? keyId = null, string? entity = null) =>
        ex.RV switch
        {
            CKR.CKR_TOKEN_NOT_PRESENT or CKR.CKR_DEVICE_REMOVED or CKR.CKR_TOKEN_NOT_RECOGNIZED => new MasterKeyException(
                $"Token '{configuration.TokenLabel}' ({nameof(Pkcs11Options)}.{nameof(Pkcs11Options.TokenLabel)}) is not present ({ex.RV}) and could not {action}: reconnect the token or HSM.",
                ProviderName, keyId, entity, ex),
            CKR.CKR_SESSION_COUNT => new MasterKeyException(
                $"Token '{configuration.TokenLabel}' refused another session (CKR_SESSION_COUNT) and could not {action}: lower {nameof(Pkcs11Options)}.{nameof(Pkcs11Options.MaxSessions)} "
                + $"(currently {configuration.MaxSessions}, plus one session that holds the login) or raise the token's session limit.",
                ProviderName, keyId, entity, ex),
            _ => new MasterKeyException(
                $"Token '{configuration.TokenLabel}' could not {action}: {ex.Method} returned {ex.RV}.",
                ProviderName, keyId, entity, ex),
        };

    private static T Call<T>(Func<T> call, Pkcs11Configuration configuration, string action)
    {
        try
        {
            return call();
        }
        catch (Pkcs11Exception ex)
        {
            throw Unavailable(ex, configuration, action);
        }
    }
}
