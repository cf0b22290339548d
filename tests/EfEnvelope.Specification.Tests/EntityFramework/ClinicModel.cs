using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Specification.Tests.EntityFramework;

public enum BloodType : short
{
    Unknown = 0,
    APositive = 1,
    ONegative = 7,
}

public class Patient
{
    public Guid Id { get; set; }

    public string Name { get; set; } = "";

    [Encrypted]
    public string Ssn { get; set; } = "";

    [Encrypted]
    public string? Diagnosis { get; set; }

    [Encrypted]
    public DateOnly DateOfBirth { get; set; }

    public Address? HomeAddress { get; set; }

    public EmergencyContact? Emergency { get; set; }

    public List<Visit> Visits { get; set; } = [];
}

public class Address
{
    public string City { get; set; } = "";

    [Encrypted]
    public string Street { get; set; } = "";
}

public class EmergencyContact
{
    public string Relation { get; set; } = "";

    [Encrypted]
    public string Phone { get; set; } = "";
}

public class Visit
{
    public int Id { get; set; }

    public Guid PatientId { get; set; }

    public DateTime At { get; set; }

    [Encrypted]
    public string Notes { get; set; } = "";
}

/// <summary>Configured with the fluent IsEncrypted() instead of the attribute.</summary>
public class Invoice
{
    public int Id { get; set; }

    public string CardNumber { get; set; } = "";

    public decimal Amount { get; set; }
}

public class AllTypes
{
    public int Id { get; set; }

    [Encrypted] public string? Text { get; set; }
    [Encrypted] public byte[]? Bytes { get; set; }
    [Encrypted] public bool Flag { get; set; }
    [Encrypted] public byte Small { get; set; }
    [Encrypted] public short Short { get; set; }
    [Encrypted] public int Int { get; set; }
    [Encrypted] public long Long { get; set; }
    [Encrypted] public float Float { get; set; }
    [Encrypted] public double Double { get; set; }
    [Encrypted] public decimal Decimal { get; set; }
    [Encrypted] public Guid Guid { get; set; }
    [Encrypted] public DateTime DateTime { get; set; }
    [Encrypted] public DateTimeOffset DateTimeOffset { get; set; }
    [Encrypted] public DateOnly DateOnly { get; set; }
    [Encrypted] public TimeOnly TimeOnly { get; set; }
    [Encrypted] public TimeSpan TimeSpan { get; set; }
    [Encrypted] public BloodType Enum { get; set; }
    [Encrypted] public int? NullableInt { get; set; }
    [Encrypted] public Guid? NullableGuid { get; set; }
    [Encrypted] public BloodType? NullableEnum { get; set; }
    [Encrypted] public DateTime? NullableDateTime { get; set; }
}

public class ClinicContext(DbContextOptions options) : DbContext(options)
{
    public DbSet<Patient> Patients => Set<Patient>();

    public DbSet<Visit> Visits => Set<Visit>();

    public DbSet<Invoice> Invoices => Set<Invoice>();

    public DbSet<AllTypes> AllTypes => Set<AllTypes>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<Patient>(patient =>
        {
            patient.Property(p => p.Id).ValueGeneratedNever();
            patient.OwnsOne(p => p.HomeAddress);
            patient.OwnsOne(p => p.Emergency, emergency => emergency.ToJson());
            patient.HasMany(p => p.Visits).WithOne().HasForeignKey(v => v.PatientId);
        });
        modelBuilder.Entity<Invoice>().Property(i => i.CardNumber).IsEncrypted();
        modelBuilder.Entity<Invoice>().Property(i => i.Amount).HasPrecision(18, 2);
    }
}
