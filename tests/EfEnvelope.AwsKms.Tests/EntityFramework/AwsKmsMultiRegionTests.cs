using Amazon.KeyManagementService;
using Amazon.KeyManagementService.Model;
using EfEnvelope.AwsKms.Tests.LocalKms;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace EfEnvelope.AwsKms.Tests.EntityFramework;

/// <summary>A multi-Region key: rows written through the primary in us-east-1 read through its replica in eu-west-1.</summary>
public sealed class AwsKmsMultiRegionTests : IAsyncLifetime
{
    private const string ReplicaRegion = "eu-west-1";

    private LocalKmsFixture _kms = null!;
    private SqliteConnection _connection = null!;
    private AmazonKeyManagementServiceClient _west = null!;
    private string _primaryArn = null!;
    private string _replicaArn = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private LocalKmsServer Server => _kms.Server;

    public async ValueTask InitializeAsync()
    {
        _kms = await LocalKmsFixture.StartAsync();
        _connection = new SqliteConnection("Data Source=:memory:");
        await _connection.OpenAsync(Ct);
        _west = Server.CreateClient(region: ReplicaRegion);
        _primaryArn = (await _kms.Client.CreateKeyAsync(new CreateKeyRequest { MultiRegion = true, Description = "patients" }, Ct)).KeyMetadata.Arn;
        _replicaArn = (await _kms.Client.ReplicateKeyAsync(new ReplicateKeyRequest { KeyId = _primaryArn, ReplicaRegion = ReplicaRegion }, Ct)).ReplicaKeyMetadata.Arn;
    }

    public async ValueTask DisposeAsync()
    {
        _west.Dispose();
        await _connection.DisposeAsync();
        await _kms.DisposeAsync();
    }

    [Fact]
    public async Task Rows_written_in_the_primary_Region_decrypt_through_the_replica_configured_for_the_other_Region()
    {
        await using (var east = new ClinicContext(Options(_kms.Client, _primaryArn)))
        {
            await east.Database.EnsureCreatedAsync(Ct);
            east.Patients.Add(new Patient { Id = Guid.NewGuid(), Name = "Ada", Ssn = "123-45-6789", DateOfBirth = new DateOnly(1980, 1, 1) });
            await east.SaveChangesAsync(Ct);
        }

        Server.ResetCounters();
        await using var west = new ClinicContext(Options(_west, _replicaArn));
        var patient = await west.Patients.AsNoTracking().SingleAsync(Ct);

        Assert.Equal("123-45-6789", patient.Ssn);
        var decrypt = Assert.Single(Server.Requests("Decrypt"));
        Assert.Equal(ReplicaRegion, decrypt.Region);
        Assert.Equal(_replicaArn, decrypt.KeyId);
    }

    [Fact]
    public async Task A_replica_reached_through_an_alias_of_its_Region_is_trusted_for_the_primary_Regions_rows()
    {
        var context = KeyContext.For("clinic", "Clinic.Patient");
        using var writer = _kms.CreateProvider(o => o.KeyId = _primaryArn);
        using var key = await writer.GenerateDataKeyAsync(_primaryArn, context, Ct);
        await _west.CreateAliasAsync(new CreateAliasRequest { AliasName = "alias/patients", TargetKeyId = _replicaArn }, Ct);
        using var reader = _kms.CreateProvider(_west, o =>
        {
            o.KeyId = "alias/patients";
            o.AdditionalKeyIds.Clear();
        });

        Assert.Equal(_primaryArn, key.KeyId);
        Assert.Equal(key.Plaintext, await reader.DecryptDataKeyAsync(key.KeyId, key.WrappedKey, context, Ct));
        Assert.Equal(_replicaArn, Server.Requests("Decrypt").Last().KeyId);
    }

    [Fact]
    public async Task A_single_Region_key_of_the_same_account_is_not_mistaken_for_a_replica()
    {
        var context = KeyContext.For("clinic", "Clinic.Patient");
        var single = await LocalKmsFixture.CreateKeyAsync(_kms.Client, "single-Region");
        using var writer = _kms.CreateProvider(o => o.KeyId = single);
        using var key = await writer.GenerateDataKeyAsync(single, context, Ct);
        var elsewhere = single.Replace("us-east-1", ReplicaRegion, StringComparison.Ordinal);
        using var reader = _kms.CreateProvider(_west, o =>
        {
            o.KeyId = elsewhere;
            o.AdditionalKeyIds.Clear();
        });

        Assert.False(reader.IsKeyConfigured(single));
        await Assert.ThrowsAsync<MasterKeyConfigurationException>(() => reader.DecryptDataKeyAsync(single, key.WrappedKey, context, Ct));
    }

    private DbContextOptions Options(IAmazonKeyManagementService client, string keyId) =>
        new DbContextOptionsBuilder()
            .UseSqlite(_connection)
            .ConfigureWarnings(w => w.Ignore(CoreEventId.ManyServiceProvidersCreatedWarning))
            .UseEnvelopeEncryption(e => e.UseAwsKms(client, keyId).UseApplicationName("clinic"))
            .Options;
}
