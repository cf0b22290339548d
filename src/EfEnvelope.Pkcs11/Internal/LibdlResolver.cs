using System.Reflection;
using System.Runtime.InteropServices;
using Net.Pkcs11Interop.HighLevelAPI;

namespace EfEnvelope.Pkcs11.Internal;

/// <summary>Lets Pkcs11Interop find <c>libdl</c> on Linux distributions that ship only <c>libdl.so.2</c>.</summary>
/// <remarks>
/// Pkcs11Interop imports <c>dlopen</c>/<c>dlsym</c> from a library named <c>libdl</c>. Since glibc 2.34 those functions
/// live in libc and <c>libdl.so.2</c> is a compatibility stub; the unversioned <c>libdl.so</c> the runtime probes for
/// comes only with development packages (and on Debian 12 not even with <c>libc6-dev</c>). Mapping the name to the
/// versioned file makes the module load with nothing extra installed.
/// </remarks>
internal static class LibdlResolver
{
    private const string RequestedName = "libdl";
    private const string VersionedName = "libdl.so.2";

    private static readonly Lock Gate = new();
    private static bool _registered;
    private static long _resolutions;

    /// <summary>How many times the resolver supplied <c>libdl.so.2</c> (tests check that it is really used).</summary>
    public static long Resolutions => Interlocked.Read(ref _resolutions);

    /// <summary>Registers the resolver for the Pkcs11Interop assembly once per process; does nothing off Linux.</summary>
    public static void Register()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        // A lock rather than a flag exchange: no thread may go on to load a module before registration completed.
        lock (Gate)
        {
            if (_registered)
            {
                return;
            }

            try
            {
                NativeLibrary.SetDllImportResolver(typeof(Pkcs11InteropFactories).Assembly, Resolve);
            }
            catch (InvalidOperationException)
            {
                // The application registered its own resolver for Pkcs11Interop (only one is allowed): it decides.
            }

            _registered = true;
        }
    }

    private static IntPtr Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (libraryName != RequestedName || !NativeLibrary.TryLoad(VersionedName, assembly, searchPath, out var handle))
        {
            // Zero lets the runtime's default probing run, so a system that does have libdl.so still works.
            return IntPtr.Zero;
        }

        Interlocked.Increment(ref _resolutions);
        return handle;
    }
}
