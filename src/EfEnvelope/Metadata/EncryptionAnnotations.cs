namespace EfEnvelope.Metadata;

/// <summary>Model annotation names and the names of the shadow properties EfEnvelope adds.</summary>
internal static class EncryptionAnnotations
{
    /// <summary>On a property: configured with <c>IsEncrypted()</c>.</summary>
    public const string Encrypted = "EfEnvelope:Encrypted";

    /// <summary>On a property: its <see cref="BlindIndexOptions"/> when searchable (runtime-only: may hold a delegate).</summary>
    public const string Searchable = "EfEnvelope:Searchable";

    /// <summary>On an entity type: the encrypted CLR property names (string[]), after finalization.</summary>
    public const string EncryptedProperties = "EfEnvelope:EncryptedProperties";

    /// <summary>
    /// On an entity type or an encrypted property: the name bound into its ciphertext (associated data, key contexts,
    /// blind-index keys) instead of its CLR name, so that renaming the class or property keeps stored rows readable.
    /// </summary>
    public const string BindingName = "EfEnvelope:BindingName";

    /// <summary>The name an entity hierarchy's records are bound to: its root type's binding name, else the root type's name.</summary>
    public static string EntityBindingName(Microsoft.EntityFrameworkCore.Metadata.IReadOnlyEntityType entityType)
    {
        var root = entityType.GetRootType();
        return root.FindAnnotation(BindingName)?.Value as string ?? root.Name;
    }

    /// <summary>
    /// On a ciphertext property: the backing field EF found for the encrypted CLR property, which EfEnvelope reads and
    /// writes instead of the property when EF would (<see cref="Microsoft.EntityFrameworkCore.PropertyAccessMode"/>).
    /// </summary>
    public const string BackingField = "EfEnvelope:BackingField";

    /// <summary>On a plain property: configured with <c>IsBoundToRecord()</c>, its value is bound into the record seal.</summary>
    public const string BoundToRecord = "EfEnvelope:BoundToRecord";

    /// <summary>The shadow property (and column) holding a record's wrapped data key.</summary>
    public const string KeyPropertyName = "EfEnvelopeKey";

    /// <summary>On a ciphertext shadow property: the maximum length the encrypted property was configured with (HasMaxLength, [MaxLength], [StringLength]), checked before encrypting.</summary>
    public const string MaxLength = "EfEnvelope:MaxLength";

    /// <summary>On a ciphertext shadow property with <see cref="MaxLength"/>: the database counts a string's length in characters (code points), not UTF-16 code units.</summary>
    public const string MaxLengthInCharacters = "EfEnvelope:MaxLengthInCharacters";

    /// <summary>On a ciphertext shadow property of a decimal: the precision the encrypted property was configured with (HasPrecision, [Precision]), checked before encrypting.</summary>
    public const string Precision = "EfEnvelope:Precision";

    /// <summary>On a ciphertext shadow property of a decimal: the scale that goes with <see cref="Precision"/>.</summary>
    public const string Scale = "EfEnvelope:Scale";

    /// <summary>On a property: the column that still holds its plaintext from before it was encrypted (see docs/KEY-MANAGEMENT.md).</summary>
    public const string LegacyPlaintextColumn = "EfEnvelope:LegacyPlaintextColumn";

    /// <summary>The shadow property mapping the legacy plaintext column of <paramref name="propertyName"/>, while a migration runs.</summary>
    public static string LegacyPlaintextPropertyName(string propertyName) => propertyName + "_LegacyPlaintext";

    /// <summary>The shadow property holding the ciphertext of <paramref name="propertyName"/>; its column keeps the original name.</summary>
    public static string CiphertextPropertyName(string propertyName) => propertyName + "_Ciphertext";

    /// <summary>The shadow property holding the blind index of <paramref name="propertyName"/>; column <c>{column}_Index</c>.</summary>
    public static string IndexPropertyName(string propertyName) => propertyName + "_Index";
}
