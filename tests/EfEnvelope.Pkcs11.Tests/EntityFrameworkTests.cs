using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Pkcs11.Tests;

/// <summary>EF Core on SQLite with the master key in the SoftHSM token, configured the way users do.</summary>
public sealed class EntityFrameworkTests
{
    public EntityFrameworkTests() => SoftHsm.Require();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Encrypted_properties_round_trip_through_SQLite_with_the_key_in_the_token()
    {
        var label = await SoftHsm.CreateKeyAsync("ef-sqlite");
        using var connection = new SqliteConnection("Data Source=:memory:");
        await connection.OpenAsync(Ct);
        var options = new DbContextOptionsBuilder()
            .UseSqlite(connection)
            .UseEnvelopeEncryption(e => e.UsePkcs11(o =>
            {
                o.LibraryPath = SoftHsm.ModulePath;
                o.TokenLabel = SoftHsm.TokenLabel;
                o.KeyLabel = label;
                o.Pin = SoftHsm.Pin;
            }))
            .Options;
        var id = Guid.NewGuid();

        await using (var db = new ClinicContext(options))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Patients.Add(new Patient { Id = id, Name = "Ann", Ssn = "123-45-6789", Diagnosis = "flu", DateOfBirth = new DateOnly(1980, 1, 2) });
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = new ClinicContext(options))
        {
            var patient = await db.Patients.SingleAsync(p => p.Id == id, Ct);
            Assert.Equal("123-45-6789", patient.Ssn);
            Assert.Equal("flu", patient.Diagnosis);
            Assert.Equal(new DateOnly(1980, 1, 2), patient.DateOfBirth);
        }

        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT Ssn FROM Patients";
        var stored = Assert.IsType<byte[]>(await command.ExecuteScalarAsync(Ct));
        Assert.DoesNotContain("123-45-6789", System.Text.Encoding.UTF8.GetString(stored), StringComparison.Ordinal);
    }
}
