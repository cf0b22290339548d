using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.Providers;

namespace EfEnvelope.Pkcs11.Tests;

/// <summary>Two fresh keys on the SoftHSM token and a provider configured with both.</summary>
public sealed class Pkcs11ContractFixture : IAsyncLifetime
{
    public Pkcs11MasterKeyProvider? Provider { get; private set; }

    public string SecondKeyId { get; private set; } = "";

    public async ValueTask InitializeAsync()
    {
        if (!SoftHsm.IsConfigured)
        {
            return;
        }

        var primary = await SoftHsm.CreateKeyAsync("contract-primary");
        SecondKeyId = await SoftHsm.CreateKeyAsync("contract-second");
        Provider = new Pkcs11MasterKeyProvider(SoftHsm.Options(primary, SecondKeyId));
    }

    public ValueTask DisposeAsync()
    {
        Provider?.Dispose();
        return ValueTask.CompletedTask;
    }
}

public sealed class Pkcs11ProviderContractTests : MasterKeyProviderContractTests, IClassFixture<Pkcs11ContractFixture>
{
    private readonly Pkcs11ContractFixture _fixture;

    public Pkcs11ProviderContractTests(Pkcs11ContractFixture fixture)
    {
        SoftHsm.Require();
        _fixture = fixture;
    }

    protected override IMasterKeyProvider Provider => _fixture.Provider!;

    protected override string SecondKeyId => _fixture.SecondKeyId;

    // SoftHSM cannot disable a key, but its usage flags are modifiable: clearing CKA_WRAP, CKA_UNWRAP, CKA_ENCRYPT and
    // CKA_DECRYPT makes the token refuse the key for wrapping and unwrapping, which is what disabling a key means here.
    protected override Task DisableKeyAsync(string keyId)
    {
        SoftHsm.SetKeyUsage(keyId, allowed: false);
        return Task.CompletedTask;
    }

    protected override Task EnableKeyAsync(string keyId)
    {
        SoftHsm.SetKeyUsage(keyId, allowed: true);
        return Task.CompletedTask;
    }
}
