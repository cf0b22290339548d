namespace HealthRecords.Api;

/// <summary>The id that ties a response to the server's log lines about it.</summary>
public static class Correlation
{
    /// <summary>The response header that carries it on every response, successful or not.</summary>
    public const string Header = "X-Correlation-Id";

    /// <summary>The problem-details member that carries it in an error body.</summary>
    public const string ProblemMember = "correlationId";

    /// <summary>ASP.NET Core's own request id: unique per request, and what its own log scopes call RequestId.</summary>
    public static string Id(HttpContext context) => context.TraceIdentifier;
}
