using System.ComponentModel.DataAnnotations.Schema;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Specification.Tests.Differential;

/// <summary>How EF reaches an encrypted property: a concurrency token, backing fields, a byte array.</summary>
public class Ticket
{
    private string? _memo;
    private string _secret = "";

    public int Id { get; set; }

    public string Title { get; set; } = "";

    /// <summary>Encrypted and a concurrency token.</summary>
    public string Stamp { get; set; } = "";

    /// <summary>Encrypted; its getter makes up a value that EF, which reads the backing field, never stores.</summary>
    public string? Memo
    {
        get => _memo ?? "(none)";
        set => _memo = value;
    }

    /// <summary>Encrypted; its setter counts, and EF writes the backing field when it materializes.</summary>
    public string Secret
    {
        get => _secret;
        set
        {
            _secret = value;
            SetterCalls++;
        }
    }

    [NotMapped]
    public int SetterCalls { get; set; }

    public byte[]? Photo { get; set; }
}

/// <summary>The model of <see cref="Ticket"/>: Stamp, Memo, Secret and Photo are encrypted in the encrypted run.</summary>
public class TicketContext(DbContextOptions<TicketContext> options) : DifferentialContext(options)
{
    public DbSet<Ticket> Tickets => Set<Ticket>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<Ticket>(ticket =>
        {
            ticket.Property(t => t.Id).ValueGeneratedNever();
            Encrypt(ticket.Property(t => t.Stamp).IsConcurrencyToken());
            Encrypt(ticket.Property(t => t.Memo));
            Encrypt(ticket.Property(t => t.Secret));
            Encrypt(ticket.Property(t => t.Photo));
        });
}

/// <summary>An owned collection (a table of its own) with an encrypted member.</summary>
public class Basket
{
    public int Id { get; set; }

    public string Label { get; set; } = "";

    public List<BasketLine> Lines { get; set; } = [];
}

public class BasketLine
{
    public int Id { get; set; }

    public string Code { get; set; } = "";

    public int Quantity { get; set; }
}

/// <summary>The model of <see cref="Basket"/>: BasketLine.Code is encrypted in the encrypted run.</summary>
public class BasketContext(DbContextOptions<BasketContext> options) : DifferentialContext(options)
{
    public DbSet<Basket> Baskets => Set<Basket>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<Basket>(basket =>
        {
            basket.Property(b => b.Id).ValueGeneratedNever();
            basket.OwnsMany(b => b.Lines, line =>
            {
                line.Property(l => l.Id).ValueGeneratedNever();
                Encrypt(line.Property(l => l.Code));
            });
        });
}

/// <summary>Real and numeric values that a projection converts to integers.</summary>
public class Reading
{
    public int Id { get; set; }

    public double Value { get; set; }

    public float Approximate { get; set; }

    public decimal Amount { get; set; }

    public double? Optional { get; set; }
}

/// <summary>The model of <see cref="Reading"/>: every member but the key is encrypted in the encrypted run.</summary>
public class ReadingContext(DbContextOptions<ReadingContext> options) : DifferentialContext(options)
{
    public DbSet<Reading> Readings => Set<Reading>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<Reading>(reading =>
        {
            reading.Property(r => r.Id).ValueGeneratedNever();
            Encrypt(reading.Property(r => r.Value));
            Encrypt(reading.Property(r => r.Approximate));
            Encrypt(reading.Property(r => r.Amount));
            Encrypt(reading.Property(r => r.Optional));
        });
}
