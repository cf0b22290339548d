using System.Text.Json;
using System.Text.RegularExpressions;
using EfEnvelope;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Mvc;

namespace HealthRecords.Api;

/// <summary>Turns errors into RFC 7807 problem details that say what kind of failure it was, and nothing more.</summary>
/// <remarks>
/// The entity, property, master-key id and primary key of a failure go to the server log, escaped, under the same
/// correlation id the client receives: they describe the stored data (and a key id may have been rewritten by whoever
/// can write to the database), so they are for operators, not for any HTTP client.
/// </remarks>
public sealed partial class ApiErrorHandler(IProblemDetailsService problemDetails, RecordReader records, ILogger<ApiErrorHandler> logger) : IExceptionHandler
{
    /// <summary>Problem type of a record that failed authentication or names a key this application does not have.</summary>
    public const string RecordUnreadableType = "urn:healthrecords:problem:record-cannot-be-decrypted";

    /// <summary>Problem type of a key service that cannot be used right now (retrying later may help).</summary>
    public const string MasterKeyUnavailableType = "urn:healthrecords:problem:master-key-unavailable";

    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        var correlationId = Correlation.Id(httpContext);
        ProblemDetails problem;
        if (exception is BadHttpRequestException badRequest)
        {
            problem = Unreadable(badRequest);
            LogBadRequest(logger, badRequest.StatusCode, LogText.Escape(httpContext.Request.Path), LogText.Escape(problem.Title), correlationId);
        }
        else if (records.IsUnreadableRecord(exception))
        {
            // Not 503: nothing is down, and retrying will not help. 500 with its own type: the server holds a record it
            // refuses to show, which is an integrity incident for the operator.
            var (entity, key) = exception is RecordUnreadableException located ? (located.Entity, located.Key) : ("record", (int?)null);
            records.LogUnreadable(entity, key, exception, correlationId);
            problem = new ProblemDetails
            {
                Type = RecordUnreadableType,
                Status = StatusCodes.Status500InternalServerError,
                Title = $"The stored record {RecordReader.CannotBeDecrypted}",
                Detail = "It was altered, damaged or written under another master key, so it is not shown. It can still be deleted. "
                    + "Give the correlation id to an administrator: the server log names the record.",
            };
        }
        else if (KeyServiceFailure(exception) is { } masterKey)
        {
            LogKeyServiceFailed(logger, masterKey.GetType().Name, LogText.Escape(masterKey.Provider), LogText.Escape(masterKey.KeyId), LogText.Escape(masterKey.Message), correlationId);
            problem = new ProblemDetails
            {
                Type = MasterKeyUnavailableType,
                Status = StatusCodes.Status503ServiceUnavailable,
                Title = masterKey is MasterKeyAccessRevokedException
                    ? "Access to the master key was withdrawn"
                    : "The master-key service could not be used",
                Detail = "Records cannot be read or written until the key service is reachable and allows access again.",
            };
        }
        else
        {
            return false;
        }

        httpContext.Response.StatusCode = problem.Status!.Value;
        return await problemDetails.TryWriteAsync(new ProblemDetailsContext { HttpContext = httpContext, ProblemDetails = problem });
    }

    // EF passes EfEnvelope's exceptions through as they are, but look under wrappers all the same.
    private static MasterKeyException? KeyServiceFailure(Exception exception)
    {
        for (Exception? current = exception; current is not null; current = current.InnerException)
        {
            if (current is MasterKeyException masterKey)
            {
                return masterKey;
            }
        }

        return null;
    }

    // The request could not be bound: malformed JSON, a value of the wrong type, a missing body. The messages are the
    // sample's own and name the field, never its value: the framework's quote the request, which may hold an SSN.
    private static HttpValidationProblemDetails Unreadable(BadHttpRequestException exception)
    {
        var (field, message) = exception.InnerException switch
        {
            JsonException { Path: { Length: > 2 } path } => (path.TrimStart('$', '.'), "Not valid JSON, or not a valid value for this field."),
            JsonException => ("body", "The request body is not valid JSON."),
            _ when BoundParameter().Match(exception.Message) is { Success: true } match => (match.Groups["name"].Value, "Not a valid value for this parameter."),
            _ => ("body", exception.StatusCode == StatusCodes.Status400BadRequest ? "A JSON body is required." : "The request could not be read."),
        };
        return new HttpValidationProblemDetails(new Dictionary<string, string[]> { [field] = [message] })
        {
            Status = exception.StatusCode,
            Title = "The request could not be read",
        };
    }

    // The parameter name in ASP.NET Core's binding failure ("Failed to bind parameter "int? page" from "x"."): it comes
    // from the endpoint's signature, so it is safe to repeat, unlike the value after it.
    [GeneratedRegex("^Failed to bind parameter \"[^\"]*?(?<name>\\w+)\" from", RegexOptions.CultureInvariant, matchTimeoutMilliseconds: 100)]
    private static partial Regex BoundParameter();

    [LoggerMessage(EventId = 1010, Level = LogLevel.Information, Message = "Request to {Path} refused with {Status}: {Problem} (correlation id {CorrelationId})")]
    private static partial void LogBadRequest(ILogger logger, int status, string path, string problem, string correlationId);

    [LoggerMessage(EventId = 1011, Level = LogLevel.Error, Message = "Master-key service failed ({ErrorType}): provider {Provider}, master key {KeyId}: {Error} (correlation id {CorrelationId})")]
    private static partial void LogKeyServiceFailed(ILogger logger, string errorType, string provider, string keyId, string error, string correlationId);
}
