using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace EfEnvelope.Crypto;

/// <summary>Turns a property value into the plaintext bytes that get encrypted, and back.</summary>
/// <remarks>Every layout is little-endian and written down in docs/FORMAT.md; changing one breaks stored data.</remarks>
internal abstract class ValueCodec<T> : IBoxedValueCodec
{
    public int GetByteCountBoxed(object value) => GetByteCount((T)value);

    public void WriteBoxed(object value, Span<byte> destination) => Write((T)value, destination);

    public abstract int GetByteCount(T value);

    public abstract void Write(T value, Span<byte> destination);

    public abstract T Read(ReadOnlySpan<byte> source);

    protected static void ExpectLength(ReadOnlySpan<byte> source, int length)
    {
        if (source.Length != length)
        {
            throw new EnvelopeDecryptionException($"The decrypted value has {source.Length} bytes where its type needs {length}: the property's CLR type changed since it was written.");
        }
    }
}

/// <summary>A codec used with values EF hands over as objects (the bound row values of a record seal).</summary>
internal interface IBoxedValueCodec
{
    int GetByteCountBoxed(object value);

    void WriteBoxed(object value, Span<byte> destination);
}

/// <summary>Finds the codec for a CLR type.</summary>
internal static class ValueCodecs
{
    /// <summary>The CLR types that can be encrypted (and their nullable forms, and enums over integral types).</summary>
    public static bool IsSupported(Type type)
    {
        var underlying = Nullable.GetUnderlyingType(type) ?? type;
        return underlying.IsEnum || Codecs.ContainsKey(underlying);
    }

    /// <summary>
    /// The stable name of a type's plaintext encoding, bound into version 2 field associated data so that a value
    /// written as one type never decodes as another of the same size (an <c>int</c> column retyped to <c>float</c>).
    /// </summary>
    /// <remarks>
    /// <c>T?</c> has the tag of <c>T</c>, and an enum that of its underlying integer: both keep their encoding, so
    /// making a property nullable or an integer an enum keeps stored rows readable. docs/FORMAT.md lists the tags.
    /// </remarks>
    public static string TypeTag(Type type)
    {
        var underlying = Nullable.GetUnderlyingType(type) ?? type;
        if (underlying.IsEnum)
        {
            underlying = Enum.GetUnderlyingType(underlying);
        }

        return Tags.TryGetValue(underlying, out var tag)
            ? tag
            : throw new NotSupportedException($"Type '{type}' cannot be encrypted.");
    }

    private static readonly Dictionary<Type, string> Tags = new()
    {
        [typeof(string)] = "string",
        [typeof(byte[])] = "bytes",
        [typeof(bool)] = "bool",
        [typeof(byte)] = "uint8",
        [typeof(sbyte)] = "int8",
        [typeof(short)] = "int16",
        [typeof(ushort)] = "uint16",
        [typeof(int)] = "int32",
        [typeof(uint)] = "uint32",
        [typeof(long)] = "int64",
        [typeof(ulong)] = "uint64",
        [typeof(float)] = "float32",
        [typeof(double)] = "float64",
        [typeof(decimal)] = "decimal",
        [typeof(Guid)] = "guid",
        [typeof(DateTime)] = "datetime",
        [typeof(DateTimeOffset)] = "datetimeoffset",
        [typeof(DateOnly)] = "dateonly",
        [typeof(TimeOnly)] = "timeonly",
        [typeof(TimeSpan)] = "timespan",
    };

    /// <summary>Returns a <c>ValueCodec&lt;T&gt;</c> for <paramref name="type"/>, boxed as object.</summary>
    public static object For(Type type)
    {
        var underlying = Nullable.GetUnderlyingType(type);
        if (underlying is not null)
        {
            var inner = For(underlying);
            return Activator.CreateInstance(typeof(NullableCodec<>).MakeGenericType(underlying), inner)!;
        }

        if (type.IsEnum)
        {
            return Activator.CreateInstance(typeof(EnumCodec<>).MakeGenericType(type))!;
        }

        return Codecs.TryGetValue(type, out var codec)
            ? codec
            : throw new NotSupportedException($"Type '{type}' cannot be encrypted.");
    }

    private static readonly Dictionary<Type, object> Codecs = new()
    {
        [typeof(string)] = new StringCodec(),
        [typeof(byte[])] = new BytesCodec(),
        [typeof(bool)] = new BooleanCodec(),
        [typeof(byte)] = new FixedCodec<byte>(1, (v, d) => d[0] = v, s => s[0]),
        [typeof(short)] = new FixedCodec<short>(2, (v, d) => BinaryPrimitives.WriteInt16LittleEndian(d, v), BinaryPrimitives.ReadInt16LittleEndian),
        [typeof(int)] = new FixedCodec<int>(4, (v, d) => BinaryPrimitives.WriteInt32LittleEndian(d, v), BinaryPrimitives.ReadInt32LittleEndian),
        [typeof(long)] = new FixedCodec<long>(8, (v, d) => BinaryPrimitives.WriteInt64LittleEndian(d, v), BinaryPrimitives.ReadInt64LittleEndian),
        [typeof(float)] = new FixedCodec<float>(4, (v, d) => BinaryPrimitives.WriteSingleLittleEndian(d, v), BinaryPrimitives.ReadSingleLittleEndian),
        [typeof(double)] = new FixedCodec<double>(8, (v, d) => BinaryPrimitives.WriteDoubleLittleEndian(d, v), BinaryPrimitives.ReadDoubleLittleEndian),
        [typeof(decimal)] = new DecimalCodec(),
        [typeof(Guid)] = new FixedCodec<Guid>(16, (v, d) => v.TryWriteBytes(d), s => new Guid(s)),
        [typeof(DateTime)] = new FixedCodec<DateTime>(8, (v, d) => BinaryPrimitives.WriteInt64LittleEndian(d, v.ToBinary()), s => DateTime.FromBinary(BinaryPrimitives.ReadInt64LittleEndian(s))),
        [typeof(DateTimeOffset)] = new DateTimeOffsetCodec(),
        [typeof(DateOnly)] = new FixedCodec<DateOnly>(4, (v, d) => BinaryPrimitives.WriteInt32LittleEndian(d, v.DayNumber), s => DateOnly.FromDayNumber(BinaryPrimitives.ReadInt32LittleEndian(s))),
        [typeof(TimeOnly)] = new FixedCodec<TimeOnly>(8, (v, d) => BinaryPrimitives.WriteInt64LittleEndian(d, v.Ticks), s => new TimeOnly(BinaryPrimitives.ReadInt64LittleEndian(s))),
        [typeof(TimeSpan)] = new FixedCodec<TimeSpan>(8, (v, d) => BinaryPrimitives.WriteInt64LittleEndian(d, v.Ticks), s => new TimeSpan(BinaryPrimitives.ReadInt64LittleEndian(s))),
    };

    private sealed class StringCodec : ValueCodec<string>
    {
        private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

        public override int GetByteCount(string value) => Strict.GetByteCount(value);

        public override void Write(string value, Span<byte> destination) => Strict.GetBytes(value, destination);

        public override string Read(ReadOnlySpan<byte> source) => Strict.GetString(source);
    }

    private sealed class BytesCodec : ValueCodec<byte[]>
    {
        public override int GetByteCount(byte[] value) => value.Length;

        public override void Write(byte[] value, Span<byte> destination) => value.CopyTo(destination);

        public override byte[] Read(ReadOnlySpan<byte> source) => source.ToArray();
    }

    private sealed class BooleanCodec : ValueCodec<bool>
    {
        public override int GetByteCount(bool value) => 1;

        public override void Write(bool value, Span<byte> destination) => destination[0] = value ? (byte)1 : (byte)0;

        public override bool Read(ReadOnlySpan<byte> source)
        {
            ExpectLength(source, 1);
            return source[0] switch
            {
                0 => false,
                1 => true,
                _ => throw new EnvelopeDecryptionException("The decrypted value is not a boolean."),
            };
        }
    }

    private sealed class FixedCodec<T>(int size, FixedCodec<T>.Writer write, FixedCodec<T>.Reader read) : ValueCodec<T>
    {
        public delegate void Writer(T value, Span<byte> destination);

        public delegate T Reader(ReadOnlySpan<byte> source);

        public override int GetByteCount(T value) => size;

        public override void Write(T value, Span<byte> destination) => write(value, destination);

        public override T Read(ReadOnlySpan<byte> source)
        {
            ExpectLength(source, size);
            return read(source);
        }
    }

    // decimal: the four 32-bit words of decimal.GetBits (lo, mid, hi, flags), each little-endian.
    private sealed class DecimalCodec : ValueCodec<decimal>
    {
        public override int GetByteCount(decimal value) => 16;

        public override void Write(decimal value, Span<byte> destination)
        {
            Span<int> bits = stackalloc int[4];
            decimal.GetBits(value, bits);
            for (var i = 0; i < 4; i++)
            {
                BinaryPrimitives.WriteInt32LittleEndian(destination[(i * 4)..], bits[i]);
            }
        }

        public override decimal Read(ReadOnlySpan<byte> source)
        {
            ExpectLength(source, 16);
            Span<int> bits = stackalloc int[4];
            for (var i = 0; i < 4; i++)
            {
                bits[i] = BinaryPrimitives.ReadInt32LittleEndian(source[(i * 4)..]);
            }

            try
            {
                return new decimal(bits);
            }
            catch (ArgumentException ex)
            {
                throw new EnvelopeDecryptionException("The decrypted value is not a valid decimal.", ex);
            }
        }
    }

    // DateTimeOffset: the clock time's ticks (int64) then the offset in minutes (int16).
    private sealed class DateTimeOffsetCodec : ValueCodec<DateTimeOffset>
    {
        public override int GetByteCount(DateTimeOffset value) => 10;

        public override void Write(DateTimeOffset value, Span<byte> destination)
        {
            BinaryPrimitives.WriteInt64LittleEndian(destination, value.Ticks);
            BinaryPrimitives.WriteInt16LittleEndian(destination[8..], (short)value.TotalOffsetMinutes);
        }

        public override DateTimeOffset Read(ReadOnlySpan<byte> source)
        {
            ExpectLength(source, 10);
            return new DateTimeOffset(
                BinaryPrimitives.ReadInt64LittleEndian(source),
                TimeSpan.FromMinutes(BinaryPrimitives.ReadInt16LittleEndian(source[8..])));
        }
    }

    // Enums: the underlying integer, little-endian, in its own size. Values outside the defined members round-trip.
    private sealed class EnumCodec<TEnum> : ValueCodec<TEnum>
        where TEnum : struct, Enum
    {
        private static readonly int Size = Unsafe.SizeOf<TEnum>();

        public override int GetByteCount(TEnum value) => Size;

        public override void Write(TEnum value, Span<byte> destination)
        {
            var bytes = MemoryMarshal.AsBytes(new ReadOnlySpan<TEnum>(in value));
            bytes.CopyTo(destination);
            if (!BitConverter.IsLittleEndian)
            {
                destination[..Size].Reverse();
            }
        }

        public override TEnum Read(ReadOnlySpan<byte> source)
        {
            ExpectLength(source, Size);
            TEnum value = default;
            var bytes = MemoryMarshal.AsBytes(new Span<TEnum>(ref value));
            source.CopyTo(bytes);
            if (!BitConverter.IsLittleEndian)
            {
                bytes.Reverse();
            }

            return value;
        }
    }

    private sealed class NullableCodec<T>(ValueCodec<T> inner) : ValueCodec<T?>
        where T : struct
    {
        public override int GetByteCount(T? value) => inner.GetByteCount(value!.Value);

        public override void Write(T? value, Span<byte> destination) => inner.Write(value!.Value, destination);

        public override T? Read(ReadOnlySpan<byte> source) => inner.Read(source);
    }
}
