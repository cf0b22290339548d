using System.Globalization;
using System.Text;

namespace HealthRecords.Api;

/// <summary>Makes text from stored data or from a request safe to write into a log line.</summary>
/// <remarks>
/// A master-key id or entity name in an error comes from the stored blob, which whoever can write to the database
/// controls. Written raw, a line feed forges log entries and an escape sequence rewrites the operator's terminal, so
/// every control, format (bidirectional overrides, zero-width) and separator character is shown as <c>\uXXXX</c>.
/// </remarks>
public static class LogText
{
    /// <summary>Longest text kept; the rest is cut and marked, so that a crafted value cannot flood the log.</summary>
    public const int MaxLength = 256;

    public static string Escape(string? text)
    {
        if (text is null)
        {
            return "(none)";
        }

        var builder = new StringBuilder(Math.Min(text.Length, MaxLength) + 8);
        foreach (var c in text.Length > MaxLength ? text[..MaxLength] : text)
        {
            if (c == '\\')
            {
                builder.Append(@"\\");
            }
            else if (NeedsEscape(c))
            {
                builder.Append(@"\u").Append(((int)c).ToString("X4", CultureInfo.InvariantCulture));
            }
            else
            {
                builder.Append(c);
            }
        }

        return text.Length > MaxLength ? builder.Append("…(cut)").ToString() : builder.ToString();
    }

    private static bool NeedsEscape(char c) => char.GetUnicodeCategory(c) is
        UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.LineSeparator
        or UnicodeCategory.ParagraphSeparator or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse
        or UnicodeCategory.OtherNotAssigned;
}
