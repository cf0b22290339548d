using Microsoft.CodeAnalysis;

namespace EfEnvelope.Analyzers;

/// <summary>The diagnostics of the EfEnvelope analyzers; each id has a section in the README (the help link).</summary>
internal static class Rules
{
    // The README's anchors are the lower-cased ids ("#efenv001"), set by an explicit anchor before each section.
    internal const string HelpLinkBase = "https://www.nuget.org/packages/EfEnvelope#";

    private const string Category = "EfEnvelope";

    /// <summary>Equality, an IN list or a join on an encrypted property that has no blind index.</summary>
    internal static readonly DiagnosticDescriptor ComparedWithoutIndex = Create(
        "EFENV001",
        "Encrypted property compared without a blind index",
        "'{0}' is encrypted without a blind index, so the database cannot {1}: equal values do not look equal as ciphertext. Mark it [Encrypted(Searchable = true)] (or IsEncrypted(o => ...)) for equality search, or filter on another property and compare after loading.");

    /// <summary>Ordering, Min/Max or a range comparison on an encrypted property.</summary>
    internal static readonly DiagnosticDescriptor Ordered = Create(
        "EFENV002",
        "Encrypted property ordered or compared as a range",
        "'{0}' is encrypted, and ciphertext has no order, so the database cannot {1}. Order or compare after loading, or use a plain property; a blind index serves only ==, !=, Equals and Contains over a list.");

    /// <summary>A string function or pattern (StartsWith, Contains, Like, ToUpper, string.Format...) on an encrypted property.</summary>
    internal static readonly DiagnosticDescriptor PatternMatched = Create(
        "EFENV003",
        "String function or pattern on an encrypted property",
        "'{0}' is encrypted, so the database cannot {1}: string functions and patterns cannot work on ciphertext. Read the property and search or format it after loading; for case- or space-insensitive equality give a searchable property a Normalization.");

    /// <summary>Grouping, a join that no blind index serves, or an aggregate over an encrypted property.</summary>
    internal static readonly DiagnosticDescriptor Grouped = Create(
        "EFENV004",
        "Encrypted property grouped, joined or aggregated",
        "'{0}' is encrypted, so the database cannot {1}: equal values do not look equal as ciphertext. Group, join or aggregate after loading, or by a plain key; a join works only on one searchable property with a full blind index on both sides.");

    /// <summary>ExecuteUpdate setting or reading an encrypted property.</summary>
    internal static readonly DiagnosticDescriptor InExecuteUpdate = Create(
        "EFENV005",
        "Encrypted property in ExecuteUpdate",
        "'{0}' is encrypted, and the database cannot encrypt or decrypt, so ExecuteUpdate cannot {1}. Load the entities, set the property and call SaveChanges.");

    /// <summary>Any other use of an encrypted property that the database would have to evaluate.</summary>
    internal static readonly DiagnosticDescriptor ReadByDatabase = Create(
        "EFENV006",
        "Encrypted property evaluated by the database",
        "'{0}' is encrypted, and the query makes the database read it {1}. Only null tests, blind-index equality and the query's final Select can use an encrypted property; move the rest after loading.");

    /// <summary>A DbContext with encrypted properties configured without UseEnvelopeEncryption.</summary>
    internal static readonly DiagnosticDescriptor MissingEncryption = Create(
        "EFENV007",
        "DbContext with encrypted properties configured without UseEnvelopeEncryption",
        "'{0}' has encrypted properties ({1}) but {2} configures it without UseEnvelopeEncryption, so they would be stored in plaintext. Call UseEnvelopeEncryption(e => e.UseProvider(...)) on the same options builder.");

    /// <summary>A comparison with a truncated blind index that EfEnvelope cannot check after decryption.</summary>
    internal static readonly DiagnosticDescriptor TruncatedIndex = Create(
        "EFENV008",
        "Truncated blind index compared where its false positives cannot be removed",
        "'{0}' has a truncated blind index (IndexBytes below 32), whose matches include other values that EfEnvelope removes after decryption, so it cannot {1}. Compare it with == or Contains as a top-level AND condition of a Where (or First, Single, Count, Any) over the entities the query returns, or keep the full index.");

    /// <summary>PropertyValues.SetValues on an entry of a type with encrypted properties, which EF's model does not hold.</summary>
    internal static readonly DiagnosticDescriptor ValuesBypassed = Create(
        "EFENV009",
        "SetValues does not reach encrypted properties",
        "'{0}' has encrypted properties ({1}) that EF's model does not hold, so {2}, where plain EF would {3}. {4}.");

    private static DiagnosticDescriptor Create(string id, string title, string message) =>
        new(id, title, message, Category, DiagnosticSeverity.Warning, isEnabledByDefault: true,
            helpLinkUri: HelpLinkBase + id.ToLowerInvariant());
}
