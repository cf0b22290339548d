using System.Collections.Concurrent;
using System.Globalization;
using EfEnvelope.ChangeTracking;
using EfEnvelope.Crypto;
using EfEnvelope.Diagnostics;
using EfEnvelope.Infrastructure;
using EfEnvelope.KeyManagement;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Query;

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
/// Records of an owned type are asked about their root owner, which EF has not linked to them at this point. A tracking
/// query checks them once EF tracks them beside their owner, and so does a <c>Reload()</c>
/// (<see cref="EncryptionChangeDetector"/>). A query without tracking checks them here against the owner it
/// materialized just before (<see cref="NoTrackingOwners"/>), and refuses an owned record read without its owner (a
/// projection of the owned member alone), whose row's key the selector cannot be asked about.
/// </para>
/// </remarks>
internal sealed class SelectorKeyCheck(EnvelopeRuntime runtime) : IMaterializationInterceptor
{
    private readonly ConcurrentDictionary<IEntityType, bool> _ownsEncrypted = new();

    public object InitializedInstance(MaterializationInterceptionData materializationData, object entity)
    {
        var entityType = materializationData.EntityType;
        var tracked = materializationData.QueryTrackingBehavior == QueryTrackingBehavior.TrackAll;
        if (!tracked && !entityType.IsOwned() && _ownsEncrypted.GetOrAdd(entityType, OwnsEncrypted))
        {
            NoTrackingOwners.For(materializationData.Context).Remember(entityType.GetRootType(), KeyValues(entityType, materializationData), entity);
        }

        if (runtime.Find(entityType) is not { } encrypted || materializationData.GetPropertyValue<byte[]?>(encrypted.KeyProperty) is not { } stored)
        {
            // No key column value: a row from before encryption, which names no key (RequireSealedRecords refuses it).
            return entity;
        }

        if (!entityType.IsOwned())
        {
            Verify(runtime, encrypted, entity, stored, () => KeyValues(entityType, materializationData));
        }
        else if (!tracked)
        {
            var (hierarchy, key) = RootOwnerKey(entityType, materializationData);
            var owner = NoTrackingOwners.For(materializationData.Context).Find(hierarchy, key)
                ?? throw new InvalidOperationException(
                    $"A query without tracking read the owned record '{encrypted.Name}' of the '{hierarchy.DisplayName()}' row with key ({UntrustedText.Escape(string.Join(", ", key.Select(FormatKey)))}) without that row's entity, " +
                    "so EfEnvelope cannot ask the master-key selector which master key the row's records are under. Select the owning entity in the query as well as its owned member (with AsNoTracking() if the query also projects encrypted values), or read the owned member from the loaded entity.");
            Verify(runtime, encrypted, owner, stored, () => key);
        }

        // A tracked owned record is checked once EF tracks it beside its owner (EncryptionEntryNotifier).
        return entity;
    }

    private bool OwnsEncrypted(IEntityType entityType) =>
        entityType.GetNavigations().Any(n => !n.IsOnDependent && n.ForeignKey.IsOwnership
            && (runtime.Find(n.TargetEntityType) is not null || OwnsEncrypted(n.TargetEntityType)));

    private static object?[] KeyValues(IEntityType entityType, MaterializationInterceptionData materializationData) =>
        [.. entityType.FindPrimaryKey()!.Properties.Select(p => materializationData.GetPropertyValue(p))];

    // The key of an owned record's root owner: each ownership's foreign key holds its principal's primary key, and an
    // owned principal's primary key holds its own ownership's foreign key, up to the root.
    private static (IEntityType Hierarchy, object?[] Key) RootOwnerKey(IEntityType owned, MaterializationInterceptionData materializationData)
    {
        var values = owned.FindPrimaryKey()!.Properties.ToDictionary(p => p, p => materializationData.GetPropertyValue(p));
        var current = owned;
        while (current.FindOwnership() is { } ownership)
        {
            var principalValues = new Dictionary<IProperty, object?>();
            for (var i = 0; i < ownership.Properties.Count; i++)
            {
                principalValues[ownership.PrincipalKey.Properties[i]] = values[ownership.Properties[i]];
            }

            (values, current) = (principalValues, ownership.PrincipalEntityType);
        }

        return (current.GetRootType(), [.. current.FindPrimaryKey()!.Properties.Select(p => values[p])]);
    }

    /// <summary>
    /// Refuses a stored record whose key column names a master key other than the one the selector (or, during a
    /// move, the previous selector) chooses for <paramref name="root"/>: the entity itself, or an owned record's root owner.
    /// </summary>
    /// <param name="runtime">The encryption configuration, whose selectors decide.</param>
    /// <param name="encrypted">The record's entity type.</param>
    /// <param name="root">What the selector is asked about.</param>
    /// <param name="stored">The record's key column.</param>
    /// <param name="keyValues">The primary key values of the row, for the message.</param>
    /// <exception cref="EnvelopeDecryptionException">The record is under another master key than the row's.</exception>
    public static void Verify(EnvelopeRuntime runtime, EfEnvelope.Metadata.EncryptedEntity encrypted, object root, byte[] stored, Func<IEnumerable<object?>> keyValues)
    {
        if (runtime.Settings.KeySelector is not { } selector)
        {
            return;
        }

        if (!WrappedKeyBlob.TryParse(stored, out var blob, out var error))
        {
            // Not reached after a successful decryption; kept so that a malformed blob can never pass unchecked.
            throw new EnvelopeDecryptionException(error!, encrypted.Name);
        }

        var settings = runtime.Settings;
        var named = blob.KeyId;
        var selected = selector(root) ?? runtime.Provider.PrimaryKeyId;
        if (runtime.KeyNames.IsSame(named, selected, encrypted.Name))
        {
            return;
        }

        var previous = settings.PreviousKeySelector is { } before ? before(root) ?? runtime.Provider.PrimaryKeyId : null;
        if (previous is not null && runtime.KeyNames.IsSame(named, previous, encrypted.Name))
        {
            return;
        }

        // The key values and key ids come from the row (or the application): escaped, as every name read from storage.
        var primaryKey = keyValues().Select(Format);
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

    private static string FormatKey(object? value) => value is byte[] bytes ? "0x" + Convert.ToHexString(bytes) : Format(value);

    private static string Format(object? value) =>
        value is null ? "NULL" : Convert.ToString(value, CultureInfo.InvariantCulture) ?? "";
}
