using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;

namespace EfEnvelope.Pkcs11.Tests;

/// <summary>The shared EF behaviour suite on SQLite, with the master keys in the SoftHSM token.</summary>
public sealed class EncryptionBehaviourSqlitePkcs11Tests(Pkcs11SqliteFixture fixture) : EncryptionBehaviourTests<Pkcs11SqliteFixture>(fixture);

/// <summary>The shared EF behaviour suite on PostgreSQL, with the master keys in the SoftHSM token.</summary>
public sealed class EncryptionBehaviourPostgresPkcs11Tests(Pkcs11PostgresFixture fixture) : EncryptionBehaviourTests<Pkcs11PostgresFixture>(fixture);

public sealed class Pkcs11SqliteFixture : SqliteFixture
{
    protected override IFixtureKeySource KeySource { get; } = new Pkcs11FixtureKeys();
}

public sealed class Pkcs11PostgresFixture : PostgresFixture
{
    protected override IFixtureKeySource KeySource { get; } = new Pkcs11FixtureKeys();
}

/// <summary>A primary and a second key of the fixture's own on the token, and the provider that uses them.</summary>
internal sealed class Pkcs11FixtureKeys : IFixtureKeySource
{
    private string? _primary;
    private string? _second;
    private Pkcs11MasterKeyProvider? _provider;

    /// <summary>Why the suite cannot run with the token here; under CI a missing token is a failure, not a skip.</summary>
    public string? SkipReason =>
        SoftHsm.IsConfigured ? null
        : Environment.GetEnvironmentVariable("CI") == "true"
            ? throw new InvalidOperationException("The SoftHSM2 token is required under CI: run the tests through tests/run-all.sh.")
            : "No SoftHSM2 token (EFENVELOPE_PKCS11_* not set): run tests/run-all.sh";

    public async Task InitializeAsync()
    {
        _primary = await SoftHsm.CreateKeyAsync("ef-primary");
        _second = await SoftHsm.CreateKeyAsync("ef-second");
    }

    public IMasterKeyProvider CreateProvider() =>
        _provider ??= new Pkcs11MasterKeyProvider(SoftHsm.Options(
            _primary ?? throw new InvalidOperationException("The fixture's keys were not created."),
            _second!));

    public ValueTask DisposeAsync()
    {
        _provider?.Dispose();
        return ValueTask.CompletedTask;
    }
}
