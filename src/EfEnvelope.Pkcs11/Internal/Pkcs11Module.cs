using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace EfEnvelope.Pkcs11.Internal;

/// <summary>A PKCS#11 module loaded and initialised once per process, shared by every provider that names it.</summary>
/// <remarks>
/// <c>C_Initialize</c> is process-wide state: a second load of the same module would share it, and a <c>C_Finalize</c>
/// by one user would pull the token from under all others. So each module is loaded once and never finalised; the
/// operating system releases it when the process exits.
/// </remarks>
internal sealed class Pkcs11Module
{
    private static readonly Lock Gate = new();
    private static readonly Dictionary<string, Pkcs11Module> Loaded = new(StringComparer.Ordinal);

    static Pkcs11Module() => LibdlResolver.Register();

    private Pkcs11Module(string libraryPath, Pkcs11InteropFactories factories, IPkcs11Library library)
    {
        LibraryPath = libraryPath;
        Factories = factories;
        Library = library;
    }

    public string LibraryPath { get; }

    public Pkcs11InteropFactories Factories { get; }

    public IPkcs11Library Library { get; }

    /// <summary>Returns the loaded module, loading it on first use; a failed load is not remembered, so a fixed path works.</summary>
    public static Pkcs11Module Load(string libraryPath)
    {
        lock (Gate)
        {
            if (Loaded.TryGetValue(libraryPath, out var module))
            {
                return module;
            }

            if (Path.IsPathRooted(libraryPath) && !File.Exists(libraryPath))
            {
                throw LoadFailed(libraryPath, "there is no file at that path", null);
            }

            var factories = new Pkcs11InteropFactories();
            IPkcs11Library library;
            try
            {
                // Multi-threaded: the module must use OS locking, since sessions are used from many threads.
                library = factories.Pkcs11LibraryFactory.LoadPkcs11Library(factories, libraryPath, AppType.MultiThreaded);
            }
            catch (Exception ex) when (ex is UnmanagedException or DllNotFoundException or BadImageFormatException or EntryPointNotFoundException)
            {
                throw LoadFailed(libraryPath, "it could not be loaded as a PKCS#11 module", ex);
            }
            catch (Pkcs11Exception ex)
            {
                throw LoadFailed(libraryPath, $"its {ex.Method} returned {ex.RV}", ex);
            }

            module = new Pkcs11Module(libraryPath, factories, library);
            Loaded.Add(libraryPath, module);
            return module;
        }
    }

    private static MasterKeyConfigurationException LoadFailed(string libraryPath, string reason, Exception? inner) =>
        new(
            $"The PKCS#11 module '{libraryPath}' set in {nameof(Pkcs11Options)}.{nameof(Pkcs11Options.LibraryPath)} cannot be used: {reason}. "
            + "Point it at the HSM vendor's PKCS#11 library (for SoftHSM2 on Debian: /usr/lib/softhsm/libsofthsm2.so), built for this process's architecture.",
            Pkcs11MasterKeyProvider.ProviderName,
            null,
            null,
            inner);
}
