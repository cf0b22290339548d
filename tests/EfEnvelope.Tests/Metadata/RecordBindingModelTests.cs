using EfEnvelope.Infrastructure;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;

namespace EfEnvelope.Tests.Metadata;

/// <summary><c>IsBoundToRecord()</c> is refused where no record seal could bind the column, at model build.</summary>
public sealed class RecordBindingModelTests
{
    public class Plain
    {
        public Guid Id { get; set; }

        public string TenantId { get; set; } = "";
    }

    public class Sealed
    {
        public Guid Id { get; set; }

        public string TenantId { get; set; } = "";

        [Encrypted]
        public string Secret { get; set; } = "";
    }

    private sealed class ModelContext(DbContextOptions options, Action<ModelBuilder> configure) : DbContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder) => configure(modelBuilder);
    }

    private static ModelContext Create(Action<ModelBuilder> configure) => new(
        new DbContextOptionsBuilder().UseSqlite("Data Source=:memory:").ManyConfigurationsPerProcess()
            .UseEnvelopeEncryption(e => e.UseProvider(new InsecureInMemoryMasterKeyProvider())).ReplaceService<IModelCacheKeyFactory, PerTestModelCacheKeyFactory>().Options,
        configure);

    [Fact]
    public void A_bound_column_of_an_entity_without_encrypted_properties_is_refused()
    {
        using var db = Create(b => b.Entity<Plain>().Property(p => p.TenantId).IsBoundToRecord());
        var error = Assert.Throws<InvalidOperationException>(() => db.Model);
        Assert.Contains("Plain.TenantId", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_encrypted_property_that_is_also_bound_is_refused()
    {
        using var db = Create(b => b.Entity<Sealed>().Property(p => p.Secret).IsBoundToRecord());
        var error = Assert.Throws<InvalidOperationException>(() => db.Model);
        Assert.Contains("Sealed.Secret", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_property_without_a_plaintext_encoding_cannot_be_bound()
    {
        using var db = Create(b => b.Entity<Sealed>(e =>
        {
            var error = Assert.Throws<ArgumentException>(() => e.Property<Uri>("Link").IsBoundToRecord());
            Assert.Contains("Link", error.Message, StringComparison.Ordinal);
            e.Ignore("Link");
        }));
        Assert.NotNull(db.Model.FindEntityType(typeof(Sealed)));
    }

    [Fact]
    public void A_bound_plain_column_and_the_client_set_key_are_what_the_seal_binds()
    {
        using var db = Create(b => b.Entity<Sealed>().Property(p => p.TenantId).IsBoundToRecord());
        var runtime = db.GetService<EnvelopeRuntime>();
        var encrypted = runtime.Find(db.Model.FindEntityType(typeof(Sealed))!)!;
        Assert.Equal(new[] { "Id" }, encrypted.BoundKey.Select(c => c.Property.Name));
        Assert.Equal(new[] { "TenantId" }, encrypted.BoundColumns.Select(c => c.Property.Name));
    }

    /// <summary>Each test configures its own model on one context type, so the model is not cached across them.</summary>
    private sealed class PerTestModelCacheKeyFactory : IModelCacheKeyFactory
    {
        public object Create(DbContext context, bool designTime) => new object();
    }
}
