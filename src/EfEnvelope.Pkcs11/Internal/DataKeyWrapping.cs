using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using EfEnvelope.KeyManagement;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace EfEnvelope.Pkcs11.Internal;

/// <summary>The two stored forms of a data key wrapped by the token, and how each is made and opened.</summary>
/// <remarks>
/// <para>
/// <b>Key wrap</b> (written when the master key may wrap and unwrap and the token offers <c>CKM_AES_KEY_WRAP</c>),
/// 73 bytes: <c>0x02</c>, then
/// <c>CKM_AES_KEY_WRAP</c> (RFC 3394) of the 64-byte secret <c>data key || commitment</c>. RFC 3394 takes no associated
/// data, so the commitment binds the context instead: HMAC-SHA256 keyed with the data key over a domain label, the key
/// label and the context. A blob moved to another entity, application or key unwraps to a commitment that does not
/// match there; changing a byte of it breaks RFC 3394's integrity check; and forging one needs the master key.
/// </para>
/// <para>
/// <b>GCM encryption</b> (what every earlier version wrote, and still written for a key without <c>CKA_WRAP</c> and
/// <c>CKA_UNWRAP</c>), 60 bytes with no leading byte: IV, ciphertext, tag of <c>C_Encrypt</c> with
/// <c>CKM_AES_GCM</c> and the key label and context as associated data. The two lengths differ, so the form is never
/// ambiguous.
/// </para>
/// </remarks>
internal static class DataKeyWrapping
{
    public const int KeySize = 32;
    public const byte KeyWrapForm = 0x02;
    public const int GcmSize = IvSize + KeySize + TagSize;
    private const int IvSize = 12;
    private const int TagSize = 16;
    private const int CommitmentSize = 32;
    private const int SecretSize = KeySize + CommitmentSize;

    // RFC 3394 adds one 8-byte integrity block.
    private const int KeyWrapSize = 1 + SecretSize + 8;

    private static readonly byte[] CommitmentLabel = "efenvelope/pkcs11/aes-key-wrap/v1"u8.ToArray();

    /// <summary>Whether <paramref name="length"/> is the length of either stored form.</summary>
    public static bool IsKnownLength(int length) => length is GcmSize or KeyWrapSize;

    public static string ExpectedLengths => $"{KeyWrapSize} or {GcmSize}";

    public static byte[] WrapWithKeyWrap(Pkcs11InteropFactories factories, ISession session, IObjectHandle masterKey, byte[] dataKey, string keyId, KeyContext context)
    {
        var secret = new byte[SecretSize];
        try
        {
            dataKey.CopyTo(secret, 0);
            Commit(dataKey, keyId, context, secret.AsSpan(KeySize));

            // The secret has to be an object on the token before C_WrapKey can take it; it is gone once wrapped.
            IObjectHandle handle;
            using (var template = SessionSecret(factories, sensitive: true, secret))
            {
                handle = session.CreateObject(template.Items);
            }

            byte[] wrapped;
            try
            {
                using var mechanism = factories.MechanismFactory.Create(CKM.CKM_AES_KEY_WRAP);
                wrapped = session.WrapKey(mechanism, masterKey, handle);
            }
            finally
            {
                session.DestroyObject(handle);
            }

            if (wrapped.Length != KeyWrapSize - 1)
            {
                throw new MasterKeyException(
                    $"The token returned {wrapped.Length} bytes for a CKM_AES_KEY_WRAP of a {SecretSize}-byte secret (expected {KeyWrapSize - 1}); its key wrap does not follow RFC 3394.",
                    Pkcs11MasterKeyProvider.ProviderName, keyId, context.Entity);
            }

            var blob = new byte[KeyWrapSize];
            blob[0] = KeyWrapForm;
            wrapped.CopyTo(blob, 1);
            return blob;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(secret);
        }
    }

    public static byte[] UnwrapKeyWrap(Pkcs11InteropFactories factories, ISession session, IObjectHandle masterKey, byte[] blob, string keyId, KeyContext context)
    {
        if (blob.Length != KeyWrapSize || blob[0] != KeyWrapForm)
        {
            throw new EnvelopeDecryptionException(
                $"The wrapped key is not in a form this provider writes ({blob.Length} bytes, leading byte 0x{blob[0]:x2}).", context.Entity, null, keyId);
        }

        // The unwrapped secret must come back out of the token, so the new session object is deliberately not
        // sensitive; it lives only until its value has been read.
        IObjectHandle handle;
        using (var mechanism = factories.MechanismFactory.Create(CKM.CKM_AES_KEY_WRAP))
        using (var template = SessionSecret(factories, sensitive: false, value: null))
        {
            handle = session.UnwrapKey(mechanism, masterKey, blob[1..], template.Items);
        }

        byte[] secret;
        try
        {
            using var value = new AttributeList(session.GetAttributeValue(handle, [CKA.CKA_VALUE]));
            secret = value.Items[0].GetValueAsByteArray();
        }
        finally
        {
            session.DestroyObject(handle);
        }

        try
        {
            Span<byte> expected = stackalloc byte[CommitmentSize];
            if (secret.Length != SecretSize || !CommitmentMatches(secret, keyId, context, expected))
            {
                throw new EnvelopeDecryptionException(
                    "The wrapped key was made for another entity, application or master key: its context commitment does not match.", context.Entity, null, keyId);
            }

            return secret[..KeySize];
        }
        finally
        {
            CryptographicOperations.ZeroMemory(secret);
        }
    }

    public static byte[] EncryptWithGcm(Pkcs11InteropFactories factories, ISession session, IObjectHandle masterKey, byte[] dataKey, string keyId, KeyContext context)
    {
        var iv = new byte[IvSize];
        RandomNumberGenerator.Fill(iv);
        byte[] sealedKey;
        using (var mechanism = GcmMechanism(factories, iv, keyId, context))
        {
            sealedKey = session.Encrypt(mechanism, masterKey, dataKey);
        }

        if (sealedKey.Length != KeySize + TagSize)
        {
            throw new MasterKeyException(
                $"The token returned {sealedKey.Length} bytes for an AES-GCM encryption of a 32-byte key (expected {KeySize + TagSize}); its CKM_AES_GCM does not follow PKCS#11.",
                Pkcs11MasterKeyProvider.ProviderName, keyId, context.Entity);
        }

        var blob = new byte[GcmSize];
        iv.CopyTo(blob, 0);
        sealedKey.CopyTo(blob, IvSize);
        return blob;
    }

    public static byte[] DecryptGcm(Pkcs11InteropFactories factories, ISession session, IObjectHandle masterKey, byte[] blob, string keyId, KeyContext context)
    {
        byte[] plaintext;
        using (var mechanism = GcmMechanism(factories, blob[..IvSize], keyId, context))
        {
            plaintext = session.Decrypt(mechanism, masterKey, blob[IvSize..]);
        }

        if (plaintext.Length != KeySize)
        {
            CryptographicOperations.ZeroMemory(plaintext);
            throw new EnvelopeDecryptionException($"The wrapped key unwrapped to {plaintext.Length} bytes instead of {KeySize}.", context.Entity, null, keyId);
        }

        return plaintext;
    }

    private static IMechanism GcmMechanism(Pkcs11InteropFactories factories, byte[] iv, string keyId, KeyContext context)
    {
        var parameters = factories.MechanismParamsFactory.CreateCkGcmParams(iv, IvSize * 8, AssociatedData(keyId, context), TagSize * 8);
        return factories.MechanismFactory.Create(CKM.CKM_AES_GCM, parameters);
    }

    // A generic secret that lives in this session only (never a token object) and may be wrapped (extractable).
    private static AttributeList SessionSecret(Pkcs11InteropFactories factories, bool sensitive, byte[]? value)
    {
        var attributes = factories.ObjectAttributeFactory;
        var template = new AttributeList(
        [
            attributes.Create(CKA.CKA_CLASS, CKO.CKO_SECRET_KEY),
            attributes.Create(CKA.CKA_KEY_TYPE, CKK.CKK_GENERIC_SECRET),
            attributes.Create(CKA.CKA_TOKEN, false),
            attributes.Create(CKA.CKA_PRIVATE, true),
            attributes.Create(CKA.CKA_SENSITIVE, sensitive),
            attributes.Create(CKA.CKA_EXTRACTABLE, true),
        ]);
        if (value is not null)
        {
            template.Items.Add(attributes.Create(CKA.CKA_VALUE, value));
        }

        return template;
    }

    private static void Commit(ReadOnlySpan<byte> dataKey, string keyId, KeyContext context, Span<byte> commitment)
    {
        var ad = AssociatedData(keyId, context);
        var message = new byte[CommitmentLabel.Length + ad.Length];
        CommitmentLabel.CopyTo(message, 0);
        ad.CopyTo(message, CommitmentLabel.Length);
        HMACSHA256.HashData(dataKey, message, commitment);
    }

    private static bool CommitmentMatches(byte[] secret, string keyId, KeyContext context, Span<byte> expected)
    {
        Commit(secret.AsSpan(0, KeySize), keyId, context, expected);
        return CryptographicOperations.FixedTimeEquals(expected, secret.AsSpan(KeySize));
    }

    // The key label is bound too, so a blob cannot be relabelled as belonging to another key on the token. It is
    // length-prefixed; the context encoding that follows is itself length-prefixed, so the whole is unambiguous.
    private static byte[] AssociatedData(string keyId, KeyContext context)
    {
        var label = Encoding.UTF8.GetBytes(keyId);
        var rest = context.ToAssociatedData();
        var data = new byte[4 + label.Length + rest.Length];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)label.Length);
        label.CopyTo(data, 4);
        rest.CopyTo(data, 4 + label.Length);
        return data;
    }
}
