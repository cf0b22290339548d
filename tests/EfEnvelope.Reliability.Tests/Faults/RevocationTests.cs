using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Time.Testing;

namespace EfEnvelope.Reliability.Tests.Faults;

/// <summary>The master key is disabled while the application runs: cached keys keep working until their time to live, then reads fail with the revoked-access error.</summary>
public sealed class RevocationTests(SqliteFixture fixture) : IClassFixture<SqliteFixture>
{
    private static readonly TimeSpan TimeToLive = TimeSpan.FromMinutes(2);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_disabled_master_key_refuses_reads_once_cached_keys_expire_and_works_again_when_re_enabled()
    {
        var provider = new InsecureInMemoryMasterKeyProvider("revocable");
        var clock = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        ClinicContext Context() => fixture.CreateContext(e => e.UseProvider(provider).UseTimeProvider(clock).ConfigureKeyCache(c => c.TimeToLive = TimeToLive));

        var patients = Enumerable.Range(0, 20).Select(i => new Patient { Id = Guid.NewGuid(), Ssn = $"REVOKE-{i}", DateOfBirth = new DateOnly(2000, 1, 1) }).ToList();
        await using (var db = Context())
        {
            db.Patients.AddRange(patients);
            await db.SaveChangesAsync(Ct);
        }

        var ids = patients.Select(p => p.Id).ToList();
        async Task<List<Patient>> ReadAsync(bool synchronous)
        {
            await using var db = Context();
            var query = db.Patients.AsNoTracking().Where(p => ids.Contains(p.Id));
            return synchronous ? [.. query] : await query.ToListAsync(Ct);
        }

        provider.DisableKey("revocable");

        // Within the time to live the cached key still serves reads (the documented bound on revocation latency).
        clock.Advance(TimeToLive - TimeSpan.FromSeconds(1));
        Assert.Equal(20, (await ReadAsync(synchronous: false)).Count);
        Assert.Equal(20, (await ReadAsync(synchronous: true)).Count);

        // Past it, the provider is asked again and refuses: on both paths, and for writes.
        clock.Advance(TimeSpan.FromSeconds(2));
        var asyncError = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => ReadAsync(synchronous: false));
        var syncError = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => ReadAsync(synchronous: true));
        Assert.Equal("revocable", asyncError.KeyId);
        Assert.Equal("revocable", syncError.KeyId);
        Assert.DoesNotContain("REVOKE-", asyncError.ToString(), StringComparison.Ordinal);

        await using (var writer = Context())
        {
            writer.Patients.Add(new Patient { Id = Guid.NewGuid(), Ssn = "REVOKED-WRITE", DateOfBirth = new DateOnly(2000, 1, 1) });
            await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => writer.SaveChangesAsync(Ct));
        }

        // Refusals are not cached: re-enabled, the very next read works.
        provider.EnableKey("revocable");
        var again = await ReadAsync(synchronous: true);
        Assert.Equal(patients.Select(p => p.Ssn).Order(), again.Select(p => p.Ssn).Order());
    }

    [Fact]
    public async Task A_destroyed_tenant_key_makes_only_that_tenants_rows_unreadable_with_the_revoked_error()
    {
        var provider = new InsecureInMemoryMasterKeyProvider("shared").AddKey("tenant-a").AddKey("tenant-b");
        var clock = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        ClinicContext Context() => fixture.CreateContext(e => e.UseProvider(provider).UseTimeProvider(clock).UseMasterKeySelector(ByTenant));
        var a = new Patient { Id = Guid.NewGuid(), Name = "tenant-a", Ssn = "A-SSN", DateOfBirth = new DateOnly(2000, 1, 1) };
        var b = new Patient { Id = Guid.NewGuid(), Name = "tenant-b", Ssn = "B-SSN", DateOfBirth = new DateOnly(2000, 1, 1) };
        await using (var db = Context())
        {
            db.Patients.AddRange(a, b);
            await db.SaveChangesAsync(Ct);
        }

        // Crypto-shredding tenant a: once its cached key expires, its rows are gone for good; tenant b is unaffected.
        provider.DestroyKey("tenant-a");
        clock.Advance(TimeSpan.FromMinutes(6));
        await using var reader = Context();
        Assert.Equal("B-SSN", (await reader.Patients.AsNoTracking().SingleAsync(p => p.Id == b.Id, Ct)).Ssn);
        var error = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => reader.Patients.AsNoTracking().SingleAsync(p => p.Id == a.Id, Ct));
        Assert.Equal("tenant-a", error.KeyId);
        Assert.DoesNotContain("A-SSN", error.ToString(), StringComparison.Ordinal);
    }

    private static string? ByTenant(object entity) => entity is Patient p ? p.Name : null;

    [Fact]
    public async Task Revocation_latency_follows_the_configured_time_to_live()
    {
        var provider = new InsecureInMemoryMasterKeyProvider("revocable");
        var clock = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var ttl = TimeSpan.FromSeconds(10);
        await using var db = fixture.CreateContext(e => e.UseProvider(provider).UseTimeProvider(clock).ConfigureKeyCache(c => c.TimeToLive = ttl));
        var patient = new Patient { Id = Guid.NewGuid(), Ssn = "TTL", DateOfBirth = new DateOnly(2000, 1, 1) };
        db.Patients.Add(patient);
        await db.SaveChangesAsync(Ct);
        db.ChangeTracker.Clear();

        provider.DisableKey("revocable");
        clock.Advance(ttl - TimeSpan.FromMilliseconds(1));
        Assert.Equal("TTL", (await db.Patients.AsNoTracking().SingleAsync(p => p.Id == patient.Id, Ct)).Ssn);
        clock.Advance(TimeSpan.FromMilliseconds(1));
        await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => db.Patients.AsNoTracking().SingleAsync(p => p.Id == patient.Id, Ct));
    }
}
