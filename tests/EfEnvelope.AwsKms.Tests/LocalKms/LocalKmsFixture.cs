using Amazon.KeyManagementService;
using Amazon.KeyManagementService.Model;
using EfEnvelope.AwsKms;
using Xunit;

namespace EfEnvelope.AwsKms.Tests.LocalKms;

/// <summary>A running local KMS with an SDK client and two keys: one reached by an alias, one by its ARN.</summary>
public sealed class LocalKmsFixture : IAsyncLifetime
{
    public const string PrimaryAlias = "alias/efenvelope-tests";

    public LocalKmsServer Server { get; private set; } = null!;

    public AmazonKeyManagementServiceClient Client { get; private set; } = null!;

    /// <summary>The ARN of the key behind <see cref="PrimaryAlias"/>.</summary>
    public string PrimaryKeyArn { get; private set; } = null!;

    /// <summary>The ARN of a second key (a rotation's old key).</summary>
    public string SecondKeyArn { get; private set; } = null!;

    /// <summary>Starts a fixture of its own (for tests that inject faults and so must not share a server).</summary>
    public static async Task<LocalKmsFixture> StartAsync()
    {
        var fixture = new LocalKmsFixture();
        await fixture.InitializeAsync();
        return fixture;
    }

    public async ValueTask InitializeAsync()
    {
        Server = LocalKmsServer.Start();
        Client = Server.CreateClient();
        PrimaryKeyArn = await CreateKeyAsync(Client, "primary");
        await Client.CreateAliasAsync(new CreateAliasRequest { AliasName = PrimaryAlias, TargetKeyId = PrimaryKeyArn });
        SecondKeyArn = await CreateKeyAsync(Client, "second");
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await Server.DisposeAsync();
    }

    /// <summary>A provider on <see cref="Client"/> with the alias as primary key and the second key for reads.</summary>
    public AwsKmsMasterKeyProvider CreateProvider(Action<AwsKmsOptions>? configure = null) =>
        CreateProvider(Client, configure);

    /// <summary>Like <see cref="CreateProvider(Action{AwsKmsOptions})"/> on another client (other retry or timeout settings).</summary>
    public AwsKmsMasterKeyProvider CreateProvider(IAmazonKeyManagementService client, Action<AwsKmsOptions>? configure = null)
    {
        var options = new AwsKmsOptions { Client = client, KeyId = PrimaryAlias };
        options.AdditionalKeyIds.Add(SecondKeyArn);
        configure?.Invoke(options);
        return new AwsKmsMasterKeyProvider(options);
    }

    public static async Task<string> CreateKeyAsync(IAmazonKeyManagementService client, string description)
    {
        var created = await client.CreateKeyAsync(new CreateKeyRequest { Description = description });
        return created.KeyMetadata.Arn;
    }
}
