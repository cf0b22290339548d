using System.Text.Json;
using EfEnvelope.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Storage;

namespace EfEnvelope.Storage;

/// <summary>
/// The JSON columns of a model that hold JSON-mapped owned records with encrypted properties, and where in each
/// document their wrapped keys are: for the async key prefetch, which must find them before EF materializes the row.
/// </summary>
/// <remarks>
/// A result column is matched by its name (without the digits EF appends to repeated names) and only when the command
/// text names the column's table: a column of another table with the same name, or raw SQL that names its table
/// without delimiters, is not searched. Only the places EF reads are searched (each JSON-mapped type's key property,
/// under its owned navigations' JSON names), so a key-named value elsewhere in a document is never sent to the provider.
/// </remarks>
internal sealed class JsonDocumentKeys
{
    private readonly Dictionary<string, List<(string Table, string? Schema, DocumentShape Shape)>> _byColumn = new(StringComparer.Ordinal);

    /// <summary>Whether the model has such columns.</summary>
    public bool IsEmpty => _byColumn.Count == 0;

    public static JsonDocumentKeys Build(EnvelopeRuntime runtime, IModel model)
    {
        var documents = new JsonDocumentKeys();
        foreach (var entityType in model.GetEntityTypes())
        {
            // The type stored at the root of a document: JSON-mapped, owned by a type that is not.
            if (!entityType.IsMappedToJson() || entityType.FindOwnership()?.PrincipalEntityType.IsMappedToJson() != false
                || entityType.GetContainerColumnName() is not { } column || entityType.GetTableName() is not { } table
                || DocumentShape.Build(runtime, entityType) is not { } shape)
            {
                continue;
            }

            var list = documents._byColumn.TryGetValue(column, out var found) ? found : documents._byColumn[column] = [];
            list.Add((table, entityType.GetSchema(), shape));
        }

        return documents;
    }

    /// <summary>The document shapes a result column named <paramref name="name"/> can hold in this command, or null.</summary>
    public DocumentShape[]? ShapesFor(string name, string commandText, ISqlGenerationHelper sql) =>
        KeyColumnOwners.Match(_byColumn, name, commandText, sql, o => (o.Table, o.Schema)) is ({ }, { Count: > 0 } named)
            ? [.. named.Select(o => o.Shape)]
            : null;
}

/// <summary>One JSON-mapped owned type's place in a document: its key property's JSON name and its owned navigations'.</summary>
internal sealed class DocumentShape
{
    private readonly Dictionary<string, DocumentShape> _children = new(StringComparer.Ordinal);
    private string[]? _entity;
    private string? _keyName;

    /// <summary>The shape of <paramref name="entityType"/>'s documents, or null when none of it is encrypted.</summary>
    public static DocumentShape? Build(EnvelopeRuntime runtime, IEntityType entityType)
    {
        var shape = new DocumentShape();
        if (runtime.Find(entityType) is { } encrypted && encrypted.KeyProperty.GetJsonPropertyName() is { } keyName)
        {
            shape._entity = [encrypted.Name];
            shape._keyName = keyName;
        }

        foreach (var navigation in entityType.GetNavigations())
        {
            if (navigation.ForeignKey.IsOwnership && !navigation.IsOnDependent && navigation.TargetEntityType.IsMappedToJson()
                && navigation.TargetEntityType.GetJsonPropertyName() is { } name && Build(runtime, navigation.TargetEntityType) is { } child)
            {
                shape._children[name] = child;
            }
        }

        return shape._keyName is null && shape._children.Count == 0 ? null : shape;
    }

    /// <summary>
    /// The wrapped keys in <paramref name="document"/> that <paramref name="prefetcher"/> has not ensured yet, each with
    /// the entity it belongs to; null when there are none or the document is not JSON.
    /// </summary>
    /// <remarks>Read for every row of an async query: a key already ensured costs no allocation but its JSON string.</remarks>
    public static List<(string[] Entity, byte[] Blob)>? Missing(string document, DocumentShape[] shapes, KeyPrefetcher prefetcher)
    {
        List<(string[], byte[])>? missing = null;
        try
        {
            using var parsed = JsonDocument.Parse(document);
            foreach (var shape in shapes)
            {
                shape.Collect(parsed.RootElement, prefetcher, ref missing);
            }
        }
        catch (JsonException)
        {
            // Not a JSON document: materialization reports it.
        }

        return missing;
    }

    // A collection is an array of records of the same shape; a record is an object.
    private void Collect(JsonElement element, KeyPrefetcher prefetcher, ref List<(string[], byte[])>? missing)
    {
        if (element.ValueKind == JsonValueKind.Array)
        {
            foreach (var item in element.EnumerateArray())
            {
                Collect(item, prefetcher, ref missing);
            }

            return;
        }

        if (element.ValueKind != JsonValueKind.Object)
        {
            return;
        }

        if (_keyName is not null && element.TryGetProperty(_keyName, out var key) && key.ValueKind == JsonValueKind.String)
        {
            var text = key.GetString()!;
            var buffer = text.Length <= 1024 ? stackalloc byte[text.Length] : new byte[text.Length];
            if (JsonBlobText.Decode(text, buffer) is var length and >= 0 && !prefetcher.IsEnsured(buffer[..length]))
            {
                (missing ??= []).Add((_entity!, buffer[..length].ToArray()));
            }
        }

        foreach (var (name, child) in _children)
        {
            if (element.TryGetProperty(name, out var member))
            {
                child.Collect(member, prefetcher, ref missing);
            }
        }
    }
}
