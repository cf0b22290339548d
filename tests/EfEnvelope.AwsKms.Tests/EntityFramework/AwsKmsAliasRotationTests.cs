using Amazon.KeyManagementService;
using Amazon.KeyManagementService.Model;
using EfEnvelope.AwsKms.Tests.LocalKms;
using EfEnvelope.Lifecycle;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace EfEnvelope.AwsKms.Tests.EntityFramework;

/// <summary>AWS's manual key rotation, <c>UpdateAlias</c> to a new key, with rows written under the alias before and after.</summary>
public sealed class AwsKmsAliasRotationTests : IAsyncLifetime
{
    private const string Alias = LocalKmsFixture.PrimaryAlias;

    private LocalKmsFixture _kms = null!;
    private SqliteConnection _connection = null!;
    private string _oldKey = null!;
    private string _newKey = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private LocalKmsServer Server => _kms.Server;

    public async ValueTask InitializeAsync()
    {
        _kms = await LocalKmsFixture.StartAsync();
        _connection = new SqliteConnection("Data Source=:memory:");
        await _connection.OpenAsync(Ct);
        _oldKey = _kms.PrimaryKeyArn;
        _newKey = await LocalKmsFixture.CreateKeyAsync(_kms.Client, "after rotation");

        // Three rows under the alias while it points at the old key, by a process that then goes away.
        using var writer = Server.CreateClient();
        await using var db = new ClinicContext(Options(writer, o => o.KeyId = Alias));
        await db.Database.EnsureCreatedAsync(Ct);
        db.Patients.AddRange(NewPatient(0), NewPatient(1), NewPatient(2));
        await db.SaveChangesAsync(Ct);
        await _kms.Client.UpdateAliasAsync(new UpdateAliasRequest { AliasName = Alias, TargetKeyId = _newKey }, Ct);
        Server.ResetCounters();
    }

    public async ValueTask DisposeAsync()
    {
        await _connection.DisposeAsync();
        await _kms.DisposeAsync();
    }

    [Fact]
    public async Task Old_and_new_rows_read_after_UpdateAlias_when_the_old_key_ARN_is_listed_and_new_rows_go_to_the_new_key()
    {
        using var client = Server.CreateClient();
        var options = AliasAndOldKey(client);
        await using (var db = new ClinicContext(options))
        {
            db.Patients.AddRange(NewPatient(3), NewPatient(4));
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = new ClinicContext(options))
        {
            var patients = await db.Patients.AsNoTracking().OrderBy(p => p.Name).ToListAsync(Ct);
            Assert.Equal(Enumerable.Range(0, 5).Select(i => NewPatient(i).Ssn), patients.Select(p => p.Ssn));
        }

        Assert.All(Server.Requests("GenerateDataKey"), r => Assert.Equal(Alias, r.KeyId));
        Assert.Contains(Server.Requests("Decrypt"), r => r.KeyId == _oldKey);

        // A reader trusting only the new key reads the rows written after the rotation and refuses the older ones,
        // naming the key they were written under: proof of which key each row records.
        using var strictClient = Server.CreateClient();
        await using var strict = new ClinicContext(Options(strictClient, o => o.KeyId = _newKey));
        Assert.Equal(NewPatient(4).Ssn, (await strict.Patients.AsNoTracking().SingleAsync(p => p.Id == NewPatient(4).Id, Ct)).Ssn);
        var refused = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => strict.Patients.AsNoTracking().SingleAsync(p => p.Id == NewPatient(0).Id, Ct));
        Assert.Equal(_oldKey, refused.KeyId);
    }

    [Fact]
    public async Task Old_rows_read_after_UpdateAlias_through_a_discovery_filter_for_the_account()
    {
        using var client = Server.CreateClient();
        await using var db = new ClinicContext(Options(client, o =>
        {
            o.KeyId = Alias;
            o.Discovery = new AwsKmsDiscoveryFilter("aws", LocalKmsServer.AccountId);
        }));

        Assert.Equal(3, (await db.Patients.AsNoTracking().ToListAsync(Ct)).Count);
        Assert.All(Server.Requests("Decrypt"), r => Assert.Equal(_oldKey, r.KeyId));
    }

    [Fact]
    public async Task Old_rows_are_refused_after_UpdateAlias_when_nothing_trusts_the_old_key_and_the_error_says_what_to_add()
    {
        using var client = Server.CreateClient();
        await using var db = new ClinicContext(Options(client, o => o.KeyId = Alias));

        var error = await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => db.Patients.AsNoTracking().ToListAsync(Ct));

        Assert.Equal(_oldKey, error.KeyId);
        Assert.Contains($"{Alias} -> {_newKey}", error.Message, StringComparison.Ordinal);
        Assert.Contains(nameof(AwsKmsOptions.AdditionalKeyIds), error.Message, StringComparison.Ordinal);
        Assert.Equal(0, Server.CallCount("Decrypt"));
    }

    [Fact]
    public async Task The_rotation_job_targeting_the_new_key_ARN_moves_old_rows_once_and_then_only_the_new_key_is_needed()
    {
        using var client = Server.CreateClient();
        var rotating = AliasAndOldKey(client);
        await using (var db = new ClinicContext(rotating))
        {
            var first = await EnvelopeKeyLifecycle.RotateAsync(db, new LifecycleOptions { TargetKeyId = _newKey }, cancellationToken: Ct);
            var second = await EnvelopeKeyLifecycle.RotateAsync(db, new LifecycleOptions { TargetKeyId = _newKey }, cancellationToken: Ct);

            Assert.True(first.Succeeded, string.Join("; ", first.Failures));
            Assert.NotEqual(0, first.RecordsChanged);
            Assert.Equal(0, second.RecordsChanged);
        }

        using var readerClient = Server.CreateClient();
        await using var reader = new ClinicContext(Options(readerClient, o => o.KeyId = _newKey));
        Assert.Equal(3, (await reader.Patients.AsNoTracking().Include(p => p.Visits).ToListAsync(Ct)).Count);
    }

    [Fact]
    public async Task The_rotation_job_targeting_the_alias_moves_old_rows_once_although_rows_record_the_key_ARN()
    {
        using var client = Server.CreateClient();
        var rotating = AliasAndOldKey(client);
        await using (var db = new ClinicContext(rotating))
        {
            var first = await EnvelopeKeyLifecycle.RotateAsync(db, new LifecycleOptions { TargetKeyId = Alias }, cancellationToken: Ct);
            Server.ResetCounters();
            var second = await EnvelopeKeyLifecycle.RotateAsync(db, new LifecycleOptions { TargetKeyId = Alias }, cancellationToken: Ct);

            Assert.True(first.Succeeded, string.Join("; ", first.Failures));
            Assert.NotEqual(0, first.RecordsChanged);
            Assert.True(second.Succeeded, string.Join("; ", second.Failures));
            Assert.Equal(0, second.RecordsChanged);

            // The second run learned the alias's key ARN from one key of its own, instead of a new key per record.
            Assert.Equal(1, Server.CallCount("GenerateDataKey"));
        }

        using var readerClient = Server.CreateClient();
        await using var reader = new ClinicContext(Options(readerClient, o => o.KeyId = _newKey));
        Assert.Equal(3, (await reader.Patients.AsNoTracking().Include(p => p.Visits).ToListAsync(Ct)).Count);
    }

    [Fact]
    public async Task Rows_that_name_the_alias_itself_still_read_and_the_rotation_job_rewrites_them_to_the_key_ARN()
    {
        // Rows as versions before key ARNs wrote them, under the alias as it points now (the new key).
        using var client = Server.CreateClient();
        var current = AliasAndOldKey(client);
        await using (var db = new ClinicContext(LegacyOptions(client)))
        {
            db.Patients.Add(NewPatient(5));
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = new ClinicContext(current))
        {
            Assert.Equal(NewPatient(5).Ssn, (await db.Patients.AsNoTracking().SingleAsync(p => p.Id == NewPatient(5).Id, Ct)).Ssn);
            var rotated = await EnvelopeKeyLifecycle.RotateAsync(db, new LifecycleOptions { TargetKeyId = _newKey }, cancellationToken: Ct);
            Assert.True(rotated.Succeeded, string.Join("; ", rotated.Failures));
        }

        Assert.Equal(1, Server.CallCount("DescribeKey"));

        // No alias configured now: the row reads only because it names the key ARN, as do the rows moved off the old key.
        using var strictClient = Server.CreateClient();
        await using var strict = new ClinicContext(Options(strictClient, o => o.KeyId = _newKey));
        var all = await strict.Patients.AsNoTracking().OrderBy(p => p.Name).ToListAsync(Ct);
        Assert.Equal([0, 1, 2, 5], all.Select(p => int.Parse(p.Name[1..], System.Globalization.CultureInfo.InvariantCulture)));
        Assert.Equal(NewPatient(5).Ssn, all[^1].Ssn);
    }

    private DbContextOptions LegacyOptions(IAmazonKeyManagementService client) =>
        new DbContextOptionsBuilder()
            .UseSqlite(_connection)
            .ConfigureWarnings(w => w.Ignore(CoreEventId.ManyServiceProvidersCreatedWarning))
            .UseEnvelopeEncryption(e => e.UseProvider(new AliasRecordingProvider(_kms.CreateProvider(client, o => o.KeyId = Alias))).UseApplicationName("clinic"))
            .Options;

    /// <summary>The alias as the write key, and the key it pointed at before <c>UpdateAlias</c> trusted for reads.</summary>
    private DbContextOptions AliasAndOldKey(IAmazonKeyManagementService client) => Options(client, o =>
    {
        o.KeyId = Alias;
        o.AdditionalKeyIds.Add(_oldKey);
    });

    private DbContextOptions Options(IAmazonKeyManagementService client, Action<AwsKmsOptions> configure) =>
        new DbContextOptionsBuilder()
            .UseSqlite(_connection)
            .ConfigureWarnings(w => w.Ignore(CoreEventId.ManyServiceProvidersCreatedWarning))
            .UseEnvelopeEncryption(e => e.UseAwsKms(o =>
            {
                o.Client = client;
                configure(o);
            }).UseApplicationName("clinic"))
            .Options;

    private static Patient NewPatient(int i) => new()
    {
        Id = new Guid(i + 1, 0, 0, new byte[8]),
        Name = $"P{i:D3}",
        Ssn = $"900-{i:D5}",
        DateOfBirth = new DateOnly(1970, 1, 1).AddDays(i),
        HomeAddress = new Address { City = "Springfield", Street = $"{i} Evergreen Terrace" },
        Visits = [new Visit { At = new DateTime(2024, 1, 1, 0, 0, 0, DateTimeKind.Utc).AddDays(i), Notes = $"visit of {i}" }],
    };
}

/// <summary>Writes as the provider did before key ARNs: the blob records the configured key string, not the ARN.</summary>
internal sealed class AliasRecordingProvider(AwsKmsMasterKeyProvider inner) : EfEnvelope.KeyManagement.IMasterKeyProvider
{
    public string Name => inner.Name;

    public string PrimaryKeyId => inner.PrimaryKeyId;

    public bool IsKeyConfigured(string keyId) => inner.IsKeyConfigured(keyId);

    public async Task<EfEnvelope.KeyManagement.GeneratedDataKey> GenerateDataKeyAsync(string keyId, EfEnvelope.KeyManagement.KeyContext context, CancellationToken cancellationToken)
    {
        using var generated = await inner.GenerateDataKeyAsync(keyId, context, cancellationToken);
        return new EfEnvelope.KeyManagement.GeneratedDataKey(keyId, generated.Plaintext.ToArray(), generated.WrappedKey);
    }

    public Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, EfEnvelope.KeyManagement.KeyContext context, CancellationToken cancellationToken) =>
        inner.DecryptDataKeyAsync(keyId, wrappedKey, context, cancellationToken);
}
