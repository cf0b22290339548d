using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Metadata;

/// <summary>
/// EF's proxies construct entities through a factory EfEnvelope cannot decrypt through: a context that uses them with
/// encrypted entity types is refused with the alternatives, where it failed on every query with Castle's error.
/// </summary>
public sealed class ProxyTests
{
    public class Owner
    {
        public int Id { get; set; }

        [Encrypted]
        public virtual string Secret { get; set; } = "";

        public virtual List<Pet> Pets { get; set; } = [];
    }

    public class Pet
    {
        public int Id { get; set; }

        public int OwnerId { get; set; }

        public virtual Owner? Owner { get; set; }
    }

    public sealed class ProxyContext(DbContextOptions<ProxyContext> options) : DbContext(options)
    {
        public DbSet<Owner> Owners => Set<Owner>();

        public DbSet<Pet> Pets => Set<Pet>();
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Lazy_loading_proxies_are_refused_naming_the_entity_and_the_alternative(bool proxiesFirst)
    {
        await using var connection = new SqliteConnection("Data Source=:memory:");
        await connection.OpenAsync(TestContext.Current.CancellationToken);
        var builder = new DbContextOptionsBuilder<ProxyContext>().UseSqlite(connection).ManyConfigurationsPerProcess();
        var provider = new InsecureInMemoryMasterKeyProvider("proxies");
        builder = proxiesFirst
            ? builder.UseLazyLoadingProxies().UseEnvelopeEncryption(e => e.UseProvider(provider))
            : builder.UseEnvelopeEncryption(e => e.UseProvider(provider)).UseLazyLoadingProxies();
        await using var db = new ProxyContext(builder.Options);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(async () =>
        {
            await db.Database.EnsureCreatedAsync(TestContext.Current.CancellationToken);
            await db.Owners.ToListAsync(TestContext.Current.CancellationToken);
        });

        Assert.Contains("'Owner' has encrypted properties", error.Message, StringComparison.Ordinal);
        Assert.Contains("UseLazyLoadingProxies", error.Message, StringComparison.Ordinal);
        Assert.Contains("ILazyLoader", error.Message, StringComparison.Ordinal);
    }
}
