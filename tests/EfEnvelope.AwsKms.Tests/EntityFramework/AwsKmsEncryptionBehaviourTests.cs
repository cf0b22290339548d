using EfEnvelope.AwsKms.Tests.LocalKms;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace EfEnvelope.AwsKms.Tests.EntityFramework;

/// <summary>The AWS KMS provider, through the real SDK client and a local KMS endpoint, for the behaviour suite.</summary>
internal static class AwsKmsSuite
{
    public static IMasterKeyProvider CreateProvider(LocalKmsFixture? kms) =>
        (kms ?? throw new InvalidOperationException("The local KMS starts before the database fixture asks for the provider.")).CreateProvider();

    // The suite builds a new configuration (an EF service provider) for each fault-injecting or impostor provider,
    // and this project's end-to-end tests add their own; EF refuses past twenty per process. That limit is about the
    // test run, not about the library, whose contexts share one configuration.
    public static void IgnoreServiceProviderCount(DbContextOptionsBuilder builder) =>
        builder.ConfigureWarnings(w => w.Ignore(CoreEventId.ManyServiceProvidersCreatedWarning));
}

/// <summary>SQLite with master keys in the local KMS.</summary>
public sealed class AwsKmsSqliteFixture : SqliteFixture
{
    private LocalKmsFixture? _kms;

    protected override IMasterKeyProvider CreateProvider() => AwsKmsSuite.CreateProvider(_kms);

    public override void UseDatabase(DbContextOptionsBuilder builder)
    {
        base.UseDatabase(builder);
        AwsKmsSuite.IgnoreServiceProviderCount(builder);
    }

    public override async ValueTask InitializeAsync()
    {
        _kms = await LocalKmsFixture.StartAsync();
        await base.InitializeAsync();
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        if (_kms is not null)
        {
            await _kms.DisposeAsync();
        }
    }
}

/// <summary>PostgreSQL (from <c>EFENVELOPE_POSTGRES</c>) with master keys in the local KMS.</summary>
public sealed class AwsKmsPostgresFixture : PostgresFixture
{
    private LocalKmsFixture? _kms;

    protected override IMasterKeyProvider CreateProvider() => AwsKmsSuite.CreateProvider(_kms);

    public override void UseDatabase(DbContextOptionsBuilder builder)
    {
        base.UseDatabase(builder);
        AwsKmsSuite.IgnoreServiceProviderCount(builder);
    }

    public override async ValueTask InitializeAsync()
    {
        _kms = await LocalKmsFixture.StartAsync();
        await base.InitializeAsync();
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        if (_kms is not null)
        {
            await _kms.DisposeAsync();
        }
    }
}

public sealed class AwsKmsEncryptionBehaviourSqliteTests(AwsKmsSqliteFixture fixture) : EncryptionBehaviourTests<AwsKmsSqliteFixture>(fixture);

public sealed class AwsKmsEncryptionBehaviourPostgresTests(AwsKmsPostgresFixture fixture) : EncryptionBehaviourTests<AwsKmsPostgresFixture>(fixture);
