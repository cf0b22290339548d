using EfEnvelope.Specification.Tests;
using System.Text;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Security;

public sealed class NoPlaintextAtRestTests
{
    [Fact]
    public async Task The_database_file_and_its_write_ahead_log_never_contain_a_plaintext_value()
    {
        var path = Path.Combine(Path.GetTempPath(), $"efenvelope-scan-{Guid.NewGuid():N}.db");
        var provider = new InsecureInMemoryMasterKeyProvider();
        var options = new DbContextOptionsBuilder<ClinicContext>()
            .UseSqlite($"Data Source={path};Pooling=False")
            .ManyConfigurationsPerProcess().UseEnvelopeEncryption(e => e.UseProvider(provider))
            .Options;
        var secrets = new[] { "078-05-1120", "Chronic kidney disease stage 3", "13 Rue Secrète", "+33-1-5555-0147", "visit-note-5f2a", "5105105105105100" };
        try
        {
            await using (var db = new ClinicContext(options))
            {
                await db.Database.EnsureCreatedAsync(TestContext.Current.CancellationToken);
                await db.Database.ExecuteSqlRawAsync("PRAGMA journal_mode=WAL", TestContext.Current.CancellationToken);
                var patient = new Patient
                {
                    Id = Guid.NewGuid(),
                    Name = "Public Name",
                    Ssn = secrets[0],
                    Diagnosis = secrets[1],
                    DateOfBirth = new DateOnly(1961, 7, 4),
                    HomeAddress = new Address { City = "Paris", Street = secrets[2] },
                    Emergency = new EmergencyContact { Relation = "son", Phone = secrets[3] },
                    Visits = [new Visit { At = DateTime.UtcNow, Notes = secrets[4] }],
                };
                db.Patients.Add(patient);
                db.Invoices.Add(new Invoice { CardNumber = secrets[5], Amount = 10 });
                await db.SaveChangesAsync(TestContext.Current.CancellationToken);

                patient.Diagnosis = secrets[1] + " (confirmed)";
                await db.SaveChangesAsync(TestContext.Current.CancellationToken);
            }

            var files = new[] { path, path + "-wal" }.Where(File.Exists).Select(File.ReadAllBytes).ToList();
            Assert.NotEmpty(files);
            Assert.Contains(files, f => f.AsSpan().IndexOf("Public Name"u8) >= 0);
            foreach (var bytes in files)
            {
                foreach (var secret in secrets)
                {
                    Assert.Equal(-1, bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(secret)));
                    Assert.Equal(-1, bytes.AsSpan().IndexOf(Encoding.Unicode.GetBytes(secret)));
                }
            }
        }
        finally
        {
            SqliteConnection.ClearAllPools();
            foreach (var suffix in new[] { "", "-wal", "-shm" })
            {
                File.Delete(path + suffix);
            }
        }
    }
}
