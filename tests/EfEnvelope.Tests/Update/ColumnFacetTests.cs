using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Update;

/// <summary>
/// A maximum length and a decimal's precision configured on an encrypted property are checked before encrypting, as
/// the database checks them for a plain column (which it cannot do for ciphertext): a value that does not fit is refused
/// naming entity, property and row, never the value, and nothing is written.
/// </summary>
public sealed class ColumnFacetTests : IAsyncLifetime
{
    private readonly SqliteConnection _connection = new("Data Source=:memory:");
    private readonly InsecureInMemoryMasterKeyProvider _provider = new("facets");

    public class Account
    {
        public int Id { get; set; }

        [Encrypted]
        [System.ComponentModel.DataAnnotations.StringLength(11)]
        public string Ssn { get; set; } = "";

        [Encrypted]
        [System.ComponentModel.DataAnnotations.MaxLength(4)]
        public byte[]? Pin { get; set; }

        [Encrypted]
        [Precision(7, 2)]
        public decimal Balance { get; set; }
    }

    public sealed class AccountContext(DbContextOptions<AccountContext> options) : DbContext(options)
    {
        public DbSet<Account> Accounts => Set<Account>();
    }

    // The same table without the maximum length: data written before the check existed.
    public sealed class LooseAccountContext(DbContextOptions<LooseAccountContext> options) : DbContext(options)
    {
        public DbSet<Account> Accounts => Set<Account>();

        protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.Entity<Account>().Property(a => a.Ssn).Metadata.SetMaxLength(null);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private AccountContext NewContext() =>
        new(new DbContextOptionsBuilder<AccountContext>().UseSqlite(_connection).ManyConfigurationsPerProcess().UseEnvelopeEncryption(e => e.UseProvider(_provider)).Options);

    public async ValueTask InitializeAsync()
    {
        await _connection.OpenAsync(Ct);
        await using var db = NewContext();
        await db.Database.EnsureCreatedAsync(Ct);
    }

    public async ValueTask DisposeAsync() => await _connection.DisposeAsync();

    [Theory]
    [InlineData("ssn", "is 12 characters long, more than its maximum length 11")]
    [InlineData("pin", "is 5 bytes long, more than its maximum length 4")]
    [InlineData("decimals", "has 3 decimal places, more than the scale 2 of its HasPrecision(7, 2)")]
    [InlineData("digits", "has 6 digits before the decimal point, more than the 5 its HasPrecision(7, 2) allows")]
    public async Task A_new_value_that_does_not_fit_is_refused_and_nothing_is_written(string what, string reason)
    {
        var account = new Account
        {
            Ssn = what == "ssn" ? "123-45-67890" : "123-45-6789",
            Pin = what == "pin" ? [1, 2, 3, 4, 5] : [1, 2, 3, 4],
            Balance = what switch { "decimals" => 1.234m, "digits" => 123456m, _ => 12345.60m },
        };
        await using var db = NewContext();
        db.Accounts.Add(account);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => db.SaveChangesAsync(Ct));

        Assert.Contains("'Account.", error.Message, StringComparison.Ordinal);
        Assert.Contains("in a new record " + reason, error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("67890", error.Message, StringComparison.Ordinal);
        await using var reader = NewContext();
        Assert.Equal(0, await reader.Accounts.CountAsync(Ct));
    }

    [Fact]
    public async Task A_stored_value_that_does_not_fit_blocks_only_its_own_edit()
    {
        var account = new Account { Ssn = "123-45-6789-00", Pin = [1], Balance = 1m };
        await using (var loose = new LooseAccountContext(new DbContextOptionsBuilder<LooseAccountContext>().UseSqlite(_connection).ManyConfigurationsPerProcess().UseEnvelopeEncryption(e => e.UseProvider(_provider)).Options))
        {
            loose.Accounts.Add(account);
            await loose.SaveChangesAsync(Ct);
        }

        await using var db = NewContext();
        var stored = await db.Accounts.SingleAsync(Ct);
        stored.Balance = 2m;
        await db.SaveChangesAsync(Ct);
        stored.Ssn = "123-45-6789-01";

        Assert.Contains("'Account.Ssn'", Assert.Throws<InvalidOperationException>(() => db.SaveChanges()).Message, StringComparison.Ordinal);

        // Update() of a detached instance writes every value, as plain EF's full update does: each is checked.
        await using var replacing = NewContext();
        replacing.Update(new Account { Id = account.Id, Ssn = "123-45-6789-02", Pin = [1], Balance = 3m });
        Assert.Contains("'Account.Ssn'", (await Assert.ThrowsAsync<InvalidOperationException>(() => replacing.SaveChangesAsync(Ct))).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Values_that_fit_are_saved_and_an_edit_is_checked_on_the_edited_property_naming_the_row()
    {
        var account = new Account { Ssn = "123-45-6789", Pin = [1, 2, 3, 4], Balance = -99999.90m };
        await using var db = NewContext();
        db.Accounts.Add(account);
        await db.SaveChangesAsync(Ct);

        account.Ssn = "123-45-6789-0";
        var error = Assert.Throws<InvalidOperationException>(() => db.SaveChanges());

        Assert.Contains($"'Account.Ssn' in the record with key (Id={account.Id}) is 13 characters long", error.Message, StringComparison.Ordinal);
        await using var reader = NewContext();
        var stored = await reader.Accounts.SingleAsync(Ct);
        Assert.Equal(("123-45-6789", -99999.90m), (stored.Ssn, stored.Balance));
    }
}
