using EfEnvelope.Infrastructure;
using EfEnvelope.Metadata;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;

namespace EfEnvelope.ChangeTracking;

/// <summary>The plaintext a tracked record had when it was read or last saved, and the wrapped key it was read with.</summary>
/// <remarks>
/// EF cannot see edits to the plaintext properties (they are not in the model), so changes are found by comparing
/// against this. It is trusted only while the record's wrapped key is still the one it was taken with.
/// </remarks>
internal sealed class RecordSnapshot(byte[]? wrappedKey, object?[] values, bool replacesStored = false, bool storedWithoutKey = false, byte[]?[]? written = null, bool storedKeyUnknown = false, object?[]? bound = null)
{
    private readonly byte[]?[]? _written = written;

    /// <summary>
    /// True when the row was read from the database and has no data key (its encrypted columns were added by a
    /// migration, or hold only NULLs): an edit gives it a fresh key. False for an attached instance, whose stored key
    /// is simply not known yet.
    /// </summary>
    public bool StoredWithoutKey { get; } = storedWithoutKey;

    /// <summary>
    /// True for an instance given to <c>Update()</c>: it replaces the stored row, so all its encrypted values are
    /// written under a fresh data key. (An attached instance is compared with this baseline instead.)
    /// </summary>
    public bool ReplacesStored { get; } = replacesStored;

    /// <summary>
    /// True for an instance that was Added until it was declared stored (<c>State = Unchanged</c>): its key and ciphertext
    /// columns hold what a failed insert may have assigned, not the stored row's, so an edit fetches the stored key
    /// and ciphertext first, as for an attached instance.
    /// </summary>
    public bool StoredKeyUnknown { get; } = storedKeyUnknown;

    public byte[]? WrappedKey { get; } = wrappedKey;

    public object?[] Values { get; } = values;

    /// <summary>
    /// Set once change detection has seen an unsaved edit of these values: the copy of the stored key column that
    /// EfEnvelope put in the entry in place of the stored array (same bytes, another instance), with EF's "unknown"
    /// flag on the column, so that EF reports the next assignment of the key column even when its bytes are equal
    /// (see <see cref="EncryptionChangeDetector"/>). Null while no edit is pending; a new snapshot starts without one.
    /// </summary>
    public byte[]? PendingKey { get; set; }

    /// <summary>
    /// The values of the record's <c>IsBoundToRecord()</c> columns that it was verified or sealed with, in
    /// <see cref="EncryptedEntity.BoundColumns"/> order; null when the type binds none or they are not known (an attached
    /// instance's are the application's, checked against the stored row when its key is fetched).
    /// </summary>
    public object?[]? Bound { get; } = bound;

    /// <summary>The current values of the bound columns of <paramref name="entry"/>, for a record just verified or sealed with them.</summary>
    public static object?[]? BoundOf(InternalEntityEntry entry, EncryptedEntity encrypted) =>
        encrypted.BoundColumns.Length == 0 ? null : [.. encrypted.BoundColumns.Select(c => entry[c.Property])];

    /// <summary>The bound column values in a stored row (<see cref="EnvelopeRuntime.StoredProperties"/> order, bound columns last).</summary>
    public static object?[]? BoundOf(EncryptedEntity encrypted, object?[] stored) =>
        encrypted.BoundColumns.Length == 0 ? null : stored[^encrypted.BoundColumns.Length..];

    /// <summary>
    /// Whether <paramref name="ciphertext"/> is the very ciphertext a lifecycle job produced for property
    /// <paramref name="index"/> from these values under this wrapped key: the save then writes it as it is.
    /// </summary>
    public bool Wrote(int index, object? ciphertext) => _written is not null && ReferenceEquals(_written[index], ciphertext);

    public bool IsFor(byte[]? currentWrappedKey) =>
        WrappedKey is null ? currentWrappedKey is null : currentWrappedKey is not null && WrappedKey.AsSpan().SequenceEqual(currentWrappedKey);
}
