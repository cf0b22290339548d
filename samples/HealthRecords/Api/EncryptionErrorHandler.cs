using EfEnvelope;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Mvc;

namespace HealthRecords.Api;

/// <summary>Turns EfEnvelope's errors into a problem response that says what went wrong.</summary>
/// <remarks>
/// Their messages are safe to show: the library never puts plaintext or key bytes in them, only the entity, property
/// and master-key id. The typical cause here is a database written under another development key file.
/// </remarks>
public sealed class EncryptionErrorHandler(IProblemDetailsService problemDetails) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        var (title, status) = exception switch
        {
            MasterKeyAccessRevokedException => ("Access to the master key was revoked", StatusCodes.Status503ServiceUnavailable),
            MasterKeyException => ("The master key could not be used", StatusCodes.Status503ServiceUnavailable),
            EnvelopeDecryptionException => ("A stored record could not be decrypted", StatusCodes.Status500InternalServerError),
            _ => (null, 0),
        };
        if (title is null)
        {
            return false;
        }

        httpContext.Response.StatusCode = status;
        return await problemDetails.TryWriteAsync(new ProblemDetailsContext
        {
            HttpContext = httpContext,
            Exception = exception,
            ProblemDetails = new ProblemDetails { Title = title, Status = status, Detail = exception.Message },
        });
    }
}
