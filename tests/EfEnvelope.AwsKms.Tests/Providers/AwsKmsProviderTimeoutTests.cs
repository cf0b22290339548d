using System.Diagnostics;
using EfEnvelope.AwsKms.Tests.LocalKms;

namespace EfEnvelope.AwsKms.Tests.Providers;

/// <summary>The per-attempt timeout and the operation's deadline, against a KMS that stalls.</summary>
public sealed class AwsKmsProviderTimeoutTests : LocalKmsTestBase
{
    [Fact]
    public async Task A_stalled_attempt_is_abandoned_after_the_attempt_timeout_and_retried_within_the_deadline()
    {
        using var provider = BuiltProvider(attempt: TimeSpan.FromSeconds(1), operation: TimeSpan.FromSeconds(20));
        Server.StallNext(1, TimeSpan.FromSeconds(60), "GenerateDataKey");
        Server.ResetCounters();
        var clock = Stopwatch.StartNew();

        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct);

        Assert.Equal(2, Server.CallCount("GenerateDataKey"));
        // 0.9 s: the timer behind the attempt timeout may fire a few milliseconds before the stopwatch reaches 1 s.
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(15));
        Assert.Equal(Kms.PrimaryKeyArn, key.KeyId);
    }

    [Fact]
    public async Task When_every_attempt_stalls_the_deadline_ends_the_operation_as_a_timeout()
    {
        using var provider = BuiltProvider(attempt: TimeSpan.FromSeconds(1), operation: TimeSpan.FromSeconds(2.5));
        Server.StallNext(10, TimeSpan.FromSeconds(60), "GenerateDataKey");
        var clock = Stopwatch.StartNew();

        var error = await Assert.ThrowsAsync<MasterKeyException>(() => provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct));

        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(10));
        Assert.Contains("timed out after 2.5 s", error.Message, StringComparison.Ordinal);
        Assert.Equal(LocalKmsFixture.PrimaryAlias, error.KeyId);
        Assert.True(Server.CallCount("GenerateDataKey") >= 2, "the first stalled attempt was not retried");
    }

    private AwsKmsMasterKeyProvider BuiltProvider(TimeSpan attempt, TimeSpan operation) => new(new AwsKmsOptions
    {
        KeyId = LocalKmsFixture.PrimaryAlias,
        ServiceUrl = Server.Url.ToString(),
        AuthenticationRegion = LocalKmsServer.Region,
        Credentials = LocalKmsServer.Credentials,
        MaxErrorRetry = 3,
        AttemptTimeout = attempt,
        OperationTimeout = operation,
    });
}
