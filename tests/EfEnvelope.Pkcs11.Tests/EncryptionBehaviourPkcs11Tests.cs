using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;

namespace EfEnvelope.Pkcs11.Tests;

/// <summary>The shared EF behaviour suite on SQLite, with the master keys in the SoftHSM token.</summary>
public sealed class EncryptionBehaviourSqlitePkcs11Tests(Pkcs11SqliteFixture fixture) : EncryptionBehaviourTests<Pkcs11SqliteFixture>(fixture);

/// <summary>The shared EF behaviour suite on PostgreSQL, with the master keys in the SoftHSM token.</summary>
public sealed class EncryptionBehaviourPostgresPkcs11Tests(Pkcs11PostgresFixture fixture) : EncryptionBehaviourTests<Pkcs11PostgresFixture>(fixture);

public sealed class Pkcs11SqliteFixture : SqliteFixture
{
    private readonly Pkcs11FixtureKeys _keys = new();

    public override string? SkipReason => Pkcs11FixtureKeys.SkipReason ?? base.SkipReason;

    protected override IMasterKeyProvider CreateProvider() => _keys.CreateProvider();

    public override async ValueTask InitializeAsync()
    {
        await _keys.CreateKeysAsync(SkipReason);
        await base.InitializeAsync();
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        _keys.Dispose();
    }
}

public sealed class Pkcs11PostgresFixture : PostgresFixture
{
    private readonly Pkcs11FixtureKeys _keys = new();

    public override string? SkipReason => Pkcs11FixtureKeys.SkipReason ?? base.SkipReason;

    protected override IMasterKeyProvider CreateProvider() => _keys.CreateProvider();

    public override async ValueTask InitializeAsync()
    {
        await _keys.CreateKeysAsync(SkipReason);
        await base.InitializeAsync();
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        _keys.Dispose();
    }
}

/// <summary>A primary and a second key of the fixture's own on the token, and the provider that uses them.</summary>
internal sealed class Pkcs11FixtureKeys : IDisposable
{
    private string? _primary;
    private string? _second;
    private Pkcs11MasterKeyProvider? _provider;

    /// <summary>Why the suite cannot run with the token here; under CI a missing token is a failure, not a skip.</summary>
    public static string? SkipReason =>
        SoftHsm.IsConfigured ? null
        : Environment.GetEnvironmentVariable("CI") == "true"
            ? throw new InvalidOperationException("The SoftHSM2 token is required under CI: run the tests through tests/run-all.sh.")
            : "No SoftHSM2 token (EFENVELOPE_PKCS11_* not set): run tests/run-all.sh";

    public async Task CreateKeysAsync(string? skipReason)
    {
        if (skipReason is null)
        {
            _primary = await SoftHsm.CreateKeyAsync("ef-primary");
            _second = await SoftHsm.CreateKeyAsync("ef-second");
        }
    }

    public IMasterKeyProvider CreateProvider() =>
        _provider ??= new Pkcs11MasterKeyProvider(SoftHsm.Options(
            _primary ?? throw new InvalidOperationException("The fixture's keys were not created."),
            _second!));

    public void Dispose() => _provider?.Dispose();
}
