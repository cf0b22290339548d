using EfEnvelope.Specification.Tests;
using EfEnvelope.KeyManagement;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Readme;

// The README's quick start, as written there, so that it cannot rot. Only the database file is made unique, and EF's
// many-service-providers warning is silenced because this test process builds many configurations.
public class Patient
{
    public Guid Id { get; set; }
    public string Name { get; set; } = "";
    [Encrypted] public string Ssn { get; set; } = "";
    [Encrypted] public string? Diagnosis { get; set; }
    [Encrypted] public DateOnly DateOfBirth { get; set; }
}

public class ClinicDb(DbContextOptions<ClinicDb> options) : DbContext(options)
{
    public DbSet<Patient> Patients => Set<Patient>();
}

public sealed class ReadmeExampleTests
{
    [Fact]
    public async Task The_quick_start_stores_ciphertext_and_reads_plaintext()
    {
        var file = Path.Combine(Path.GetTempPath(), $"clinic-{Guid.NewGuid():N}.db");
        try
        {
            var provider = new InsecureInMemoryMasterKeyProvider();
            var options = new DbContextOptionsBuilder<ClinicDb>()
                .UseSqlite($"Data Source={file}")
                .ManyConfigurationsPerProcess().UseEnvelopeEncryption(e => e.UseProvider(provider))
                .Options;

            await using (var db = new ClinicDb(options))
            {
                await db.Database.EnsureCreatedAsync(TestContext.Current.CancellationToken);
                db.Patients.Add(new Patient { Id = Guid.NewGuid(), Name = "Ann", Ssn = "078-05-1120", DateOfBirth = new(1961, 7, 4) });
                await db.SaveChangesAsync(TestContext.Current.CancellationToken);

                var ann = await db.Patients.SingleAsync(p => p.Name == "Ann", TestContext.Current.CancellationToken);
                Assert.Equal("078-05-1120", ann.Ssn);
            }

            SqliteConnection.ClearAllPools();
            Assert.Equal(-1, File.ReadAllBytes(file).AsSpan().IndexOf("078-05-1120"u8));
        }
        finally
        {
            SqliteConnection.ClearAllPools();
            File.Delete(file);
        }
    }
}
