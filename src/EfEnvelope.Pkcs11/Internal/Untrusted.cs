using System.Globalization;
using System.Text;

namespace EfEnvelope.Pkcs11.Internal;

/// <summary>Text that came from stored data or from the token, made safe to put into an exception message.</summary>
/// <remarks>
/// A key id read from a blob is whatever a database writer put there, and messages end up in logs and terminals:
/// unescaped, a control character could forge a log line and an escape sequence could rewrite the screen.
/// </remarks>
internal static class Untrusted
{
    private const int MaxLength = 128;

    /// <summary>
    /// The text in single quotes, with control, format (bidirectional overrides), separator and unpaired surrogate
    /// characters, quotes and backslashes written as escapes, cut after 128 characters with a count of the rest;
    /// <c>(none)</c> for null.
    /// </summary>
    public static string Quote(string? text)
    {
        if (text is null)
        {
            return "(none)";
        }

        var builder = new StringBuilder(Math.Min(text.Length, MaxLength) + 16).Append('\'');
        var shown = Math.Min(text.Length, MaxLength);
        for (var i = 0; i < shown; i++)
        {
            var c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                if (i + 1 < shown)
                {
                    builder.Append(c).Append(text[++i]);
                }
                else
                {
                    // The pair straddles the cut: leave it out whole rather than emit half of it.
                    shown = i;
                }

                continue;
            }

            if (c is '\'' or '\\')
            {
                builder.Append('\\').Append(c);
            }
            else if (char.IsSurrogate(c) || IsInvisible(CharUnicodeInfo.GetUnicodeCategory(c)))
            {
                builder.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
            }
            else
            {
                builder.Append(c);
            }
        }

        builder.Append('\'');
        return shown < text.Length
            ? builder.Append(CultureInfo.InvariantCulture, $" (and {text.Length - shown} more characters)").ToString()
            : builder.ToString();
    }

    private static bool IsInvisible(UnicodeCategory category) => category is UnicodeCategory.Control or UnicodeCategory.Format
        or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator or UnicodeCategory.OtherNotAssigned;
}
