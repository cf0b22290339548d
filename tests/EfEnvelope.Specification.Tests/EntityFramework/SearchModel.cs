using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Specification.Tests.EntityFramework;

public class Person
{
    public int Id { get; set; }

    public string Name { get; set; } = "";

    [Encrypted(Searchable = true, UniqueIndex = true)]
    public string Ssn { get; set; } = "";

    [Encrypted(Searchable = true, Normalization = BlindIndexNormalization.Trim | BlindIndexNormalization.IgnoreCase)]
    public string? Email { get; set; }

    /// <summary>One byte of index: many cities share an index value, so results need filtering after decryption.</summary>
    [Encrypted(Searchable = true, IndexBytes = 1)]
    public string? City { get; set; }

    [Encrypted(Searchable = true)]
    public int? BadgeNumber { get; set; }

    /// <summary>Searchable through the fluent API, with a custom normalisation (digits only).</summary>
    public string? Phone { get; set; }

    [Encrypted]
    public string? Notes { get; set; }
}

public class SearchContext(DbContextOptions options) : DbContext(options)
{
    public DbSet<Person> People => Set<Person>();

    public static string DigitsOnly(string value) => new(value.Where(char.IsAsciiDigit).ToArray());

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<Person>().Property(p => p.Phone).IsEncrypted(search => search.Normalize = DigitsOnly);
}
