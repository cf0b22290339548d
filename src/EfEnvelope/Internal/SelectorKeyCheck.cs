using System.Globalization;
using EfEnvelope.Crypto;
using EfEnvelope.Diagnostics;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace EfEnvelope.Internal;

/// <summary>
/// With a master-key selector, refuses a record whose key column names a master key other than the one the selector
/// chooses for the entity it was read into (or, during a move, the one the previous selector chose).
/// </summary>
/// <remarks>
/// <para>
/// Why: the seal binds a record to its primary key and its <c>IsBoundToRecord()</c> columns, but a tenant column that is
/// not bound can be changed, and a record whose key the database generates is sealed before that key exists; either way
/// tenant A's record can be made to sit in a row the application takes for tenant B's, and would decrypt there under
/// A's key. The selector says which key B's rows are under, so asking it about the row as read closes that.
/// </para>
/// <para>
/// It runs once EF has set every property, because the selector reads the entity (its tenant column), which the
/// decrypting binding cannot offer: it decrypts while the instance is being constructed. EF builds per-row property
/// accessors for every query once any materialization interceptor exists, so this one is installed only when a
/// selector is configured: reads without a selector are unchanged.
/// </para>
/// <para>
/// Records of an owned type are skipped: the selector is asked about their root owner, which EF has not linked to them
/// at this point in a no-tracking query. The owner's own record is checked, and an owned record's seal binds its
/// owner's key, so it cannot be moved under another owner without being refused on its own.
/// </para>
/// </remarks>
internal sealed class SelectorKeyCheck(EnvelopeRuntime runtime) : IMaterializationInterceptor
{
    public object InitializedInstance(MaterializationInterceptionData materializationData, object entity)
    {
        var entityType = materializationData.EntityType;
        if (entityType.IsOwned() || runtime.Find(entityType) is not { } encrypted
            || materializationData.GetPropertyValue<byte[]?>(encrypted.KeyProperty) is not { } stored)
        {
            // No key column value: a row from before encryption, which names no key (RequireSealedRecords refuses it).
            return entity;
        }

        if (!WrappedKeyBlob.TryParse(stored, out var blob, out var error))
        {
            // Not reached after a successful decryption; kept so that a malformed blob can never pass unchecked.
            throw new EnvelopeDecryptionException(error!, encrypted.Name);
        }

        var settings = runtime.Settings;
        var named = blob.KeyId;
        var selected = settings.KeySelector!(entity) ?? runtime.Provider.PrimaryKeyId;
        if (runtime.KeyNames.IsSame(named, selected, encrypted.Name))
        {
            return entity;
        }

        var previous = settings.PreviousKeySelector is { } before ? before(entity) ?? runtime.Provider.PrimaryKeyId : null;
        if (previous is not null && runtime.KeyNames.IsSame(named, previous, encrypted.Name))
        {
            return entity;
        }

        // The key values and key ids come from the row (or the application): escaped, as every name read from storage.
        var primaryKey = entityType.FindPrimaryKey()?.Properties.Select(p => Format(materializationData.GetPropertyValue(p))) ?? [];
        var chosen = previous is null
            ? $"the master-key selector chooses '{UntrustedText.Escape(selected)}' for that row"
            : $"the master-key selector chooses '{UntrustedText.Escape(selected)}' for that row and the previous selector '{UntrustedText.Escape(previous)}'";
        throw new EnvelopeDecryptionException(
            $"The record read from the row with key ({UntrustedText.Escape(string.Join(", ", primaryKey))}) is under master key '{UntrustedText.Escape(named)}', but {chosen}: " +
            "the record was copied from another tenant's row, or the column the selector reads was changed, and it was not decrypted for this row. " +
            "If the selector's choice for existing rows changed on purpose, configure the old selector with UseMasterKeySelector(selector, o => o.AcceptPreviousSelector(oldSelector)) " +
            "while EnvelopeKeyLifecycle.RotateAsync moves the records to the keys the selector now chooses, then remove it.",
            encrypted.Name, null, named);
    }

    private static string Format(object? value) =>
        value is null ? "NULL" : Convert.ToString(value, CultureInfo.InvariantCulture) ?? "";
}
