using EfEnvelope.Diagnostics.HealthChecks;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Diagnostics.HealthChecks;

// Declared in the namespace of AddHealthChecks so that no extra using is needed where checks are registered.
namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the envelope-encryption health check.</summary>
public static class EnvelopeEncryptionHealthChecksBuilderExtensions
{
    /// <summary>
    /// Adds a check that the master-key provider of <typeparamref name="TContext"/> can generate a data key under its
    /// primary master key and unwrap it, reporting <see cref="EnvelopeHealthCheck.Unreachable"/>,
    /// <see cref="EnvelopeHealthCheck.Revoked"/> or <see cref="EnvelopeHealthCheck.Misconfigured"/> in the result's data.
    /// </summary>
    /// <typeparam name="TContext">A context registered with <c>AddDbContext</c>, <c>AddDbContextPool</c> or <c>AddDbContextFactory</c> and configured with <c>UseEnvelopeEncryption</c>.</typeparam>
    /// <param name="builder">The health checks builder (<c>services.AddHealthChecks()</c>).</param>
    /// <param name="name">The check's name; <see cref="EnvelopeHealthCheck.DefaultName"/> by default.</param>
    /// <param name="failureStatus">The status of a failed check; <see cref="HealthStatus.Unhealthy"/> by default.</param>
    /// <param name="tags">Tags to filter checks by (for example to separate readiness from liveness).</param>
    /// <param name="timeout">How long the check may run; by default only the provider timeout bounds it.</param>
    /// <remarks>
    /// Costs at most one GenerateDataKey and one DecryptDataKey call per cache time to live and configuration; other
    /// checks are answered from the key cache. The calls are logged and counted like any other, for entity
    /// <c>EfEnvelope.HealthCheck</c>.
    /// </remarks>
    public static IHealthChecksBuilder AddEnvelopeEncryptionCheck<TContext>(
        this IHealthChecksBuilder builder,
        string name = EnvelopeHealthCheck.DefaultName,
        HealthStatus? failureStatus = null,
        IEnumerable<string>? tags = null,
        TimeSpan? timeout = null)
        where TContext : DbContext
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.Add(new HealthCheckRegistration(name, services => new EnvelopeEncryptionHealthCheck<TContext>(services), failureStatus, tags, timeout));
    }
}
