namespace EfEnvelope.AwsKms;

/// <summary>A data key moved to another master key by <c>ReEncrypt</c>: the key ARN it is now under, and its new blob.</summary>
/// <param name="KeyId">The key ARN KMS encrypted under; the id to store with the blob, as for a generated key.</param>
/// <param name="WrappedKey">The data key wrapped under <paramref name="KeyId"/>.</param>
public sealed record ReEncryptedDataKey(string KeyId, byte[] WrappedKey);
