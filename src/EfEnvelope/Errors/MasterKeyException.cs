namespace EfEnvelope;

/// <summary>A master-key provider could not perform an operation (key missing, not configured, unreachable, timed out).</summary>
/// <remarks>Messages name the provider, the key and the entity, never key bytes, PINs or credentials.</remarks>
public class MasterKeyException : Exception
{
    /// <summary>Creates the exception.</summary>
    public MasterKeyException(string message, string? provider = null, string? keyId = null, string? entity = null, Exception? innerException = null)
        : base(message, innerException)
    {
        Provider = provider;
        KeyId = keyId;
        Entity = entity;
    }

    /// <summary>Creates the exception with a message only.</summary>
    public MasterKeyException()
        : this("The master-key provider failed.")
    {
    }

    /// <summary>Creates the exception with a message only.</summary>
    public MasterKeyException(string message)
        : this(message, null, null, null, null)
    {
    }

    /// <summary>Creates the exception with a message and cause.</summary>
    public MasterKeyException(string message, Exception? innerException)
        : this(message, null, null, null, innerException)
    {
    }

    /// <summary>The provider's <see cref="KeyManagement.IMasterKeyProvider.Name"/>, if known.</summary>
    public string? Provider { get; }

    /// <summary>The master key involved, if known.</summary>
    public string? KeyId { get; }

    /// <summary>The entity type whose key was being generated or unwrapped, if known.</summary>
    public string? Entity { get; }
}

/// <summary>Access to a master key was withdrawn: the key is disabled, pending deletion or destroyed, or the caller is denied.</summary>
/// <remarks>
/// Applications act on this one: it means data under the key cannot be read until access is restored (or ever, after
/// crypto-shredding). Cached keys keep working until they expire, so revocation takes effect within the cache's
/// time to live.
/// </remarks>
public class MasterKeyAccessRevokedException : MasterKeyException
{
    /// <summary>Creates the exception.</summary>
    public MasterKeyAccessRevokedException(string message, string? provider = null, string? keyId = null, string? entity = null, Exception? innerException = null)
        : base(message, provider, keyId, entity, innerException)
    {
    }

    /// <summary>Creates the exception with a message only.</summary>
    public MasterKeyAccessRevokedException()
        : this("Access to the master key was revoked.")
    {
    }

    /// <summary>Creates the exception with a message only.</summary>
    public MasterKeyAccessRevokedException(string message)
        : this(message, null, null, null, null)
    {
    }

    /// <summary>Creates the exception with a message and cause.</summary>
    public MasterKeyAccessRevokedException(string message, Exception? innerException)
        : this(message, null, null, null, innerException)
    {
    }
}
