using Net.Pkcs11Interop.HighLevelAPI;

namespace EfEnvelope.Pkcs11.Internal;

/// <summary>A master key found by label and checked (<see cref="Pkcs11Token.CheckKey"/>).</summary>
/// <param name="Handle">The key's handle, valid for the connection that found it.</param>
/// <param name="WrapAllowed">Whether the key has <c>CKA_WRAP</c> and <c>CKA_UNWRAP</c> set.</param>
internal sealed record Pkcs11MasterKey(IObjectHandle Handle, bool WrapAllowed);
