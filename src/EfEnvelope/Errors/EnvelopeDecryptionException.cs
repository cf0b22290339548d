using System.Security.Cryptography;
using EfEnvelope.Diagnostics;

namespace EfEnvelope;

/// <summary>Stored data failed authentication: it was tampered with, moved, truncated or wrapped under another key.</summary>
/// <remarks>
/// The one exception type for data that cannot be trusted. The message names the entity, property and master key
/// where known, and never contains plaintext or key bytes. Names may have been read from a forged row: the message
/// holds them truncated and escaped (no control characters or line breaks), the properties as they were read, for
/// programs to compare; escape them before writing them where people read.
/// </remarks>
public class EnvelopeDecryptionException : CryptographicException
{
    /// <summary>Creates the exception.</summary>
    public EnvelopeDecryptionException(string message, string? entity = null, string? property = null, string? keyId = null, Exception? innerException = null)
        : base(Describe(message, UntrustedText.Escape(entity), UntrustedText.Escape(property), UntrustedText.Escape(keyId)), innerException)
    {
        Reason = message;
        Entity = entity;
        Property = property;
        KeyId = keyId;
    }

    /// <summary>Creates the exception with a message only.</summary>
    public EnvelopeDecryptionException()
        : this("Stored encrypted data failed authentication.")
    {
    }

    /// <summary>Creates the exception with a message and cause.</summary>
    public EnvelopeDecryptionException(string message, Exception? innerException)
        : this(message, null, null, null, innerException)
    {
    }

    /// <summary>Creates the exception with a message only.</summary>
    public EnvelopeDecryptionException(string message)
        : this(message, null, null, null, null)
    {
    }

    /// <summary>Why the data was refused, without the location.</summary>
    public string Reason { get; }

    /// <summary>The entity type whose data failed, if known.</summary>
    public string? Entity { get; }

    /// <summary>The property whose data failed, if known (null when the record's wrapped key failed).</summary>
    public string? Property { get; }

    /// <summary>The master key named by the data, if known.</summary>
    public string? KeyId { get; }

    /// <summary>Returns a copy located at the given entity and property, keeping what is already known.</summary>
    public EnvelopeDecryptionException WithLocation(string? entity, string? property, string? keyId) =>
        new(Reason, Entity ?? entity, Property ?? property, KeyId ?? keyId, InnerException);

    private static string Describe(string message, string? entity, string? property, string? keyId)
    {
        var where = new List<string>(3);
        if (entity is not null) where.Add($"entity '{entity}'");
        if (property is not null) where.Add($"property '{property}'");
        if (keyId is not null) where.Add($"master key '{keyId}'");
        return where.Count == 0 ? message : $"{message} ({string.Join(", ", where)})";
    }
}
