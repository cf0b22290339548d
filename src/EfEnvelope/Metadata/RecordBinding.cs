using System.Buffers.Binary;
using EfEnvelope.Crypto;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Metadata;

/// <summary>A plain column bound into a record's seal: its name (for an opted-in column), type tag and plaintext encoding.</summary>
/// <remarks>
/// Key columns are bound by position, without their names: an owned type's key is its owner's, named after the owner,
/// and renaming the owner (with its binding name kept, docs/MIGRATIONS.md) must not make its rows fail.
/// </remarks>
internal sealed class BoundColumn
{
    public BoundColumn(IProperty property, bool named)
    {
        Property = property;
        var tag = EnvelopeFormat.BindingName(ValueCodecs.TypeTag(property.ClrType));
        Prefix = named ? [.. EnvelopeFormat.BindingName(property.Name), .. tag] : tag;
        _codec = (IBoxedValueCodec)ValueCodecs.For(property.ClrType);
    }

    private readonly IBoxedValueCodec _codec;

    public IProperty Property { get; }

    /// <summary>The column's binding name (opted-in columns only) then its type tag, each uint16 length + UTF-8.</summary>
    public byte[] Prefix { get; }

    /// <summary>Bytes this value takes in the seal message: prefix, then <c>0x00</c> for NULL or <c>0x01 || uint32 length || encoding</c>.</summary>
    public int Length(object? value) => Prefix.Length + 1 + (value is null ? 0 : 4 + _codec.GetByteCountBoxed(value));

    public int Write(object? value, Span<byte> message, int at)
    {
        Prefix.CopyTo(message[at..]);
        at += Prefix.Length;
        if (value is null)
        {
            message[at] = 0x00;
            return at + 1;
        }

        message[at] = 0x01;
        var length = _codec.GetByteCountBoxed(value);
        BinaryPrimitives.WriteUInt32BigEndian(message[(at + 1)..], (uint)length);
        _codec.WriteBoxed(value, message.Slice(at + 5, length));
        return at + 5 + length;
    }
}

/// <summary>What a record seal binds besides the fields: the binding flags and the bound row values.</summary>
/// <param name="Flags">Which groups are bound (<see cref="EnvelopeFormat.FlagKeyBound"/>, <see cref="EnvelopeFormat.FlagColumnsBound"/>).</param>
/// <param name="Values">The values of <see cref="EncryptedEntity.BoundKey"/> then <see cref="EncryptedEntity.BoundColumns"/>.</param>
internal readonly record struct RowBinding(byte Flags, object?[] Values);
