using System.Net;

namespace EfEnvelope.AwsKms.Tests.LocalKms;

/// <summary>A KMS error reply: the <c>__type</c> the SDK unmarshals into its exception, a message and an HTTP status.</summary>
internal sealed class KmsFault(string type, string message, HttpStatusCode status = HttpStatusCode.BadRequest) : Exception(message)
{
    public string Type { get; } = type;

    public HttpStatusCode Status { get; } = status;

    public static KmsFault Validation(string message) => new("ValidationException", message);

    public static KmsFault Serialization(string message) => new("SerializationException", message);
}
