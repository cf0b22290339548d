namespace EfEnvelope.Specification.Tests.Differential;

/// <summary>
/// The scenarios (and issue-11 item checks) that today differ between the plain and the encrypted run, grouped by root
/// cause. The suite fails when a scenario differs that is not listed here and when a listed one no longer differs, so this
/// list is the work list and can only shrink. "id@SQLite" or "id@PostgreSQL" limits an entry to one database.
/// </summary>
public static class KnownDifferences
{
    private const string NotInModel =
        "The encrypted CLR property is not in EF's model (replaced by a {Name}_Ciphertext shadow property): Entry().Property(), CurrentValues, OriginalValues and GetDatabaseValues cannot find it, and the tracker shows the shadow property instead.";

    private const string ValuesBypassed =
        "Values set through EF's own APIs from an object or a dictionary (CurrentValues.SetValues, OriginalValues.SetValues) never reach the encrypted property, because EF does not know it: the encrypted column keeps its old value. (Stored values copied into CurrentValues, from OriginalValues or GetDatabaseValues(), do take an edit back.) The analyzer reports such SetValues calls on an EntityEntry<T> at compile time (EFENV009).";

    private const string KeyLookup =
        "An edit of an attached (not queried) entity first reads its data key from the database: the save sends one command more than plain EF.";


    private const string OwnedKeyUnknown =
        "After a failed insert, State = Unchanged declares an owner and its owned record stored while their key columns hold the failed attempt's keys; EfEnvelope cannot fetch an owned record's stored key by itself, so the edit of the owned record is refused (InvalidOperationException: load the owner in this context, or use Update()) instead of being sealed under a key the row does not have.";

    private const string ConcurrentEdit =
        "An edit rewrites the record's key column, whose seal commits to every encrypted value of the record, so its update requires the key column the context read. When another context rewrote the record meanwhile, the update conflicts; EfEnvelope then checks that the row still exists and that the application's concurrency tokens still match, reads the record again and saves once more, merging as plain EF does: the save sends more commands than plain EF's one. The same holds inside the application's transaction (EF's savepoint undoes the attempt that conflicted) and for an edit after a rolled-back transaction that saved the record (the context still holds the key column of the save that was rolled back).";

    private const string AttachedToken =
        "An encrypted concurrency token of an attached instance whose save encrypts nothing (only plain columns edited, or Update()) has no stored ciphertext to compare: the update compares NULL and EF reports a conflict whatever the row holds (plain EF compares the attached value). Query the entity first, or edit it after attaching an encrypted property too (the stored token is then read and compared).";

    private const string DateTimeKind =
        "SQLite: plain EF reads a DateTime back as Unspecified, the encrypted value keeps its Kind (Utc). Kept on purpose (docs/DESIGN.md): matching would make the decrypted value depend on the database it is read through.";

    private const string DecimalScale =
        "SQLite: plain EF stores a decimal as text without trailing zeros and reads 1.10 back as 1.1; the encrypted value keeps the scale it was saved with (PostgreSQL's numeric(p,s) pads to its scale instead: ExactValuesPostgresTests). Equal values; kept on purpose, like DateTimeKind: matching would make the decrypted value depend on the database.";

    private const string ProviderPerScope =
        "A master-key provider created inside the options lambda builds a new EF internal service provider per scope (25 scopes, 25 providers): InsecureInMemoryMasterKeyProvider is mutable and keeps reference equality (the AWS KMS and PKCS#11 providers compare by configuration and share).";

    public static readonly IReadOnlyDictionary<string, string> Reasons = Build(
        (NotInModel, [
            "tracker-add-then-save", "state-deleted-to-unchanged", "state-added-to-unchanged", "tracker-after-query", "tracker-edit-encrypted-detect-changes", "entry-property-is-modified",
            "entry-property-original-value", "entry-property-set-current-value", "entry-property-is-modified-partial-update",
            "entry-property-by-name", "entry-property-is-modified-false", "entry-modified-property-names", "current-values-indexer",
            "original-values-indexer", "current-values-to-object", "property-values-clone",
            "get-database-values-after-local-edit", "get-database-values-after-other-context", "reload-sees-other-context",
            "state-modified-writes-every-column", "state-deleted", "update-detached-graph", "detach-edit-attach", "edit-and-revert",
            "query-keeps-local-edit", "track-graph", "insert-then-edit-in-same-context", "original-values-after-save",
            "cascade-delete-loaded-orders", "remove-from-loaded-collection", "save-without-accepting-then-accept", "tph-update-derived",
            "tph-update-base-property", "tph-delete", "tpt-update-both-tables", "tpt-delete", "tpc-delete", "tpc-update", "tpc-insert", "owned-edit-encrypted-member",
            "owned-entry-reference", "transaction-rollback", "concurrency-conflict-entries", "retrying-execute-in-transaction", "retrying-insert-after-transient-failure", "issue-04",
            "reload-discards-local-edit", "state-unchanged-discards-edit", "record-update-through-entry", "accept-all-changes",
            "issue-03",
        ]),
        (ValuesBypassed, [
            "set-values-from-entity", "set-values-from-dto", "set-values-from-dictionary", "set-original-values-then-save",
        ]),
        (KeyLookup, [
            "attach-then-edit", "state-added-to-unchanged-then-edit", "attach-then-edit-twice", "failed-insert-then-unchanged-then-edit",
            "attach-stub-edit-failed-save-then-save",
        ]),
        (OwnedKeyUnknown, [
            "failed-insert-then-unchanged-then-edit-owned",
        ]),
        (ConcurrentEdit, [
            "two-contexts-edit-different-encrypted-properties", "concurrency-resolve-client-wins", "concurrency-resolve-client-wins-then-edit",
            "two-contexts-edit-different-encrypted-properties-in-transaction", "edit-again-after-transaction-rollback",
        ]),
        (AttachedToken, [
            "encrypted-concurrency-token-attached-plain-edit",
        ]),
        (DateTimeKind, [
            "date-time-utc-round-trip@SQLite",
        ]),
        (DecimalScale, [
            "decimal-scale-round-trip@SQLite",
        ]),
        (ProviderPerScope, [
            "issue-12",
        ]));

    /// <summary>The entry for <paramref name="id"/> on <paramref name="database"/> in <paramref name="reasons"/> (default: this list), or null.</summary>
    public static string? Find(string id, string database, IReadOnlyDictionary<string, string>? reasons = null)
    {
        reasons ??= Reasons;
        return reasons.GetValueOrDefault(id + "@" + database) ?? reasons.GetValueOrDefault(id);
    }

    /// <summary>
    /// What makes a run fail: a broken scenario, a difference that is not listed, and a listed scenario that no longer
    /// differs (so that the list only shrinks).
    /// </summary>
    public static IReadOnlyList<string> Problems(IEnumerable<ScenarioResult> results, string database, IReadOnlyDictionary<string, string>? reasons = null)
    {
        ArgumentNullException.ThrowIfNull(results);
        var problems = new List<string>();
        foreach (var result in results)
        {
            var listed = Find(result.Id, database, reasons) is not null;
            if (result.Verdict == Verdict.Broken)
            {
                problems.Add($"{result.Id} is broken (fix the scenario): {result.Detail}");
            }
            else if (result.Verdict == Verdict.Differs && !listed)
            {
                problems.Add($"{result.Id} differs and is not a known difference: {result.Detail}");
            }
            else if (result.Verdict != Verdict.Differs && listed)
            {
                problems.Add($"{result.Id} now {result.Verdict.ToString().ToLowerInvariant()} on {database}: remove it from KnownDifferences.");
            }
        }

        return problems;
    }

    /// <summary>The scenario id of an entry key.</summary>
    public static string ScenarioId(string key) => key.Split('@')[0];

    private static Dictionary<string, string> Build(params (string Reason, string[] Ids)[] groups)
    {
        var reasons = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (reason, ids) in groups)
        {
            foreach (var id in ids)
            {
                reasons.Add(id, reason);
            }
        }

        return reasons;
    }
}
