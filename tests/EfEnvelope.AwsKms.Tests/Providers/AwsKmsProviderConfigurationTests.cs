using Amazon.Runtime;
using EfEnvelope.AwsKms.Tests.LocalKms;
using Xunit;

namespace EfEnvelope.AwsKms.Tests.Providers;

/// <summary>Options validation and provider identity (equal configurations share one key cache).</summary>
public sealed class AwsKmsProviderConfigurationTests
{
    private static readonly BasicAWSCredentials Credentials = new("AKIDCONFIGTEST", "config-test-secret");

    private static AwsKmsMasterKeyProvider Built(string keyId = "alias/patients", string? additional = null, string region = "eu-west-1")
    {
        var options = new AwsKmsOptions { KeyId = keyId, Region = region, Credentials = Credentials };
        if (additional is not null)
        {
            options.AdditionalKeyIds.Add(additional);
        }

        return new AwsKmsMasterKeyProvider(options);
    }

    [Fact]
    public void Providers_built_from_equal_settings_are_equal()
    {
        using var first = Built(additional: "alias/patients-2024");
        using var second = Built(additional: "alias/patients-2024");

        Assert.Equal(first, second);
        Assert.Equal(first.GetHashCode(), second.GetHashCode());
    }

    [Fact]
    public void Providers_differing_in_keys_or_region_are_not_equal()
    {
        using var reference = Built(additional: "alias/old");

        Assert.NotEqual(reference, Built(keyId: "alias/other", additional: "alias/old"));
        Assert.NotEqual(reference, Built());
        Assert.NotEqual(reference, Built(additional: "alias/old", region: "us-east-1"));
        Assert.NotEqual(reference, Built(keyId: "alias/old", additional: "alias/patients"));
    }

    [Fact]
    public async Task Providers_on_the_same_client_instance_are_equal_and_on_another_instance_are_not()
    {
        await using var server = LocalKmsServer.Start();
        using var client = server.CreateClient();
        using var otherClient = server.CreateClient();

        var first = new AwsKmsMasterKeyProvider(new AwsKmsOptions { Client = client, KeyId = "alias/a" });
        var second = new AwsKmsMasterKeyProvider(new AwsKmsOptions { Client = client, KeyId = "alias/a" });
        var elsewhere = new AwsKmsMasterKeyProvider(new AwsKmsOptions { Client = otherClient, KeyId = "alias/a" });

        Assert.Equal(first, second);
        Assert.Equal(first.GetHashCode(), second.GetHashCode());
        Assert.NotEqual(first, elsewhere);
    }

    [Fact]
    public void Options_are_copied_when_the_provider_is_created()
    {
        var options = new AwsKmsOptions { KeyId = "alias/a", Region = "eu-west-1" };
        using var provider = new AwsKmsMasterKeyProvider(options);

        options.KeyId = "alias/b";
        options.AdditionalKeyIds.Add("alias/c");

        Assert.Equal("alias/a", provider.PrimaryKeyId);
        Assert.False(provider.IsKeyConfigured("alias/c"));
        Assert.Equal(["alias/a"], provider.KeyIds);
    }

    [Fact]
    public void Primary_and_additional_keys_are_configured_and_others_are_not()
    {
        using var provider = Built(additional: "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab");

        Assert.Equal("aws-kms", provider.Name);
        Assert.Equal("alias/patients", provider.PrimaryKeyId);
        Assert.True(provider.IsKeyConfigured("alias/patients"));
        Assert.True(provider.IsKeyConfigured("arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"));
        Assert.False(provider.IsKeyConfigured("alias/Patients"));
        Assert.False(provider.IsKeyConfigured("alias/other"));
    }

    [Fact]
    public void Bad_options_fail_where_they_are_set()
    {
        var options = new AwsKmsOptions();

        Assert.Throws<ArgumentException>(() => options.KeyId = " ");
        Assert.Throws<ArgumentOutOfRangeException>(() => options.MaxErrorRetry = -1);
        Assert.Throws<ArgumentOutOfRangeException>(() => options.OperationTimeout = TimeSpan.Zero);
        Assert.Throws<ArgumentOutOfRangeException>(() => options.AttemptTimeout = TimeSpan.FromSeconds(-1));
        Assert.Throws<ArgumentException>(() => new AwsKmsMasterKeyProvider(options));
        options.KeyId = "alias/a";
        options.AttemptTimeout = TimeSpan.FromSeconds(20);
        options.OperationTimeout = TimeSpan.FromSeconds(10);
        Assert.Contains(nameof(AwsKmsOptions.AttemptTimeout), Assert.Throws<ArgumentException>(() => new AwsKmsMasterKeyProvider(options)).Message, StringComparison.Ordinal);
        options.OperationTimeout = TimeSpan.FromSeconds(30);
        options.AdditionalKeyIds.Add("");
        Assert.Throws<ArgumentException>(() => new AwsKmsMasterKeyProvider(options));
    }

    [Fact]
    public void ToString_names_the_primary_key_and_never_the_credentials()
    {
        using var provider = Built();

        var text = provider.ToString();

        Assert.Contains("alias/patients", text, StringComparison.Ordinal);
        Assert.DoesNotContain("AKIDCONFIGTEST", text, StringComparison.Ordinal);
        Assert.DoesNotContain("config-test-secret", text, StringComparison.Ordinal);
    }
}
