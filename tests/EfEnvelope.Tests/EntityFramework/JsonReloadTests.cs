using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.EntityFramework;

public sealed class JsonReloadSqliteTests(SqliteFixture fixture) : JsonReloadTests<SqliteFixture>(fixture);

public sealed class JsonReloadPostgresTests(PostgresFixture fixture) : JsonReloadTests<PostgresFixture>(fixture);

/// <summary>
/// <c>Reload()</c> of a JSON-mapped owned record restores its stored encrypted values, as plain EF restores plain ones,
/// and the owner saves afterwards. Found by a user-style review: EF reads each reloaded value of a JSON record through
/// a JSON path, and on SQLite hands over a byte[] as the bytes of its JSON text (hexadecimal), so the encrypted values
/// were emptied and the next save was refused as a tamper ("unknown format version 48"). PostgreSQL's provider decodes
/// it; the test runs there too.
/// </summary>
public abstract class JsonReloadTests<TFixture>(TFixture fixture) : IClassFixture<TFixture>
    where TFixture : DatabaseFixture
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private readonly InsecureInMemoryMasterKeyProvider _provider = new("primary");

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Reloading_a_JSON_mapped_record_restores_its_encrypted_values_and_the_owner_saves_after(bool asynchronous)
    {
        if (fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        var id = Guid.NewGuid();
        await using (var db = fixture.CreateContext(e => e.UseProvider(_provider)))
        {
            db.Patients.Add(new Patient
            {
                Id = id,
                Name = "Jo",
                Ssn = "555-01-0001",
                DateOfBirth = new DateOnly(1990, 1, 1),
                Emergency = new EmergencyContact { Relation = "sister", Phone = "+1 555 0100" },
            });
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = fixture.CreateContext(e => e.UseProvider(_provider)))
        {
            var patient = await db.Patients.SingleAsync(p => p.Id == id, Ct);
            patient.Emergency!.Phone = "a local edit";
            if (asynchronous)
            {
                await db.Entry(patient.Emergency).ReloadAsync(Ct);
            }
            else
            {
                db.Entry(patient.Emergency).Reload();
            }

            Assert.Equal(("sister", "+1 555 0100"), (patient.Emergency.Relation, patient.Emergency.Phone));
            Assert.Equal(EntityState.Unchanged, db.Entry(patient.Emergency).State);

            patient.Name = "Jo Renamed";
            await db.SaveChangesAsync(Ct);
        }

        await using var check = fixture.CreateContext(e => e.UseProvider(_provider));
        var saved = await check.Patients.AsNoTracking().SingleAsync(p => p.Id == id, Ct);
        Assert.Equal(("Jo Renamed", "+1 555 0100"), (saved.Name, saved.Emergency!.Phone));
    }
}
