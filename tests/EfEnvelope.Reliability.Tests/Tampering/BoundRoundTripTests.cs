using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Reliability.Tests.Tampering;

/// <summary>
/// Legitimate rows whose bound columns come back from the database in another form than written (a DateTime's kind,
/// a decimal's scale, sub-microsecond ticks on PostgreSQL, zero's sign on SQLite) still verify their seal, and a
/// bound column changed by a whole microsecond is still refused (docs/FORMAT.md, "Record seal", canonical form).
/// </summary>
public sealed class BoundRoundTripTests() : ScratchDatabaseTests<BoundContext>("bound")
{
    private readonly InsecureInMemoryMasterKeyProvider _provider = new("primary");

    // Each value below is one a database does not give back bit for bit: the seal must not depend on what it drops.
    private static readonly DateTime Moment = new DateTime(2026, 12, 1, 7, 30, 0, DateTimeKind.Utc).AddTicks(1_234_567);

    protected override BoundContext NewContext() => new(OptionsBuilder().UseEnvelopeEncryption(e => e.UseProvider(_provider)).Options);

    private static BrRow NewRow(string database) => new()
    {
        At = Moment,
        Instant = new DateTimeOffset(Moment.Ticks, database == "postgres" ? TimeSpan.Zero : TimeSpan.FromHours(2)), // Npgsql writes offset 0 only
        Price = 1.50m,
        Ratio = -0d,
        Span = TimeSpan.FromTicks(-12_345_678),
        Clock = new TimeOnly(Moment.TimeOfDay.Ticks),
        Secret = "bound-secret",
    };

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task A_legitimate_row_with_bound_columns_of_every_lossy_type_reads_after_the_round_trip(string database)
    {
        await UseAsync(database);
        var row = NewRow(database);
        await using (var db = NewContext())
        {
            db.Rows.Add(row);
            await db.SaveChangesAsync(Ct);
        }

        await using var reader = NewContext();
        var read = await reader.Rows.AsNoTracking().SingleAsync(r => r.Id == row.Id, Ct);
        Assert.Equal("bound-secret", read.Secret);

        // Edited and saved again from what was read (kind, scale and precision as the database gave them back).
        read.Secret = "edited";
        reader.Update(read);
        await reader.SaveChangesAsync(Ct);
        await using var again = NewContext();
        Assert.Equal("edited", (await again.Rows.AsNoTracking().SingleAsync(r => r.Id == row.Id, Ct)).Secret);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task A_bound_column_changed_by_a_microsecond_outside_EF_is_refused(string database)
    {
        await UseAsync(database);
        var row = NewRow(database);
        await using (var db = NewContext())
        {
            db.Rows.Add(row);
            await db.SaveChangesAsync(Ct);
            var changed = await db.Rows.AsNoTracking().Where(r => r.Id == row.Id)
                .ExecuteUpdateAsync(s => s.SetProperty(r => r.At, row.At.AddTicks(10)), Ct);
            Assert.Equal(1, changed);
        }

        await using var reader = NewContext();
        var error = await Record.ExceptionAsync(() => reader.Rows.AsNoTracking().SingleAsync(r => r.Id == row.Id, Ct));
        Assert.IsType<EnvelopeDecryptionException>(error);
    }
}

public class BrRow
{
    public Guid Id { get; set; } = Guid.NewGuid();

    public DateTime At { get; set; }

    public DateTimeOffset Instant { get; set; }

    public decimal Price { get; set; }

    public double Ratio { get; set; }

    public TimeSpan Span { get; set; }

    public TimeOnly Clock { get; set; }

    [Encrypted]
    public string Secret { get; set; } = "";
}

public sealed class BoundContext(DbContextOptions<BoundContext> options) : DbContext(options)
{
    public DbSet<BrRow> Rows => Set<BrRow>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<BrRow>(row =>
        {
            row.ToTable("BoundRows");
            row.Property(r => r.At).IsBoundToRecord();
            row.Property(r => r.Instant).IsBoundToRecord();
            row.Property(r => r.Price).IsBoundToRecord();
            row.Property(r => r.Ratio).IsBoundToRecord();
            row.Property(r => r.Span).IsBoundToRecord();
            row.Property(r => r.Clock).IsBoundToRecord();
        });
}
