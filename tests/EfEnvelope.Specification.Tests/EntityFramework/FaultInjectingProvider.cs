using EfEnvelope.KeyManagement;

namespace EfEnvelope.Specification.Tests.EntityFramework;

/// <summary>Wraps a real provider and makes its calls fail on demand, to test what a failing KMS or HSM leaves behind.</summary>
public sealed class FaultInjectingProvider(IMasterKeyProvider inner) : IMasterKeyProvider
{
    private int _failuresLeft;

    public string Name => inner.Name;

    public string PrimaryKeyId => inner.PrimaryKeyId;

    public int Calls { get; private set; }

    /// <summary>Fails the next <paramref name="count"/> calls with <see cref="MasterKeyException"/>.</summary>
    public void FailNext(int count) => _failuresLeft = count;

    public bool IsKeyConfigured(string keyId) => inner.IsKeyConfigured(keyId);

    public Task<GeneratedDataKey> GenerateDataKeyAsync(string keyId, KeyContext context, CancellationToken cancellationToken)
    {
        Fail(keyId);
        return inner.GenerateDataKeyAsync(keyId, context, cancellationToken);
    }

    public Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, KeyContext context, CancellationToken cancellationToken)
    {
        Fail(keyId);
        return inner.DecryptDataKeyAsync(keyId, wrappedKey, context, cancellationToken);
    }

    private void Fail(string keyId)
    {
        Calls++;
        if (_failuresLeft > 0)
        {
            _failuresLeft--;
            throw new MasterKeyException("Injected provider failure.", Name, keyId);
        }
    }
}
