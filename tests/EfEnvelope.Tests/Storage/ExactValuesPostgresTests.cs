using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Storage;

namespace EfEnvelope.Tests.Storage;

/// <summary>
/// On PostgreSQL an encrypted value is stored and read back exactly as .NET held it, where the plain column type would
/// refuse it or change it (docs/DESIGN.md, "Values exactly as .NET holds them"): a DateTime of kind Unspecified and a
/// DateTimeOffset with an offset (timestamptz refuses both), ticks below a microsecond (truncated), a decimal's scale
/// (numeric(10,2) pads 1.5 to 1.50) and a NUL character (text refuses it). Pinned beside plain EF on the same database,
/// so that a change on either side is noticed. Found by a user-style review on PostgreSQL.
/// </summary>
public sealed class ExactValuesPostgresTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    private static readonly DateTime Unspecified = new(2024, 5, 6, 7, 8, 9, DateTimeKind.Unspecified);
    private static readonly DateTimeOffset WithOffset = new(2024, 5, 6, 7, 8, 9, TimeSpan.FromHours(2));
    private static readonly DateTime SubMicrosecond = new DateTime(2024, 5, 6, 7, 8, 9, DateTimeKind.Utc).AddTicks(1234567);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Encrypted_values_keep_what_the_plain_column_type_refuses_or_changes()
    {
        if (fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        await using (var encrypted = new ReadingsContext(fixture.CreateOptions<ReadingsContext>()))
        {
            await encrypted.GetService<IRelationalDatabaseCreator>().CreateTablesAsync(Ct);
            encrypted.Readings.Add(new Reading { Id = 1, Taken = Unspecified, Seen = WithOffset, Precise = SubMicrosecond, Amount = 1.5m, Text = "a\0b" });
            await encrypted.SaveChangesAsync(Ct);
        }

        await using (var read = new ReadingsContext(fixture.CreateOptions<ReadingsContext>()))
        {
            var reading = await read.Readings.AsNoTracking().SingleAsync(Ct);
            Assert.Equal((Unspecified, DateTimeKind.Unspecified), (reading.Taken, reading.Taken.Kind));
            Assert.Equal((WithOffset, TimeSpan.FromHours(2)), (reading.Seen, reading.Seen.Offset));
            Assert.Equal(SubMicrosecond.Ticks, reading.Precise.Ticks);
            Assert.Equal("1.5", reading.Amount.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Assert.Equal("a\0b", reading.Text);
        }

        // Plain EF on the same database: refused, truncated, padded.
        var options = new DbContextOptionsBuilder<PlainReadingsContext>().ManyConfigurationsPerProcess();
        fixture.UseDatabase(options);
        await using var plain = new PlainReadingsContext(options.Options);
        await plain.GetService<IRelationalDatabaseCreator>().CreateTablesAsync(Ct);
        foreach (var (refused, why) in new[]
        {
            (new Reading { Id = 1, Taken = Unspecified, Seen = DateTimeOffset.UnixEpoch, Precise = DateTime.UnixEpoch, Text = "" }, "Kind=Unspecified"),
            (new Reading { Id = 2, Taken = DateTime.UnixEpoch, Seen = WithOffset, Precise = DateTime.UnixEpoch, Text = "" }, "offset"),
            (new Reading { Id = 4, Taken = DateTime.SpecifyKind(Unspecified, DateTimeKind.Local), Seen = DateTimeOffset.UnixEpoch, Precise = DateTime.UnixEpoch, Text = "" }, "Kind=Local"),
            (new Reading { Id = 3, Taken = DateTime.UnixEpoch, Seen = DateTimeOffset.UnixEpoch, Precise = DateTime.UnixEpoch, Text = "a\0b" }, "22021"),
        })
        {
            plain.PlainReadings.Add(refused);
            var error = await Assert.ThrowsAnyAsync<Exception>(() => plain.SaveChangesAsync(Ct));
            Assert.Contains(why, error.ToString(), StringComparison.Ordinal);
            plain.ChangeTracker.Clear();
        }

        plain.PlainReadings.Add(new Reading { Id = 5, Taken = DateTime.UnixEpoch, Seen = DateTimeOffset.UnixEpoch, Precise = SubMicrosecond, Amount = 1.5m, Text = "" });
        await plain.SaveChangesAsync(Ct);
        plain.ChangeTracker.Clear();
        var stored = await plain.PlainReadings.SingleAsync(r => r.Id == 5, Ct);
        Assert.Equal(SubMicrosecond.Ticks / 10 * 10, stored.Precise.Ticks);
        Assert.Equal("1.50", stored.Amount.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    private sealed class Reading
    {
        public int Id { get; set; }

        public DateTime Taken { get; set; }

        public DateTimeOffset Seen { get; set; }

        public DateTime Precise { get; set; }

        public decimal Amount { get; set; }

        public string Text { get; set; } = "";
    }

    private sealed class ReadingsContext(DbContextOptions<ReadingsContext> options) : DbContext(options)
    {
        public DbSet<Reading> Readings => Set<Reading>();

        protected override void OnModelCreating(ModelBuilder modelBuilder) =>
            modelBuilder.Entity<Reading>(reading =>
            {
                reading.Property(r => r.Id).ValueGeneratedNever();
                reading.Property(r => r.Taken).IsEncrypted();
                reading.Property(r => r.Seen).IsEncrypted();
                reading.Property(r => r.Precise).IsEncrypted();
                reading.Property(r => r.Amount).HasPrecision(10, 2).IsEncrypted();
                reading.Property(r => r.Text).IsEncrypted();
            });
    }

    private sealed class PlainReadingsContext(DbContextOptions<PlainReadingsContext> options) : DbContext(options)
    {
        public DbSet<Reading> PlainReadings => Set<Reading>();

        // The same type as the encrypted run's, in a table of its own.
        protected override void OnModelCreating(ModelBuilder modelBuilder) =>
            modelBuilder.Entity<Reading>(reading =>
            {
                reading.ToTable("PlainReadings");
                reading.Property(r => r.Id).ValueGeneratedNever();
                reading.Property(r => r.Amount).HasPrecision(10, 2);
            });
    }
}
