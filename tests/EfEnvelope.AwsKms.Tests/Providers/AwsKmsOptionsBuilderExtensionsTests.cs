using Amazon.Runtime;
using EfEnvelope.AwsKms.Tests.LocalKms;
using EfEnvelope.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;

namespace EfEnvelope.AwsKms.Tests.Providers;

/// <summary>The UseAwsKms overloads configure the provider, and alike configurations share one EF service provider (and cache).</summary>
public sealed class AwsKmsOptionsBuilderExtensionsTests
{
    private static DbContextOptionsExtensionInfo Configure(Action<EnvelopeEncryptionOptionsBuilder> configure) =>
        new DbContextOptionsBuilder().UseSqlite("Data Source=:memory:").UseEnvelopeEncryption(configure)
            .Options.FindExtension<EnvelopeEncryptionOptionsExtension>()!.Info;

    [Fact]
    public void UseAwsKms_with_a_key_id_configures_the_aws_kms_provider_and_alike_calls_share_a_service_provider()
    {
        var first = Configure(e => e.UseAwsKms("alias/patients"));
        var second = Configure(e => e.UseAwsKms("alias/patients"));
        var other = Configure(e => e.UseAwsKms("alias/invoices"));

        Assert.Contains("aws-kms", first.LogFragment, StringComparison.Ordinal);
        Assert.True(first.ShouldUseSameServiceProvider(second));
        Assert.Equal(first.GetServiceProviderHashCode(), second.GetServiceProviderHashCode());
        Assert.False(first.ShouldUseSameServiceProvider(other));
    }

    [Fact]
    public async Task UseAwsKms_with_a_client_shares_a_service_provider_only_with_the_same_client_and_keys()
    {
        await using var server = LocalKmsServer.Start();
        using var client = server.CreateClient();
        using var otherClient = server.CreateClient();

        var first = Configure(e => e.UseAwsKms(client, "alias/patients", "alias/patients-2024"));
        var second = Configure(e => e.UseAwsKms(client, "alias/patients", "alias/patients-2024"));

        Assert.True(first.ShouldUseSameServiceProvider(second));
        Assert.False(first.ShouldUseSameServiceProvider(Configure(e => e.UseAwsKms(otherClient, "alias/patients", "alias/patients-2024"))));
        Assert.False(first.ShouldUseSameServiceProvider(Configure(e => e.UseAwsKms(client, "alias/patients"))));
    }

    [Fact]
    public void UseAwsKms_with_options_compares_client_settings_and_the_credentials_instance()
    {
        var credentials = new BasicAWSCredentials("AKIDEXTENSIONS", "extensions-secret");
        Action<EnvelopeEncryptionOptionsBuilder> Settings(string region, AWSCredentials creds) =>
            e => e.UseAwsKms(o =>
            {
                o.KeyId = "alias/patients";
                o.Region = region;
                o.Credentials = creds;
                o.AttemptTimeout = TimeSpan.FromSeconds(2);
                o.OperationTimeout = TimeSpan.FromSeconds(5);
            });

        var first = Configure(Settings("eu-west-1", credentials));

        Assert.True(first.ShouldUseSameServiceProvider(Configure(Settings("eu-west-1", credentials))));
        Assert.False(first.ShouldUseSameServiceProvider(Configure(Settings("eu-central-1", credentials))));
        Assert.False(first.ShouldUseSameServiceProvider(Configure(Settings("eu-west-1", new BasicAWSCredentials("AKIDOTHER", "other")))));
    }

    [Fact]
    public void UseAwsKms_refuses_a_missing_key_id_where_it_is_configured()
    {
        Assert.Throws<ArgumentException>(() => Configure(e => e.UseAwsKms(" ")));
        Assert.Throws<ArgumentException>(() => Configure(e => e.UseAwsKms(o => o.Region = "eu-west-1")));
    }
}
