namespace EfEnvelope;

/// <summary>A master-key provider could not perform an operation (key missing, not configured, unreachable, timed out).</summary>
/// <remarks>
/// Messages name the provider, the key and the entity, never key bytes, PINs or credentials. Names read from a stored
/// blob appear in the message truncated and escaped; the properties hold them as read, for programs to compare, and
/// must be escaped before they are written where people read.
/// </remarks>
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

/// <summary>
/// The provider answered, but its configuration names something unusable: a master key that does not exist or is not
/// configured, a token label that matches no token, a rejected PIN, a key or mechanism of the wrong kind.
/// </summary>
/// <remarks>
/// Retrying does not help; the application's settings (or the key store) must change. Health checks report it as
/// misconfigured, apart from an unreachable provider (a plain <see cref="MasterKeyException"/>) and revoked access.
/// </remarks>
public class MasterKeyConfigurationException : MasterKeyException
{
    /// <summary>Creates the exception.</summary>
    public MasterKeyConfigurationException(string message, string? provider = null, string? keyId = null, string? entity = null, Exception? innerException = null)
        : base(message, provider, keyId, entity, innerException)
    {
    }

    /// <summary>Creates the exception with a message only.</summary>
    public MasterKeyConfigurationException()
        : this("The master-key provider's configuration names an unusable key or token.")
    {
    }

    /// <summary>Creates the exception with a message only.</summary>
    public MasterKeyConfigurationException(string message)
        : this(message, null, null, null, null)
    {
    }

    /// <summary>Creates the exception with a message and cause.</summary>
    public MasterKeyConfigurationException(string message, Exception? innerException)
        : this(message, null, null, null, innerException)
    {
    }
}
