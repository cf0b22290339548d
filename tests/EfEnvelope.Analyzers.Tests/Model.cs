namespace EfEnvelope.Analyzers.Tests;

/// <summary>The entities and context the analyzer tests query, as application source.</summary>
internal static class Model
{
    public const string Clinic = """
        public class Patient
        {
            public int Id { get; set; }
            public string Name { get; set; } = "";
            public bool Active { get; set; }
            [Encrypted(Searchable = true)] public string Ssn { get; set; } = "";
            [Encrypted] public string? Diagnosis { get; set; }
            [Encrypted] public DateOnly DateOfBirth { get; set; }
            [Encrypted] public int Score { get; set; }
            [Encrypted(Searchable = true, IndexBytes = 4)] public string? Phone { get; set; }
            [Encrypted] public DateTimeOffset SeenAt { get; set; }
            [Encrypted] public int? Rating { get; set; }
            [Encrypted] public Triage Triage { get; set; }
            public List<Visit> Visits { get; set; } = new();
        }

        public enum Triage { Low, High }

        public class Visit
        {
            public int Id { get; set; }
            public int PatientId { get; set; }
            [Encrypted] public string Notes { get; set; } = "";
            [Encrypted(Searchable = true)] public string Ssn { get; set; } = "";
        }

        public class ClinicDb(DbContextOptions<ClinicDb> options) : DbContext(options)
        {
            public DbSet<Patient> Patients => Set<Patient>();
            public DbSet<Visit> Visits => Set<Visit>();
        }

        """;
}
