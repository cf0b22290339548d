using EfEnvelope.Diagnostics.HealthChecks;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Time.Testing;

namespace EfEnvelope.Tests.Diagnostics;

/// <summary>The health check, run by the real health check service of a host, against real and faulting providers.</summary>
public sealed class HealthCheckTests : IDisposable
{
    private readonly SqliteConnection _connection = new("Data Source=:memory:");
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);

    public HealthCheckTests() => _connection.Open();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _connection.Dispose();

    [Fact]
    public async Task A_working_provider_is_healthy_and_later_checks_are_answered_from_the_cache()
    {
        var provider = new InsecureInMemoryMasterKeyProvider("health-key");
        await using var services = Host(provider);

        var first = await CheckAsync(services);
        Assert.Equal(HealthStatus.Healthy, first.Status);
        Assert.Equal("in-memory", first.Data[EnvelopeHealthCheck.ProviderKey]);
        Assert.Equal("health-key", first.Data[EnvelopeHealthCheck.KeyIdKey]);
        Assert.Equal((1, 1), (provider.GenerateDataKeyCalls, provider.DecryptDataKeyCalls));

        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(HealthStatus.Healthy, (await CheckAsync(services)).Status);
        }

        Assert.Equal((1, 1), (provider.GenerateDataKeyCalls, provider.DecryptDataKeyCalls));

        // After the cache's time to live the provider is asked again: a check proves the provider still works.
        _time.Advance(TimeSpan.FromMinutes(16));
        Assert.Equal(HealthStatus.Healthy, (await CheckAsync(services)).Status);
        Assert.Equal((2, 2), (provider.GenerateDataKeyCalls, provider.DecryptDataKeyCalls));
    }

    [Fact]
    public async Task A_disabled_master_key_is_reported_revoked_once_the_cached_probe_expires()
    {
        var provider = new InsecureInMemoryMasterKeyProvider("revocable-key");
        await using var services = Host(provider);
        Assert.Equal(HealthStatus.Healthy, (await CheckAsync(services)).Status);

        provider.DisableKey("revocable-key");
        Assert.Equal(HealthStatus.Healthy, (await CheckAsync(services)).Status);
        _time.Advance(TimeSpan.FromMinutes(16));
        var result = await CheckAsync(services);

        Assert.Equal(HealthStatus.Unhealthy, result.Status);
        Assert.Equal(EnvelopeHealthCheck.Revoked, result.Data[EnvelopeHealthCheck.FailureKey]);
        Assert.IsType<MasterKeyAccessRevokedException>(result.Exception);
        Assert.Contains("revocable-key", result.Description, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_failing_provider_is_reported_unreachable_with_the_configured_failure_status()
    {
        var provider = new FaultInjectingProvider(new InsecureInMemoryMasterKeyProvider("flaky-key"));
        await using var services = Host(provider, failureStatus: HealthStatus.Degraded);
        provider.FailNext(1);

        var result = await CheckAsync(services);

        Assert.Equal(HealthStatus.Degraded, result.Status);
        Assert.Equal(EnvelopeHealthCheck.Unreachable, result.Data[EnvelopeHealthCheck.FailureKey]);
        Assert.Equal("flaky-key", result.Data[EnvelopeHealthCheck.KeyIdKey]);
        Assert.Equal(HealthStatus.Healthy, (await CheckAsync(services)).Status);
    }

    [Fact]
    public async Task A_provider_that_does_not_answer_within_the_provider_timeout_is_unreachable()
    {
        var provider = new HangingProvider();
        await using var services = Host(provider, configure: e => e.UseProviderTimeout(TimeSpan.FromMilliseconds(200)));

        var result = await CheckAsync(services);

        Assert.Equal(HealthStatus.Unhealthy, result.Status);
        Assert.Equal(EnvelopeHealthCheck.Unreachable, result.Data[EnvelopeHealthCheck.FailureKey]);
        Assert.Contains("did not answer", result.Description, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_primary_key_the_provider_does_not_hold_is_misconfigured()
    {
        // The provider claims the key but its store does not have it: the provider's own configuration error.
        await using var services = Host(new ClaimedKeyProvider(new InsecureInMemoryMasterKeyProvider("real-key"), "missing-key"));

        var result = await CheckAsync(services);

        Assert.Equal(EnvelopeHealthCheck.Misconfigured, result.Data[EnvelopeHealthCheck.FailureKey]);
        Assert.IsType<MasterKeyConfigurationException>(result.Exception);
        Assert.Contains("missing-key", result.Description, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_primary_key_outside_the_providers_configured_keys_is_misconfigured_without_a_provider_call()
    {
        var inner = new InsecureInMemoryMasterKeyProvider("real-key");
        await using var services = Host(new ClaimedKeyProvider(inner, "unlisted-key", claims: false));

        var result = await CheckAsync(services);

        Assert.Equal(EnvelopeHealthCheck.Misconfigured, result.Data[EnvelopeHealthCheck.FailureKey]);
        Assert.Contains("unlisted-key", result.Description, StringComparison.Ordinal);
        Assert.Equal(0, inner.GenerateDataKeyCalls);
    }

    [Fact]
    public async Task A_provider_that_unwraps_a_different_key_is_misconfigured()
    {
        // Same key id, other key material on the unwrap side: what a wrongly copied HSM key or KMS alias looks like.
        var writer = new InsecureInMemoryMasterKeyProvider("shared-id");
        var reader = new InsecureInMemoryMasterKeyProvider("shared-id");
        await using var services = Host(new SplitProvider(writer, reader));

        var result = await CheckAsync(services);

        Assert.Equal(HealthStatus.Unhealthy, result.Status);
        Assert.Equal(EnvelopeHealthCheck.Misconfigured, result.Data[EnvelopeHealthCheck.FailureKey]);
    }

    [Fact]
    public async Task A_context_without_envelope_encryption_is_misconfigured()
    {
        // The misconfiguration the analyzer reports at compile time (EFENV007), made on purpose for the check to find.
#pragma warning disable EFENV007
        var services = new ServiceCollection()
            .AddLogging()
            .AddDbContext<ClinicContext>(o => o.UseSqlite(_connection))
            .AddHealthChecks().AddEnvelopeEncryptionCheck<ClinicContext>().Services
            .BuildServiceProvider();
#pragma warning restore EFENV007
        await using var _ = services;

        var result = await CheckAsync(services);

        Assert.Equal(HealthStatus.Unhealthy, result.Status);
        Assert.Equal(EnvelopeHealthCheck.Misconfigured, result.Data[EnvelopeHealthCheck.FailureKey]);
        Assert.Contains(nameof(ClinicContext), result.Description, StringComparison.Ordinal);
    }

    private ServiceProvider Host(IMasterKeyProvider provider, HealthStatus? failureStatus = null, Action<EnvelopeEncryptionOptionsBuilder>? configure = null) =>
        new ServiceCollection()
            .AddLogging()
            .AddDbContextPool<ClinicContext>(o => o.UseSqlite(_connection).ManyConfigurationsPerProcess().UseEnvelopeEncryption(e =>
            {
                e.UseProvider(provider).UseTimeProvider(_time);
                configure?.Invoke(e);
            }))
            .AddHealthChecks().AddEnvelopeEncryptionCheck<ClinicContext>(failureStatus: failureStatus).Services
            .BuildServiceProvider();

    private static async Task<HealthReportEntry> CheckAsync(IServiceProvider services)
    {
        var report = await services.GetRequiredService<HealthCheckService>().CheckHealthAsync(Ct);
        return Assert.Single(report.Entries, e => e.Key == EnvelopeHealthCheck.DefaultName).Value;
    }

    /// <summary>Names a primary key that its store does not hold (and, with <c>claims: false</c>, does not even list).</summary>
    private sealed class ClaimedKeyProvider(IMasterKeyProvider inner, string primaryKeyId, bool claims = true) : DelegatingProvider(inner)
    {
        public override string PrimaryKeyId => primaryKeyId;

        public override bool IsKeyConfigured(string keyId) => (claims && keyId == primaryKeyId) || base.IsKeyConfigured(keyId);
    }

    /// <summary>Generates with one key store and unwraps with another holding a different key under the same id.</summary>
    private sealed class SplitProvider(IMasterKeyProvider writer, IMasterKeyProvider reader) : DelegatingProvider(writer)
    {
        public override Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, KeyContext context, CancellationToken cancellationToken) =>
            reader.DecryptDataKeyAsync(keyId, wrappedKey, context, cancellationToken);
    }

    /// <summary>A provider whose endpoint accepts the call and never answers.</summary>
    private sealed class HangingProvider : IMasterKeyProvider
    {
        public string Name => "hanging";

        public string PrimaryKeyId => "silent-key";

        public bool IsKeyConfigured(string keyId) => keyId == PrimaryKeyId;

        public Task<GeneratedDataKey> GenerateDataKeyAsync(string keyId, KeyContext context, CancellationToken cancellationToken) =>
            new TaskCompletionSource<GeneratedDataKey>().Task.WaitAsync(cancellationToken);

        public Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, KeyContext context, CancellationToken cancellationToken) =>
            new TaskCompletionSource<byte[]>().Task.WaitAsync(cancellationToken);
    }
}
