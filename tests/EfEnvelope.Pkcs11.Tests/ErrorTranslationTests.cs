using EfEnvelope.Pkcs11.Internal;
using Net.Pkcs11Interop.Common;

namespace EfEnvelope.Pkcs11.Tests;

/// <summary>
/// Token answers SoftHSM cannot be made to give (a locked PIN, a removed device, a full session table), translated
/// by the same functions the provider uses.
/// </summary>
public sealed class ErrorTranslationTests
{
    private const string Pin = "translation-test-pin-0815";

    private static readonly Pkcs11Configuration Configuration = new Pkcs11Options
    {
        LibraryPath = "/usr/lib/softhsm/libsofthsm2.so",
        TokenLabel = "clinic",
        KeyLabel = "patients-kek",
        Pin = Pin,
        MaxSessions = 6,
    }.Build();

    [Fact]
    public void Locked_PIN_is_revoked_access_that_the_security_officer_must_lift()
    {
        var error = Pkcs11Token.LoginFailed(new Pkcs11Exception("C_Login", CKR.CKR_PIN_LOCKED), Configuration);

        Assert.IsType<MasterKeyAccessRevokedException>(error);
        Assert.Contains("'clinic'", error.Message, StringComparison.Ordinal);
        Assert.Contains("security officer", error.Message, StringComparison.Ordinal);
        Assert.Contains("Pkcs11Options.Pin", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(Pin, error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Expired_PIN_asks_for_a_new_one()
    {
        var error = Pkcs11Token.LoginFailed(new Pkcs11Exception("C_Login", CKR.CKR_PIN_EXPIRED), Configuration);

        Assert.IsNotType<MasterKeyAccessRevokedException>(error);
        Assert.Contains("CKR_PIN_EXPIRED", error.Message, StringComparison.Ordinal);
        Assert.Contains("Pkcs11Options.Pin", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(CKR.CKR_TOKEN_NOT_PRESENT)]
    [InlineData(CKR.CKR_DEVICE_REMOVED)]
    public void Token_that_is_gone_is_named_by_its_label_option(CKR rv)
    {
        var error = Pkcs11Token.Unavailable(new Pkcs11Exception("C_EncryptInit", rv), Configuration, "wrap with master key 'patients-kek'", "patients-kek", "Clinic.Patient");

        Assert.Contains("Pkcs11Options.TokenLabel", error.Message, StringComparison.Ordinal);
        Assert.Contains("not present", error.Message, StringComparison.Ordinal);
        Assert.Equal("patients-kek", error.KeyId);
        Assert.Equal("Clinic.Patient", error.Entity);
    }

    [Fact]
    public void Full_session_table_points_at_MaxSessions()
    {
        var error = Pkcs11Token.Unavailable(new Pkcs11Exception("C_OpenSession", CKR.CKR_SESSION_COUNT), Configuration, "open a session");

        Assert.Contains("Pkcs11Options.MaxSessions", error.Message, StringComparison.Ordinal);
        Assert.Contains("currently 6", error.Message, StringComparison.Ordinal);
    }
}
