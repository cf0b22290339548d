using System.Globalization;
using System.Text;

namespace EfEnvelope.Diagnostics;

/// <summary>Makes text read from the database safe to put in an exception message or a log line.</summary>
/// <remarks>
/// <para>
/// A wrapped-key blob names its entity (up to 64 KB), master key and provider, and anyone who can write to the
/// database can put anything there. Passed on raw, a newline forges a second log line, an ANSI escape sequence
/// repaints an operator's terminal, and a 64 KB name floods the log. Every message that quotes such a string goes
/// through <see cref="Escape"/>: at most <see cref="MaxLength"/> characters, and every control, formatting or
/// line-breaking character written as <c>\uXXXX</c>, so the result is one printable line.
/// </para>
/// <para>
/// Names that come from the application's own configuration pass through unchanged, unless they are longer than
/// <see cref="MaxLength"/> (long enough for an AWS KMS alias ARN). The PKCS#11 provider keeps a sibling,
/// <c>Untrusted.Quote</c>, because its package cannot see these internals; it writes the same escapes in lower case.
/// </para>
/// </remarks>
internal static class UntrustedText
{
    /// <summary>The most characters of the original kept in a message.</summary>
    public const int MaxLength = 256;

    /// <summary>Truncates and escapes <paramref name="text"/> for a message or log line; null stays null.</summary>
    public static string? Escape(string? text)
    {
        if (text is null)
        {
            return null;
        }

        var kept = text.Length > MaxLength ? MaxLength : text.Length;
        if (kept == text.Length && !NeedsEscaping(text))
        {
            return text;
        }

        var builder = new StringBuilder(kept + 32);
        for (var i = 0; i < kept; i++)
        {
            var c = text[i];

            // A surrogate pair is one printable character; a lone half (or a pair split by the truncation) is not.
            if (char.IsHighSurrogate(c) && i + 1 < kept && char.IsLowSurrogate(text[i + 1]))
            {
                builder.Append(c).Append(text[++i]);
            }
            else if (IsUnsafe(c))
            {
                builder.Append("\\u").Append(((int)c).ToString("X4", CultureInfo.InvariantCulture));
            }
            else
            {
                builder.Append(c);
            }
        }

        if (kept < text.Length)
        {
            builder.Append(CultureInfo.InvariantCulture, $"... ({text.Length} characters)");
        }

        return builder.ToString();
    }

    private static bool NeedsEscaping(string text)
    {
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
            }
            else if (IsUnsafe(c))
            {
                return true;
            }
        }

        return false;
    }

    // C0 and C1 controls (ESC starts an ANSI sequence, U+009B is the one-character CSI), line and paragraph
    // separators, format characters (bidirectional overrides reorder what a reader sees) and lone surrogates.
    private static bool IsUnsafe(char c) => char.GetUnicodeCategory(c) is
        UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.LineSeparator
        or UnicodeCategory.ParagraphSeparator or UnicodeCategory.Surrogate;
}
