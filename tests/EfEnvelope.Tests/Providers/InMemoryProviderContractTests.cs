using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.Providers;

namespace EfEnvelope.Tests.Providers;

public sealed class InMemoryProviderContractTests : MasterKeyProviderContractTests
{
    private readonly InsecureInMemoryMasterKeyProvider _provider = new InsecureInMemoryMasterKeyProvider("primary").AddKey("second");

    protected override IMasterKeyProvider Provider => _provider;

    protected override string SecondKeyId => "second";

    protected override Task DisableKeyAsync(string keyId)
    {
        _provider.DisableKey(keyId);
        return Task.CompletedTask;
    }

    protected override Task EnableKeyAsync(string keyId)
    {
        _provider.EnableKey(keyId);
        return Task.CompletedTask;
    }
}
