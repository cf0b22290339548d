using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using EfEnvelope.Crypto;
using EfEnvelope.KeyManagement;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Metadata;

/// <summary>An entity type with encrypted properties: its binding name, its key column and its encrypted properties.</summary>
internal sealed class EncryptedEntity
{
    private const int StackLimit = 1024;

    // The KEK that the last record of this type was read with. Rows written in the same period share a KEK, so
    // comparing against it avoids building a cache key (an allocation) for nearly every row.
    private CachedKey? _lastKey;

    public EncryptedEntity(IEntityType entityType, IReadOnlyList<EncryptedProperty> properties, byte[] bindingBytes)
    {
        EntityType = entityType;
        Name = EncryptionAnnotations.EntityBindingName(entityType);
        BindingBytes = bindingBytes;
        KeyProperty = entityType.FindProperty(EncryptionAnnotations.KeyPropertyName)!;
        Properties = properties.ToArray();
        HasSearchableProperties = Array.Exists(Properties, p => p.Index is not null);
        IsMappedToJson = entityType.IsMappedToJson();
        SharesRowOptionally = SharesRowAsOptional(entityType);
        EntityTag = new("entity", Name);
        LegacyColumnCount = Properties.Count(p => p.LegacyPlaintext is not null);
        HasLegacyPlaintext = LegacyColumnCount > 0;
        SealOrder = [.. Enumerable.Range(0, Properties.Length).OrderBy(i => Properties[i].PropertyBinding, ByteOrder.Instance)];
        if (Properties.Select(p => Convert.ToHexString(p.NameId)).Distinct().Count() != Properties.Length)
        {
            // The seal's trailer names properties by a 4-byte hash of their binding names; two that collide (or share a
            // binding name) could not be told apart.
            throw new InvalidOperationException($"Two encrypted properties of entity '{Name}' have binding names whose 4-byte name ids collide; give one of them another binding name (HasEncryptionBindingName).");
        }

        ConcreteTypeBinding = entityType.BaseType is not null || entityType.GetDirectlyDerivedTypes().Any()
            ? EnvelopeFormat.BindingName(ConcreteTypeName(entityType))
            : [];
        OtherTypesNameIds = [.. OtherTypesProperties(entityType)
            .Select(name => SHA256.HashData(EnvelopeFormat.BindingName(name))[..4])
            .Where(id => !Array.Exists(Properties, p => p.NameId.AsSpan().SequenceEqual(id)))];
        BoundKey = KeyColumns(entityType);
        BoundItemKey = ItemKeyColumns(entityType);
        BoundColumns = [.. entityType.GetProperties()
            .Where(p => p.FindAnnotation(EncryptionAnnotations.BoundToRecord)?.Value is true)
            .Select(p => new BoundColumn(p, named: true))
            .OrderBy(c => c.Prefix, ByteOrder.Instance)];
    }

    private static bool SharesRowAsOptional(IEntityType entityType)
    {
        if (entityType.GetTableName() is not { } table)
        {
            return false;
        }

        var row = StoreObjectIdentifier.Table(table, entityType.GetSchema());
        return entityType.FindRowInternalForeignKeys(row).FirstOrDefault() is { IsRequiredDependent: false }
            && !entityType.GetReferencingForeignKeys().Any(fk => fk.IsRowInternal(row));
    }

    /// <summary>
    /// The key values a record is bound to: its primary key, or for an owned type the key of its owner (the ownership
    /// foreign key, also for a JSON-mapped one; an owned collection item's own key is <see cref="BoundItemKey"/>). Empty when
    /// they cannot be bound: a keyless type, or a key of a type without a plaintext encoding whose value converter does
    /// not store one either.
    /// </summary>
    public BoundColumn[] BoundKey { get; }

    /// <summary>
    /// For an item of a table-mapped owned collection, its own key values: the properties of its primary key that are
    /// not its owner's key (an ordinal, an <c>Id</c>), bound after <see cref="BoundKey"/> so that two items of one owner
    /// cannot be swapped. Empty for every other type, and for a JSON-mapped collection, whose ordinals are positions in
    /// the document that change when an earlier item is removed, without the later items being written again.
    /// </summary>
    public BoundColumn[] BoundItemKey { get; }

    /// <summary>How many plain columns the seal can bind: <see cref="BoundKey"/>, <see cref="BoundItemKey"/>, then <see cref="BoundColumns"/>.</summary>
    public int BoundCount => BoundKey.Length + BoundItemKey.Length + BoundColumns.Length;

    /// <summary>The columns configured with <c>IsBoundToRecord()</c>, in seal order.</summary>
    public BoundColumn[] BoundColumns { get; }

    /// <summary>
    /// For a type of an inheritance hierarchy, its concrete type's name as a binding name, bound into the seal after
    /// the entity (the root's name): a row whose discriminator is changed to another type of the hierarchy then fails
    /// instead of reading as that type. Empty for a type without base or derived types.
    /// </summary>
    public byte[] ConcreteTypeBinding { get; }

    /// <summary>The name ids of encrypted properties that other types of this type's hierarchy have and it does not.</summary>
    private byte[][] OtherTypesNameIds { get; }

    /// <summary>Indexes into <see cref="Properties"/> in the order the seal lists them (ordinal by binding name).</summary>
    private int[] SealOrder { get; }

    /// <summary>The metric tag naming this entity, built once rather than per record.</summary>
    public KeyValuePair<string, object?> EntityTag { get; }

    public bool HasSearchableProperties { get; }

    /// <summary>Whether the records live inside their owner's JSON column (<see cref="Storage.JsonBlobText"/>).</summary>
    public bool IsMappedToJson { get; }

    /// <summary>
    /// Whether a record is optional and shares its principal's row (an owned type, or table splitting), with no record
    /// sharing the row below it: EF reads it as absent when all its columns are NULL (<c>SaveEncryption.StoredAsAbsent</c>).
    /// </summary>
    public bool SharesRowOptionally { get; }

    public IEntityType EntityType { get; }

    /// <summary>The stable name bound into every blob of this type (the root entity type's name).</summary>
    public string Name { get; }

    /// <summary><see cref="Name"/> as a binding name (uint16 length + UTF-8).</summary>
    public byte[] BindingBytes { get; }

    /// <summary>The shadow property holding the wrapped data key.</summary>
    public IProperty KeyProperty { get; }

    public EncryptedProperty[] Properties { get; }

    /// <summary>Whether any property still maps a legacy plaintext column (a migration to encryption is under way).</summary>
    public bool HasLegacyPlaintext { get; }

    /// <summary>How many properties map a legacy plaintext column.</summary>
    public int LegacyColumnCount { get; }

    public CachedKey? LastKey
    {
        get => Volatile.Read(ref _lastKey);
        set => Volatile.Write(ref _lastKey, value);
    }

    /// <summary>Creates a record's wrapped-key blob (mode 1) and encrypts every property under its fresh data key.</summary>
    /// <param name="entity">The entity whose plaintext properties are encrypted.</param>
    /// <param name="kek">A leased key-encryption key with a use reserved for this record.</param>
    /// <param name="random">The source of the data key, record id and nonces.</param>
    /// <param name="fields">Receives one ciphertext (or null) per property, in <see cref="Properties"/> order.</param>
    /// <param name="binding">The row values the record is bound to (<see cref="BindingOf"/>).</param>
    public byte[] EncryptNew(object entity, CachedKey kek, IRandomSource random, byte[]?[] fields, in RowBinding binding)
    {
        // One call to the random source for everything this record needs: each call costs about a microsecond.
        // Data key, record id, the wrapped key's nonce, one nonce per property, then the seal's nonce.
        Span<byte> randomness = stackalloc byte[EnvelopeFormat.KeySize + EnvelopeFormat.RecordIdSize + EnvelopeFormat.NonceSize * (2 + Properties.Length)];
        random.Fill(randomness);
        var dataKey = randomness[..EnvelopeFormat.KeySize];
        var recordId = randomness.Slice(EnvelopeFormat.KeySize, EnvelopeFormat.RecordIdSize);
        var nonces = randomness[(EnvelopeFormat.KeySize + EnvelopeFormat.RecordIdSize)..];
        try
        {
            var blob = new byte[EnvelopeFormat.TailOffset + kek.Tail.Length + EnvelopeFormat.WrappedDekSize];
            blob[0] = EnvelopeFormat.Version2;
            blob[1] = EnvelopeFormat.ModeCachedKek;
            recordId.CopyTo(blob.AsSpan(2));
            kek.Tail.CopyTo(blob, EnvelopeFormat.TailOffset);
            var headerLength = EnvelopeFormat.TailOffset + kek.Tail.Length;
            var nonce = blob.AsSpan(headerLength, EnvelopeFormat.NonceSize);
            nonces[..EnvelopeFormat.NonceSize].CopyTo(nonce);

            var aad = EnvelopeFormat.DataKeyAssociatedData(EnvelopeFormat.Version2, blob.AsSpan(0, headerLength), BindingBytes, stackalloc byte[StackLimit]);
            var tagAt = headerLength + EnvelopeFormat.NonceSize + EnvelopeFormat.KeySize;

            var kekCipher = kek.RentCipher();
            try
            {
                kekCipher.Encrypt(nonce, dataKey, blob.AsSpan(headerLength + EnvelopeFormat.NonceSize, EnvelopeFormat.KeySize), blob.AsSpan(tagAt, EnvelopeFormat.TagSize), aad);
            }
            finally
            {
                kek.ReturnCipher(kekCipher);
            }

            using var cipher = new AesGcm(dataKey, EnvelopeFormat.TagSize);
            EncryptFields(entity, cipher, recordId, nonces[EnvelopeFormat.NonceSize..], fields, null);
            return AppendTrailer(blob, cipher, nonces[^EnvelopeFormat.NonceSize..], recordId, binding, fields);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dataKey);
        }
    }

    /// <summary>Creates a record's wrapped-key blob (mode 2, direct) around a provider-wrapped data key.</summary>
    public byte[] EncryptNewDirect(object entity, GeneratedDataKey dataKey, ReadOnlySpan<byte> recordId, string providerName, IRandomSource random, byte[]?[] fields, in RowBinding binding)
    {
        var tail = EnvelopeFormat.BuildTail(providerName, dataKey.KeyId, Name, dataKey.WrappedKey);
        var blob = new byte[EnvelopeFormat.TailOffset + tail.Length];
        blob[0] = EnvelopeFormat.Version2;
        blob[1] = EnvelopeFormat.ModeDirect;
        recordId.CopyTo(blob.AsSpan(2));
        tail.CopyTo(blob, EnvelopeFormat.TailOffset);

        // One nonce per property, then the seal's.
        Span<byte> nonces = stackalloc byte[EnvelopeFormat.NonceSize * (1 + Properties.Length)];
        random.Fill(nonces);
        using var cipher = new AesGcm(dataKey.Plaintext, EnvelopeFormat.TagSize);
        EncryptFields(entity, cipher, recordId, nonces, fields, null);
        return AppendTrailer(blob, cipher, nonces[^EnvelopeFormat.NonceSize..], recordId, binding, fields);
    }

    /// <summary>
    /// Re-encrypts the chosen properties of a version 2 record under its existing data key, with fresh nonces, and
    /// returns its wrapped-key blob with a new seal over the new fields, the unchanged stored ones and the binding.
    /// </summary>
    /// <remarks>
    /// <paramref name="stored"/> is the record's stored wrapped-key blob (version 2) and <paramref name="storedFields"/>
    /// its stored field blobs in <see cref="Properties"/> order (those of the unchanged properties are sealed again as
    /// they are). The seal gets a fresh nonce: a nonce never repeats under the data key.
    /// </remarks>
    public byte[] EncryptChanged(object entity, AesGcm dataKey, in WrappedKeyBlob stored, IRandomSource random, byte[]?[] fields, bool[] changed, object?[] storedFields, in RowBinding binding)
    {
        Span<byte> nonces = stackalloc byte[EnvelopeFormat.NonceSize * (1 + Properties.Length)];
        random.Fill(nonces);
        EncryptFields(entity, dataKey, stored.RecordId, nonces, fields, changed);

        var merged = new object?[Properties.Length];
        for (var i = 0; i < merged.Length; i++)
        {
            merged[i] = changed[i] ? fields[i] : storedFields[i];
        }

        return AppendTrailer(stored.Unsealed, dataKey, nonces[^EnvelopeFormat.NonceSize..], stored.RecordId, binding, merged);
    }

    /// <summary>Whether a record written with these binding flags left out key values this type binds (not yet generated).</summary>
    public bool LeavesKeyUnbound(byte flags) =>
        (BoundKey.Length > 0 && (flags & EnvelopeFormat.FlagKeyBound) == 0)
        || (BoundItemKey.Length > 0 && (flags & EnvelopeFormat.FlagItemKeyBound) == 0);

    /// <summary>
    /// Returns a version 2 record's blob sealed again under <paramref name="binding"/>: the same data key, fields and
    /// trailer entries, the binding flags replaced and a fresh seal nonce. For a record whose key the database
    /// generated on insert, so that its seal covers the key from the insert on.
    /// </summary>
    /// <remarks>
    /// Only the key groups may change: the other flags (opted-in columns, listed legacy NULLs) describe the entries
    /// and values the record was sealed with, which stay as they are.
    /// </remarks>
    public byte[] Reseal(in WrappedKeyBlob stored, AesGcm dataKey, IRandomSource random, in RowBinding binding)
    {
        const byte keyGroups = EnvelopeFormat.FlagKeyBound | EnvelopeFormat.FlagItemKeyBound;
        if ((stored.BindingFlags & ~keyGroups) != (binding.Flags & ~keyGroups))
        {
            throw new InvalidOperationException($"The record of '{Name}' cannot be sealed again with other than key binding flags ({stored.BindingFlags:x2} to {binding.Flags:x2}).");
        }

        var blob = stored.Blob.ToArray();
        var trailerAt = stored.Unsealed.Length;
        var nonceAt = blob.Length - EnvelopeFormat.SealWithNonceSize;
        blob[trailerAt] = binding.Flags;
        var nonce = blob.AsSpan(nonceAt, EnvelopeFormat.NonceSize);
        random.Fill(nonce);
        Seal(stored.RecordId, blob.AsSpan(trailerAt, nonceAt - trailerAt), binding.Values, dataKey, nonce, expected: default, output: blob.AsSpan(nonceAt + EnvelopeFormat.NonceSize));
        return blob;
    }

    /// <summary>Opens a mode 1 record's data key with its (leased) KEK.</summary>
    public AesGcm OpenDataKey(in WrappedKeyBlob blob, CachedKey kek)
    {
        var aad = EnvelopeFormat.DataKeyAssociatedData(blob.Version, blob.Header, BindingBytes, stackalloc byte[StackLimit]);

        var wrapped = blob.WrappedDek;
        Span<byte> dataKey = stackalloc byte[EnvelopeFormat.KeySize];
        var kekCipher = kek.RentCipher();
        try
        {
            kekCipher.Decrypt(
                wrapped[..EnvelopeFormat.NonceSize],
                wrapped.Slice(EnvelopeFormat.NonceSize, EnvelopeFormat.KeySize),
                wrapped[(EnvelopeFormat.NonceSize + EnvelopeFormat.KeySize)..],
                dataKey,
                aad);
            return new AesGcm(dataKey, EnvelopeFormat.TagSize);
        }
        catch (AuthenticationTagMismatchException ex)
        {
            throw new EnvelopeDecryptionException(
                "The record's wrapped data key failed authentication: it was tampered with, or copied from another table.",
                Name, null, kek.KeyId, ex);
        }
        finally
        {
            kek.ReturnCipher(kekCipher);
            CryptographicOperations.ZeroMemory(dataKey);
        }
    }

    /// <summary>The row values a record is bound to when it is written from an entry in this state.</summary>
    /// <param name="valueOf">Reads a column's current value.</param>
    /// <param name="known">
    /// Whether a key property's value is final: false while the database still has to generate it (an identity column
    /// on insert), in which case the key group it belongs to (<see cref="BoundKey"/> or <see cref="BoundItemKey"/>) is
    /// left out of the seal until the record's next write.
    /// </param>
    public RowBinding BindingOf(Func<IProperty, object?> valueOf, Func<IProperty, bool> known)
    {
        var flags = (byte)((BoundKey.Length > 0 && Array.TrueForAll(BoundKey, c => known(c.Property)) ? EnvelopeFormat.FlagKeyBound : 0)
            | (BoundItemKey.Length > 0 && Array.TrueForAll(BoundItemKey, c => known(c.Property)) ? EnvelopeFormat.FlagItemKeyBound : 0)
            | (BoundColumns.Length > 0 ? EnvelopeFormat.FlagColumnsBound : 0)
            | (HasLegacyPlaintext ? EnvelopeFormat.FlagLegacyNullsListed : 0));
        var values = new object?[BoundCount];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = valueOf(Column(i).Property);
        }

        return new RowBinding(flags, values);
    }

    /// <summary>Checks a stored version 2 record against its seal, before anything of it is decrypted.</summary>
    /// <param name="blob">The record's wrapped-key blob.</param>
    /// <param name="dataKey">The record's opened data key.</param>
    /// <param name="fields">The stored field blobs, in <see cref="Properties"/> order.</param>
    /// <param name="bound">The stored values of <see cref="BoundKey"/>, <see cref="BoundItemKey"/>, then <see cref="BoundColumns"/>.</param>
    /// <param name="legacy">The stored values of the legacy plaintext columns, in <see cref="Properties"/> order of the properties that map one.</param>
    /// <param name="keyId">The master key the blob names, for the error.</param>
    /// <exception cref="EnvelopeDecryptionException">
    /// A field is not the one sealed (naming the property), or the seal does not match the record id, entity, the
    /// listed values or the bound row values (naming no property), or a legacy plaintext column holds a value where
    /// the seal says its property was NULL (naming the property).
    /// </exception>
    public void VerifySeal(in WrappedKeyBlob blob, AesGcm dataKey, ReadOnlySpan<object?> fields, ReadOnlySpan<object?> bound, ReadOnlySpan<object?> legacy, string keyId)
    {
        // Each property holding a value must be listed with its field's tag, and none listed may be NULL now, unless
        // the seal lists it as NULL (flag 0x04, zero tag). Listed name ids the model does not know are properties
        // removed since (their columns were dropped): the seal still covers them, so nobody without the data key can
        // add or remove one.
        var entries = blob.TrailerEntries;
        var flags = blob.BindingFlags;
        var nullsListed = (flags & EnvelopeFormat.FlagLegacyNullsListed) != 0;
        for (var i = 0; i < Properties.Length; i++)
        {
            var entry = FindEntry(entries, Properties[i].NameId);
            var field = fields[i] as byte[];
            var present = field is not null && HasValue(field);
            // A present field is compared with the listed tag as it is, so a real tag that happens to be all zeros
            // still reads; only an absent one takes the zero tag for "listed as NULL".
            var listedAsNull = !present && entry >= 0 && nullsListed && EnvelopeFormat.IsNullEntryTag(entries.Slice(entry + 4, EnvelopeFormat.TagSize));
            if ((present != entry >= 0 && !listedAsNull)
                || (present && (field!.Length < EnvelopeFormat.FieldOverhead || !entries.Slice(entry + 4, EnvelopeFormat.TagSize).SequenceEqual(field.AsSpan(field.Length - EnvelopeFormat.TagSize)))))
            {
                throw new EnvelopeDecryptionException(
                    present
                        ? (entry < 0 ? "The stored value is one the record's seal says was NULL." : "The stored ciphertext is not the one the record was sealed with: it was replaced (by an older value, or one from another record) or tampered with.")
                        : "The stored value is NULL (or empty) where the record's seal lists a value: it was erased.",
                    Name, Properties[i].Name, keyId);
            }
        }

        // A listed property that another type of the hierarchy has (and this one does not) was written as that type.
        for (var at = 0; at + EnvelopeFormat.TrailerEntrySize <= entries.Length; at += EnvelopeFormat.TrailerEntrySize)
        {
            if (IsOtherTypesProperty(entries.Slice(at, 4)))
            {
                throw new EnvelopeDecryptionException(
                    $"The record's seal lists a property of another type of its inheritance hierarchy (record id {Convert.ToHexStringLower(blob.RecordId)}): the row's type (its discriminator) was changed outside EF.",
                    Name, null, keyId);
            }
        }

        var known = (flags & ~(EnvelopeFormat.FlagKeyBound | EnvelopeFormat.FlagColumnsBound | EnvelopeFormat.FlagItemKeyBound | EnvelopeFormat.FlagLegacyNullsListed)) == 0
            && ((flags & EnvelopeFormat.FlagKeyBound) == 0 || BoundKey.Length > 0)
            && ((flags & EnvelopeFormat.FlagItemKeyBound) == 0 || BoundItemKey.Length > 0)
            && ((flags & EnvelopeFormat.FlagColumnsBound) == 0 || BoundColumns.Length > 0);
        // Flags naming bound values this model does not have cannot be verified, so they fail like a wrong seal.
        if (!known || !Seal(blob.RecordId, blob.TrailerWithoutSeal, bound, dataKey, blob.SealNonce, expected: blob.Seal, output: default))
        {
            throw new EnvelopeDecryptionException(
                $"The record's seal does not match (record id {Convert.ToHexStringLower(blob.RecordId)}): its columns were moved from another row, or its key column or a column bound to it was changed outside EF.",
                Name, null, keyId);
        }

        if (nullsListed && HasLegacyPlaintext)
        {
            RefuseLegacyBesideSealedNull(blob, entries, fields, legacy, keyId);
        }
    }

    /// <summary>
    /// A record written while a property had a legacy plaintext column lists that property even when NULL, and saving
    /// it emptied the column: a value found there now beside a ciphertext the seal says was NULL was written outside EF,
    /// and reading it (or sealing it on the next save) would make a forged value authentic.
    /// </summary>
    /// <remarks>
    /// Called once the seal has verified, so the entries are the writer's. A legacy-mapped property the seal does not
    /// list was added (or given its legacy column) after the record was last written: its column is read as the
    /// migration needs, as in a record sealed without flag 0x04.
    /// </remarks>
    private void RefuseLegacyBesideSealedNull(in WrappedKeyBlob blob, ReadOnlySpan<byte> entries, ReadOnlySpan<object?> fields, ReadOnlySpan<object?> legacy, string keyId)
    {
        var column = 0;
        for (var i = 0; i < Properties.Length; i++)
        {
            if (Properties[i].LegacyPlaintext is null)
            {
                continue;
            }

            // A present field was checked against its listed tag above; the legacy column is only read beside NULL.
            if (legacy[column++] is not null && !(fields[i] is byte[] field && HasValue(field)) && FindEntry(entries, Properties[i].NameId) >= 0)
            {
                throw new EnvelopeDecryptionException(
                    $"The legacy plaintext column holds a value where the record's seal says the property was NULL (record id {Convert.ToHexStringLower(blob.RecordId)}): it was written outside EF after the record was encrypted.",
                    Name, Properties[i].Name, keyId);
            }
        }
    }

    public override string ToString() => $"EncryptedEntity({Name}, {Properties.Length} properties)";

    /// <summary>
    /// Returns <paramref name="unsealed"/> followed by the version 2 trailer: flags, the entries of the present
    /// properties (and with <see cref="EnvelopeFormat.FlagLegacyNullsListed"/> those of the NULL legacy-mapped ones),
    /// the seal's nonce, the seal.
    /// </summary>
    private byte[] AppendTrailer(ReadOnlySpan<byte> unsealed, AesGcm dataKey, ReadOnlySpan<byte> sealNonce, ReadOnlySpan<byte> recordId, in RowBinding binding, ReadOnlySpan<object?> fields)
    {
        var nullsListed = (binding.Flags & EnvelopeFormat.FlagLegacyNullsListed) != 0;
        var listed = 0;
        for (var i = 0; i < fields.Length; i++)
        {
            listed += (fields[i] is byte[] bytes && HasValue(bytes)) || (nullsListed && Properties[i].LegacyPlaintext is not null) ? 1 : 0;
        }

        var blob = new byte[unsealed.Length + EnvelopeFormat.TrailerFixedSize + listed * EnvelopeFormat.TrailerEntrySize];
        unsealed.CopyTo(blob);
        var at = unsealed.Length;
        blob[at] = binding.Flags;
        BinaryPrimitives.WriteUInt16BigEndian(blob.AsSpan(at + 1), (ushort)listed);
        at += 3;
        foreach (var i in SealOrder)
        {
            if (fields[i] is byte[] field && HasValue(field))
            {
                at = Put(blob, at, Properties[i].NameId);
                at = Put(blob, at, field.AsSpan(field.Length - EnvelopeFormat.TagSize));
            }
            else if (nullsListed && Properties[i].LegacyPlaintext is not null)
            {
                // Listed as NULL: the blob is zero-filled, so the tag stays 16 zero bytes.
                at = Put(blob, at, Properties[i].NameId) + EnvelopeFormat.TagSize;
            }
        }

        sealNonce.CopyTo(blob.AsSpan(at));
        Seal(recordId, blob.AsSpan(unsealed.Length, at - unsealed.Length), binding.Values, dataKey, sealNonce, expected: default, output: blob.AsSpan(at + EnvelopeFormat.NonceSize));
        return blob;
    }

    private bool IsOtherTypesProperty(ReadOnlySpan<byte> nameId)
    {
        foreach (var id in OtherTypesNameIds)
        {
            if (nameId.SequenceEqual(id))
            {
                return true;
            }
        }

        return false;
    }

    private static int FindEntry(ReadOnlySpan<byte> entries, byte[] nameId)
    {
        for (var at = 0; at + EnvelopeFormat.TrailerEntrySize <= entries.Length; at += EnvelopeFormat.TrailerEntrySize)
        {
            if (entries.Slice(at, 4).SequenceEqual(nameId))
            {
                return at;
            }
        }

        return -1;
    }

    /// <summary>
    /// Computes the seal into <paramref name="output"/> (or, when it is empty, checks it against <paramref name="expected"/>) (docs/FORMAT.md, "Record seal") of: label, record
    /// id, entity, the trailer up to the seal's nonce (flags and the present properties' name ids and tags), then the
    /// bound row values the flags select.
    /// </summary>
    private bool Seal(ReadOnlySpan<byte> recordId, ReadOnlySpan<byte> trailer, ReadOnlySpan<object?> bound, AesGcm dataKey, ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> expected, Span<byte> output)
    {
        var flags = trailer[0];
        var length = EnvelopeFormat.SealLabel.Length + EnvelopeFormat.RecordIdSize + BindingBytes.Length + ConcreteTypeBinding.Length + trailer.Length + 2;
        var boundCount = 0;
        for (var i = 0; i < bound.Length; i++)
        {
            if (IsBound(i, flags))
            {
                length += Column(i).Length(bound[i]);
                boundCount++;
            }
        }

        byte[]? rented = null;
        var message = length <= StackLimit ? stackalloc byte[StackLimit] : (rented = ArrayPool<byte>.Shared.Rent(length));
        message = message[..length];
        try
        {
            var at = Put(message, 0, EnvelopeFormat.SealLabel);
            at = Put(message, at, recordId);
            at = Put(message, at, BindingBytes);
            at = Put(message, at, ConcreteTypeBinding);
            at = Put(message, at, trailer);
            BinaryPrimitives.WriteUInt16BigEndian(message[at..], (ushort)boundCount);
            at += 2;
            for (var i = 0; i < bound.Length; i++)
            {
                if (IsBound(i, flags))
                {
                    at = Column(i).Write(bound[i], message, at);
                }
            }

            if (output.IsEmpty)
            {
                return RecordSeal.Verify(dataKey, nonce, message, expected);
            }

            RecordSeal.Compute(dataKey, nonce, message, output);
            return true;
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private void EncryptFields(object entity, AesGcm cipher, ReadOnlySpan<byte> recordId, ReadOnlySpan<byte> nonces, byte[]?[] fields, bool[]? only)
    {
        for (var i = 0; i < Properties.Length; i++)
        {
            if (only is null || only[i])
            {
                fields[i] = Properties[i].Encrypt(entity, cipher, recordId, nonces.Slice(i * EnvelopeFormat.NonceSize, EnvelopeFormat.NonceSize));
            }
        }
    }

    // An empty value is what a migration writes into existing rows of a new non-nullable column: like NULL, no value.
    private static bool HasValue(byte[] field) => field.Length > 0;

    private BoundColumn Column(int index) =>
        index < BoundKey.Length ? BoundKey[index]
        : index < BoundKey.Length + BoundItemKey.Length ? BoundItemKey[index - BoundKey.Length]
        : BoundColumns[index - BoundKey.Length - BoundItemKey.Length];

    // Whether the bound value at this index (key, item key, then opted-in columns) is in the seal under these flags.
    private bool IsBound(int index, byte flags) =>
        (flags & (index < BoundKey.Length ? EnvelopeFormat.FlagKeyBound
            : index < BoundKey.Length + BoundItemKey.Length ? EnvelopeFormat.FlagItemKeyBound
            : EnvelopeFormat.FlagColumnsBound)) != 0;

    private static int Put(Span<byte> destination, int at, ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(destination[at..]);
        return at + bytes.Length;
    }

    private static BoundColumn[] KeyColumns(IEntityType entityType)
    {
        var properties = entityType.FindOwnership() is { } ownership ? ownership.Properties : entityType.FindPrimaryKey()?.Properties;
        return properties is null || properties.Any(p => !BoundColumn.CanBind(p)) ? [] : [.. properties.Select(p => new BoundColumn(p, named: false))];
    }

    private static BoundColumn[] ItemKeyColumns(IEntityType entityType)
    {
        if (entityType.FindOwnership() is not { IsUnique: false } ownership || entityType.IsMappedToJson() || entityType.FindPrimaryKey() is not { } key)
        {
            return [];
        }

        var own = key.Properties.Where(p => !ownership.Properties.Contains(p)).ToArray();
        return own.Any(p => !BoundColumn.CanBind(p)) ? [] : [.. own.Select(p => new BoundColumn(p, named: false))];
    }

    // The discriminator value is what the database stores, so it names the type for as long as rows keep it; types
    // without one (TPT, TPC) are named by their EF short name.
    private static string ConcreteTypeName(IEntityType entityType) => entityType.GetDiscriminatorValue() switch
    {
        null => entityType.ShortName(),
        IFormattable value => value.ToString(null, CultureInfo.InvariantCulture),
        var value => value.ToString() ?? entityType.ShortName(),
    };

    // The binding names of the encrypted properties declared by the types of the hierarchy that are neither this type
    // nor one of its base types (whose properties it inherits).
    private static IEnumerable<string> OtherTypesProperties(IEntityType entityType)
    {
        var own = entityType.GetAllBaseTypesInclusive().ToHashSet();
        return entityType.GetRootType().GetDerivedTypesInclusive()
            .Where(type => !own.Contains(type))
            .SelectMany(type => (type.FindAnnotation(EncryptionAnnotations.EncryptedProperties)?.Value as string[] ?? [])
                .Select(name => type.FindProperty(EncryptionAnnotations.CiphertextPropertyName(name))?.FindAnnotation(EncryptionAnnotations.BindingName)?.Value as string ?? name));
    }

    private sealed class ByteOrder : IComparer<byte[]>
    {
        public static readonly ByteOrder Instance = new();

        public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
    }
}
