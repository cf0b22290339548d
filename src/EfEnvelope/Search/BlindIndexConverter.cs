using Microsoft.EntityFrameworkCore.Storage.ValueConversion;

namespace EfEnvelope.Search;

/// <summary>Stores a searchable property's blind index: the value goes in, its keyed HMAC goes to the database.</summary>
/// <remarks>
/// A converter suits this stateless step (the index depends only on the value and the property's key), and it makes
/// EF apply the same function to query parameters compared with the index column: the plaintext never reaches the
/// SQL, its parameters or EF's logs. Reading the column back gives no value (an HMAC cannot be inverted); the
/// plaintext comes from the ciphertext.
/// </remarks>
internal sealed class BlindIndexConverter<T>(BlindIndexProperty<T> index)
    : ValueConverter<T, byte[]>(value => index.Compute(value), _ => default!)
{
    public BlindIndexProperty<T> Index => index;

    public static ValueConverter Create(Type clrType, BlindIndexer indexer, string entity, string property, BlindIndexOptions options)
    {
        var forType = typeof(BlindIndexer).GetMethod(nameof(BlindIndexer.For))!.MakeGenericMethod(clrType);
        var index = forType.Invoke(indexer, [entity, property, options])!;
        return (ValueConverter)Activator.CreateInstance(typeof(BlindIndexConverter<>).MakeGenericType(clrType), index)!;
    }
}
