using System.ComponentModel.DataAnnotations.Schema;

namespace EfEnvelope;

/// <summary>Stores this property encrypted: the database only ever sees AES-256-GCM ciphertext under the record's own data key.</summary>
/// <remarks>
/// <para>
/// Supported types: <see cref="string"/>, <see cref="byte"/>[], <see cref="bool"/>, <see cref="byte"/>, <see cref="short"/>,
/// <see cref="int"/>, <see cref="long"/>, <see cref="float"/>, <see cref="double"/>, <see cref="decimal"/>, <see cref="Guid"/>,
/// <see cref="DateTime"/>, <see cref="DateTimeOffset"/>, <see cref="DateOnly"/>, <see cref="TimeOnly"/>, <see cref="TimeSpan"/>,
/// enums, and their nullable forms. A null value is stored as NULL, so whether a value is present is visible in the
/// database; the ciphertext length reveals the plaintext length.
/// </para>
/// <para>
/// Encrypted properties cannot be keys, foreign keys or indexed, cannot live in complex types, and cannot be
/// compared, ordered or searched in a query (the database holds random-looking bytes) unless made
/// <see cref="Searchable"/>. Use the fluent
/// <c>IsEncrypted()</c> to configure the same in <c>OnModelCreating</c>.
/// </para>
/// <para>
/// With <see cref="Searchable"/>, a keyed blind index (HMAC-SHA256) is stored beside the ciphertext and equality
/// queries (<c>==</c>, <c>!=</c>, <c>Equals</c>, <c>Contains</c> over a list, joins) are translated to it. The index
/// reveals which rows share a value of this property, and how often each value occurs; nothing more.
/// </para>
/// <para>
/// The attribute derives from <see cref="DatabaseGeneratedAttribute"/> (with <see cref="DatabaseGeneratedOption.None"/>,
/// true of every encrypted property: the database cannot compute ciphertext) so that EF Core creates it while it builds
/// any model, also one whose options never call <c>UseEnvelopeEncryption</c>: its constructor then installs the check
/// that refuses such a context at its first use instead of letting it store plaintext. EF reads that attribute only
/// as a list, so it combines with any other annotation, <c>[Column]</c> included.
/// </para>
/// </remarks>
[AttributeUsage(AttributeTargets.Property, AllowMultiple = false, Inherited = true)]
public sealed class EncryptedAttribute : DatabaseGeneratedAttribute
{
    /// <summary>Marks the property encrypted.</summary>
    public EncryptedAttribute()
        : base(DatabaseGeneratedOption.None) => Infrastructure.UnregisteredEncryptionGuard.Install();

    /// <summary>Whether equality queries on this property are supported through a blind index.</summary>
    public bool Searchable { get; set; }

    /// <summary>The normalisation of string values before indexing (searchable properties only).</summary>
    public BlindIndexNormalization Normalization { get; set; }

    /// <summary>How many bytes of the index are kept, 1 to 32; the default is 32 (see <see cref="BlindIndexOptions.IndexBytes"/>).</summary>
    public int IndexBytes { get; set; } = 32;

    /// <summary>Whether the database index on the blind index is unique.</summary>
    public bool UniqueIndex { get; set; }

    internal BlindIndexOptions? ToSearchOptions() =>
        Searchable ? new BlindIndexOptions { Normalization = Normalization, IndexBytes = IndexBytes, Unique = UniqueIndex } : null;

    /// <summary>
    /// The column that still holds this property's plaintext from before it was encrypted, while an existing table
    /// is migrated (null when there is none, the default).
    /// </summary>
    /// <remarks>
    /// Rows whose ciphertext is NULL are read from this column; saving such a row encrypts it and sets this column to
    /// NULL; <c>EnvelopeKeyLifecycle.EncryptLegacyPlaintextAsync</c> converts the rest. Once no row holds plaintext, remove
    /// this setting and drop the column. docs/KEY-MANAGEMENT.md shows the migrations.
    /// </remarks>
    public string? LegacyPlaintextColumn { get; set; }

    /// <summary>The name bound into this property's ciphertext and blind index instead of the property's own name.</summary>
    /// <remarks>
    /// Every stored value is bound to the names of its entity and property, so that it cannot be moved to another
    /// column. Renaming the property changes that name and makes existing rows fail authentication; set this to the
    /// old name when renaming (docs/MIGRATIONS.md). Null, the default, uses the property's name.
    /// </remarks>
    public string? BindingName { get; set; }
}
