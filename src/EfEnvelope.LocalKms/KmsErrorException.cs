using System.Net;

namespace EfEnvelope.LocalKms;

/// <summary>A KMS error reply: the <c>__type</c> that SDKs unmarshal into their exception, a message and an HTTP status.</summary>
/// <remarks>Thrown by the server's operations, and by a <see cref="LocalKmsOptions.OnRequest"/> hook to answer with an error.</remarks>
public sealed class KmsErrorException : Exception
{
    /// <summary>Creates the error reply.</summary>
    /// <param name="type">The KMS error code, for example <c>ThrottlingException</c>.</param>
    /// <param name="message">The message sent to the client.</param>
    /// <param name="status">The HTTP status; KMS answers client errors with 400 and its own failures with 500.</param>
    public KmsErrorException(string type, string message, HttpStatusCode status = HttpStatusCode.BadRequest)
        : base(message)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(type);
        Type = type;
        Status = status;
    }

    /// <summary>The KMS error code written as <c>__type</c>.</summary>
    public string Type { get; }

    /// <summary>The HTTP status of the reply.</summary>
    public HttpStatusCode Status { get; }

    internal static KmsErrorException Validation(string message) => new("ValidationException", message);

    internal static KmsErrorException Serialization(string message) => new("SerializationException", message);

    internal static KmsErrorException Unsupported(string message) => new("UnsupportedOperationException", message);

    internal static KmsErrorException InvalidState(string message) => new("KMSInvalidStateException", message);
}
