using EfEnvelope.AwsKms.Tests.LocalKms;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;

namespace EfEnvelope.AwsKms.Tests.EntityFramework;

/// <summary>Master keys in a local KMS endpoint, reached through the real SDK client.</summary>
public sealed class LocalKmsKeys : IFixtureKeySource
{
    private LocalKmsFixture? _kms;

    public string? SkipReason => null;

    public async Task InitializeAsync() => _kms = await LocalKmsFixture.StartAsync();

    // Configured by key ARN, the name rows record, so the shared suite's "the error names the primary key" holds;
    // writing under an alias is covered by the provider's and the alias rotation tests.
    public IMasterKeyProvider CreateProvider()
    {
        var kms = _kms ?? throw new InvalidOperationException("The local KMS starts before the database fixture asks for the provider.");
        return kms.CreateProvider(o => o.KeyId = kms.PrimaryKeyArn);
    }

    public async ValueTask DisposeAsync()
    {
        if (_kms is not null)
        {
            await _kms.DisposeAsync();
        }
    }
}

/// <summary>SQLite with master keys in the local KMS.</summary>
public sealed class AwsKmsSqliteFixture : SqliteFixture
{
    protected override IFixtureKeySource KeySource { get; } = new LocalKmsKeys();
}

/// <summary>PostgreSQL (from <c>EFENVELOPE_POSTGRES</c>) with master keys in the local KMS.</summary>
public sealed class AwsKmsPostgresFixture : PostgresFixture
{
    protected override IFixtureKeySource KeySource { get; } = new LocalKmsKeys();
}

public sealed class AwsKmsEncryptionBehaviourSqliteTests(AwsKmsSqliteFixture fixture) : EncryptionBehaviourTests<AwsKmsSqliteFixture>(fixture);

public sealed class AwsKmsEncryptionBehaviourPostgresTests(AwsKmsPostgresFixture fixture) : EncryptionBehaviourTests<AwsKmsPostgresFixture>(fixture);
