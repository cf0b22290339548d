using System.Data.Common;
using EfEnvelope.Crypto;
using EfEnvelope.Infrastructure;
using EfEnvelope.Metadata;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Storage;

namespace EfEnvelope.Storage;

/// <summary>Makes async queries fetch missing keys asynchronously, before EF's synchronous materialization needs them.</summary>
/// <remarks>
/// EF materializes rows synchronously, so a key missing from the cache would block a thread on the provider inside
/// <c>ToListAsync</c>. Wrapping the reader of an async query lets <see cref="DbDataReader.ReadAsync(CancellationToken)"/>
/// await the provider for any key column whose key is not cached yet, so async paths never block on a provider call.
/// </remarks>
internal static class KeyPrefetch
{
    /// <summary>The reader of an async query, wrapped when its result has key columns.</summary>
    public static DbDataReader Wrap(EnvelopeRuntime runtime, DbCommand command, CommandExecutedEventData eventData, DbDataReader result)
    {
        if (eventData.Context is not { } context)
        {
            return result;
        }

        var owners = runtime.KeyColumnOwners(context.Model);
        List<(int Ordinal, string[] Entities)>? keyColumns = null;
        List<(int Ordinal, DocumentShape[] Shapes)>? documents = null;
        for (var i = 0; i < result.FieldCount; i++)
        {
            var name = result.GetName(i);
            if (name.Contains(EncryptionAnnotations.KeyPropertyName, StringComparison.Ordinal)
                && owners.EntitiesFor(name, command.CommandText, context.GetService<ISqlGenerationHelper>()) is { Length: > 0 } entities)
            {
                (keyColumns ??= []).Add((i, entities));
            }
            else if (!owners.Documents.IsEmpty && result.GetFieldType(i) == typeof(string)
                && owners.Documents.ShapesFor(name, command.CommandText, context.GetService<ISqlGenerationHelper>()) is { } shapes)
            {
                (documents ??= []).Add((i, shapes));
            }
        }

        return keyColumns is null && documents is null
            ? result
            : new KeyPrefetchingDataReader(result, keyColumns?.ToArray() ?? [], documents?.ToArray() ?? [], runtime);
    }
}

/// <summary>Which entities' wrapped keys a result column can hold: the model's key columns by name and table.</summary>
/// <remarks>
/// The prefetch must unwrap a key for the entity whose column it read, never for the entity a (possibly forged)
/// blob names: otherwise a row of one table makes the provider decrypt, and audit, a key of another entity. A
/// reader only gives column names, which EF makes unique by appending digits when a query joins tables with the
/// same column; so a column is matched by its name without those digits, and narrowed to the entities whose table or
/// view the command text names. A blob naming any other entity is not sent to the provider (materialization then
/// refuses it as copied from another table, also without a provider call).
/// </remarks>
internal sealed class KeyColumnOwners
{
    private readonly Dictionary<string, List<(string Entity, string Table, string? Schema)>> _byColumn = new(StringComparer.Ordinal);

    private KeyColumnOwners(JsonDocumentKeys documents) => Documents = documents;

    /// <summary>The JSON columns holding the keys of JSON-mapped owned records.</summary>
    public JsonDocumentKeys Documents { get; }

    public static KeyColumnOwners Build(EnvelopeRuntime runtime, IModel model)
    {
        var owners = new KeyColumnOwners(JsonDocumentKeys.Build(runtime, model));
        foreach (var entityType in model.GetEntityTypes())
        {
            if (runtime.Find(entityType) is not { } encrypted)
            {
                continue;
            }

            foreach (var mapping in entityType.GetTableMappings().Cast<ITableMappingBase>().Concat(entityType.GetViewMappings()))
            {
                var column = mapping.ColumnMappings.FirstOrDefault(c => c.Property == encrypted.KeyProperty)?.Column.Name;
                if (column is not null)
                {
                    var list = owners._byColumn.TryGetValue(column, out var found) ? found : owners._byColumn[column] = [];
                    list.Add((encrypted.Name, mapping.Table.Name, mapping.Table.Schema));
                }
            }
        }

        return owners;
    }

    /// <summary>The entities whose key column a result column named <paramref name="name"/> can be, in this command.</summary>
    public string[] EntitiesFor(string name, string commandText, ISqlGenerationHelper sql)
    {
        if (Match(_byColumn, name, commandText, sql, o => (o.Table, o.Schema)) is not var (owners, named))
        {
            return [];
        }

        // Raw SQL (FromSql) may name its table without delimiters: then the column name alone decides.
        return [.. (named.Count > 0 ? named : owners).Select(o => o.Entity).Distinct(StringComparer.Ordinal)];
    }

    /// <summary>
    /// The entries of <paramref name="map"/> for a result column named <paramref name="name"/> (without the digits EF
    /// appends to a repeated name), and those of them whose table the command text names; null when there are none.
    /// </summary>
    internal static (List<T> All, List<T> Named)? Match<T>(Dictionary<string, List<T>> map, string name, string commandText, ISqlGenerationHelper sql, Func<T, (string Table, string? Schema)> table)
    {
        if (!map.TryGetValue(name, out var all) && !map.TryGetValue(name.TrimEnd("0123456789".ToCharArray()), out all))
        {
            return null;
        }

        return (all, all.Where(entry => table(entry) is var (tableName, schema) && commandText.Contains(sql.DelimitIdentifier(tableName, schema), StringComparison.Ordinal)).ToList());
    }
}

/// <summary>Ensures the keys named by stored wrapped-key blobs are cached, asking the provider asynchronously.</summary>
internal sealed class KeyPrefetcher(EnvelopeRuntime runtime)
{
    // Mode byte and identifying bytes of keys recently ensured: rows written in the same period share a KEK, so after
    // the first row the check is a byte comparison, with no allocation. Bounded: in direct mode every row has its
    // own key, and an ever-growing list would make a large read quadratic.
    private const int Remembered = 16;
    private readonly List<byte[]> _ensured = [];

    public bool IsEnsured(ReadOnlySpan<byte> stored)
    {
        foreach (var seen in _ensured)
        {
            var tail = seen.AsSpan(1);
            if (stored.Length > EnvelopeFormat.TailOffset + tail.Length && stored[1] == seen[0] && stored.Slice(EnvelopeFormat.TailOffset, tail.Length).SequenceEqual(tail))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Caches the key of <paramref name="stored"/> when it is a blob of one of <paramref name="entities"/>.</summary>
    public async Task EnsureAsync(byte[] stored, string[] entities, CancellationToken cancellationToken)
    {
        if (IsEnsured(stored) || !WrappedKeyBlob.TryParse(stored, out var blob, out _))
        {
            return;
        }

        if (_ensured.Count == Remembered)
        {
            _ensured.RemoveAt(0);
        }

        _ensured.Add([blob.Mode, .. blob.Tail]);

        // The key is asked for as the column's entity, never as the entity the blob names. A blob naming another
        // entity was moved here from another table: the cache refuses it without calling the provider, and
        // remembers the refusal for whichever of the column's entities materialization then asks for.
        var entity = Array.Find(entities, e => e == blob.Entity);
        foreach (var expected in entity is null ? entities : [entity])
        {
            try
            {
                var key = await runtime.Cache.GetAsync(expected, blob, hint: null, cancellationToken).ConfigureAwait(false);
                key.Release();
            }
            catch (EnvelopeDecryptionException)
            {
                // Materialization reports tampering with the entity and property it belongs to; a prefetch has neither.
                // The cache remembers the refusal, so materialization fails at once without asking the provider again.
                // A provider refusal (revoked, missing key) is reported from here: asking again would only repeat it.
            }
        }
    }
}

/// <summary>A reader that, after each async read, ensures the keys named by the row's wrapped-key columns and JSON documents are cached.</summary>
internal sealed class KeyPrefetchingDataReader(
    DbDataReader inner,
    (int Ordinal, string[] Entities)[] keyColumns,
    (int Ordinal, DocumentShape[] Shapes)[] documents,
    EnvelopeRuntime runtime) : DelegatingDataReader(inner)
{
    private readonly KeyPrefetcher _prefetcher = new(runtime);
    private byte[] _buffer = new byte[512];

    // Microsoft.Data.Sqlite answers GetBytes through incremental blob I/O: it reopens the blob by the rowid of the
    // column's origin table. In a compound SELECT (EF's UNION ALL for a TPC hierarchy) SQLite names the first
    // arm's table as the origin of every row, so a row from another table fails with "no such rowid". Its
    // GetFieldValue<byte[]> copies the value from the row instead, which is also cheaper than opening a blob.
    private readonly bool _copiesBlobs = inner.GetType().Namespace == "Microsoft.Data.Sqlite";

    public override async Task<bool> ReadAsync(CancellationToken cancellationToken)
    {
        if (!await Inner.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            return false;
        }

        foreach (var (ordinal, entities) in keyColumns)
        {
            if (await Inner.IsDBNullAsync(ordinal, cancellationToken).ConfigureAwait(false))
            {
                continue;
            }

            var blob = ReadKeyColumn(ordinal);
            if (!_prefetcher.IsEnsured(blob.Span))
            {
                await _prefetcher.EnsureAsync(blob.ToArray(), entities, cancellationToken).ConfigureAwait(false);
            }
        }

        foreach (var (ordinal, shapes) in documents)
        {
            if (!await Inner.IsDBNullAsync(ordinal, cancellationToken).ConfigureAwait(false))
            {
                await EnsureDocumentKeysAsync(Inner.GetFieldValue<string>(ordinal), shapes, cancellationToken).ConfigureAwait(false);
            }
        }

        return true;
    }

    private async Task EnsureDocumentKeysAsync(string document, DocumentShape[] shapes, CancellationToken cancellationToken)
    {
        if (DocumentShape.Missing(document, shapes, _prefetcher) is not { } missing)
        {
            return;
        }

        foreach (var (entity, blob) in missing)
        {
            try
            {
                await _prefetcher.EnsureAsync(blob, entity, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // Best effort: where the row's JSON is not what the model reads (a projection of part of a document),
                // a failure here belongs to no record of the result. Materialization asks again for the keys it
                // reads and reports their failures with their entity and property.
            }
        }
    }

    private ReadOnlyMemory<byte> ReadKeyColumn(int ordinal)
    {
        if (_copiesBlobs)
        {
            return Inner.GetFieldValue<byte[]>(ordinal);
        }

        // Peek into a reused buffer; only a key not seen yet costs a copy (EF reads the column again itself).
        var length = (int)Inner.GetBytes(ordinal, 0, null, 0, 0);
        if (length > _buffer.Length)
        {
            _buffer = new byte[length];
        }

        Inner.GetBytes(ordinal, 0, _buffer, 0, length);
        return _buffer.AsMemory(0, length);
    }
}
