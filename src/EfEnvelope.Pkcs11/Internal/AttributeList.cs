using System.Runtime.InteropServices;
using Net.Pkcs11Interop.HighLevelAPI;

namespace EfEnvelope.Pkcs11.Internal;

/// <summary>A template or result of PKCS#11 attributes, wiped and freed together however the call ends.</summary>
/// <remarks>
/// Each attribute keeps its value in unmanaged memory, which Pkcs11Interop frees without overwriting. A data key passed
/// to the token as <c>CKA_VALUE</c>, or read back from it, would otherwise stay behind in the freed native heap.
/// </remarks>
internal sealed class AttributeList(List<IObjectAttribute> items) : IDisposable
{
    public List<IObjectAttribute> Items { get; } = items;

    public void Dispose()
    {
        foreach (var item in Items)
        {
            Wipe(item);
            item.Dispose();
        }
    }

    /// <summary>Overwrites the attribute's unmanaged value with zeros; it stays allocated until disposed.</summary>
    public static void Wipe(IObjectAttribute attribute)
    {
        if (attribute.CannotBeRead)
        {
            return;
        }

        // The structure's layout depends on the platform's CK_ULONG size and packing, one type for each.
        var (value, length) = attribute.ToMarshalableStructure() switch
        {
            Net.Pkcs11Interop.LowLevelAPI80.CK_ATTRIBUTE a => (a.value, a.valueLen),
            Net.Pkcs11Interop.LowLevelAPI81.CK_ATTRIBUTE a => (a.value, a.valueLen),
            Net.Pkcs11Interop.LowLevelAPI40.CK_ATTRIBUTE a => (a.value, (ulong)a.valueLen),
            Net.Pkcs11Interop.LowLevelAPI41.CK_ATTRIBUTE a => (a.value, (ulong)a.valueLen),
            _ => (IntPtr.Zero, 0UL),
        };
        if (value != IntPtr.Zero && length is > 0 and <= int.MaxValue)
        {
            Marshal.Copy(new byte[length], 0, value, (int)length);
        }
    }
}
