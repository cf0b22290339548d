using System.Globalization;
using System.Text;

namespace EfEnvelope;

/// <summary>How a string is normalised before its blind index is computed, identically on write and on query.</summary>
[Flags]
public enum BlindIndexNormalization
{
    /// <summary>Exact match: the bytes as written.</summary>
    None = 0,

    /// <summary>Leading and trailing white space is ignored.</summary>
    Trim = 1,

    /// <summary>Case is ignored (invariant culture lower case).</summary>
    IgnoreCase = 2,

    /// <summary>Unicode strings are compared in normalization form C, so composed and decomposed accents match.</summary>
    UnicodeNfc = 4,
}

/// <summary>Settings of one searchable encrypted property: normalisation, index length, uniqueness.</summary>
/// <remarks>
/// The index is HMAC-SHA256 of the normalised value under a key derived for this property, truncated to
/// <see cref="IndexBytes"/>. Shorter indexes leak less (many values share one index, so equality in the database is
/// only probable) at the price of false positives, which EfEnvelope removes after decryption; see docs/SECURITY.md.
/// </remarks>
public sealed class BlindIndexOptions
{
    private int _indexBytes = 32;

    /// <summary>The normalisation applied to strings; the default is <see cref="BlindIndexNormalization.None"/>.</summary>
    public BlindIndexNormalization Normalization { get; set; }

    /// <summary>A custom normalisation of strings, applied after <see cref="Normalization"/>; it must be deterministic.</summary>
    public Func<string, string>? Normalize { get; set; }

    /// <summary>How many bytes of the HMAC are stored: 1 to 32; the default is 32 (no truncation).</summary>
    public int IndexBytes
    {
        get => _indexBytes;
        set => _indexBytes = value is >= 1 and <= 32 ? value : throw new ArgumentOutOfRangeException(nameof(IndexBytes), value, "A blind index keeps 1 to 32 bytes of HMAC-SHA256.");
    }

    /// <summary>Whether the database index on the blind index column is unique; the default is false.</summary>
    /// <remarks>Only sound without truncation: two different values may share a truncated index.</remarks>
    public bool Unique { get; set; }

    /// <summary>Whether results must be checked after decryption, because different values may share an index.</summary>
    public bool IsTruncated => IndexBytes < 32;

    internal string ApplyTo(string value)
    {
        if ((Normalization & BlindIndexNormalization.UnicodeNfc) != 0)
        {
            value = value.Normalize(NormalizationForm.FormC);
        }

        if ((Normalization & BlindIndexNormalization.Trim) != 0)
        {
            value = value.Trim();
        }

        if ((Normalization & BlindIndexNormalization.IgnoreCase) != 0)
        {
            value = value.ToLower(CultureInfo.InvariantCulture);
        }

        return Normalize is null ? value : Normalize(value);
    }
}
