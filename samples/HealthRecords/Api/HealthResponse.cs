using EfEnvelope.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace HealthRecords.Api;

/// <summary>The overall status of one health check, and the kind of failure when it failed.</summary>
/// <param name="Failure"><c>unreachable</c>, <c>revoked</c> or <c>misconfigured</c> for the envelope-encryption check; null when it passed.</param>
public sealed record HealthCheckSummary(string Name, string Status, string? Failure);

/// <summary>What <c>GET /health</c> answers.</summary>
public sealed record HealthSummary(string Status, IReadOnlyList<HealthCheckSummary> Checks);

/// <summary>
/// <c>/health</c>: 200 when every check passes, 503 when one fails, with the kind of failure. The description (provider,
/// key id, the provider's error) stays in the server log, which the health check service writes for a failed check.
/// </summary>
public static class HealthResponse
{
    public static HealthCheckOptions Options { get; } = new() { ResponseWriter = WriteAsync };

    private static Task WriteAsync(HttpContext context, HealthReport report) =>
        context.Response.WriteAsJsonAsync(new HealthSummary(
            report.Status.ToString(),
            [.. report.Entries.Select(entry => new HealthCheckSummary(
                entry.Key,
                entry.Value.Status.ToString(),
                entry.Value.Data.TryGetValue(EnvelopeHealthCheck.FailureKey, out var failure) ? failure as string : null))]));
}
