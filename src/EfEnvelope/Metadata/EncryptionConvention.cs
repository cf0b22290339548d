using System.Reflection;
using EfEnvelope.Crypto;
using EfEnvelope.Infrastructure;
using EfEnvelope.Search;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Microsoft.EntityFrameworkCore.Metadata.Conventions;
using Microsoft.EntityFrameworkCore.Metadata.Conventions.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata.Internal;
using Microsoft.EntityFrameworkCore.Storage;

namespace EfEnvelope.Metadata;

/// <summary>Adds <see cref="EncryptionConvention"/> to every model built with envelope encryption.</summary>
/// <remarks>
/// The model is built per internal service provider, and EF builds one of those per encryption configuration, so
/// the blind index converters in a model may hold that configuration's index key.
/// </remarks>
internal sealed class EncryptionConventionSetPlugin(EnvelopeRuntime runtime, IConstructorBindingFactory constructorBindings, IDatabaseProvider database) : IConventionSetPlugin
{
    public ConventionSet ModifyConventions(ConventionSet conventionSet)
    {
        // First among the finalizing conventions, so that EF's own (column naming for shared tables, constructor
        // binding, validation) see the shadow properties this one adds.
        conventionSet.ModelFinalizingConventions.Insert(0, new EncryptionConvention(runtime.BlindIndexer, constructorBindings, LengthInCharacters(database)));
        conventionSet.ModelFinalizingConventions.Add(new OwnedCiphertextColumnConvention());
        conventionSet.ModelFinalizingConventions.Add(new KeylessEncryptedTypeConvention());
        conventionSet.ModelFinalizingConventions.Add(new SharedCiphertextColumnConvention());
        conventionSet.ModelFinalizingConventions.Add(new EncryptedCheckConstraintConvention());
        return conventionSet;
    }

    // How the database counts a string column's maximum length: PostgreSQL's varchar(n) counts characters (code
    // points); SQL Server's nvarchar(n) counts UTF-16 code units, as .NET's string.Length does (SQLite checks none).
    private static bool LengthInCharacters(IDatabaseProvider database) =>
        database.Name == "Npgsql.EntityFrameworkCore.PostgreSQL";
}

/// <summary>
/// Replaces each encrypted property by a binary shadow property holding its ciphertext (same column name), and
/// adds the wrapped-key shadow property to each entity hierarchy that has one.
/// </summary>
/// <remarks>
/// A value converter cannot encrypt (it sees one value, never the record's data key), so the CLR property is
/// removed from the model and the interceptors move values between it and the shadow properties.
/// </remarks>
internal sealed class EncryptionConvention(BlindIndexer indexer, IConstructorBindingFactory constructorBindings, bool lengthInCharacters) : IModelFinalizingConvention
{
    public void ProcessModelFinalizing(IConventionModelBuilder modelBuilder, IConventionContext<IConventionModelBuilder> context)
    {
        var model = modelBuilder.Metadata;
        foreach (var entityType in model.GetEntityTypes().ToList())
        {
            RefuseInComplexTypes(entityType, entityType.GetComplexProperties());

            var encrypted = entityType.GetDeclaredProperties().Where(IsMarkedEncrypted).ToList();
            if (encrypted.Count == 0)
            {
                continue;
            }

            var names = new List<string>(encrypted.Count);
            foreach (var property in encrypted)
            {
                if (property.FindAnnotation(EncryptionAnnotations.BoundToRecord)?.Value is true)
                {
                    throw new InvalidOperationException($"Property '{entityType.DisplayName()}.{property.Name}' is both encrypted and bound to its record (IsBoundToRecord): an encrypted value is sealed with its record already; bind plain columns only.");
                }

                Validate(entityType, property);
            }

            // Chosen while the encrypted properties are still in the model, as plain EF would choose it.
            var constructor = EncryptedConstructorBinding.Create(constructorBindings, entityType, encrypted);
            foreach (var property in encrypted)
            {
                ReplaceWithCiphertext(entityType, property);
                names.Add(property.Name);
            }

            EncryptedConstructorBinding.Apply(entityType, constructor);

            entityType.SetAnnotation(EncryptionAnnotations.EncryptedProperties, names.ToArray());
            AddKeyProperty(entityType.GetRootType());
        }

        EncryptedQueryFilters.Rewrite(model);

        foreach (var entityType in model.GetEntityTypes())
        {
            var bound = entityType.GetDeclaredProperties().FirstOrDefault(p => p.FindAnnotation(EncryptionAnnotations.BoundToRecord)?.Value is true);
            var hierarchyEncrypted = entityType.GetRootType().GetDerivedTypesInclusive().Any(t => t.FindAnnotation(EncryptionAnnotations.EncryptedProperties) is not null);
            if (bound is not null && (entityType.IsMappedToJson() || !hierarchyEncrypted))
            {
                // The seal binds the column: without encrypted properties there is no seal, and a JSON-mapped
                // property is not a column the materializer can hand to it.
                throw new InvalidOperationException(
                    $"Property '{entityType.DisplayName()}.{bound.Name}' is bound to its record (IsBoundToRecord), which needs a plain column of an entity type with encrypted properties that is not JSON-mapped.");
            }
        }
    }

    private static bool IsMarkedEncrypted(IReadOnlyPropertyBase property) =>
        property.FindAnnotation(EncryptionAnnotations.Encrypted)?.Value is true
        || property.PropertyInfo?.GetCustomAttribute<EncryptedAttribute>(inherit: true) is not null;

    private static void RefuseInComplexTypes(IConventionEntityType entityType, IEnumerable<IConventionComplexProperty> complexProperties)
    {
        foreach (var complexProperty in complexProperties)
        {
            var marked = complexProperty.ComplexType.GetProperties().FirstOrDefault(IsMarkedEncrypted);
            if (marked is not null)
            {
                throw new InvalidOperationException(
                    $"Property '{complexProperty.ComplexType.DisplayName()}.{marked.Name}' of entity type '{entityType.DisplayName()}' is marked encrypted but belongs to a complex type. "
                    + "EF Core cannot add the shadow properties that hold ciphertext to complex types, so it would be stored in plaintext. Map the type as an owned type instead.");
            }

            RefuseInComplexTypes(entityType, complexProperty.ComplexType.GetComplexProperties());
        }
    }

    private static void Validate(IConventionEntityType entityType, IConventionProperty property)
    {
        var where = $"Encrypted property '{entityType.DisplayName()}.{property.Name}'";
        if (property.IsShadowProperty() || property.PropertyInfo is null)
        {
            throw new InvalidOperationException($"{where} must be a CLR property with a getter: shadow properties and fields cannot be encrypted.");
        }

        if (property.IsPrimaryKey() || property.IsKey())
        {
            throw new InvalidOperationException($"{where} is part of a key. Keys cannot be encrypted: the database must compare them, and ciphertext is random.");
        }

        if (property.IsForeignKey())
        {
            throw new InvalidOperationException($"{where} is part of a foreign key. Foreign keys cannot be encrypted: the database must compare them, and ciphertext is random.");
        }

        if (property.GetContainingIndexes().Any())
        {
            throw new InvalidOperationException($"{where} is part of an index. Indexes on ciphertext are useless (it is random): remove the index.");
        }

        if (!ValueCodecs.IsSupported(property.ClrType))
        {
            throw new InvalidOperationException($"{where} has type '{property.ClrType.Name}', which cannot be encrypted. Supported: string, byte[], bool, integral and floating-point numbers, decimal, Guid, DateTime, DateTimeOffset, DateOnly, TimeOnly, TimeSpan, enums and their nullable forms.");
        }

        if (property.GetValueConverter() is not null || property.GetProviderClrType() is not null)
        {
            // EfEnvelope encrypts the property's own value; the converter would never run, and the stored value
            // would silently differ from what plain EF stores.
            throw new InvalidOperationException($"{where} has a value conversion (HasConversion, or a convention in ConfigureConventions). An encrypted property is stored as ciphertext of its own value, so the conversion would never run: remove it for this property, or convert the value in the entity (a property of the converted type).");
        }

        // Facets of the plain column: the column now holds ciphertext, so the database would apply none of them, and
        // values would silently differ from what plain EF stores or reads back. A maximum length is kept instead
        // (checked before encrypting, as the database checks it), since [MaxLength] and [StringLength] also validate.
        // A decimal's precision and scale are kept too (checked before encrypting: a value the plain column would round
        // or refuse is refused).
        var precisionApplies = Nullable.GetUnderlyingType(property.ClrType) ?? property.ClrType;
        if (Configured(property.GetColumnTypeConfigurationSource()) || Configured(property.GetCollationConfigurationSource())
            || Configured(property.GetIsFixedLengthConfigurationSource())
            || (precisionApplies != typeof(decimal) && (Configured(property.GetPrecisionConfigurationSource()) || Configured(property.GetScaleConfigurationSource()))))
        {
            throw new InvalidOperationException($"{where} has a column facet the database would apply to the plain value (HasColumnType or [Column(TypeName)], UseCollation, IsFixedLength, or HasPrecision on a type other than decimal; also when set for every property of the type in ConfigureConventions). The column holds ciphertext, so the database applies none of them: remove it for this property (or exclude it from the convention), and convert, pad or normalise the value in the application instead.");
        }

        if (property.GetValueComparerConfigurationSource() is not null && property.GetValueComparerConfigurationSource() != ConfigurationSource.Convention)
        {
            throw new InvalidOperationException($"{where} has a value comparer. EfEnvelope detects edits of encrypted properties by comparing values with the type's default equality, so the comparer would be ignored: remove it for this property.");
        }

        if (entityType.GetChangeTrackingStrategy() != ChangeTrackingStrategy.Snapshot)
        {
            // EF does not run DetectChanges for a model whose entity types all use notifications, and a notification
            // names a property EF no longer has (the ciphertext replaced it): edits would never be saved.
            throw new InvalidOperationException($"{where} belongs to an entity type that uses the change tracking strategy {entityType.GetChangeTrackingStrategy()}. EfEnvelope detects edits of encrypted properties by snapshot: configure HasChangeTrackingStrategy(ChangeTrackingStrategy.Snapshot) for entity type '{entityType.DisplayName()}'.");
        }

        if (property.FindAnnotation(RelationalAnnotationNames.DefaultValue) is { Value: not null } && property.GetDefaultValueSql() is null && property.GetComputedColumnSql() is null)
        {
            // HasDefaultValue(constant): the database would fill the column with the constant in plaintext.
            throw new InvalidOperationException($"{where} has a database default value (HasDefaultValue), which the database would store as plaintext. Set the default in the application instead (in the entity's constructor or property initializer), or remove the encryption.");
        }

        if (property.ValueGenerated != ValueGenerated.Never || property.GetDefaultValueSql() is not null || property.GetComputedColumnSql() is not null)
        {
            throw new InvalidOperationException($"{where} is generated by the database, which cannot encrypt. Remove the value generation or the encryption.");
        }

        // EF runs a client-side value generator on Add for the properties of its model, which this one leaves: the
        // value would silently stay the CLR default.
        if (property.GetValueGeneratorFactory() is not null)
        {
            throw new InvalidOperationException($"{where} has a value generator (HasValueGenerator), which EF does not run for an encrypted property. Set the value in the application instead (in the entity's constructor or initializer, or before Add), or remove the encryption.");
        }

        // Seed data becomes INSERT statements in migrations, which run without the master key: the value would be
        // stored in plaintext, or dropped, so it is refused (a null seed value has nothing to encrypt).
        foreach (var seed in entityType.GetSeedData())
        {
            if (seed.TryGetValue(property.Name, out var value) && value is not null)
            {
                throw new InvalidOperationException($"{where} has seed data (HasData). Migrations cannot encrypt (they run without the master key): seed this value at run time with SaveChanges instead, or leave it out of HasData.");
            }
        }
    }

    private static bool Configured(ConfigurationSource? source) => source is ConfigurationSource.Explicit or ConfigurationSource.DataAnnotation;

    // EF's default (PreferField) and the field modes read and write the backing field, bypassing the property's code;
    // the property modes go through it. The "during construction" modes are treated as field modes throughout.
    private static bool UsesBackingField(IConventionProperty property) =>
        property.GetPropertyAccessMode() is not (PropertyAccessMode.Property or PropertyAccessMode.PreferProperty);

    private static BlindIndexOptions? SearchOptions(IReadOnlyProperty property) =>
        property.FindAnnotation(EncryptionAnnotations.Searchable)?.Value as BlindIndexOptions
        ?? property.PropertyInfo?.GetCustomAttribute<EncryptedAttribute>(inherit: true)?.ToSearchOptions();

    private void ReplaceWithCiphertext(IConventionEntityType entityType, IConventionProperty property)
    {
        var name = property.Name;
        var clrType = property.ClrType;
        var search = SearchOptions(property);
        var explicitColumn = property.FindAnnotation(RelationalAnnotationNames.ColumnName) is not null ? property.GetColumnName() : null;
        // Owned types sharing their owner's table get their column prefix from EF later in finalization;
        // OwnedCiphertextColumnConvention gives those columns their original names once the prefix is known.
        var columnName = entityType.IsMappedToJson() || (entityType.IsOwned() && property.FindAnnotation(RelationalAnnotationNames.ColumnName) is null)
            ? null
            : property.GetColumnName();
        var columnNameSource = property.GetColumnNameConfigurationSource();
        var jsonName = entityType.IsMappedToJson() ? property.GetJsonPropertyName() ?? name : null;
        var nullable = property.IsNullable;
        var concurrencyToken = property.IsConcurrencyToken;
        var maxLength = property.GetMaxLength();
        var precision = property.GetPrecision();
        var scale = property.GetScale();
        var backingField = UsesBackingField(property) ? property.FieldInfo?.Name : null;
        var tableName = entityType.GetTableName();
        var legacyColumn = LegacyPlaintextColumn(property);
        var bindingName = property.FindAnnotation(EncryptionAnnotations.BindingName)?.Value as string
            ?? property.PropertyInfo?.GetCustomAttribute<EncryptedAttribute>(inherit: true)?.BindingName
            ?? name;

        entityType.RemoveProperty(property);
        entityType.AddIgnored(name);

        var shadow = entityType.Builder.Property(typeof(byte[]), EncryptionAnnotations.CiphertextPropertyName(name))
            ?? throw new InvalidOperationException($"Could not add the ciphertext property for '{entityType.DisplayName()}.{name}': a member named '{EncryptionAnnotations.CiphertextPropertyName(name)}' exists.");
        // Rows not yet migrated from a legacy plaintext column have no ciphertext, whatever the property's nullability.
        shadow.IsRequired(!nullable && legacyColumn is null);
        shadow.HasValueComparer(StoredBytes.Comparer);

        if (backingField is not null)
        {
            shadow.HasAnnotation(EncryptionAnnotations.BackingField, backingField);
        }

        // A concurrency token compares the stored ciphertext: an edit writes a new one (fresh nonce), so the update
        // matches the row exactly while no other save has changed the value since it was read, as with plaintext.
        if (concurrencyToken)
        {
            shadow.IsConcurrencyToken(true);
        }

        if (maxLength is not null)
        {
            shadow.HasAnnotation(EncryptionAnnotations.MaxLength, maxLength);
            if (lengthInCharacters)
            {
                shadow.HasAnnotation(EncryptionAnnotations.MaxLengthInCharacters, true);
            }
        }

        if (precision is not null)
        {
            shadow.HasAnnotation(EncryptionAnnotations.Precision, precision);
            shadow.HasAnnotation(EncryptionAnnotations.Scale, scale ?? 0);
        }
        if (bindingName != name)
        {
            shadow.HasAnnotation(EncryptionAnnotations.BindingName, bindingName);
        }

        // An abstract TPC base has no table of its own, but its columns are created in every concrete type's table.
        if (columnName is not null && (tableName is not null || entityType.GetMappingStrategy() == RelationalAnnotationNames.TpcMappingStrategy))
        {
            // With the source the name was configured with: EF keeps an explicit name shared by two types of a
            // hierarchy as one column, and renames convention names that collide ("Dog_Sound").
            if (columnNameSource == ConfigurationSource.Explicit)
            {
                ((IMutableProperty)shadow.Metadata).SetColumnName(columnName);
            }
            else
            {
                shadow.HasColumnName(columnName, fromDataAnnotation: columnNameSource == ConfigurationSource.DataAnnotation);
            }
        }

        if (legacyColumn is not null)
        {
            AddLegacyPlaintext(entityType, name, clrType, legacyColumn);
        }

        if (jsonName is not null)
        {
            shadow.Metadata.SetJsonPropertyName(jsonName);
        }

        if (search is not null)
        {
            AddBlindIndex(entityType, name, bindingName, clrType, search, explicitColumn);
        }
    }

    private void AddBlindIndex(IConventionEntityType entityType, string name, string bindingName, Type clrType, BlindIndexOptions search, string? explicitColumn)
    {
        var where = $"Searchable encrypted property '{entityType.DisplayName()}.{name}'";
        if (entityType.IsMappedToJson())
        {
            throw new InvalidOperationException($"{where} is in a JSON-mapped type, where a blind index column cannot be indexed. Map the type to columns, or drop Searchable.");
        }

        if (!indexer.IsConfigured)
        {
            // Refused here, when the first context builds the model, rather than at the first save or search.
            throw new InvalidOperationException($"{where} needs a blind index key, and none is configured: create one once with BlindIndexKey.CreateAsync(provider), keep the bytes in configuration, and pass them to UseBlindIndexKey in UseEnvelopeEncryption.");
        }

        if (search.Unique && search.IsTruncated)
        {
            throw new InvalidOperationException($"{where} asks for a unique index on a truncated blind index: different values may share a truncated index. Keep all 32 bytes or drop Unique.");
        }

        var index = entityType.Builder.Property(clrType, EncryptionAnnotations.IndexPropertyName(name))
            ?? throw new InvalidOperationException($"Could not add the blind index property for '{entityType.DisplayName()}.{name}': a member named '{EncryptionAnnotations.IndexPropertyName(name)}' exists.");
        index.IsRequired(false);
        index.HasMaxLength(search.IndexBytes);
        index.HasConversion(BlindIndexConverter<object>.Create(clrType, indexer, EncryptionAnnotations.EntityBindingName(entityType), bindingName, search));
        if (explicitColumn is not null)
        {
            index.HasColumnName(explicitColumn + "_Index");
        }

        entityType.Builder.HasIndex([index.Metadata])?.IsUnique(search.Unique);
    }

    private static string? LegacyPlaintextColumn(IConventionProperty property) =>
        property.FindAnnotation(EncryptionAnnotations.LegacyPlaintextColumn)?.Value as string
        ?? property.PropertyInfo?.GetCustomAttribute<EncryptedAttribute>(inherit: true)?.LegacyPlaintextColumn;

    /// <summary>Maps the column that still holds plaintext from before encryption, nullable, for reads and the migration job.</summary>
    private static void AddLegacyPlaintext(IConventionEntityType entityType, string name, Type clrType, string column)
    {
        if (entityType.IsMappedToJson())
        {
            throw new InvalidOperationException($"Encrypted property '{entityType.DisplayName()}.{name}' has a legacy plaintext column, which JSON-mapped owned types do not support.");
        }

        var type = clrType.IsValueType && Nullable.GetUnderlyingType(clrType) is null ? typeof(Nullable<>).MakeGenericType(clrType) : clrType;
        var legacy = entityType.Builder.Property(type, EncryptionAnnotations.LegacyPlaintextPropertyName(name))
            ?? throw new InvalidOperationException($"Could not add the legacy plaintext property for '{entityType.DisplayName()}.{name}': a member named '{EncryptionAnnotations.LegacyPlaintextPropertyName(name)}' exists.");
        legacy.IsRequired(false);
        legacy.HasColumnName(column);
    }

    private static void AddKeyProperty(IConventionEntityType rootType)
    {
        if (rootType.FindProperty(EncryptionAnnotations.KeyPropertyName) is not null)
        {
            return;
        }

        // Nullable: a record whose encrypted properties are all null never needs a data key, and rows written
        // before encryption was added have none.
        var key = rootType.Builder.Property(typeof(byte[]), EncryptionAnnotations.KeyPropertyName)
            ?? throw new InvalidOperationException($"Could not add the wrapped-key property '{EncryptionAnnotations.KeyPropertyName}' to '{rootType.DisplayName()}': a member with that name exists.");
        key.HasValueComparer(StoredBytes.Comparer);
    }
}

/// <summary>
/// Names the ciphertext column of an owned type's encrypted property as EF would have named the plaintext column
/// (<c>HomeAddress_Street</c>, not <c>HomeAddress_Street_Ciphertext</c>), once EF has applied the owner prefix.
/// </summary>
internal sealed class OwnedCiphertextColumnConvention : IModelFinalizingConvention
{
    public void ProcessModelFinalizing(IConventionModelBuilder modelBuilder, IConventionContext<IConventionModelBuilder> context)
    {
        foreach (var entityType in modelBuilder.Metadata.GetEntityTypes())
        {
            if (!entityType.IsOwned() || entityType.IsMappedToJson() || entityType.FindAnnotation(EncryptionAnnotations.EncryptedProperties)?.Value is not string[] names)
            {
                continue;
            }

            foreach (var name in names)
            {
                var shadow = entityType.FindProperty(EncryptionAnnotations.CiphertextPropertyName(name));
                var suffix = EncryptionAnnotations.CiphertextPropertyName(name)[name.Length..];
                if (shadow is not null
                    && StoreObjectIdentifier.Create(entityType, StoreObjectType.Table) is { } table
                    && shadow.GetColumnName(table) is { } column
                    && column.EndsWith(suffix, StringComparison.Ordinal))
                {
                    shadow.Builder.HasColumnName(column[..^suffix.Length]);
                }
            }
        }
    }
}

/// <summary>How EF compares the stored blobs (key column, ciphertexts) of its entries.</summary>
internal static class StoredBytes
{
    /// <summary>Element-wise equality, as EF's default for <c>byte[]</c>, without its boxing of every byte.</summary>
    /// <remarks>
    /// EF's default <c>byte[]</c> comparer goes through <c>StructuralComparisons.StructuralEqualityComparer</c>, which
    /// boxes each element it compares: assigning a new ciphertext and key column to an edited record cost about 10 KB
    /// per record (benchmarks/README.md). <c>Enumerable.SequenceEqual</c> compares two arrays as spans. Built from
    /// public methods only, so that <c>dbcontext optimize</c> can write the expressions into a compiled model. The hash
    /// is the length: consistent with the equality, and EF does not hash these non-key properties.
    /// </remarks>
    public static readonly ValueComparer<byte[]> Comparer = new(
        (a, b) => a == b || (a != null && b != null && a.SequenceEqual(b)),
        v => v.Length,
        v => v);
}

/// <summary>Refuses encrypted properties on a keyless entity type (<c>HasNoKey</c>, a view, a SQL query).</summary>
/// <remarks>
/// A record is sealed with the name of the entity type that saved it and the key of its row (docs/FORMAT.md). A keyless
/// type never saves, so every record it could read was saved by another type and would fail to verify on each row, as a
/// tamper error that says nothing about the mapping. Runs last, after EF has removed the entity types that convention
/// discovered but nothing reaches.
/// </remarks>
internal sealed class KeylessEncryptedTypeConvention : IModelFinalizingConvention
{
    public void ProcessModelFinalizing(IConventionModelBuilder modelBuilder, IConventionContext<IConventionModelBuilder> context)
    {
        foreach (var entityType in modelBuilder.Metadata.GetEntityTypes())
        {
            if (entityType.FindPrimaryKey() is null && entityType.FindAnnotation(EncryptionAnnotations.EncryptedProperties)?.Value is string[] { Length: > 0 } names)
            {
                throw new InvalidOperationException(
                    $"Encrypted property '{entityType.DisplayName()}.{names[0]}' belongs to the keyless entity type '{entityType.DisplayName()}' (HasNoKey, a view or a SQL query). " +
                    "Encrypted records are sealed with the entity type that saves them and the key of their row, so a keyless type can never decrypt them: " +
                    "query the entity type that saves these rows and project what you need with Select, or remove the encryption from this type.");
            }
        }
    }
}

/// <summary>
/// Refuses a column shared by an encrypted property and a property that is not encrypted: one column name given to
/// both (HasColumnName or [Column]) in types that share a table. (Same-named properties of two types of a TPH
/// hierarchy without a configured name get two columns: EF renames the second.)
/// </summary>
/// <remarks>
/// Plain EF shares such a column. Here one property stores ciphertext (binary) and the other its plain value, which
/// cannot share a column; EF's own validation refused it, but named the internal ciphertext property and the column
/// types instead of saying what to do.
/// </remarks>
internal sealed class SharedCiphertextColumnConvention : IModelFinalizingConvention
{
    public void ProcessModelFinalizing(IConventionModelBuilder modelBuilder, IConventionContext<IConventionModelBuilder> context)
    {
        var entityTypes = modelBuilder.Metadata.GetEntityTypes().ToList();
        foreach (var entityType in entityTypes)
        {
            if (entityType.FindAnnotation(EncryptionAnnotations.EncryptedProperties)?.Value is not string[] names
                || StoreObjectIdentifier.Create(entityType, StoreObjectType.Table) is not { } table)
            {
                continue;
            }

            foreach (var name in names)
            {
                if (entityType.FindProperty(EncryptionAnnotations.CiphertextPropertyName(name))?.GetColumnName(table) is not { } column)
                {
                    continue;
                }

                foreach (var other in entityTypes.Where(t => t != entityType && StoreObjectIdentifier.Create(t, StoreObjectType.Table) == table))
                {
                    var encrypted = other.FindAnnotation(EncryptionAnnotations.EncryptedProperties)?.Value as string[] ?? [];
                    var plain = other.GetDeclaredProperties().FirstOrDefault(p => p.GetColumnName(table) == column
                        && !encrypted.Any(e => p.Name == EncryptionAnnotations.CiphertextPropertyName(e)));
                    if (plain is not null)
                    {
                        throw new InvalidOperationException(
                            $"Encrypted property '{entityType.DisplayName()}.{name}' and property '{other.DisplayName()}.{plain.Name}', which is not encrypted, both map to column '{column}' of table '{table.DisplayName()}'. "
                            + "One column cannot hold ciphertext for one and the plain value for the other: encrypt both, or give one of them its own column with HasColumnName.");
                    }
                }
            }
        }
    }
}
