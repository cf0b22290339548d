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

    [Theory]
    [InlineData("HbGift", "HbVoucher")] // a type without encrypted properties
    [InlineData("HbGift", "HbOffer")]   // the root, which has none either
    public async Task A_row_moved_to_a_type_without_encrypted_properties_is_refused(string written, string changedTo)
    {
        var id = Guid.NewGuid();
        await using (var db = NewContext())
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Offers.Add(new HbGift { Id = id, Title = "gift", Code = "secret-code" });
            await db.SaveChangesAsync(Ct);
            Assert.Equal(written, await db.Database.SqlQuery<string>($"SELECT \"Discriminator\" AS \"Value\" FROM \"Offers\" WHERE \"Id\" = {id}").SingleAsync(Ct));
            Assert.Equal(1, await db.Database.ExecuteSqlAsync($"UPDATE \"Offers\" SET \"Discriminator\" = {changedTo} WHERE \"Id\" = {id}", Ct));
        }

        await using var reader = NewContext();
        var error = await Record.ExceptionAsync(() => reader.Offers.SingleAsync(p => p.Id == id, Ct));
        var refused = Assert.IsType<EnvelopeDecryptionException>(error);
        Assert.Contains(changedTo, refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("secret-code", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_TPT_row_whose_derived_row_is_removed_is_refused_as_its_base_type()
    {
        var id = Guid.NewGuid();
        await using (var db = NewContext())
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Documents.AddRange(new HbSigned { Id = id, Title = "contract", Signature = "signed" }, new HbDocument { Title = "plain" });
            await db.SaveChangesAsync(Ct);
            Assert.Equal(1, await db.Database.ExecuteSqlAsync($"DELETE FROM \"SignedDocuments\" WHERE \"Id\" = {id}", Ct));
        }

        await using var reader = NewContext();
        var refused = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => reader.Documents.SingleAsync(d => d.Id == id, Ct));
        Assert.Contains(typeof(HbDocument).FullName!, refused.Message, StringComparison.Ordinal);
        await using var other = NewContext();
        Assert.Equal("plain", (await other.Documents.SingleAsync(d => d.Id != id, Ct)).Title);
    }

    [Fact]
    public async Task Rows_of_types_without_encrypted_properties_read_back_beside_encrypted_ones()
    {
        await using (var db = NewContext())
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Offers.AddRange(new HbOffer { Title = "offer" }, new HbVoucher { Title = "voucher" }, new HbGift { Title = "gift", Code = "code" });
            await db.SaveChangesAsync(Ct);
        }

        await using var reader = NewContext();
        var read = await reader.Offers.ToListAsync(Ct);
        Assert.Equal(["gift:code", "offer:", "voucher:"], read.Select(o => $"{o.Title}:{(o as HbGift)?.Code}").Order(StringComparer.Ordinal));
    }

    public class HbOffer
    {
        public Guid Id { get; set; } = Guid.NewGuid();

        public string Title { get; set; } = "";
    }

    public class HbGift : HbOffer
    {
        [Encrypted]
        public string? Code { get; set; }
    }

    public class HbVoucher : HbOffer;

    public class HbDocument
    {
        public Guid Id { get; set; } = Guid.NewGuid();

        public string Title { get; set; } = "";
    }

    public class HbSigned : HbDocument
    {
        [Encrypted]
        public string? Signature { get; set; }
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

        public DbSet<HbOffer> Offers => Set<HbOffer>();

        public DbSet<HbDocument> Documents => Set<HbDocument>();

        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            modelBuilder.Entity<HbPayment>().ToTable("Payments");
            modelBuilder.Entity<HbCard>();
            modelBuilder.Entity<HbCash>();
            modelBuilder.Entity<HbOffer>().ToTable("Offers");
            modelBuilder.Entity<HbGift>();
            modelBuilder.Entity<HbVoucher>();
            modelBuilder.Entity<HbDocument>().UseTptMappingStrategy().ToTable("Documents");
            modelBuilder.Entity<HbSigned>().ToTable("SignedDocuments");
        }
    }
}
