using EfEnvelope.Infrastructure;
using EfEnvelope.Metadata;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

// Declared in EF's namespace so that no extra using is needed in OnModelCreating.
namespace Microsoft.EntityFrameworkCore;

/// <summary>Fluent configuration of encrypted properties.</summary>
public static class EncryptedPropertyBuilderExtensions
{
    /// <summary>Stores the property encrypted, as <see cref="EfEnvelope.EncryptedAttribute"/> does.</summary>
    /// <remarks>The same rules apply: a supported type, not a key, foreign key or index, not in a complex type.</remarks>
    public static PropertyBuilder<TProperty> IsEncrypted<TProperty>(this PropertyBuilder<TProperty> propertyBuilder)
    {
        ArgumentNullException.ThrowIfNull(propertyBuilder);
        propertyBuilder.HasAnnotation(EncryptionAnnotations.Encrypted, true);
        UnregisteredEncryptionGuard.Install();
        return propertyBuilder;
    }

    /// <summary>Stores the property encrypted and searchable by equality through a blind index.</summary>
    /// <param name="propertyBuilder">The property.</param>
    /// <param name="configureSearch">Sets normalisation, index length and uniqueness of the blind index.</param>
    public static PropertyBuilder<TProperty> IsEncrypted<TProperty>(this PropertyBuilder<TProperty> propertyBuilder, Action<EfEnvelope.BlindIndexOptions> configureSearch)
    {
        ArgumentNullException.ThrowIfNull(propertyBuilder);
        ArgumentNullException.ThrowIfNull(configureSearch);
        var options = new EfEnvelope.BlindIndexOptions();
        configureSearch(options);
        propertyBuilder.HasAnnotation(EncryptionAnnotations.Encrypted, true);
        UnregisteredEncryptionGuard.Install();
        propertyBuilder.HasAnnotation(EncryptionAnnotations.Searchable, options);
        return propertyBuilder;
    }

    /// <summary>Stores the property encrypted, as <see cref="EfEnvelope.EncryptedAttribute"/> does.</summary>
    public static PropertyBuilder IsEncrypted(this PropertyBuilder propertyBuilder)
    {
        ArgumentNullException.ThrowIfNull(propertyBuilder);
        propertyBuilder.HasAnnotation(EncryptionAnnotations.Encrypted, true);
        UnregisteredEncryptionGuard.Install();
        return propertyBuilder;
    }

    /// <summary>
    /// Names the column that still holds this encrypted property's plaintext from before it was encrypted, as
    /// <see cref="EfEnvelope.EncryptedAttribute.LegacyPlaintextColumn"/> does; for migrating an existing table.
    /// </summary>
    /// <remarks>Rows with NULL ciphertext read this column; saves and <c>EnvelopeKeyLifecycle.EncryptLegacyPlaintextAsync</c> encrypt them and set it to NULL.</remarks>
    public static PropertyBuilder<TProperty> HasLegacyPlaintextColumn<TProperty>(this PropertyBuilder<TProperty> propertyBuilder, string columnName)
    {
        ArgumentNullException.ThrowIfNull(propertyBuilder);
        ArgumentException.ThrowIfNullOrWhiteSpace(columnName);
        propertyBuilder.HasAnnotation(EncryptionAnnotations.LegacyPlaintextColumn, columnName);
        return propertyBuilder;
    }

    /// <summary>Authenticates this plain (unencrypted) column with the record's encrypted values, through the record seal.</summary>
    /// <remarks>
    /// <para>
    /// For columns that decide whose data a record is, such as a tenant id or an owner's foreign key: a database writer
    /// who changes the column (or moves the record's encrypted columns to a row with another value) makes the record
    /// fail with <see cref="EfEnvelope.EnvelopeDecryptionException"/> when it is read. The column itself stays in
    /// plaintext, queryable as before. The primary key is bound without this whenever its value is known before insert.
    /// </para>
    /// <para>
    /// A save that changes the column rewrites the record's key column with a new seal. Rows written before the column
    /// was bound are read without it until their next write; see docs/SECURITY.md. Not for JSON-mapped owned types.
    /// </para>
    /// </remarks>
    public static PropertyBuilder<TProperty> IsBoundToRecord<TProperty>(this PropertyBuilder<TProperty> propertyBuilder)
    {
        ArgumentNullException.ThrowIfNull(propertyBuilder);
        if (!EfEnvelope.Crypto.ValueCodecs.IsSupported(typeof(TProperty)))
        {
            throw new ArgumentException($"Property '{propertyBuilder.Metadata.Name}' has type '{typeof(TProperty).Name}', which has no plaintext encoding to bind (the types that can be encrypted can be bound).", nameof(propertyBuilder));
        }

        propertyBuilder.HasAnnotation(EncryptionAnnotations.BoundToRecord, true);
        return propertyBuilder;
    }

    /// <summary>Binds this encrypted property's ciphertext to <paramref name="bindingName"/> instead of its own name, as <see cref="EfEnvelope.EncryptedAttribute.BindingName"/> does.</summary>
    /// <remarks>Set it to the property's old name when renaming it, so that rows written before the rename stay readable (docs/MIGRATIONS.md).</remarks>
    public static PropertyBuilder<TProperty> HasEncryptionBindingName<TProperty>(this PropertyBuilder<TProperty> propertyBuilder, string bindingName)
    {
        ArgumentNullException.ThrowIfNull(propertyBuilder);
        ArgumentException.ThrowIfNullOrWhiteSpace(bindingName);
        propertyBuilder.HasAnnotation(EncryptionAnnotations.BindingName, bindingName);
        return propertyBuilder;
    }

    /// <summary>Binds the encrypted records of this entity hierarchy to <paramref name="bindingName"/> instead of the root type's name.</summary>
    /// <remarks>
    /// The root entity type's name (its full CLR name) is bound into every record's ciphertext and wrapped key. Set
    /// this to the old name when renaming the class or moving it to another namespace (docs/MIGRATIONS.md). Configure it
    /// on the root of an inheritance hierarchy.
    /// </remarks>
    public static EntityTypeBuilder<TEntity> HasEncryptionBindingName<TEntity>(this EntityTypeBuilder<TEntity> entityTypeBuilder, string bindingName)
        where TEntity : class
    {
        ArgumentNullException.ThrowIfNull(entityTypeBuilder);
        ArgumentException.ThrowIfNullOrWhiteSpace(bindingName);
        entityTypeBuilder.HasAnnotation(EncryptionAnnotations.BindingName, bindingName);
        return entityTypeBuilder;
    }

    /// <summary>Binds the encrypted records of this owned type to <paramref name="bindingName"/> instead of its name (which contains its owner's name).</summary>
    /// <remarks>An owned type's name is derived from its owner's (<c>Patient.HomeAddress#Address</c>): when renaming the owner, set this to the owned type's old name too.</remarks>
    public static OwnedNavigationBuilder<TOwner, TDependent> HasEncryptionBindingName<TOwner, TDependent>(this OwnedNavigationBuilder<TOwner, TDependent> ownedNavigationBuilder, string bindingName)
        where TOwner : class
        where TDependent : class
    {
        ArgumentNullException.ThrowIfNull(ownedNavigationBuilder);
        ArgumentException.ThrowIfNullOrWhiteSpace(bindingName);
        ownedNavigationBuilder.HasAnnotation(EncryptionAnnotations.BindingName, bindingName);
        return ownedNavigationBuilder;
    }

    /// <summary>Stores the complex-type property encrypted; always refused at model build, since complex types cannot hold the ciphertext.</summary>
    /// <remarks>EF Core cannot add the shadow properties encryption needs to a complex type (efcore#35613); use an owned type instead.</remarks>
    public static ComplexTypePropertyBuilder<TProperty> IsEncrypted<TProperty>(this ComplexTypePropertyBuilder<TProperty> propertyBuilder)
    {
        ArgumentNullException.ThrowIfNull(propertyBuilder);
        propertyBuilder.HasAnnotation(EncryptionAnnotations.Encrypted, true);
        UnregisteredEncryptionGuard.Install();
        return propertyBuilder;
    }
}
