using Amazon.KeyManagementService;
using Amazon.KeyManagementService.Model;
using EfEnvelope.AwsKms.Tests.LocalKms;
using EfEnvelope.Lifecycle;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace EfEnvelope.AwsKms.Tests.EntityFramework;

/// <summary>
/// A master-key selector that names KMS aliases, while rows record the key ARNs KMS generated under: the read check
/// compares them as keys (<c>IsSameKeyAsync</c> through <c>DescribeKey</c>), so legitimate rows read and a row
/// relabelled as another tenant's is refused.
/// </summary>
public sealed class AwsKmsSelectorTests : IAsyncLifetime
{
    private const string TenantAlias = "alias/tenant-b";

    private LocalKmsFixture _kms = null!;
    private SqliteConnection _connection = null!;
    private string _tenantKey = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private LocalKmsServer Server => _kms.Server;

    public async ValueTask InitializeAsync()
    {
        _kms = await LocalKmsFixture.StartAsync();
        _connection = new SqliteConnection("Data Source=:memory:");
        await _connection.OpenAsync(Ct);
        _tenantKey = await LocalKmsFixture.CreateKeyAsync(_kms.Client, "tenant b");
        await _kms.Client.CreateAliasAsync(new CreateAliasRequest { AliasName = TenantAlias, TargetKeyId = _tenantKey }, Ct);

        // Tenant A's patients under the primary alias, tenant B's under its own, by a process that then goes away.
        using var writer = Server.CreateClient();
        await using var db = new ClinicContext(Options(writer));
        await db.Database.EnsureCreatedAsync(Ct);
        db.Patients.AddRange(NewPatient("A", 0), NewPatient("A", 1), NewPatient("B", 2), NewPatient("B", 3));
        await db.SaveChangesAsync(Ct);
        Assert.Contains(Server.Requests("GenerateDataKey"), r => r.KeyId == TenantAlias);
    }

    public async ValueTask DisposeAsync()
    {
        await _connection.DisposeAsync();
        await _kms.DisposeAsync();
    }

    // Tenant B's patients (their name starts with B) have a key of their own; visits and everyone else the primary.
    private static string? TenantKey(object entity) => entity is Patient { Name: ['B', ..] } ? TenantAlias : null;

    [Fact]
    public async Task Every_tenants_rows_read_although_they_name_key_ARNs_and_the_selector_names_aliases()
    {
        using var client = Server.CreateClient();
        Server.ResetCounters();
        await using (var db = new ClinicContext(Options(client)))
        {
            var tracked = await db.Patients.Include(p => p.Visits).OrderBy(p => p.Name).ToListAsync(Ct);
            Assert.Equal(["A000", "A001", "B002", "B003"], tracked.Select(p => p.Name));
            Assert.All(tracked, p => Assert.Equal(NewPatient(p.Name[..1], int.Parse(p.Name[1..], System.Globalization.CultureInfo.InvariantCulture)).Ssn, p.Ssn));
            db.ChangeTracker.Clear();
            Assert.Equal(4, (await db.Patients.AsNoTracking().ToListAsync(Ct)).Count);
        }

        // Both aliases were resolved: the decrypts name key ARNs, never the aliases the selector returns.
        Assert.Contains(Server.Requests("Decrypt"), r => r.KeyId == _tenantKey);
        Assert.DoesNotContain(Server.Requests("Decrypt"), r => r.KeyId == TenantAlias);
        Assert.Contains(Server.Requests("DescribeKey"), r => r.KeyId == TenantAlias);
        Assert.Contains(Server.Requests("DescribeKey"), r => r.KeyId == LocalKmsFixture.PrimaryAlias);
    }

    [Fact]
    public async Task A_tenant_A_row_relabelled_as_tenant_B_is_refused_naming_the_stored_key_ARN_and_the_selected_alias()
    {
        var victim = NewPatient("A", 0);
        await using (var db = new ClinicContext(Options(_kms.Client)))
        {
            Assert.Equal(1, await db.Database.ExecuteSqlRawAsync("UPDATE \"Patients\" SET \"Name\" = 'B000' WHERE \"Id\" = {0}", [victim.Id], Ct));
        }

        using var client = Server.CreateClient();
        await using var reader = new ClinicContext(Options(client));
        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => reader.Patients.AsNoTracking().SingleAsync(p => p.Name == "B000", Ct));
        Assert.Equal(_kms.PrimaryKeyArn, error.KeyId);
        Assert.Contains($"is under master key '{_kms.PrimaryKeyArn}', but the master-key selector chooses '{TenantAlias}' for that row", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(victim.Ssn, error.ToString(), StringComparison.Ordinal);
        Assert.Equal(NewPatient("B", 2).Ssn, (await reader.Patients.SingleAsync(p => p.Name == "B002", Ct)).Ssn);
    }

    [Fact]
    public async Task After_the_tenants_alias_moves_its_old_rows_are_refused_until_the_previous_key_is_accepted_and_rotation_moves_them()
    {
        var replacement = await LocalKmsFixture.CreateKeyAsync(_kms.Client, "tenant b, replacement");
        await _kms.Client.UpdateAliasAsync(new UpdateAliasRequest { AliasName = TenantAlias, TargetKeyId = replacement }, Ct);

        // The selector still names the alias, which now denotes the replacement: B's rows name the old key ARN.
        using (var client = Server.CreateClient())
        await using (var db = new ClinicContext(Options(client, _tenantKey)))
        {
            var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.Patients.AsNoTracking().Where(p => p.Name == "B002").ToListAsync(Ct));
            Assert.Contains($"is under master key '{_tenantKey}', but the master-key selector chooses '{TenantAlias}'", error.Message, StringComparison.Ordinal);
            Assert.Equal(2, (await db.Patients.AsNoTracking().Where(p => p.Name.StartsWith("A")).ToListAsync(Ct)).Count);
        }

        // During the move the old key ARN is accepted for B's rows (a cached delegate: part of the configuration).
        var oldTenantKey = _tenantKey;
        MasterKeySelector previous = entity => entity is Patient { Name: ['B', ..] } ? oldTenantKey : null;
        using (var client = Server.CreateClient())
        await using (var db = new ClinicContext(Options(client, _tenantKey, previous)))
        {
            Assert.Equal(4, (await db.Patients.ToListAsync(Ct)).Count);
            db.ChangeTracker.Clear();
            var result = await EnvelopeKeyLifecycle.RotateAsync(db, cancellationToken: Ct);
            Assert.True(result.Succeeded, string.Join("; ", result.Failures));
        }

        // Moved: neither the old key nor the previous selector is configured, and every row reads.
        Server.ResetCounters();
        using (var client = Server.CreateClient())
        await using (var db = new ClinicContext(Options(client)))
        {
            var all = await db.Patients.AsNoTracking().Include(p => p.Visits).OrderBy(p => p.Name).ToListAsync(Ct);
            Assert.Equal(["A000", "A001", "B002", "B003"], all.Select(p => p.Name));
            Assert.Equal(NewPatient("B", 3).Ssn, all[^1].Ssn);
        }

        Assert.Contains(Server.Requests("Decrypt"), r => r.KeyId == replacement);
        Assert.DoesNotContain(Server.Requests("Decrypt"), r => r.KeyId == _tenantKey);
    }

    private DbContextOptions Options(IAmazonKeyManagementService client, string? readAlso = null, MasterKeySelector? previous = null) =>
        new DbContextOptionsBuilder()
            .UseSqlite(_connection)
            .ConfigureWarnings(w => w.Ignore(CoreEventId.ManyServiceProvidersCreatedWarning))
            .UseEnvelopeEncryption(e => e.UseAwsKms(o =>
            {
                o.Client = client;
                o.KeyId = LocalKmsFixture.PrimaryAlias;
                o.AdditionalKeyIds.Add(TenantAlias);
                if (readAlso is not null)
                {
                    o.AdditionalKeyIds.Add(readAlso);
                }
            }).UseMasterKeySelector(TenantKey, o =>
            {
                if (previous is not null)
                {
                    o.AcceptPreviousSelector(previous);
                }
            }).UseApplicationName("clinic"))
            .Options;

    private static Patient NewPatient(string tenant, int i) => new()
    {
        Id = new Guid(i + 1, 0, 0, new byte[8]),
        Name = $"{tenant}{i:D3}",
        Ssn = $"800-{i:D5}",
        DateOfBirth = new DateOnly(1980, 1, 1).AddDays(i),
        HomeAddress = new Address { City = "Shelbyville", Street = $"{i} Tenant Road" },
        Visits = [new Visit { At = new DateTime(2024, 2, 1, 0, 0, 0, DateTimeKind.Utc).AddDays(i), Notes = $"visit of {i}" }],
    };
}
