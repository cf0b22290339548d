using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.Differential;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Registration;

/// <summary>
/// A context that asks for encryption in its model but not in its options is refused at its first use and at every
/// save, naming the property and the fix; nothing reaches the database. (A fresh process, where no EfEnvelope code
/// ran before EF built the model, is tested by ForgottenRegistrationProcessTests.)
/// </summary>
public sealed class UnregisteredEncryptionTests : IDisposable
{
    private readonly SqliteConnection _connection = new("Data Source=:memory:");

    public UnregisteredEncryptionTests() => _connection.Open();

    public void Dispose() => _connection.Dispose();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public class Note
    {
        public int Id { get; set; }

        public string? Text { get; set; }
    }

    private sealed class FluentContext(DbContextOptions<FluentContext> options) : DbContext(options)
    {
        public DbSet<Note> Notes => Set<Note>();

        protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.Entity<Note>().Property(n => n.Text).IsEncrypted();
    }

    public class Wallet
    {
        public int Id { get; set; }

        public Money Balance { get; set; } = new();

        public List<Money> History { get; set; } = [];
    }

    public class Money
    {
        public decimal Amount { get; set; }

        [Encrypted]
        public string Currency { get; set; } = "";
    }

    // Complex types map into their owner's table (as columns, or JSON for a collection), so a marked member of one
    // would be stored in plaintext too.
    private sealed class ComplexContext(DbContextOptions<ComplexContext> options, bool collection) : DbContext(options)
    {
        public bool Collection => collection;

        public DbSet<Wallet> Wallets => Set<Wallet>();

        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            if (collection)
            {
                modelBuilder.Entity<Wallet>().Ignore(w => w.Balance).ComplexCollection(w => w.History, b => b.ToJson());
            }
            else
            {
                modelBuilder.Entity<Wallet>().Ignore(w => w.History).ComplexProperty(w => w.Balance);
            }
        }
    }

    private sealed class ComplexModelKey : Microsoft.EntityFrameworkCore.Infrastructure.IModelCacheKeyFactory
    {
        public object Create(DbContext context, bool designTime) => (context.GetType(), ((ComplexContext)context).Collection, designTime);
    }

    private async Task<long> CountAsync(string table)
    {
        await using var command = _connection.CreateCommand();
        command.CommandText = $"SELECT COUNT(*) FROM sqlite_master WHERE name = '{table}'";
        if ((long)(await command.ExecuteScalarAsync(Ct))! == 0)
        {
            return 0;
        }

        command.CommandText = $"SELECT COUNT(*) FROM \"{table}\"";
        return (long)(await command.ExecuteScalarAsync(Ct))!;
    }

    private static void AssertRefusal(InvalidOperationException refusal, string property)
    {
        Assert.Contains($"'{property}'", refusal.Message, StringComparison.Ordinal);
        Assert.Contains("UseEnvelopeEncryption", refusal.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_encrypted_attribute_is_refused_at_first_use_and_again_at_a_save_after_the_refusal_was_ignored()
    {
        var options = new DbContextOptionsBuilder<ForgottenRegistrationContext>().UseSqlite(_connection).ManyConfigurationsPerProcess().Options;
        await using var db = new ForgottenRegistrationContext(options);

        AssertRefusal(await Assert.ThrowsAsync<InvalidOperationException>(() => db.Database.EnsureCreatedAsync(Ct)), "Applicant.Ssn");

        // The context is initialized now, so EF raises no second ContextInitialized: the save is checked on its own.
        await db.Database.EnsureCreatedAsync(Ct);
        db.Applicants.Add(new Applicant { Ssn = "123-45-6789" });
        AssertRefusal(await Assert.ThrowsAsync<InvalidOperationException>(() => db.SaveChangesAsync(Ct)), "Applicant.Ssn");
        Assert.Equal(0, await CountAsync("Applicants"));
    }

    [Fact]
    public async Task A_fluent_IsEncrypted_is_refused_without_the_extension()
    {
        var options = new DbContextOptionsBuilder<FluentContext>().UseSqlite(_connection).ManyConfigurationsPerProcess().Options;
        await using var db = new FluentContext(options);

        AssertRefusal(await Assert.ThrowsAsync<InvalidOperationException>(() => db.Database.EnsureCreatedAsync(Ct)), "Note.Text");
        Assert.Equal(0, await CountAsync("Notes"));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_encrypted_member_of_a_complex_type_is_refused_without_the_extension(bool collection)
    {
        var options = new DbContextOptionsBuilder<ComplexContext>().UseSqlite(_connection).ManyConfigurationsPerProcess()
            .ReplaceService<Microsoft.EntityFrameworkCore.Infrastructure.IModelCacheKeyFactory, ComplexModelKey>().Options;
        await using var db = new ComplexContext(options, collection);

        AssertRefusal(await Assert.ThrowsAsync<InvalidOperationException>(() => db.Database.EnsureCreatedAsync(Ct)), collection ? "Wallet.History#Money.Currency" : "Wallet.Balance#Money.Currency");
        Assert.Equal(0, await CountAsync("Wallets"));
    }

    [Fact]
    public async Task The_same_model_with_the_extension_saves_and_reads_back()
    {
        var options = new DbContextOptionsBuilder<ForgottenRegistrationContext>().UseSqlite(_connection).ManyConfigurationsPerProcess()
            .UseEnvelopeEncryption(e => e.UseProvider(new EfEnvelope.KeyManagement.InsecureInMemoryMasterKeyProvider())).Options;
        await using (var db = new ForgottenRegistrationContext(options))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Applicants.Add(new Applicant { Ssn = "123-45-6789" });
            await db.SaveChangesAsync(Ct);
        }

        await using var read = new ForgottenRegistrationContext(options);
        Assert.Equal("123-45-6789", (await read.Applicants.SingleAsync(Ct)).Ssn);
    }
}
