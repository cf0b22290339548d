using System.Buffers.Binary;
using EfEnvelope.Crypto;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Storage.ValueConversion;

namespace EfEnvelope.Metadata;

/// <summary>A plain column bound into a record's seal: its name (for an opted-in column), type tag and canonical encoding.</summary>
/// <remarks>
/// Key columns are bound by position, without their names: an owned type's key is its owner's, named after the owner,
/// and renaming the owner (with its binding name kept, docs/MIGRATIONS.md) must not make its rows fail.
/// A column whose CLR type has no plaintext encoding (a strongly typed id) is bound by the provider value its value
/// converter stores, which is what an attacker would have to reproduce in the database anyway.
/// </remarks>
internal sealed class BoundColumn
{
    public BoundColumn(IProperty property, bool named)
    {
        Property = property;
        if (!CanBind(property))
        {
            throw new InvalidOperationException(
                $"Property '{property.DeclaringType.DisplayName()}.{property.Name}' is bound to its record (IsBoundToRecord), but neither its type '{property.ClrType.Name}' nor the provider type of a value converter has a plaintext encoding (docs/FORMAT.md, \"Plaintext encodings\"); convert it to a supported type or do not bind it.");
        }

        _converter = ProviderConverter(property);
        var type = _converter?.ProviderClrType ?? property.ClrType;
        var tag = EnvelopeFormat.BindingName(ValueCodecs.TypeTag(type));
        Prefix = named ? [.. EnvelopeFormat.BindingName(property.Name), .. tag] : tag;
        _codec = (IBoxedValueCodec)ValueCodecs.For(type);
    }

    private readonly IBoxedValueCodec _codec;

    private readonly ValueConverter? _converter;

    public IProperty Property { get; }

    /// <summary>The column's binding name (opted-in columns only) then its type tag, each uint16 length + UTF-8.</summary>
    public byte[] Prefix { get; }

    /// <summary>Whether <paramref name="property"/>'s values can be bound: its CLR type, or its converter's provider type, has an encoding.</summary>
    public static bool CanBind(IProperty property) =>
        ValueCodecs.IsSupported(property.ClrType) || ProviderConverter(property) is not null;

    private static ValueConverter? ProviderConverter(IProperty property) =>
        ValueCodecs.IsSupported(property.ClrType)
            ? null
            : (property.GetValueConverter() ?? property.FindTypeMapping()?.Converter) is { } converter && ValueCodecs.IsSupported(converter.ProviderClrType)
                ? converter
                : null;

    /// <summary>
    /// The value as the seal encodes it: what every supported database gives back for what was written, so that a
    /// legitimate row reads after its round trip (docs/FORMAT.md, "Record seal"). Databases keep neither a
    /// <see cref="DateTime"/>'s kind nor a decimal's trailing zeros nor an offset (PostgreSQL stores instants in UTC),
    /// PostgreSQL keeps time to the microsecond, and zero's sign and NaN's payload are not kept reliably.
    /// </summary>
    private object Canonical(object value) => (_converter is null ? value : _converter.ConvertToProvider(value)) switch
    {
        DateTime time => new DateTime(Microseconds(time.Ticks), DateTimeKind.Unspecified),
        DateTimeOffset instant => new DateTimeOffset(Microseconds(instant.UtcTicks), TimeSpan.Zero),
        TimeSpan span => new TimeSpan(Microseconds(span.Ticks)),
        TimeOnly time => new TimeOnly(Microseconds(time.Ticks)),
        decimal number when number == 0m => 0m,
        decimal number => number / 1.000000000000000000000000000000000m,
        double number when number == 0d => 0d,
        double number when double.IsNaN(number) => double.NaN,
        float number when number == 0f => 0f,
        float number when float.IsNaN(number) => float.NaN,
        var other => other!,
    };

    // Truncated toward zero, as Npgsql converts ticks to microseconds.
    private static long Microseconds(long ticks) => ticks - ticks % 10;

    /// <summary>Bytes this value takes in the seal message: prefix, then <c>0x00</c> for NULL or <c>0x01 || uint32 length || encoding</c>.</summary>
    public int Length(object? value) => Prefix.Length + 1 + (value is null ? 0 : 4 + _codec.GetByteCountBoxed(Canonical(value)));

    public int Write(object? value, Span<byte> message, int at)
    {
        Prefix.CopyTo(message[at..]);
        at += Prefix.Length;
        if (value is null)
        {
            message[at] = 0x00;
            return at + 1;
        }

        value = Canonical(value);
        message[at] = 0x01;
        var length = _codec.GetByteCountBoxed(value);
        BinaryPrimitives.WriteUInt32BigEndian(message[(at + 1)..], (uint)length);
        _codec.WriteBoxed(value, message.Slice(at + 5, length));
        return at + 5 + length;
    }
}

/// <summary>What a record seal binds besides the fields: the binding flags and the bound row values.</summary>
/// <param name="Flags">Which groups are bound (<see cref="EnvelopeFormat.FlagKeyBound"/>, <see cref="EnvelopeFormat.FlagItemKeyBound"/>, <see cref="EnvelopeFormat.FlagColumnsBound"/>).</param>
/// <param name="Values">The values of <see cref="EncryptedEntity.BoundKey"/>, <see cref="EncryptedEntity.BoundItemKey"/>, then <see cref="EncryptedEntity.BoundColumns"/>.</param>
internal readonly record struct RowBinding(byte Flags, object?[] Values);
