using System.ComponentModel.DataAnnotations.Schema;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Specification.Tests.Differential;

// Small models for the issue-11 items that the shop model cannot carry without breaking every other scenario.

/// <summary>Item 1: [Encrypted] in a model whose options never call UseEnvelopeEncryption.</summary>
public class Applicant
{
    public int Id { get; set; }

    [Encrypted]
    public string? Ssn { get; set; }
}

public class ForgottenRegistrationContext(DbContextOptions<ForgottenRegistrationContext> options) : DbContext(options)
{
    public DbSet<Applicant> Applicants => Set<Applicant>();
}

/// <summary>Item 8: HasData with a required and a nullable encrypted property.</summary>
public class Region
{
    public int Id { get; set; }

    public string Code { get; set; } = "";

    public string Anthem { get; set; } = "";

    public string? Motto { get; set; }
}

public class SeedContext(DbContextOptions<SeedContext> options) : DifferentialContext(options)
{
    public DbSet<Region> Regions => Set<Region>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<Region>(region =>
        {
            region.Property(r => r.Id).ValueGeneratedNever();
            Encrypt(region.Property(r => r.Anthem));
            Encrypt(region.Property(r => r.Motto));
            region.HasData(new Region { Id = 1, Code = "N", Anthem = "northern anthem", Motto = "north" }, new Region { Id = 2, Code = "S", Anthem = "southern anthem" });
        });
}

/// <summary>HasData with a nullable encrypted property, in its own model: refusing it at model build must not hide the other scenarios.</summary>
public class CountryContext(DbContextOptions<CountryContext> options) : DifferentialContext(options)
{
    public DbSet<Country> Countries => Set<Country>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<Country>(country =>
        {
            country.Property(c => c.Id).ValueGeneratedNever();
            Encrypt(country.Property(c => c.Motto));
            country.HasData(new Country { Id = 1, Code = "FR", Motto = "Liberté" }, new Country { Id = 2, Code = "XX" });
        });
}

/// <summary>Item 10, before the migration: a table with rows and no encrypted column.</summary>
[Table("Ledger")]
public class LedgerEntry
{
    public int Id { get; set; }

    public string Name { get; set; } = "";
}

/// <summary>Item 10, after the migration: the same table with a new non-nullable encrypted column.</summary>
[Table("Ledger")]
public class LedgerEntryWithSecret
{
    public int Id { get; set; }

    public string Name { get; set; } = "";

    [Encrypted]
    public string Secret { get; set; } = "";
}

public class LedgerContext(DbContextOptions<LedgerContext> options) : DbContext(options)
{
    public DbSet<LedgerEntry> Entries => Set<LedgerEntry>();
}

public class LedgerWithSecretContext(DbContextOptions<LedgerWithSecretContext> options) : DbContext(options)
{
    public DbSet<LedgerEntryWithSecret> Entries => Set<LedgerEntryWithSecret>();
}
