using EfEnvelope.Infrastructure;
using EfEnvelope.Query;
using EfEnvelope.Specification.Tests;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace EfEnvelope.Tests.Registration;

/// <summary>Dependency-injection registrations share one runtime (cache, interceptors) per configuration.</summary>
public sealed class RegistrationTests : IDisposable
{
    private readonly SqliteConnection _connection = new("Data Source=:memory:");
    private readonly InsecureInMemoryMasterKeyProvider _provider = new();

    public RegistrationTests() => _connection.Open();

    public void Dispose() => _connection.Dispose();

    private void Configure(DbContextOptionsBuilder options) =>
        options.UseSqlite(_connection).ManyConfigurationsPerProcess().UseEnvelopeEncryption(e => e.UseProvider(_provider));

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static async Task UseAsync(IServiceProvider services, Func<ClinicContext, Task> work)
    {
        await using var scope = services.CreateAsyncScope();
        await work(scope.ServiceProvider.GetRequiredService<ClinicContext>());
    }

    [Fact]
    public async Task AddDbContext_contexts_share_one_key_cache()
    {
        using var services = new ServiceCollection().AddDbContext<ClinicContext>(Configure).BuildServiceProvider();
        EnvelopeRuntime? first = null;
        await UseAsync(services, async db =>
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Invoices.Add(new Invoice { CardNumber = "4111", Amount = 1 });
            await db.SaveChangesAsync(Ct);
            first = db.GetService<EnvelopeRuntime>();
        });

        await UseAsync(services, async db =>
        {
            var misses = db.GetEnvelopeKeyCacheStatistics().Misses;
            Assert.Equal("4111", (await db.Invoices.SingleAsync(Ct)).CardNumber);
            Assert.Same(first, db.GetService<EnvelopeRuntime>());
            Assert.Equal(misses, db.GetEnvelopeKeyCacheStatistics().Misses);
        });
        Assert.Equal(1, _provider.GenerateDataKeyCalls);
        Assert.Equal(0, _provider.DecryptDataKeyCalls);
    }

    private static string? AnyKey(object entity) => null;

    [Fact]
    public void The_selector_read_check_is_installed_only_with_a_selector_and_a_previous_selector_is_its_own_configuration()
    {
        ClinicContext Create(Action<EnvelopeEncryptionOptionsBuilder> extra) => new(new DbContextOptionsBuilder<ClinicContext>()
            .UseSqlite(_connection).ManyConfigurationsPerProcess().UseEnvelopeEncryption(e => extra(e.UseProvider(_provider))).Options);
        static bool Checks(DbContext db) =>
            db.GetService<IEnumerable<Microsoft.EntityFrameworkCore.Diagnostics.ISingletonInterceptor>>().OfType<SelectorKeyCheck>().Any();

        // Any materialization interceptor costs every query per-row accessors: none without a selector.
        using var plain = Create(_ => { });
        using var selecting = Create(e => e.UseMasterKeySelector(AnyKey));
        using var moving = Create(e => e.UseMasterKeySelector(AnyKey, o => o.AcceptPreviousSelector(AnyKey)));
        Assert.False(Checks(plain));
        Assert.True(Checks(selecting));
        Assert.True(Checks(moving));
        Assert.NotSame(selecting.GetService<EnvelopeRuntime>(), moving.GetService<EnvelopeRuntime>());
    }

    [Fact]
    public async Task Pooled_contexts_share_the_cache_and_leak_no_tracking_state_between_uses()
    {
        using var services = new ServiceCollection().AddDbContextPool<ClinicContext>(Configure).BuildServiceProvider();
        var patient = new Patient { Id = Guid.NewGuid(), Ssn = "111-22-3333", DateOfBirth = new DateOnly(2000, 1, 1) };
        ClinicContext? firstLease = null;
        await UseAsync(services, async db =>
        {
            firstLease = db;
            await db.Database.EnsureCreatedAsync(Ct);
            db.Patients.Add(patient);
            await db.SaveChangesAsync(Ct);
            var loaded = await db.Patients.SingleAsync(Ct);
            loaded.Ssn = "edited but never saved";
        });

        await UseAsync(services, async db =>
        {
            Assert.Same(firstLease, db);
            Assert.Empty(db.ChangeTracker.Entries());
            Assert.Equal(0, await db.SaveChangesAsync(Ct));
            var loaded = await db.Patients.SingleAsync(Ct);
            Assert.Equal("111-22-3333", loaded.Ssn);
            Assert.Equal(EntityState.Unchanged, db.Entry(loaded).State);
        });
        Assert.Equal(0, _provider.DecryptDataKeyCalls);
    }

    [Fact]
    public async Task Factory_contexts_share_the_cache()
    {
        using var services = new ServiceCollection().AddDbContextFactory<ClinicContext>(Configure).BuildServiceProvider();
        var factory = services.GetRequiredService<IDbContextFactory<ClinicContext>>();
        await using (var db = await factory.CreateDbContextAsync(Ct))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Invoices.Add(new Invoice { CardNumber = "5500", Amount = 1 });
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = await factory.CreateDbContextAsync(Ct))
        {
            Assert.Equal("5500", (await db.Invoices.SingleAsync(Ct)).CardNumber);
        }

        Assert.Equal(1, _provider.GenerateDataKeyCalls);
        Assert.Equal(0, _provider.DecryptDataKeyCalls);
    }

    [Fact]
    public void Different_providers_or_settings_get_different_caches_and_equal_ones_the_same()
    {
        ClinicContext Context(Action<EnvelopeEncryptionOptionsBuilder> configure) =>
            new(new DbContextOptionsBuilder<ClinicContext>().UseSqlite(_connection).ManyConfigurationsPerProcess().UseEnvelopeEncryption(configure).Options);

        using var a = Context(e => e.UseProvider(_provider));
        using var b = Context(e => e.UseProvider(_provider));
        using var direct = Context(e => e.UseProvider(_provider).UseKeyWrappingMode(KeyWrappingMode.Direct));
        using var other = Context(e => e.UseProvider(new InsecureInMemoryMasterKeyProvider()));

        Assert.Same(a.GetService<EnvelopeRuntime>(), b.GetService<EnvelopeRuntime>());
        Assert.NotSame(a.GetService<EnvelopeRuntime>(), direct.GetService<EnvelopeRuntime>());
        Assert.NotSame(a.GetService<EnvelopeRuntime>(), other.GetService<EnvelopeRuntime>());
    }
}
