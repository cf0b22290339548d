using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using EfEnvelope.KeyManagement;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace EfEnvelope.Pkcs11.Tests;

/// <summary>
/// The token wraps data keys with C_WrapKey where the key allows it, and data wrapped the earlier way (C_Encrypt with
/// AES-GCM) stays readable. The stored forms are checked against docs/pkcs11.md by building and opening them here,
/// with the token, from the documented layout.
/// </summary>
public sealed class KeyWrapTests
{
    private static readonly KeyContext Context = KeyContext.For("pkcs11-tests", "Clinic.Patient");

    public KeyWrapTests() => SoftHsm.Require();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Key_allowed_only_to_wrap_and_unwrap_serves_the_provider_through_C_WrapKey()
    {
        // No CKA_ENCRYPT or CKA_DECRYPT: a C_Encrypt of the data key would be refused by the token.
        var label = SoftHsm.GenerateKey("wrap-only");
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(label));

        using var key = await provider.GenerateDataKeyAsync(label, Context, Ct);

        Assert.Equal(73, key.WrappedKey.Length);
        Assert.Equal(0x02, key.WrappedKey[0]);
        Assert.Equal(key.Plaintext, await provider.DecryptDataKeyAsync(label, key.WrappedKey, Context, Ct));
    }

    [Fact]
    public async Task Key_wrap_form_is_RFC_3394_of_the_data_key_and_its_documented_context_commitment()
    {
        var label = SoftHsm.GenerateKey("wrap-layout");
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(label));
        using var key = await provider.GenerateDataKeyAsync(label, Context, Ct);

        // Unwrap by hand, as docs/pkcs11.md describes, into a session object whose value can be read.
        var secret = SoftHsm.WithSession((session, module) =>
        {
            var attributes = module.Factories.ObjectAttributeFactory;
            using var mechanism = module.Factories.MechanismFactory.Create(CKM.CKM_AES_KEY_WRAP);
            var handle = session.UnwrapKey(mechanism, SoftHsm.FindKey(session, module, label), key.WrappedKey[1..],
            [
                attributes.Create(CKA.CKA_CLASS, CKO.CKO_SECRET_KEY),
                attributes.Create(CKA.CKA_KEY_TYPE, CKK.CKK_GENERIC_SECRET),
                attributes.Create(CKA.CKA_TOKEN, false),
                attributes.Create(CKA.CKA_SENSITIVE, false),
                attributes.Create(CKA.CKA_EXTRACTABLE, true),
            ]);
            return session.GetAttributeValue(handle, [CKA.CKA_VALUE])[0].GetValueAsByteArray();
        });

        Assert.Equal(64, secret.Length);
        Assert.Equal(key.Plaintext, secret[..32]);
        var message = "efenvelope/pkcs11/aes-key-wrap/v1"u8.ToArray().Concat(AssociatedData(label, Context)).ToArray();
        Assert.Equal(HMACSHA256.HashData(key.Plaintext, message), secret[32..]);
    }

    [Fact]
    public async Task Data_key_encrypted_with_AES_GCM_as_earlier_versions_stored_it_still_unwraps()
    {
        // A key set up as the earlier guide said (encrypt and decrypt only), used by the earlier provider, then given
        // CKA_WRAP and CKA_UNWRAP as docs/pkcs11.md now asks.
        var label = SoftHsm.GenerateKey("legacy", (CKA.CKA_WRAP, false), (CKA.CKA_UNWRAP, false), (CKA.CKA_ENCRYPT, true), (CKA.CKA_DECRYPT, true));
        var dataKey = RandomNumberGenerator.GetBytes(32);
        var iv = RandomNumberGenerator.GetBytes(12);
        var stored = SoftHsm.WithSession((session, module) =>
        {
            var parameters = module.Factories.MechanismParamsFactory.CreateCkGcmParams(iv, 96, AssociatedData(label, Context), 128);
            using var mechanism = module.Factories.MechanismFactory.Create(CKM.CKM_AES_GCM, parameters);
            return iv.Concat(session.Encrypt(mechanism, SoftHsm.FindKey(session, module, label), dataKey)).ToArray();
        });
        Assert.Equal(60, stored.Length);

        using (var before = new Pkcs11MasterKeyProvider(SoftHsm.Options(label)))
        {
            Assert.Equal(dataKey, await before.DecryptDataKeyAsync(label, stored, Context, Ct));

            // Without CKA_WRAP the provider keeps writing the GCM form.
            using var written = await before.GenerateDataKeyAsync(label, Context, Ct);
            Assert.Equal(60, written.WrappedKey.Length);
        }

        SoftHsm.SetFlags(label, (CKA.CKA_WRAP, true), (CKA.CKA_UNWRAP, true));
        using var after = new Pkcs11MasterKeyProvider(SoftHsm.Options(label));

        using var fresh = await after.GenerateDataKeyAsync(label, Context, Ct);
        Assert.Equal(73, fresh.WrappedKey.Length);
        Assert.Equal(dataKey, await after.DecryptDataKeyAsync(label, stored, Context, Ct));
    }

    [Fact]
    public async Task Key_wrap_form_moved_to_another_entity_or_application_fails_its_commitment()
    {
        var label = await SoftHsm.CreateKeyAsync("wrap-moved");
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(label));
        using var key = await provider.GenerateDataKeyAsync(label, Context, Ct);

        foreach (var other in new[] { KeyContext.For("pkcs11-tests", "Clinic.Invoice"), KeyContext.For("other-app", "Clinic.Patient") })
        {
            var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => provider.DecryptDataKeyAsync(label, key.WrappedKey, other, Ct));

            Assert.Contains("commitment", error.Message, StringComparison.Ordinal);
            Assert.Equal(other.Entity, error.Entity);
        }
    }

    [Fact]
    public async Task Key_wrap_form_named_as_another_master_key_fails_to_unwrap()
    {
        var first = await SoftHsm.CreateKeyAsync("wrap-first");
        var second = await SoftHsm.CreateKeyAsync("wrap-second");
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(first, second));
        using var key = await provider.GenerateDataKeyAsync(first, Context, Ct);

        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => provider.DecryptDataKeyAsync(second, key.WrappedKey, Context, Ct));

        Assert.Equal(second, error.KeyId);
    }

    [Fact]
    public async Task Every_changed_byte_of_the_key_wrap_form_is_a_tamper_error()
    {
        var label = await SoftHsm.CreateKeyAsync("wrap-tamper");
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(label));
        using var key = await provider.GenerateDataKeyAsync(label, Context, Ct);

        for (var position = 0; position < key.WrappedKey.Length; position++)
        {
            var tampered = key.WrappedKey.ToArray();
            tampered[position] ^= 0x01;

            var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => provider.DecryptDataKeyAsync(label, tampered, Context, Ct));

            Assert.Equal(label, error.KeyId);
        }

        // The sessions that saw the failures went back to the pool in a usable state.
        Assert.Equal(key.Plaintext, await provider.DecryptDataKeyAsync(label, key.WrappedKey, Context, Ct));
    }

    [Fact]
    public async Task Unknown_form_byte_is_refused_as_tampering()
    {
        var label = await SoftHsm.CreateKeyAsync("wrap-form");
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(label));
        using var key = await provider.GenerateDataKeyAsync(label, Context, Ct);
        var relabelled = key.WrappedKey.ToArray();
        relabelled[0] = 0x03;

        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => provider.DecryptDataKeyAsync(label, relabelled, Context, Ct));

        Assert.Contains("0x03", error.Message, StringComparison.Ordinal);
        Assert.Null(error.InnerException);
    }

    [Fact]
    public void Attribute_values_are_wiped_in_unmanaged_memory_before_they_are_freed()
    {
        // Pkcs11Interop frees attribute memory without overwriting it; the secret passed as CKA_VALUE must not stay there.
        var attribute = new Net.Pkcs11Interop.HighLevelAPI.Factories.ObjectAttributeFactory().Create(CKA.CKA_VALUE, RandomNumberGenerator.GetBytes(64));

        Internal.AttributeList.Wipe(attribute);

        Assert.Equal(new byte[64], attribute.GetValueAsByteArray());
        attribute.Dispose();
    }

    // docs/pkcs11.md: uint32 big-endian length || UTF-8 key label || KeyContext.ToAssociatedData().
    private static byte[] AssociatedData(string label, KeyContext context)
    {
        var bytes = Encoding.UTF8.GetBytes(label);
        var length = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(length, (uint)bytes.Length);
        return [.. length, .. bytes, .. context.ToAssociatedData()];
    }
}
