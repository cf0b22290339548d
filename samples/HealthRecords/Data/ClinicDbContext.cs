using Microsoft.EntityFrameworkCore;

namespace HealthRecords.Data;

/// <summary>An ordinary DbContext: encryption is switched on where it is configured (see Setup/ServiceSetup.cs), not here.</summary>
public class ClinicDbContext(DbContextOptions<ClinicDbContext> options) : DbContext(options)
{
    public DbSet<Patient> Patients => Set<Patient>();

    public DbSet<Visit> Visits => Set<Visit>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<Patient>(patient =>
        {
            patient.Property(p => p.Name).HasMaxLength(200);
            patient.HasIndex(p => p.Name);
            patient.HasMany(p => p.Visits).WithOne().HasForeignKey(v => v.PatientId).OnDelete(DeleteBehavior.Cascade);
        });
        modelBuilder.Entity<Visit>().Property(v => v.Clinician).HasMaxLength(200);
    }
}
