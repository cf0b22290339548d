using EfEnvelope.Pkcs11.Internal;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace EfEnvelope.Pkcs11.Tests;

/// <summary>The SoftHSM2 token the tests run on, as set up by tests/scripts/softhsm.sh, and ways to act on it directly.</summary>
/// <remarks>
/// Direct actions (reading attributes, disabling a key, closing sessions, logging out) go through the module the
/// provider loaded, in sessions of their own: the same things an HSM administrator or a token outage would do.
/// </remarks>
internal static class SoftHsm
{
    private static readonly string[] Variables =
        ["SOFTHSM2_CONF", "EFENVELOPE_PKCS11_MODULE", "EFENVELOPE_PKCS11_TOKEN", "EFENVELOPE_PKCS11_PIN", "EFENVELOPE_PKCS11_SO_PIN"];

    private static readonly Lock TokenCreation = new();

    public static bool IsConfigured => Variables.All(v => !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(v)));

    public static string ModulePath => Environment.GetEnvironmentVariable("EFENVELOPE_PKCS11_MODULE")!;

    public static string TokenLabel => Environment.GetEnvironmentVariable("EFENVELOPE_PKCS11_TOKEN")!;

    public static string Pin => Environment.GetEnvironmentVariable("EFENVELOPE_PKCS11_PIN")!;

    public static string SoPin => Environment.GetEnvironmentVariable("EFENVELOPE_PKCS11_SO_PIN")!;

    /// <summary>Skips the test when the token is not set up, unless on CI, where a missing token is a failure.</summary>
    public static void Require()
    {
        if (IsConfigured)
        {
            return;
        }

        var missing = string.Join(", ", Variables.Where(v => string.IsNullOrEmpty(Environment.GetEnvironmentVariable(v))));
        var reason = $"No SoftHSM2 token ({missing} not set): run tests/run-all.sh";
        if (Environment.GetEnvironmentVariable("CI") == "true")
        {
            Assert.Fail(reason);
        }

        Assert.Skip(reason);
    }

    public static string UniqueLabel(string purpose) => $"{purpose}-{Guid.NewGuid():N}";

    public static Pkcs11Options Options(string keyLabel, params string[] additionalKeyLabels) => OptionsOn(TokenLabel, keyLabel, additionalKeyLabels);

    public static Pkcs11Options OptionsOn(string tokenLabel, string keyLabel, params string[] additionalKeyLabels)
    {
        var options = new Pkcs11Options { LibraryPath = ModulePath, TokenLabel = tokenLabel, KeyLabel = keyLabel, Pin = Pin };
        foreach (var label in additionalKeyLabels)
        {
            options.AdditionalKeyLabels.Add(label);
        }

        return options;
    }

    /// <summary>Creates a key through the opt-in helper, as a set-up script would.</summary>
    public static async Task<string> CreateKeyAsync(string purpose, string? tokenLabel = null)
    {
        var label = UniqueLabel(purpose);
        var options = new Pkcs11Options { LibraryPath = ModulePath, TokenLabel = tokenLabel ?? TokenLabel, Pin = Pin };
        Assert.True(await Pkcs11KeySetup.EnsureKeyAsync(options, label, TestContext.Current.CancellationToken));
        return label;
    }

    /// <summary>Initialises a token of its own in SoftHSM's free slot (for tests that log out or close every session).</summary>
    public static string CreateToken(string purpose)
    {
        var label = $"{purpose}-{Guid.NewGuid():N}"[..32];
        var module = Pkcs11Module.Load(ModulePath);

        // One free slot at a time: SoftHSM adds the next free slot only once this one is initialised.
        lock (TokenCreation)
        {
            var free = module.Library.GetSlotList(SlotsType.WithTokenPresent).First(s => TokenInfo(s) is { TokenFlags.TokenInitialized: false });
            free.InitToken(SoPin, label);
            using var session = free.OpenSession(SessionType.ReadWrite);
            session.Login(CKU.CKU_SO, SoPin);
            session.InitPin(Pin);
            session.Logout();
        }

        return label;
    }

    /// <summary>A provider with a small pool on a token of its own, with one key on it.</summary>
    public static async Task<(string Token, Pkcs11MasterKeyProvider Provider, string Label)> ProviderOnOwnTokenAsync(string purpose)
    {
        var token = CreateToken(purpose);
        var label = await CreateKeyAsync(purpose, token);
        var options = OptionsOn(token, label);
        options.MaxSessions = 4;
        return (token, new Pkcs11MasterKeyProvider(options), label);
    }

    /// <summary>Runs <paramref name="action"/> in a read-write user session of its own on the token.</summary>
    public static T WithSession<T>(Func<ISession, Pkcs11Module, T> action, string? tokenLabel = null)
    {
        using var session = OpenSession(tokenLabel);
        return action(session, Pkcs11Module.Load(ModulePath));
    }

    /// <summary>A read-write user session on the token, open until disposed (session objects live as long).</summary>
    public static ISession OpenSession(string? tokenLabel = null)
    {
        var module = Pkcs11Module.Load(ModulePath);
        var session = Slot(module, tokenLabel ?? TokenLabel).OpenSession(SessionType.ReadWrite);
        try
        {
            session.Login(CKU.CKU_USER, Pin);
        }
        catch (Pkcs11Exception ex) when (ex.RV == CKR.CKR_USER_ALREADY_LOGGED_IN)
        {
            // The login belongs to the process: a provider in this process is logged in already.
        }

        return session;
    }

    /// <summary>
    /// Generates an AES key in <paramref name="session"/> with the attributes a master key needs, then
    /// <paramref name="overrides"/> in their place: for keys set up wrongly, or the way earlier versions set them up.
    /// </summary>
    public static IObjectHandle GenerateKey(ISession session, string label, params (CKA Attribute, object Value)[] overrides)
    {
        var module = Pkcs11Module.Load(ModulePath);
        var values = new Dictionary<CKA, object>
        {
            [CKA.CKA_CLASS] = CKO.CKO_SECRET_KEY,
            [CKA.CKA_KEY_TYPE] = CKK.CKK_AES,
            [CKA.CKA_VALUE_LEN] = 32UL,
            [CKA.CKA_LABEL] = label,
            [CKA.CKA_TOKEN] = true,
            [CKA.CKA_PRIVATE] = true,
            [CKA.CKA_SENSITIVE] = true,
            [CKA.CKA_EXTRACTABLE] = false,
            [CKA.CKA_WRAP] = true,
            [CKA.CKA_UNWRAP] = true,
            [CKA.CKA_ENCRYPT] = false,
            [CKA.CKA_DECRYPT] = false,
        };
        foreach (var (attribute, value) in overrides)
        {
            values[attribute] = value;
        }

        var attributes = module.Factories.ObjectAttributeFactory;
        var template = values.Select(pair => pair.Value switch
        {
            bool flag => attributes.Create(pair.Key, flag),
            ulong number => attributes.Create(pair.Key, number),
            string text => attributes.Create(pair.Key, text),
            CKO objectClass => attributes.Create(pair.Key, objectClass),
            CKK keyType => attributes.Create(pair.Key, keyType),
            _ => throw new ArgumentException($"No attribute of type {pair.Value.GetType()}", nameof(overrides)),
        }).ToList();
        using var mechanism = module.Factories.MechanismFactory.Create(CKM.CKM_AES_KEY_GEN);
        return session.GenerateKey(mechanism, template);
    }

    /// <summary>Generates a key as <see cref="GenerateKey"/> does, in a session of its own (so only as a token object).</summary>
    public static string GenerateKey(string purpose, params (CKA Attribute, object Value)[] overrides)
    {
        var label = UniqueLabel(purpose);
        WithSession((session, _) => GenerateKey(session, label, overrides));
        return label;
    }

    /// <summary>Sets usage flags on a key, as an HSM administrator would.</summary>
    public static void SetFlags(string label, params (CKA Attribute, bool Value)[] flags) =>
        WithSession((session, module) =>
        {
            var attributes = module.Factories.ObjectAttributeFactory;
            session.SetAttributeValue(FindKey(session, module, label), [.. flags.Select(f => attributes.Create(f.Attribute, f.Value))]);
            return 0;
        });

    public static IObjectHandle FindKey(ISession session, Pkcs11Module module, string label) =>
        Assert.Single(Pkcs11Token.FindKeys(module, session, label));

    /// <summary>Withdraws or restores the key's use by flipping CKA_WRAP, CKA_UNWRAP, CKA_ENCRYPT and CKA_DECRYPT (SoftHSM has no "disable").</summary>
    public static void SetKeyUsage(string label, bool allowed, string? tokenLabel = null) =>
        WithSession((session, module) =>
        {
            var attributes = module.Factories.ObjectAttributeFactory;
            session.SetAttributeValue(FindKey(session, module, label),
            [
                attributes.Create(CKA.CKA_WRAP, allowed),
                attributes.Create(CKA.CKA_UNWRAP, allowed),
                attributes.Create(CKA.CKA_ENCRYPT, allowed),
                attributes.Create(CKA.CKA_DECRYPT, allowed),
            ]);
            return 0;
        }, tokenLabel);

    /// <summary>C_CloseAllSessions on the token's slot: every session of this process on it is gone, and with them the login.</summary>
    public static void CloseAllSessions(string tokenLabel) => Slot(Pkcs11Module.Load(ModulePath), tokenLabel).CloseAllSessions();

    /// <summary>C_Logout from a session of its own: logs the whole process out of the token.</summary>
    public static void Logout(string tokenLabel) =>
        WithSession((session, _) =>
        {
            session.Logout();
            return 0;
        }, tokenLabel);

    /// <summary>Deletes the token with softhsm2-util, from outside this process.</summary>
    public static void DeleteToken(string tokenLabel)
    {
        using var process = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("softhsm2-util", ["--delete-token", "--token", tokenLabel])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        process.WaitForExit();
        Assert.Equal(0, process.ExitCode);
    }

    private static ISlot Slot(Pkcs11Module module, string tokenLabel) =>
        module.Library.GetSlotList(SlotsType.WithTokenPresent).Single(s => TokenInfo(s)?.Label == tokenLabel);

    // The slot of a token deleted while the module runs answers CKR_GENERAL_ERROR from then on.
    private static ITokenInfo? TokenInfo(ISlot slot)
    {
        try
        {
            return slot.GetTokenInfo();
        }
        catch (Pkcs11Exception)
        {
            return null;
        }
    }
}
