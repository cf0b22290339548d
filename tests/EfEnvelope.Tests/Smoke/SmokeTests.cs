using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Smoke;

public class SmokeTests
{
    [Fact]
    public async Task Round_trip()
    {
        var provider = new InsecureInMemoryMasterKeyProvider();
        using var connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();
        var options = new DbContextOptionsBuilder().UseSqlite(connection).UseEnvelopeEncryption(e => e.UseProvider(provider)).Options;
        var id = Guid.NewGuid();
        await using (var db = new ClinicContext(options))
        {
            db.Database.EnsureCreated();
            db.Patients.Add(new Patient { Id = id, Name = "Ann", Ssn = "123-45-6789", DateOfBirth = new DateOnly(1980, 1, 2), HomeAddress = new Address { City = "X", Street = "Main 1" }, Emergency = new EmergencyContact { Phone = "555", Relation = "wife" } });
            await db.SaveChangesAsync(TestContext.Current.CancellationToken);
        }

        await using (var db = new ClinicContext(options))
        {
            var p = await db.Patients.SingleAsync(TestContext.Current.CancellationToken);
            Assert.Equal("123-45-6789", p.Ssn);
            Assert.Equal("Main 1", p.HomeAddress!.Street);
            Assert.Equal("555", p.Emergency!.Phone);
            var ssn = db.Patients.Select(x => new { x.Ssn }).Single();
            Assert.Equal("123-45-6789", ssn.Ssn);
        }
    }
}
