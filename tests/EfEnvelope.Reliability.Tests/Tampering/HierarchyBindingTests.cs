using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Reliability.Tests.Tampering;

/// <summary>
/// A TPH row's concrete type is sealed (docs/FORMAT.md, "Record seal"): a discriminator changed with plain SQL on
/// SQLite makes the row fail, whether or not the record lists a property only its own type has.
/// </summary>
public sealed class HierarchyBindingTests : IDisposable
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"efenvelope-hierarchy-{Guid.NewGuid():N}.db");
    private readonly InsecureInMemoryMasterKeyProvider _provider = new("primary");

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose()
    {
        foreach (var suffix in new[] { "", "-wal", "-shm", "-journal" })
        {
            File.Delete(_path + suffix);
        }
    }

    private HierarchyContext NewContext() => new(new DbContextOptionsBuilder<HierarchyContext>()
        .UseSqlite($"Data Source={_path};Pooling=False")
        .ManyConfigurationsPerProcess()
        .UseEnvelopeEncryption(e => e.UseProvider(_provider))
        .Options);

    [Theory]
    [InlineData("HbCard", "HbCash", "4242")] // the card's own property is listed: refused before the seal is computed
    [InlineData("HbCard", "HbCash", null)]   // nothing but the shared property is listed: only the sealed type refuses it
    [InlineData("HbCash", "HbCard", null)]
    [InlineData("HbCard", "HbPayment", null)]
    public async Task A_row_whose_discriminator_is_changed_to_another_type_of_the_hierarchy_is_refused(string written, string changedTo, string? cardLast4)
    {
        var id = Guid.NewGuid();
        await using (var db = NewContext())
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Payments.Add(written == "HbCard" ? new HbCard { Id = id, Memo = "memo", CardLast4 = cardLast4 } : new HbCash { Id = id, Memo = "memo" });
            await db.SaveChangesAsync(Ct);
            Assert.Equal(1, await db.Database.ExecuteSqlAsync($"UPDATE \"Payments\" SET \"Discriminator\" = {changedTo} WHERE \"Id\" = {id}", Ct));
        }

        await using var reader = NewContext();
        var error = await Record.ExceptionAsync(() => reader.Payments.AsNoTracking().SingleAsync(p => p.Id == id, Ct));
        var refused = Assert.IsType<EnvelopeDecryptionException>(error);
        Assert.Equal(typeof(HbPayment).FullName, refused.Entity);
        Assert.DoesNotContain("memo", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Rows_of_every_type_of_the_hierarchy_read_back_through_the_root_set()
    {
        await using (var db = NewContext())
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Payments.AddRange(new HbPayment { Memo = "plain" }, new HbCard { Memo = "card", CardLast4 = "4242" }, new HbCash { Memo = "cash" });
            await db.SaveChangesAsync(Ct);
        }

        await using var reader = NewContext();
        var read = await reader.Payments.AsNoTracking().ToListAsync(Ct);
        Assert.Equal(["card:HbCard:4242", "cash:HbCash:", "plain:HbPayment:"], read.Select(p => $"{p.Memo}:{p.GetType().Name}:{(p as HbCard)?.CardLast4}").Order(StringComparer.Ordinal));
    }

    public class HbPayment
    {
        public Guid Id { get; set; } = Guid.NewGuid();

        [Encrypted]
        public string? Memo { get; set; }
    }

    public class HbCard : HbPayment
    {
        [Encrypted]
        public string? CardLast4 { get; set; }
    }

    public class HbCash : HbPayment;

    public sealed class HierarchyContext(DbContextOptions<HierarchyContext> options) : DbContext(options)
    {
        public DbSet<HbPayment> Payments => Set<HbPayment>();

        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            modelBuilder.Entity<HbPayment>().ToTable("Payments");
            modelBuilder.Entity<HbCard>();
            modelBuilder.Entity<HbCash>();
        }
    }
}
