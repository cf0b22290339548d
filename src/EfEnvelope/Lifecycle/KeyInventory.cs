using System.Data.Common;
using EfEnvelope.Crypto;
using EfEnvelope.Diagnostics;
using EfEnvelope.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Storage;

namespace EfEnvelope.Lifecycle;

/// <summary>What the stored rows of one encrypted entity type depend on: master keys, wrapping modes, format versions.</summary>
/// <param name="Entity">The entity type's name (owned types are listed on their own, after their owner's table).</param>
/// <param name="Table">The table holding its wrapped keys.</param>
/// <param name="Rows">Rows read.</param>
/// <param name="RowsWithoutKey">Rows with no wrapped key: no encrypted value yet (or an absent optional owned record).</param>
/// <param name="ByMasterKey">Rows per master key id their data key is wrapped under.</param>
/// <param name="ByWrappingMode">Rows per wrapping mode: <c>cached-kek</c> (data key under a cached key-encryption key) or <c>direct</c>.</param>
/// <param name="ByFormatVersion">Rows per format version of the wrapped-key blob.</param>
/// <param name="DistinctKeyEncryptionKeys">Distinct provider-wrapped keys: what reading every row costs in provider calls, cache empty.</param>
/// <param name="LegacyPlaintextRows">Rows still holding a value in a legacy plaintext column.</param>
/// <param name="UnreadableRows">Rows whose wrapped key is not a blob this version can parse (damaged, or a newer format).</param>
/// <param name="HasBlindIndexes">Whether the type has searchable properties (blind indexes).</param>
public sealed record EntityKeyInventory(
    string Entity,
    string Table,
    long Rows,
    long RowsWithoutKey,
    IReadOnlyDictionary<string, long> ByMasterKey,
    IReadOnlyDictionary<string, long> ByWrappingMode,
    IReadOnlyDictionary<int, long> ByFormatVersion,
    long DistinctKeyEncryptionKeys,
    long LegacyPlaintextRows,
    long UnreadableRows,
    bool HasBlindIndexes);

/// <summary>The key inventory of a database: which master keys its rows still need.</summary>
/// <param name="Provider">The configured provider's name.</param>
/// <param name="PrimaryKeyId">The configured primary master key.</param>
/// <param name="BlindIndexMasterKeyId">The master key the configured blind index key is wrapped under, if one is configured.</param>
/// <param name="Entities">One entry per encrypted entity type mapped to a table.</param>
public sealed record KeyInventory(string Provider, string PrimaryKeyId, string? BlindIndexMasterKeyId, IReadOnlyList<EntityKeyInventory> Entities)
{
    /// <summary>
    /// Whether anything stored still needs <paramref name="keyId"/>: a row wrapped under it, the blind index key, or an
    /// unreadable row (which might be). False means the key can be disabled as far as this database is concerned.
    /// </summary>
    public bool StillNeeds(string keyId) =>
        BlindIndexMasterKeyId == keyId || Entities.Any(e => e.ByMasterKey.ContainsKey(keyId) || e.UnreadableRows > 0);
}

/// <summary>Reads the wrapped-key and legacy plaintext columns of every encrypted table, decrypting nothing.</summary>
internal static class KeyInventoryReader
{
    public static async Task<KeyInventory> ReadAsync(DbContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (context.GetService<IDbContextOptions>().FindExtension<EnvelopeEncryptionOptionsExtension>() is null)
        {
            throw new InvalidOperationException($"Context '{context.GetType().Name}' is not configured with UseEnvelopeEncryption.");
        }

        var runtime = context.GetService<EnvelopeRuntime>();
        var sql = context.GetService<ISqlGenerationHelper>();
        var entities = new List<EntityKeyInventory>();
        var connection = context.Database.GetDbConnection();
        await context.Database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            foreach (var entityType in context.Model.GetEntityTypes().OrderBy(t => t.Name, StringComparer.Ordinal))
            {
                if (runtime.Find(entityType) is not { } encrypted || entityType.IsMappedToJson()
                    || StoreObjectIdentifier.Create(entityType, StoreObjectType.Table) is not { } table)
                {
                    continue;
                }

                var columns = new List<string> { encrypted.KeyProperty.GetColumnName(table)! };
                columns.AddRange(encrypted.Properties.Where(p => p.LegacyPlaintext is not null).Select(p => p.LegacyPlaintext!.GetColumnName(table)!));
                await using var command = connection.CreateCommand();
                command.CommandText = $"SELECT {string.Join(", ", columns.Select(c => sql.DelimitIdentifier(c)))} FROM {sql.DelimitIdentifier(table.Name, table.Schema)}";
                command.Transaction = context.Database.CurrentTransaction?.GetDbTransaction();
                await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                entities.Add(await TallyAsync(entityType.DisplayName(), table.DisplayName(), encrypted.HasSearchableProperties, reader, columns.Count, cancellationToken).ConfigureAwait(false));
            }
        }
        finally
        {
            await context.Database.CloseConnectionAsync().ConfigureAwait(false);
        }

        var indexKey = runtime.Settings.BlindIndexKey is { } wrapped && WrappedKeyBlob.TryParse(wrapped, out var indexBlob, out _) ? indexBlob.KeyId : null;
        return new KeyInventory(runtime.Provider.Name, runtime.Provider.PrimaryKeyId, indexKey, entities);
    }

    private static async Task<EntityKeyInventory> TallyAsync(string entity, string table, bool searchable, DbDataReader reader, int columns, CancellationToken cancellationToken)
    {
        long rows = 0, withoutKey = 0, legacy = 0, unreadable = 0;
        var byKey = new SortedDictionary<string, long>(StringComparer.Ordinal);
        var byMode = new SortedDictionary<string, long>(StringComparer.Ordinal);
        var byVersion = new SortedDictionary<int, long>();
        var keks = new HashSet<string>(StringComparer.Ordinal);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            rows++;
            for (var i = 1; i < columns; i++)
            {
                if (!await reader.IsDBNullAsync(i, cancellationToken).ConfigureAwait(false))
                {
                    legacy++;
                    break;
                }
            }

            if (await reader.IsDBNullAsync(0, cancellationToken).ConfigureAwait(false))
            {
                withoutKey++;
                continue;
            }

            var blob = (byte[])reader.GetValue(0);
            if (blob.Length > 0)
            {
                Add(byVersion, blob[0]);
            }

            if (!WrappedKeyBlob.TryParse(blob, out var parsed, out _))
            {
                unreadable++;
                continue;
            }

            // Read from the row: the report is printed (the CLI), so a forged id must not reach a terminal raw.
            Add(byKey, UntrustedText.Escape(parsed.KeyId)!);
            if (parsed.Mode == EnvelopeFormat.ModeDirect)
            {
                Add(byMode, "direct");
                keks.Add(Convert.ToBase64String(blob));
            }
            else
            {
                Add(byMode, "cached-kek");
                keks.Add(Convert.ToBase64String(parsed.Tail));
            }
        }

        return new EntityKeyInventory(entity, table, rows, withoutKey, byKey, byMode, byVersion, keks.Count, legacy, unreadable, searchable);
    }

    private static void Add<TKey>(SortedDictionary<TKey, long> counts, TKey key)
        where TKey : notnull =>
        counts[key] = counts.GetValueOrDefault(key) + 1;
}
