using System.ComponentModel.DataAnnotations.Schema;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Metadata;

/// <summary>Entities constructed through a constructor that takes encrypted values, and the one documented difference from plain EF.</summary>
public sealed class ConstructorBindingTests : IDisposable
{
    private static readonly InsecureInMemoryMasterKeyProvider Provider = new();
    private readonly SqliteConnection _connection = new("Data Source=:memory:");

    public ConstructorBindingTests() => _connection.Open();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public record Passport(Guid Id, string Holder, string Number, DateOnly? Expires);

    public class Ticket(int id, string code)
    {
        public int Id { get; private set; } = id;

        public string Code { get; private set; } = code;

        /// <summary>What the constructor computed from its encrypted argument.</summary>
        [NotMapped]
        public int LengthSeenByConstructor { get; } = code?.Length ?? -1;
    }

    private class TravelContext(DbContextOptions options) : DbContext(options)
    {
        public DbSet<Passport> Passports => Set<Passport>();

        public DbSet<Ticket> Tickets => Set<Ticket>();
    }

    /// <summary>The same model with the constructor-bound values encrypted (a context type of its own: EF caches a model per type).</summary>
    private sealed class EncryptedTravelContext(DbContextOptions options) : TravelContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            modelBuilder.Entity<Passport>(passport =>
            {
                passport.Property(p => p.Number).IsEncrypted();
                passport.Property(p => p.Expires).IsEncrypted();
            });
            modelBuilder.Entity<Ticket>().Property(t => t.Code).IsEncrypted();
        }
    }

    private TravelContext Create(bool encrypted)
    {
        var builder = new DbContextOptionsBuilder().UseSqlite(_connection).ManyConfigurationsPerProcess();
        if (encrypted)
        {
            builder.UseEnvelopeEncryption(e => e.UseProvider(Provider));
            return new EncryptedTravelContext(builder.Options);
        }

        return new TravelContext(builder.Options);
    }

    public void Dispose() => _connection.Dispose();

    [Fact]
    public async Task A_positional_record_with_encrypted_members_reads_back_tracked_and_untracked()
    {
        var id = Guid.NewGuid();
        await using (var db = Create(encrypted: true))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Passports.Add(new Passport(id, "Ada", "X1234567", new DateOnly(2031, 5, 1)));
            db.Passports.Add(new Passport(Guid.NewGuid(), "Bob", "Y7654321", null));
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = Create(encrypted: true))
        {
            Assert.Equal(new Passport(id, "Ada", "X1234567", new DateOnly(2031, 5, 1)), await db.Passports.SingleAsync(p => p.Id == id, Ct));
            Assert.Equal(["X1234567", "Y7654321"], (await db.Passports.AsNoTracking().ToListAsync(Ct)).Select(p => p.Number).Order());
        }

        // The database holds ciphertext, not the number.
        await using var plain = _connection.CreateCommand();
        plain.CommandText = "SELECT typeof(Number) FROM Passports";
        Assert.Equal("blob", await plain.ExecuteScalarAsync(Ct));
    }

    [Fact]
    public async Task The_constructor_sees_the_default_of_an_encrypted_argument_where_plain_EF_passes_the_value()
    {
        await using (var db = Create(encrypted: true))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Tickets.Add(new Ticket(1, "ABC-123"));
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = Create(encrypted: true))
        {
            var ticket = await db.Tickets.SingleAsync(Ct);
            Assert.Equal("ABC-123", ticket.Code);
            Assert.Equal(-1, ticket.LengthSeenByConstructor);
        }

        await using (var db = Create(encrypted: false))
        {
            await db.Database.EnsureDeletedAsync(Ct);
            await db.Database.EnsureCreatedAsync(Ct);
            db.Tickets.Add(new Ticket(1, "ABC-123"));
            await db.SaveChangesAsync(Ct);
            db.ChangeTracker.Clear();
            Assert.Equal(7, (await db.Tickets.SingleAsync(Ct)).LengthSeenByConstructor);
        }
    }
}
