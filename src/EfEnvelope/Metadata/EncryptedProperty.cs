using System.Buffers;
using System.Linq.Expressions;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using EfEnvelope.Crypto;
using EfEnvelope.Search;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Metadata;

/// <summary>One encrypted CLR property: how to read, write, snapshot, encrypt and decrypt it without reflection per value.</summary>
internal abstract class EncryptedProperty
{
    protected EncryptedProperty(string entityName, PropertyInfo clrProperty, IProperty ciphertext, byte[] entityBinding, string bindingName)
    {
        EntityName = entityName;
        Name = clrProperty.Name;
        Ciphertext = ciphertext;
        PropertyBinding = EnvelopeFormat.BindingName(bindingName);
        NameId = SHA256.HashData(PropertyBinding)[..4];
        AadSuffix = [.. entityBinding, .. PropertyBinding];
        AadSuffix2 = [.. AadSuffix, .. EnvelopeFormat.BindingName(ValueCodecs.TypeTag(clrProperty.PropertyType))];
        _maxLength = ciphertext.FindAnnotation(EncryptionAnnotations.MaxLength)?.Value as int?;
        _lengthInCharacters = ciphertext.FindAnnotation(EncryptionAnnotations.MaxLengthInCharacters)?.Value is true;
        _precision = ciphertext.FindAnnotation(EncryptionAnnotations.Precision)?.Value as int?;
        _scale = ciphertext.FindAnnotation(EncryptionAnnotations.Scale)?.Value as int? ?? 0;
    }

    private readonly int? _maxLength;
    private readonly bool _lengthInCharacters;
    private readonly int? _precision;
    private readonly int _scale;

    /// <summary>The property's binding name (uint16 length + UTF-8): the order of the record seal's entries.</summary>
    public byte[] PropertyBinding { get; }

    /// <summary>The first 4 bytes of SHA-256 of <see cref="PropertyBinding"/>: how the record seal's trailer names the property.</summary>
    public byte[] NameId { get; }

    public string EntityName { get; }

    public string Name { get; }

    /// <summary>The shadow property holding the ciphertext.</summary>
    public IProperty Ciphertext { get; }

    /// <summary>The shadow property holding the blind index, for searchable properties.</summary>
    public IProperty? Index { get; private set; }

    /// <summary>Whether decrypted values are written through the property's setter (code of the application's), not a field.</summary>
    public bool WritesThroughSetter { get; protected init; }

    /// <summary>The blind index settings, for searchable properties.</summary>
    public BlindIndexOptions? Search { get; protected set; }

    /// <summary>Whether a decrypted value equals a searched one, under the blind index's normalisation.</summary>
    public abstract bool MatchesSearch(object entity, object? searched);

    /// <summary>The shadow property mapping the column that still holds plaintext from before encryption, if configured.</summary>
    public IProperty? LegacyPlaintext { get; private set; }

    /// <summary>Binding names of entity and property: the constant end of a version 1 field's associated data.</summary>
    protected byte[] AadSuffix { get; }

    /// <summary>Version 2: binding names of entity and property, then the type tag of the plaintext encoding.</summary>
    protected byte[] AadSuffix2 { get; }

    /// <summary>
    /// Creates the metadata of one encrypted property, read and written through <paramref name="backingField"/> when EF
    /// would use that field (its property access mode), else through the CLR property.
    /// </summary>
    public static EncryptedProperty Create(string entityName, PropertyInfo clrProperty, FieldInfo? backingField, IProperty ciphertext, byte[] entityBinding, IProperty? index, IProperty? legacyPlaintext, string bindingName)
    {
        var property = (EncryptedProperty)Activator.CreateInstance(
            typeof(EncryptedProperty<>).MakeGenericType(clrProperty.PropertyType),
            entityName, clrProperty, backingField, ciphertext, entityBinding, bindingName)!;
        if (index is not null)
        {
            property.Index = index;
            property.AttachSearch(index);
        }

        property.LegacyPlaintext = legacyPlaintext;
        return property;
    }

    protected abstract void AttachSearch(IProperty index);

    /// <summary>
    /// Why the entity's value would not fit the plain column's configured facets (a maximum length, a decimal's precision
    /// and scale), which the database checks for a plain column and cannot check for ciphertext; null when it fits.
    /// The reason names lengths and digit counts, never the value.
    /// </summary>
    public string? Misfit(object entity)
    {
        if (_maxLength is null && _precision is null)
        {
            return null;
        }

        switch (Capture(entity))
        {
            case string text when text.Length > _maxLength && Length(text) is var length && length > _maxLength:
                return $"is {length} characters long, more than its maximum length {_maxLength} (HasMaxLength, [MaxLength] or [StringLength])";
            case byte[] bytes when bytes.Length > _maxLength:
                return $"is {bytes.Length} bytes long, more than its maximum length {_maxLength} (HasMaxLength or [MaxLength])";
            case decimal number when _precision is { } precision:
                var (integral, decimals) = Digits(number);
                return decimals > _scale ? $"has {decimals} decimal places, more than the scale {_scale} of its HasPrecision({precision}, {_scale}), which the database would round"
                    : integral > precision - _scale ? $"has {integral} digits before the decimal point, more than the {precision - _scale} its HasPrecision({precision}, {_scale}) allows"
                    : null;
            default:
                return null;
        }
    }

    // A string's length as the database counts it (never more than its UTF-16 length, checked first).
    private int Length(string text)
    {
        if (!_lengthInCharacters)
        {
            return text.Length;
        }

        var characters = 0;
        foreach (var _ in text.EnumerateRunes())
        {
            characters++;
        }

        return characters;
    }

    // Digits before the decimal point (none for 0.5) and significant decimal places (trailing zeros do not count: 1.10 fits a scale of 1).
    private static (int Integral, int Decimals) Digits(decimal number)
    {
        var text = Math.Abs(number).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var point = text.IndexOf('.', StringComparison.Ordinal);
        var integral = point < 0 ? text : text[..point];
        return (integral == "0" ? 0 : integral.Length, point < 0 ? 0 : text.TrimEnd('0').Length - point - 1);
    }

    /// <summary>Sets the CLR property to a plaintext value read from the legacy plaintext column.</summary>
    public abstract void SetLegacyValue(object entity, object value);

    /// <summary>Encrypts the entity's current value; null for a null value.</summary>
    public abstract byte[]? Encrypt(object entity, AesGcm dataKey, ReadOnlySpan<byte> recordId, ReadOnlySpan<byte> nonce);

    /// <summary>Decrypts <paramref name="blob"/> (of format <paramref name="version"/>, the record's) into the entity's CLR property.</summary>
    public abstract void Decrypt(object entity, byte[]? blob, AesGcm dataKey, ReadOnlySpan<byte> recordId, string keyId, byte version);

    /// <summary>Whether <paramref name="blob"/> (a field of the record's format <paramref name="version"/>) decrypts to <paramref name="expected"/>.</summary>
    /// <exception cref="EnvelopeDecryptionException">The blob does not decrypt under this record's data key.</exception>
    public abstract bool StoredValueEquals(byte[]? blob, AesGcm dataKey, ReadOnlySpan<byte> recordId, string keyId, byte version, object? expected);

    /// <summary>Sets the CLR property to its default (no plaintext).</summary>
    public abstract void Reset(object entity);

    /// <summary>
    /// Sets the CLR property to the default EF migrations give a new non-nullable column of its plain type (empty for
    /// strings and byte arrays, the type's default otherwise): the value of a row whose column was added with an empty
    /// binary default.
    /// </summary>
    public abstract void SetMigrationDefault(object entity);

    /// <summary>
    /// Whether a stored value is the empty value a migration writes into existing rows of a new non-nullable column.
    /// A nullable column gets NULL instead, so there an empty value is a truncated ciphertext.
    /// </summary>
    public bool IsMigrationDefault(object? stored) => stored is byte[] { Length: 0 } && !Ciphertext.IsNullable;

    /// <summary>Sets the CLR property back to a <see cref="Capture"/> result.</summary>
    public abstract void Restore(object entity, object? captured);

    /// <summary>
    /// The current value. A byte array is not copied: like EF's snapshot of a plain <c>byte[]</c> property, an edit
    /// in place of the same array is not a change (assign a new array to change the value).
    /// </summary>
    public abstract object? Capture(object entity);

    /// <summary>Whether the current value differs from a <see cref="Capture"/> result.</summary>
    public abstract bool Differs(object entity, object? captured);

    /// <summary>The length of a field's associated data in format <paramref name="version"/>.</summary>
    protected int AssociatedDataLength(byte version) =>
        version == EnvelopeFormat.Version2
            ? EnvelopeFormat.FieldLabel.Length + EnvelopeFormat.RecordIdSize + AadSuffix2.Length
            : 1 + EnvelopeFormat.RecordIdSize + AadSuffix.Length;

    /// <summary>
    /// Builds the associated data of a field. Version 1: <c>0x01 || record id || entity || property</c>; version 2:
    /// <c>label || record id || entity || property || type tag</c>, each name a binding name.
    /// </summary>
    protected void WriteAssociatedData(Span<byte> destination, ReadOnlySpan<byte> recordId, byte version)
    {
        if (version == EnvelopeFormat.Version2)
        {
            EnvelopeFormat.FieldLabel.CopyTo(destination);
            recordId.CopyTo(destination[EnvelopeFormat.FieldLabel.Length..]);
            AadSuffix2.CopyTo(destination[(EnvelopeFormat.FieldLabel.Length + EnvelopeFormat.RecordIdSize)..]);
            return;
        }

        destination[0] = EnvelopeFormat.Version;
        recordId.CopyTo(destination[1..]);
        AadSuffix.CopyTo(destination[(1 + EnvelopeFormat.RecordIdSize)..]);
    }
}

internal sealed class EncryptedProperty<T> : EncryptedProperty
{
    private const int StackLimit = 512;
    private static readonly bool IsByteArray = typeof(T) == typeof(byte[]);

    // Whether an edit changed the value, as EF's own comparer for the type decides: for DateTimeOffset that is the
    // instant and the offset (EqualsExact), where .NET's equality compares the instant only, so an edit of the offset
    // alone would be no change and never saved.
    private static readonly IEqualityComparer<T> Equality =
        typeof(T) == typeof(DateTimeOffset) || typeof(T) == typeof(DateTimeOffset?)
            ? (IEqualityComparer<T>)(object)ExactDateTimeOffsets.Instance
            : EqualityComparer<T>.Default;

    // What a migration's empty value in a new non-nullable column reads as: the plain column's default.
    private static T MigrationDefault => typeof(T) == typeof(string) ? (T)(object)"" : IsByteArray ? (T)(object)Array.Empty<byte>() : default!;

    private readonly Func<object, T> _get;
    private readonly Action<object, T> _set;
    private readonly ValueCodec<T> _codec;
    private BlindIndexProperty<T>? _search;

    public EncryptedProperty(string entityName, PropertyInfo clrProperty, FieldInfo? backingField, IProperty ciphertext, byte[] entityBinding, string bindingName)
        : base(entityName, clrProperty, ciphertext, entityBinding, bindingName)
    {
        _codec = (ValueCodec<T>)ValueCodecs.For(typeof(T));
        _get = backingField is null ? CompileGetter(clrProperty) : CompileFieldGetter(backingField);
        // An init-only field (a record's, or a get-only auto-property's) cannot be assigned by an expression: its
        // property's setter (init accessor) does the same, and CompileSetter covers a property without one.
        _set = backingField is { IsInitOnly: false } ? CompileFieldSetter(backingField) : CompileSetter(clrProperty);

        // An init-only field belongs to a compiler-generated accessor, which only assigns it.
        WritesThroughSetter = backingField is null && clrProperty.GetSetMethod(nonPublic: true) is not null;
    }

    public override byte[]? Encrypt(object entity, AesGcm dataKey, ReadOnlySpan<byte> recordId, ReadOnlySpan<byte> nonce)
    {
        var value = _get(entity);
        if (value is null)
        {
            return null;
        }

        int length;
        try
        {
            length = _codec.GetByteCount(value);
        }
        catch (EncoderFallbackException)
        {
            // A string with an unpaired surrogate has no exact UTF-8 form: refuse it rather than store a replacement
            // character. The encoder's own message quotes the character and its index, so it is not passed on.
            throw new InvalidOperationException(
                $"Encrypted property '{EntityName}.{Name}' holds a string that is not valid UTF-16 (an unpaired surrogate), which cannot be encrypted exactly.");
        }

        var blob = new byte[EnvelopeFormat.FieldOverhead + length];
        blob[0] = EnvelopeFormat.Version2;
        nonce.CopyTo(blob.AsSpan(1, EnvelopeFormat.NonceSize));

        // The plaintext encoding is written into the blob's ciphertext area and encrypted in place,
        // which saves a copy and a buffer per value.
        _codec.Write(value, blob.AsSpan(1 + EnvelopeFormat.NonceSize, length));

        Span<byte> aad = stackalloc byte[AssociatedDataLength(EnvelopeFormat.Version2)];
        WriteAssociatedData(aad, recordId, EnvelopeFormat.Version2);
        FieldCipher.Seal(dataKey, blob, aad);
        return blob;
    }

    public override void Decrypt(object entity, byte[]? blob, AesGcm dataKey, ReadOnlySpan<byte> recordId, string keyId, byte version) =>
        _set(entity, DecryptValue(blob, dataKey, recordId, keyId, version));

    public override bool StoredValueEquals(byte[]? blob, AesGcm dataKey, ReadOnlySpan<byte> recordId, string keyId, byte version, object? expected)
    {
        var stored = DecryptValue(blob, dataKey, recordId, keyId, version);
        return IsByteArray
            ? stored is byte[] bytes ? expected is byte[] other && bytes.AsSpan().SequenceEqual(other) : expected is null
            : Equality.Equals(stored, expected is null ? default! : (T)expected);
    }

    private T DecryptValue(byte[]? blob, AesGcm dataKey, ReadOnlySpan<byte> recordId, string keyId, byte version)
    {
        if (blob is null)
        {
            if (!Ciphertext.IsNullable)
            {
                throw new EnvelopeDecryptionException("The stored value of a required property is missing (NULL).", EntityName, Name, keyId);
            }

            return default!;
        }

        if (IsMigrationDefault(blob))
        {
            return MigrationDefault;
        }

        // A record's fields are all of its wrapped key's version: a version 1 field in a version 2 record (or the
        // reverse) was put there by someone else.
        if (blob.Length < EnvelopeFormat.FieldOverhead || blob[0] != version)
        {
            throw new EnvelopeDecryptionException(
                blob.Length < EnvelopeFormat.FieldOverhead ? "The stored ciphertext is truncated." : $"The stored ciphertext has format version {blob[0]} in a record of version {version}.",
                EntityName, Name, keyId);
        }

        var length = blob.Length - EnvelopeFormat.FieldOverhead;
        byte[]? rented = null;
        var plaintext = length <= StackLimit
            ? stackalloc byte[StackLimit]
            : (rented = ArrayPool<byte>.Shared.Rent(length));
        plaintext = plaintext[..length];
        try
        {
            Span<byte> aad = stackalloc byte[AssociatedDataLength(version)];
            WriteAssociatedData(aad, recordId, version);
            FieldCipher.Open(dataKey, blob, plaintext, aad);
            return _codec.Read(plaintext);
        }
        catch (EnvelopeDecryptionException ex)
        {
            throw ex.WithLocation(EntityName, Name, keyId);
        }
        catch (Exception ex) when (ex is ArgumentException or DecoderFallbackException)
        {
            throw new EnvelopeDecryptionException("The decrypted value could not be decoded as the property's type.", EntityName, Name, keyId, ex);
        }
        finally
        {
            // Decrypted bytes are plaintext: do not leave them in a pooled array or on the stack.
            CryptographicOperations.ZeroMemory(plaintext);
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    protected override void AttachSearch(IProperty index)
    {
        _search = (index.GetValueConverter() as BlindIndexConverter<T>)?.Index;
        Search = _search?.Options;
    }

    public override bool MatchesSearch(object entity, object? searched)
    {
        var value = _get(entity);
        if (value is null || searched is null)
        {
            return value is null && searched is null;
        }

        return _search?.Matches(value, (T)searched) ?? EqualityComparer<T>.Default.Equals(value, (T)searched);
    }

    public override void Reset(object entity) => _set(entity, default!);

    public override void SetMigrationDefault(object entity) => _set(entity, MigrationDefault);

    public override void Restore(object entity, object? captured) =>
        _set(entity, captured is null ? default! : (T)captured);

    public override void SetLegacyValue(object entity, object value) => _set(entity, (T)value);

    public override object? Capture(object entity) => _get(entity);

    public override bool Differs(object entity, object? captured)
    {
        var value = _get(entity);
        if (IsByteArray)
        {
            return value is byte[] current
                ? captured is not byte[] before || !current.AsSpan().SequenceEqual(before)
                : captured is not null;
        }

        return !Equality.Equals(value, captured is null ? default! : (T)captured);
    }

    private static Func<object, T> CompileGetter(PropertyInfo property)
    {
        var instance = Expression.Parameter(typeof(object), "entity");
        var body = Expression.Property(Expression.Convert(instance, property.DeclaringType!), property);
        return Expression.Lambda<Func<object, T>>(body, instance).Compile();
    }

    private static Func<object, T> CompileFieldGetter(FieldInfo field)
    {
        var instance = Expression.Parameter(typeof(object), "entity");
        var body = Expression.Field(Expression.Convert(instance, field.DeclaringType!), field);
        return Expression.Lambda<Func<object, T>>(body, instance).Compile();
    }

    private static Action<object, T> CompileFieldSetter(FieldInfo field)
    {
        var instance = Expression.Parameter(typeof(object), "entity");
        var value = Expression.Parameter(typeof(T), "value");
        // EF's Assign also writes a readonly field (a get-only auto-property's backing field), as EF's own setters do.
        var assign = Microsoft.EntityFrameworkCore.Infrastructure.ExpressionExtensions.Assign(Expression.Field(Expression.Convert(instance, field.DeclaringType!), field), value);
        return Expression.Lambda<Action<object, T>>(assign, instance, value).Compile();
    }

    private static Action<object, T> CompileSetter(PropertyInfo property)
    {
        var instance = Expression.Parameter(typeof(object), "entity");
        var value = Expression.Parameter(typeof(T), "value");
        var target = Expression.Convert(instance, property.DeclaringType!);
        Expression assign;
        if (property.GetSetMethod(nonPublic: true) is not null)
        {
            assign = Expression.Assign(Expression.Property(target, property), value);
        }
        else
        {
            // Get-only auto-property: write its compiler-generated backing field.
            var field = property.DeclaringType!.GetField($"<{property.Name}>k__BackingField", BindingFlags.Instance | BindingFlags.NonPublic)
                ?? throw new InvalidOperationException($"Encrypted property '{property.DeclaringType.Name}.{property.Name}' has no setter and no backing field to write decrypted values to.");
            assign = Microsoft.EntityFrameworkCore.Infrastructure.ExpressionExtensions.Assign(Expression.Field(target, field), value);
        }

        return Expression.Lambda<Action<object, T>>(assign, instance, value).Compile();
    }
}

/// <summary>DateTimeOffset values compared as EF compares them: same instant and same offset.</summary>
internal sealed class ExactDateTimeOffsets : IEqualityComparer<DateTimeOffset>, IEqualityComparer<DateTimeOffset?>
{
    public static readonly ExactDateTimeOffsets Instance = new();

    public bool Equals(DateTimeOffset x, DateTimeOffset y) => x.EqualsExact(y);

    public bool Equals(DateTimeOffset? x, DateTimeOffset? y) => x is { } a ? y is { } b && a.EqualsExact(b) : y is null;

    public int GetHashCode(DateTimeOffset obj) => HashCode.Combine(obj.UtcTicks, obj.Offset);

    public int GetHashCode(DateTimeOffset? obj) => obj is { } value ? GetHashCode(value) : 0;
}
