namespace EfEnvelope.Internal;

/// <summary>The plaintext a tracked record had when it was read or last saved, and the wrapped key it was read with.</summary>
/// <remarks>
/// EF cannot see edits to the plaintext properties (they are not in the model), so changes are found by comparing
/// against this. It is trusted only while the record's wrapped key is still the one it was taken with.
/// </remarks>
internal sealed class RecordSnapshot(byte[]? wrappedKey, object?[] values)
{
    public byte[]? WrappedKey { get; } = wrappedKey;

    public object?[] Values { get; } = values;

    public bool IsFor(byte[]? currentWrappedKey) =>
        WrappedKey is null ? currentWrappedKey is null : currentWrappedKey is not null && WrappedKey.AsSpan().SequenceEqual(currentWrappedKey);
}
