using EfEnvelope.KeyManagement;
using Xunit;

namespace EfEnvelope.AwsKms.Tests.LocalKms;

/// <summary>A test class with a local KMS of its own per test (tests inject faults and count calls, so none is shared).</summary>
public abstract class LocalKmsTestBase : IAsyncLifetime
{
    /// <summary>The key context the provider tests wrap data keys for.</summary>
    protected static readonly KeyContext Patients = KeyContext.For("clinic", "Clinic.Patient");

    protected LocalKmsFixture Kms { get; private set; } = null!;

    protected LocalKmsServer Server => Kms.Server;

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync() => Kms = await LocalKmsFixture.StartAsync();

    public ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        return Kms.DisposeAsync();
    }
}
