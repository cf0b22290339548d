using System.Net;
using System.Net.Http.Json;
using Amazon.KeyManagementService.Model;
using EfEnvelope.AwsKms.Tests.LocalKms;
using HealthRecords.Api;

namespace HealthRecords.Tests;

/// <summary><c>/health</c>, backed by EfEnvelope's envelope-encryption health check.</summary>
public class HealthEndpointTests
{
    private static CancellationToken Cancel => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Health_is_200_when_the_master_key_generates_and_unwraps_and_names_no_key()
    {
        await using var app = new SampleApp();
        using var client = app.CreateClient();

        using var response = await client.GetAsync("/health", Cancel);
        var body = await response.Content.ReadAsStringAsync(Cancel);
        var health = await response.Content.ReadFromJsonAsync<HealthSummary>(Cancel);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("Healthy", health!.Status);
        Assert.Equal(new HealthCheckSummary("efenvelope", "Healthy", null), Assert.Single(health.Checks));
        Assert.DoesNotContain("healthrecords-dev-", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Health_is_503_with_the_failure_kind_when_the_kms_key_is_disabled()
    {
        await using var kms = LocalKmsServer.Start();
        using var admin = kms.CreateClient();
        var keyArn = (await admin.CreateKeyAsync(new CreateKeyRequest { Description = "healthrecords-health" }, Cancel)).KeyMetadata.Arn;
        await using var app = AwsKmsMasterKeyTests.KmsSample(kms, keyArn);
        using var client = app.CreateClient();
        await admin.DisableKeyAsync(new DisableKeyRequest { KeyId = keyArn }, Cancel);

        using var response = await client.GetAsync("/health", Cancel);
        var body = await response.Content.ReadAsStringAsync(Cancel);
        var health = await response.Content.ReadFromJsonAsync<HealthSummary>(Cancel);

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("Unhealthy", health!.Status);
        Assert.Equal(new HealthCheckSummary("efenvelope", "Unhealthy", "revoked"), Assert.Single(health.Checks));
        Assert.DoesNotContain(keyArn, body, StringComparison.Ordinal);
    }
}
