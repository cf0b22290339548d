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
    public DocumentShape[]? ShapesFor(string name, string commandText, ISqlGenerationHelper sql)
    {
        if (!_byColumn.TryGetValue(name, out var owners) && !_byColumn.TryGetValue(name.TrimEnd("0123456789".ToCharArray()), out owners))
        {
            return null;
        }

        var named = owners.Where(o => commandText.Contains(sql.DelimitIdentifier(o.Table, o.Schema), StringComparison.Ordinal)).Select(o => o.Shape).ToArray();
        return named.Length > 0 ? named : null;
    }
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

    /// <summary>The wrapped keys in <paramref name="document"/>, each with the entity it belongs to; none when it is not JSON.</summary>
    public static List<(string[] Entity, byte[] Blob)> Keys(string document, DocumentShape[] shapes)
    {
        var keys = new List<(string[], byte[])>();
        try
        {
            using var parsed = JsonDocument.Parse(document);
            foreach (var shape in shapes)
            {
                shape.Collect(parsed.RootElement, keys);
            }
        }
        catch (JsonException)
        {
            // Not a JSON document: materialization reports it.
        }

        return keys;
    }

    // A collection is an array of records of the same shape; a record is an object.
    private void Collect(JsonElement element, List<(string[], byte[])> keys)
    {
        if (element.ValueKind == JsonValueKind.Array)
        {
            foreach (var item in element.EnumerateArray())
            {
                Collect(item, keys);
            }

            return;
        }

        if (element.ValueKind != JsonValueKind.Object)
        {
            return;
        }

        if (_keyName is not null && element.TryGetProperty(_keyName, out var key) && key.ValueKind == JsonValueKind.String && Decode(key.GetString()!) is { } blob)
        {
            keys.Add((_entity!, blob));
        }

        foreach (var (name, child) in _children)
        {
            if (element.TryGetProperty(name, out var member))
            {
                child.Collect(member, keys);
            }
        }
    }

    // EF writes binary values into JSON as hexadecimal on SQLite and as base64 on PostgreSQL. The base64 of a blob,
    // which holds its entity's name in ASCII, is in practice never all hexadecimal digits; were it so, the decoded bytes
    // would not parse as a blob and materialization would fetch the key itself.
    private static byte[]? Decode(string text)
    {
        if (text.Length % 2 == 0 && text.AsSpan().IndexOfAnyExcept("0123456789ABCDEFabcdef") < 0)
        {
            return Convert.FromHexString(text);
        }

        var bytes = new byte[text.Length * 3 / 4];
        return Convert.TryFromBase64String(text, bytes, out var written) ? bytes[..written] : null;
    }
}
