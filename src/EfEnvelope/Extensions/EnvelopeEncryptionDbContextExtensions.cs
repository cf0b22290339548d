using System.Data;
using System.Data.Common;
using EfEnvelope;
using EfEnvelope.Infrastructure;
using EfEnvelope.Metadata;
using EfEnvelope.Storage;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Storage;

// Declared in EF's namespace so that no extra using is needed where the context is used.
namespace Microsoft.EntityFrameworkCore;

/// <summary>Inspects and warms the key cache of a context configured with envelope encryption.</summary>
public static class EnvelopeEncryptionDbContextExtensions
{
    /// <summary>Hit and miss counts of the key cache this context shares with every context of its configuration.</summary>
    public static EnvelopeKeyCacheStatistics GetEnvelopeKeyCacheStatistics(this DbContext context)
    {
        var cache = Runtime(context).Cache;
        return new EnvelopeKeyCacheStatistics(cache.Hits, cache.Misses, cache.SynchronousMisses, cache.Count);
    }

    /// <summary>Drops every cached key (they are zeroed once no reader holds them); the next use asks the provider.</summary>
    public static void ClearEnvelopeKeyCache(this DbContext context) => Runtime(context).Cache.Clear();

    /// <summary>Fills the key cache ahead of traffic, so that synchronous saves and queries find their keys.</summary>
    /// <param name="context">A context of the configuration to warm.</param>
    /// <param name="sampleRows">How many rows of each table to look at for stored keys; the default is 1000.</param>
    /// <param name="cancellationToken">Cancels the warm-up.</param>
    /// <remarks>
    /// Generates the write key of every encrypted entity type under the primary master key, then reads the wrapped-key
    /// columns of up to <paramref name="sampleRows"/> rows per table and unwraps every distinct key among them.
    /// Rows written in the same period share a key, so a small sample usually covers a table's recent data.
    /// </remarks>
    public static async Task WarmUpEnvelopeKeysAsync(this DbContext context, int sampleRows = 1000, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sampleRows);
        var runtime = Runtime(context);
        var encryptedTypes = context.Model.GetEntityTypes().Where(t => runtime.Find(t) is not null).ToList();
        foreach (var name in encryptedTypes.Select(t => runtime.Find(t)!.Name).Distinct())
        {
            await runtime.Cache.WarmWriteKeyAsync(name, runtime.Provider.PrimaryKeyId, cancellationToken).ConfigureAwait(false);
        }

        await runtime.BlindIndexer.EnsureAsync(cancellationToken).ConfigureAwait(false);
        if (sampleRows == 0)
        {
            return;
        }

        var sql = context.GetService<ISqlGenerationHelper>();
        var tables = encryptedTypes
            .Where(t => !t.IsMappedToJson())
            .SelectMany(t => t.GetTableMappings().Select(m => (Table: m.Table, Column: m.Table.FindColumn(runtime.Find(t)!.KeyProperty), Entity: runtime.Find(t)!.Name)))
            .Where(m => m.Column is not null)
            .GroupBy(m => m.Table)
            .ToList();

        var prefetcher = new KeyPrefetcher(runtime);
        var connection = context.Database.GetDbConnection();
        var opened = connection.State != ConnectionState.Open;
        if (opened)
        {
            await context.Database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        }

        try
        {
            foreach (var table in tables)
            {
                // Each key column is unwrapped for the entities mapped to it, never for the entity a stored blob names.
                var keyColumns = table.GroupBy(m => m.Column!.Name).Select(c => (Name: c.Key, Entities: c.Select(m => m.Entity).Distinct().ToArray())).ToList();
                var columns = string.Join(", ", keyColumns.Select(c => sql.DelimitIdentifier(c.Name)));
                await using var command = connection.CreateCommand();
                command.CommandText = $"SELECT {columns} FROM {sql.DelimitIdentifier(table.Key.Name, table.Key.Schema)}";
                command.Transaction = context.Database.CurrentTransaction?.GetDbTransaction();
                await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                for (var row = 0; row < sampleRows && await reader.ReadAsync(cancellationToken).ConfigureAwait(false); row++)
                {
                    for (var i = 0; i < reader.FieldCount; i++)
                    {
                        if (!await reader.IsDBNullAsync(i, cancellationToken).ConfigureAwait(false))
                        {
                            await prefetcher.EnsureAsync(reader.GetFieldValue<byte[]>(i), keyColumns[i].Entities, cancellationToken).ConfigureAwait(false);
                        }
                    }
                }
            }
        }
        finally
        {
            if (opened)
            {
                await context.Database.CloseConnectionAsync().ConfigureAwait(false);
            }
        }
    }

    private static EnvelopeRuntime Runtime(DbContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.GetService<IDbContextOptions>().FindExtension<EfEnvelope.Infrastructure.EnvelopeEncryptionOptionsExtension>() is null
            ? throw new InvalidOperationException($"Context '{context.GetType().Name}' is not configured with UseEnvelopeEncryption.")
            : context.GetService<EnvelopeRuntime>();
    }
}
