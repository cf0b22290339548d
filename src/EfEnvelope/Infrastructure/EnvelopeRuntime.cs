using System.Collections.Concurrent;
using System.Reflection;
using System.Security.Cryptography;
using EfEnvelope.ChangeTracking;
using EfEnvelope.Crypto;
using EfEnvelope.Diagnostics;
using EfEnvelope.KeyManagement;
using EfEnvelope.Metadata;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.Extensions.Logging;

namespace EfEnvelope.Infrastructure;

/// <summary>
/// Everything one encryption configuration shares across its DbContexts: provider, key cache and the per-entity
/// metadata. A singleton of EF's internal service provider, which EF builds once per distinct configuration.
/// </summary>
internal sealed class EnvelopeRuntime : IDisposable
{
    private readonly ConcurrentDictionary<IEntityType, EncryptedEntity?> _entities = new();
    private readonly ConcurrentDictionary<(IModel Model, Type Type, string Name), (EncryptedProperty, EncryptedEntity)?> _members = new();
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<IModel, System.Runtime.CompilerServices.StrongBox<bool>> _searchableModels = new();

    // Per model, for the command interceptors: EF creates those per context (IInterceptor is a scoped service), so
    // what they work out from the model is kept here, once per configuration.
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<IModel, Storage.KeyColumnOwners> _keyColumnOwners = new();
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<IModel, Storage.EncryptedColumns> _encryptedColumns = new();

    public EnvelopeRuntime(EnvelopeEncryptionSettings settings, ILoggerFactory loggerFactory)
    {
        Settings = settings;
        Provider = settings.Provider!;
        Gateway = new ProviderGateway(Provider, settings.ProviderTimeout, loggerFactory.CreateLogger("EfEnvelope.KeyManagement"));
        Cache = new KeyCache(Gateway, settings.Cache, settings.TimeProvider, settings.ApplicationName);
        BlindIndexer = new Search.BlindIndexer(Cache, settings.BlindIndexKey);
        KeyNames = new KeyNames(Gateway, Cache, settings);
    }

    /// <summary>Compares a stored record's key id with a chosen one through the provider (the selector check on reads).</summary>
    public KeyNames KeyNames { get; }

    public Search.BlindIndexer BlindIndexer { get; }

    public EnvelopeEncryptionSettings Settings { get; }

    public IMasterKeyProvider Provider { get; }

    public ProviderGateway Gateway { get; }

    public KeyCache Cache { get; }

    public IRandomSource Random => Settings.Random;

    /// <summary>Whether any entity type of the model has a searchable encrypted property (queries then need planning).</summary>
    public bool HasSearchableProperties(IModel model) =>
        _searchableModels.GetValue(model, m => new System.Runtime.CompilerServices.StrongBox<bool>(m.GetEntityTypes().Any(t => Find(t)?.HasSearchableProperties == true))).Value;

    /// <summary>Which entities' wrapped keys each result column of the model can hold (the async key prefetch).</summary>
    public Storage.KeyColumnOwners KeyColumnOwners(IModel model) => _keyColumnOwners.GetValue(model, m => Storage.KeyColumnOwners.Build(this, m));

    /// <summary>The table columns of the model that hold ciphertext (the read guard of raw SQL).</summary>
    public Storage.EncryptedColumns EncryptedColumns(IModel model) => _encryptedColumns.GetValue(model, m => Storage.EncryptedColumns.Build(this, m));

    /// <summary>The encrypted property a member access of a query reads (by the instance type and name), if any.</summary>
    /// <remarks>Cached: queries over searchable properties are planned on every execution.</remarks>
    public (EncryptedProperty Property, EncryptedEntity Entity)? FindEncryptedMember(IModel model, Type instanceType, string propertyName) =>
        _members.GetOrAdd((model, instanceType, propertyName), key =>
        {
            foreach (var entityType in key.Model.GetEntityTypes())
            {
                if (entityType.ClrType.IsAssignableFrom(key.Type) || key.Type.IsAssignableFrom(entityType.ClrType))
                {
                    var encrypted = Find(entityType);
                    var match = encrypted is null ? null : Array.Find(encrypted.Properties, p => p.Name == key.Name);
                    if (match is not null)
                    {
                        return (match, encrypted!);
                    }
                }
            }

            return null;
        });

    /// <summary>The encryption metadata of an entity type, or null when it has no encrypted property.</summary>
    public EncryptedEntity? Find(IEntityType entityType) =>
        _entities.TryGetValue(entityType, out var found) ? found : _entities.GetOrAdd(entityType, Build);

    /// <summary>Decrypts a stored record into the entity's plaintext properties (synchronous: EF materialization is).</summary>
    /// <param name="encrypted">The entity type's encryption metadata.</param>
    /// <param name="entity">The instance whose plaintext properties receive the values.</param>
    /// <param name="stored">
    /// The record's wrapped-key blob, then its field blobs in <see cref="EncryptedEntity.Properties"/> order, then
    /// (while a column is migrated from plaintext) the legacy plaintext values of the properties that map one, then
    /// the values of the columns the record seal binds (<see cref="EncryptedEntity.BoundKey"/>, <see cref="EncryptedEntity.BoundItemKey"/>, <see cref="EncryptedEntity.BoundColumns"/>).
    /// </param>
    /// <param name="snapshot">Whether to return a snapshot (tracked records only: it costs an allocation per value).</param>
    /// <returns>The snapshot of what was decrypted, for change tracking, or null when not asked for.</returns>
    public RecordSnapshot? Decrypt(EncryptedEntity encrypted, object entity, object?[] stored, bool snapshot = true)
    {
        var properties = encrypted.Properties;
        if (encrypted.IsMappedToJson)
        {
            Storage.JsonBlobText.DecodeInPlace(stored, 1 + properties.Length);
        }

        var wrappedKey = (byte[]?)stored[0];
        if (wrappedKey is null)
        {
            if (Settings.RequireSealedRecords)
            {
                // Every record written since format version 2 has a key column, even when all its values are NULL,
                // except an optional record sharing its principal's row, which is stored without one when it holds no
                // value (EF then reads it as absent, and never here). A row read here without one is from before
                // encryption (or a migration), had its key and values erased, or is such a record that a concurrent
                // save gave a plain value.
                throw new EnvelopeDecryptionException("The record has no wrapped data key (its key column is NULL), and this configuration requires sealed records (RequireSealedRecords): run EnvelopeKeyLifecycle.ReencryptAsync without that option to seal rows without a key (written before encryption, or an optional owned or table-split record emptied while another save set one of its plain columns).", encrypted.Name);
            }

            for (var i = 0; i < properties.Length; i++)
            {
                // An empty value in a non-nullable column is what a migration gives existing rows when it adds the
                // column: it holds no ciphertext, and reads as the type's default, as the plain column would.
                if (properties[i].IsMigrationDefault(stored[i + 1]))
                {
                    properties[i].SetMigrationDefault(entity);
                }
                else if (stored[i + 1] is not null)
                {
                    throw new EnvelopeDecryptionException("The record has ciphertext but no wrapped data key.", encrypted.Name, properties[i].Name);
                }
                else if (!properties[i].Ciphertext.IsNullable && (properties[i].LegacyPlaintext is not { } legacy || stored[LegacyIndex(encrypted, legacy)] is null))
                {
                    // Every record written gets a key column, and a migration that adds a required column gives existing
                    // rows an empty value, not NULL: a required value that is NULL beside a NULL key was erased.
                    throw new EnvelopeDecryptionException("The stored value of a required property is missing (NULL) and so is the record's wrapped data key.", encrypted.Name, properties[i].Name);
                }
            }

            if (!encrypted.HasLegacyPlaintext)
            {
                return snapshot ? new RecordSnapshot(null, Capture(encrypted, entity), storedWithoutKey: true, bound: RecordSnapshot.BoundOf(encrypted, stored)) : null;
            }

            // A row from before encryption: its values come from the legacy plaintext columns until it is saved.
            // It has no data key to re-encrypt an edit under, and the instance holds every value just read, so its
            // next save writes them all under a fresh key (and empties the legacy columns), like Update() does.
            ApplyLegacy(encrypted, entity, stored);
            return snapshot ? new RecordSnapshot(null, Capture(encrypted, entity), replacesStored: true) : null;
        }

        if (!WrappedKeyBlob.TryParse(wrappedKey, out var blob, out var error))
        {
            throw new EnvelopeDecryptionException(error!, encrypted.Name);
        }

        if (!blob.IsSealed && Settings.RequireSealedRecords)
        {
            throw new EnvelopeDecryptionException("The record is in format version 1, without a record seal, and this configuration requires sealed records (RequireSealedRecords).", encrypted.Name);
        }

        var key = Cache.Get(encrypted.Name, blob, encrypted.LastKey);
        try
        {
            DecryptFields(encrypted, entity, blob, key, stored);
        }
        finally
        {
            key.Release();
        }

        encrypted.LastKey = key;
        if (encrypted.HasLegacyPlaintext)
        {
            ApplyLegacy(encrypted, entity, stored);
        }

        if (EnvelopeTelemetry.RecordsDecryptedCounter.Enabled)
        {
            EnvelopeTelemetry.RecordsDecryptedCounter.Add(1, encrypted.EntityTag);
        }
        return snapshot ? new RecordSnapshot(wrappedKey, Capture(encrypted, entity), bound: RecordSnapshot.BoundOf(encrypted, stored)) : null;
    }

    /// <summary>The stored columns a record is decrypted from: wrapped key, ciphertexts, legacy plaintext columns, then bound columns.</summary>
    public static IEnumerable<IProperty> StoredProperties(EncryptedEntity encrypted) =>
        [.. EncryptionColumns(encrypted), .. BoundProperties(encrypted)];

    /// <summary>The columns EfEnvelope itself maps: wrapped key, ciphertexts, then legacy plaintext columns.</summary>
    public static IEnumerable<IProperty> EncryptionColumns(EncryptedEntity encrypted) =>
        [encrypted.KeyProperty, .. encrypted.Properties.Select(p => p.Ciphertext), .. encrypted.Properties.Where(p => p.LegacyPlaintext is not null).Select(p => p.LegacyPlaintext!)];

    /// <summary>The plain columns the record seal binds, in the order <see cref="EncryptedEntity.BindingOf"/> reads them.</summary>
    public static IEnumerable<IProperty> BoundProperties(EncryptedEntity encrypted) =>
        [.. encrypted.BoundKey.Select(c => c.Property), .. encrypted.BoundItemKey.Select(c => c.Property), .. encrypted.BoundColumns.Select(c => c.Property)];

    private static int LegacyIndex(EncryptedEntity encrypted, IProperty legacy)
    {
        var index = 1 + encrypted.Properties.Length;
        foreach (var property in encrypted.Properties)
        {
            if (ReferenceEquals(property.LegacyPlaintext, legacy))
            {
                return index;
            }

            index += property.LegacyPlaintext is null ? 0 : 1;
        }

        throw new InvalidOperationException($"Legacy column '{legacy.Name}' is not one of entity '{encrypted.Name}'.");
    }

    private static object?[] Capture(EncryptedEntity encrypted, object entity)
    {
        var values = new object?[encrypted.Properties.Length];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = encrypted.Properties[i].Capture(entity);
        }

        return values;
    }

    /// <summary>Where a property's ciphertext is NULL, takes its value from its legacy plaintext column (after <paramref name="stored"/>'s ciphertexts).</summary>
    private static void ApplyLegacy(EncryptedEntity encrypted, object entity, object?[] stored)
    {
        var legacy = 1 + encrypted.Properties.Length;
        for (var i = 0; i < encrypted.Properties.Length; i++)
        {
            if (encrypted.Properties[i].LegacyPlaintext is null)
            {
                continue;
            }

            if (stored[1 + i] is null && stored[legacy] is { } value)
            {
                encrypted.Properties[i].SetLegacyValue(entity, value);
            }

            legacy++;
        }
    }

    /// <summary>Opens a record's data key: under its KEK (mode 1), or the cached key itself (direct mode).</summary>
    public static AesGcm OpenDataKey(EncryptedEntity encrypted, in WrappedKeyBlob blob, CachedKey key) =>
        blob.Mode == EnvelopeFormat.ModeCachedKek ? encrypted.OpenDataKey(blob, key) : key.RentCipher();

    public static void CloseDataKey(in WrappedKeyBlob blob, CachedKey key, AesGcm cipher)
    {
        if (blob.Mode == EnvelopeFormat.ModeCachedKek)
        {
            cipher.Dispose();
        }
        else
        {
            key.ReturnCipher(cipher);
        }
    }

    public void Dispose() => Cache.Dispose();

    private static void DecryptFields(EncryptedEntity encrypted, object entity, in WrappedKeyBlob blob, CachedKey key, object?[] stored)
    {
        var cipher = OpenDataKey(encrypted, blob, key);
        try
        {
            // The seal first, over the stored blobs as they are: a record that is refused leaves no plaintext in
            // the instance. Then each field, whose own tag check names the property that fails.
            if (blob.IsSealed)
            {
                VerifySeal(encrypted, blob, cipher, stored, key.KeyId);
            }

            var recordId = blob.RecordId;
            for (var i = 0; i < encrypted.Properties.Length; i++)
            {
                encrypted.Properties[i].Decrypt(entity, (byte[]?)stored[i + 1], cipher, recordId, key.KeyId, blob.Version);
            }
        }
        finally
        {
            CloseDataKey(blob, key, cipher);
        }
    }

    /// <summary>Checks a version 2 record's seal against its stored fields, legacy plaintext columns and bound row values (in <paramref name="stored"/>, <see cref="StoredProperties"/> order).</summary>
    /// <exception cref="EnvelopeDecryptionException">The record is not what was sealed.</exception>
    public static void VerifySeal(EncryptedEntity encrypted, in WrappedKeyBlob blob, AesGcm dataKey, object?[] stored, string keyId) =>
        encrypted.VerifySeal(
            blob,
            dataKey,
            stored.AsSpan(1, encrypted.Properties.Length),
            stored.AsSpan(stored.Length - encrypted.BoundCount),
            stored.AsSpan(1 + encrypted.Properties.Length, encrypted.LegacyColumnCount),
            keyId);

    private static FieldInfo? FindField(Type type, string name)
    {
        for (var declaring = type; declaring is not null; declaring = declaring.BaseType)
        {
            if (declaring.GetField(name, BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly) is { } field)
            {
                return field;
            }
        }

        return null;
    }

    private static EncryptedEntity? Build(IEntityType entityType)
    {
        var names = new List<string>();
        for (var type = entityType; type is not null; type = type.BaseType)
        {
            if (type.FindAnnotation(EncryptionAnnotations.EncryptedProperties)?.Value is string[] declared)
            {
                names.InsertRange(0, declared);
            }
        }

        if (names.Count == 0)
        {
            return null;
        }

        var name = EncryptionAnnotations.EntityBindingName(entityType);
        var binding = EnvelopeFormat.BindingName(name);
        var properties = names.Select(propertyName =>
        {
            var clrProperty = entityType.ClrType.GetProperty(propertyName, BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)
                ?? throw new InvalidOperationException($"Encrypted property '{entityType.DisplayName()}.{propertyName}' was not found on CLR type '{entityType.ClrType.Name}'.");
            var ciphertext = entityType.FindProperty(EncryptionAnnotations.CiphertextPropertyName(propertyName))!;
            var index = entityType.FindProperty(EncryptionAnnotations.IndexPropertyName(propertyName));
            var legacy = entityType.FindProperty(EncryptionAnnotations.LegacyPlaintextPropertyName(propertyName));
            var bindingName = ciphertext.FindAnnotation(EncryptionAnnotations.BindingName)?.Value as string ?? propertyName;
            var field = ciphertext.FindAnnotation(EncryptionAnnotations.BackingField)?.Value is string fieldName
                ? FindField(entityType.ClrType, fieldName)
                : null;
            return EncryptedProperty.Create(name, clrProperty, field, ciphertext, binding, index, legacy, bindingName);
        }).ToList();
        return new EncryptedEntity(entityType, properties, binding);
    }
}
