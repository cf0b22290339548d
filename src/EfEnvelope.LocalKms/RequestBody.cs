using System.Text.Json;

namespace EfEnvelope.LocalKms;

/// <summary>Typed access to a request's members, failing the way KMS does on a wrong type or a missing member.</summary>
/// <remarks>
/// Only the members an operation lists are accepted: a member the local KMS does not implement (tags, policies,
/// asymmetric algorithms) is refused with <c>UnsupportedOperationException</c> rather than silently ignored, so
/// a client never believes a request did something it did not.
/// </remarks>
internal readonly struct RequestBody
{
    private readonly JsonElement _root;

    public RequestBody(JsonElement root, string operation, IReadOnlySet<string> accepted)
    {
        _root = root;
        foreach (var member in root.EnumerateObject())
        {
            var empty = member.Value.ValueKind is JsonValueKind.Null
                || member.Value.ValueKind == JsonValueKind.Array && member.Value.GetArrayLength() == 0
                || member.Value.ValueKind == JsonValueKind.Object && !member.Value.EnumerateObject().Any();
            if (!accepted.Contains(member.Name) && !empty)
            {
                throw KmsErrorException.Unsupported($"The local KMS does not support the {member.Name} parameter of {operation}.");
            }
        }
    }

    public string? String(string name) => Member(name, JsonValueKind.String)?.GetString();

    public string RequiredString(string name) =>
        String(name) is { Length: > 0 } value ? value : throw KmsErrorException.Validation($"1 validation error detected: Value null at '{ToCamel(name)}' failed to satisfy constraint: Member must not be null");

    public int? Int(string name) => Member(name, JsonValueKind.Number) is { } value
        ? value.TryGetInt32(out var n) ? n : throw KmsErrorException.Serialization($"{name} must be an integer.")
        : null;

    public bool Bool(string name) => _root.TryGetProperty(name, out var value) && value.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False or JsonValueKind.Null => false,
        _ => throw KmsErrorException.Serialization($"{name} must be a boolean."),
    };

    public byte[] RequiredBlob(string name)
    {
        var text = RequiredString(name);
        try
        {
            return Convert.FromBase64String(text);
        }
        catch (FormatException)
        {
            throw KmsErrorException.Serialization($"{name} is not valid base64.");
        }
    }

    public Dictionary<string, string> Context(string name)
    {
        var context = new Dictionary<string, string>(StringComparer.Ordinal);
        if (Member(name, JsonValueKind.Object) is { } element)
        {
            foreach (var pair in element.EnumerateObject())
            {
                context[pair.Name] = pair.Value.ValueKind == JsonValueKind.String
                    ? pair.Value.GetString()!
                    : throw KmsErrorException.Serialization($"{name} values must be strings.");
            }
        }

        return context;
    }

    /// <summary>The grant tokens of the request; the local KMS has no grants, so any token is one KMS would reject.</summary>
    public void RequireNoGrantTokens()
    {
        if (Member("GrantTokens", JsonValueKind.Array) is { } tokens && tokens.GetArrayLength() > 0)
        {
            throw new KmsErrorException("InvalidGrantTokenException", "The grant token is not valid: the local KMS has no grants.");
        }
    }

    /// <summary>Refuses any encryption algorithm but <c>SYMMETRIC_DEFAULT</c>, the only one of symmetric keys.</summary>
    public void RequireSymmetricDefault(string name)
    {
        if (String(name) is { } algorithm && algorithm != "SYMMETRIC_DEFAULT")
        {
            throw new KmsErrorException("InvalidKeyUsageException", $"{name} {algorithm} is not supported by a symmetric key; use SYMMETRIC_DEFAULT.");
        }
    }

    private JsonElement? Member(string name, JsonValueKind kind)
    {
        if (!_root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind == kind ? value : throw KmsErrorException.Serialization($"{name} has the wrong type.");
    }

    private static string ToCamel(string name) => char.ToLowerInvariant(name[0]) + name[1..];
}
