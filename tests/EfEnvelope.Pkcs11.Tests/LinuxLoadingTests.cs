using System.Runtime.InteropServices;
using EfEnvelope.KeyManagement;
using EfEnvelope.Pkcs11.Internal;

namespace EfEnvelope.Pkcs11.Tests;

public sealed class LinuxLoadingTests
{
    public LinuxLoadingTests() => SoftHsm.Require();

    [Fact]
    public async Task Module_loads_through_the_libdl_so_2_mapping_on_Linux()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "libdl is a Linux concern");
        var label = await SoftHsm.CreateKeyAsync("loading");
        using var provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(label));

        using var key = await provider.GenerateDataKeyAsync(label, KeyContext.For("pkcs11-tests", "Clinic.Patient"), TestContext.Current.CancellationToken);

        // Where the unversioned libdl.so exists (a dev package on an older glibc) the runtime could find it alone;
        // the resolver is asked first all the same, so it must have supplied libdl.so.2.
        Assert.True(LibdlResolver.Resolutions > 0);
        var unversioned = NativeLibrary.TryLoad("libdl.so", out var handle);
        if (unversioned)
        {
            NativeLibrary.Free(handle);
        }

        TestContext.Current.TestOutputHelper?.WriteLine($"libdl.so present: {unversioned}; resolver supplied libdl.so.2 {LibdlResolver.Resolutions} time(s).");
    }
}
