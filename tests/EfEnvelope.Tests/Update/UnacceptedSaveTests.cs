using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Update;

/// <summary>
/// <c>SaveChanges(acceptAllChangesOnSuccess: false)</c> leaves the entries as they were, so an edit made before
/// <c>AcceptAllChanges()</c>, or after the transaction is rolled back (EF's pattern for an execution strategy), is saved
/// with what is still pending. Found by a user-style hunt: the edit of an encrypted property was lost, or the row was
/// left with ciphertext that its key column no longer sealed, so every later query of the table failed.
/// </summary>
public sealed class UnacceptedSaveTests : PlainAndEncryptedSqlite
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [MemberData(nameof(Encryption))]
    public async Task An_edit_after_an_unaccepted_save_is_saved(bool encrypted)
    {
        await SeedAsync(encrypted);
        await using (var db = Create(encrypted))
        {
            var card = await db.Cards.SingleAsync(Ct);
            card.Number = "first";
            card.Billing!.Street = "first street";
            await db.SaveChangesAsync(acceptAllChangesOnSuccess: false, Ct);
            card.Number = "second";
            card.Holder = "edited too";
            card.Billing.Street = "second street";
            await db.SaveChangesAsync(acceptAllChangesOnSuccess: false, Ct);
            db.ChangeTracker.AcceptAllChanges();
            Assert.Equal(EntityState.Unchanged, db.Entry(card).State);
        }

        Assert.Equal(("second", "edited too"), await ReadAsync(encrypted));
        await using var read = Create(encrypted);
        Assert.Equal("second street", (await read.Cards.SingleAsync(Ct)).Billing?.Street);
    }

    [Theory]
    [MemberData(nameof(Encryption))]
    public async Task An_edit_after_a_rolled_back_unaccepted_save_is_saved_with_it(bool encrypted)
    {
        await SeedAsync(encrypted);
        await using (var db = Create(encrypted))
        {
            var card = await db.Cards.SingleAsync(Ct);
            card.Number = "rolled back";
            await using (var transaction = await db.Database.BeginTransactionAsync(Ct))
            {
                await db.SaveChangesAsync(acceptAllChangesOnSuccess: false, Ct);
                await transaction.RollbackAsync(Ct);
            }

            // The retry of the unit of work sets the value again (here another one), and saves what is pending.
            card.Holder = "retried";
            await db.SaveChangesAsync(Ct);
        }

        Assert.Equal(("rolled back", "retried"), await ReadAsync(encrypted));
    }

    private async Task SeedAsync(bool encrypted)
    {
        await using var db = Create(encrypted);
        await db.Database.EnsureCreatedAsync(Ct);
        db.Add(new Card { Id = 1, Number = "stored", Holder = "holder", Billing = new Address { Street = "stored street" } });
        await db.SaveChangesAsync(Ct);
    }

    private async Task<(string, string?)> ReadAsync(bool encrypted)
    {
        await using var db = Create(encrypted);
        var card = await db.Cards.SingleAsync(Ct);
        return (card.Number, card.Holder);
    }

    private CardContext Create(bool encrypted) => encrypted ? new EncryptedCardContext(Options(true)) : new CardContext(Options(false));

    private sealed class Card
    {
        public int Id { get; set; }

        public string Number { get; set; } = "";

        public string? Holder { get; set; }

        public Address? Billing { get; set; }
    }

    private sealed class Address
    {
        public string? Street { get; set; }
    }

    private class CardContext(DbContextOptions options) : DbContext(options)
    {
        public DbSet<Card> Cards => Set<Card>();

        protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.Entity<Card>().OwnsOne(c => c.Billing);
    }

    private sealed class EncryptedCardContext(DbContextOptions options) : CardContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            base.OnModelCreating(modelBuilder);
            modelBuilder.Entity<Card>().Property(c => c.Number).IsEncrypted();
            modelBuilder.Entity<Card>().OwnsOne(c => c.Billing).Property(a => a.Street).IsEncrypted();
            modelBuilder.Entity<Card>().Property(c => c.Holder).IsEncrypted();
        }
    }
}
