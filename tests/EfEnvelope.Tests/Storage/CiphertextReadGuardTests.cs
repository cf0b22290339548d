using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Storage;

/// <summary>
/// Raw SQL over an encrypted column on SQLite: plain EF returns the value, and Microsoft.Data.Sqlite would decode the
/// ciphertext as UTF-8 garbage, so EfEnvelope refuses the read instead, naming the property.
/// </summary>
public sealed class CiphertextReadGuardTests : IDisposable
{
    private readonly InMemoryClinic _clinic = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _clinic.Dispose();

    private async Task<Patient> InsertAsync()
    {
        var patient = new Patient { Id = Guid.NewGuid(), Name = "Ann Example", Ssn = "123-45-6789", Diagnosis = "Hypertension", DateOfBirth = new DateOnly(1980, 2, 29) };
        await using var db = _clinic.CreateContext();
        db.Patients.Add(patient);
        await db.SaveChangesAsync(Ct);
        return patient;
    }

    [Fact]
    public async Task Reading_an_encrypted_column_as_text_through_SqlQuery_is_refused_naming_the_property()
    {
        await InsertAsync();
        await using var db = _clinic.CreateContext();
        await db.Database.ExecuteSqlAsync($"CREATE VIEW \"PatientNumbers\" AS SELECT \"Name\", \"Ssn\" AS \"Number\" FROM \"Patients\"", Ct);

        var errors = new List<InvalidOperationException>
        {
            await Assert.ThrowsAsync<InvalidOperationException>(() => db.Database.SqlQuery<string>($"SELECT \"Number\" AS \"Value\" FROM \"PatientNumbers\"").ToListAsync(Ct)),
            await Assert.ThrowsAsync<InvalidOperationException>(() => db.Database.SqlQuery<string>($"SELECT \"Ssn\" AS \"Value\" FROM \"Patients\"").ToListAsync(Ct)),
            Assert.Throws<InvalidOperationException>(() => db.Database.SqlQuery<string>($"SELECT \"Ssn\" AS \"Value\" FROM \"Patients\"").ToList()),
            await Assert.ThrowsAsync<InvalidOperationException>(() => db.Database.SqlQuery<string>($"SELECT p.\"Ssn\" AS \"Value\" FROM \"Patients\" AS p").Where(v => v != "x").ToListAsync(Ct)),
            await Assert.ThrowsAsync<InvalidOperationException>(() => db.Database.SqlQueryRaw<string>("SELECT \"Diagnosis\" AS \"Value\" FROM \"Patients\"").SingleAsync(Ct)),
            await Assert.ThrowsAsync<InvalidOperationException>(() => db.Database.SqlQuery<PatientRow>($"SELECT \"Name\", \"Ssn\" FROM \"Patients\"").ToListAsync(Ct)),
        };

        Assert.All(errors, error =>
        {
            Assert.Contains("encrypted property 'Patient.", error.Message, StringComparison.Ordinal);
            Assert.Contains("of table 'Patients'", error.Message, StringComparison.Ordinal);
            Assert.Contains("read the column as byte[]", error.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("123-45-6789", error.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("Hypertension", error.Message, StringComparison.Ordinal);
        });
        Assert.Contains("column 'Ssn'", errors[1].Message, StringComparison.Ordinal);
        Assert.Contains("as String", errors[1].Message, StringComparison.Ordinal);
        Assert.Contains("'Patient.Ssn'", errors[0].Message, StringComparison.Ordinal);
        Assert.Contains("'Patient.Diagnosis'", errors[4].Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Plain_columns_ciphertext_as_bytes_and_other_blobs_read_as_in_plain_EF()
    {
        var patient = await InsertAsync();
        await using var db = _clinic.CreateContext();

        Assert.Equal(["Ann Example"], await db.Database.SqlQuery<string>($"SELECT \"Name\" AS \"Value\" FROM \"Patients\"").ToListAsync(Ct));
        var rows = await db.Database.SqlQuery<PatientRow>($"SELECT \"Name\", NULL AS \"Ssn\" FROM \"Patients\"").ToListAsync(Ct);
        Assert.Equal("Ann Example", Assert.Single(rows).Name);

        // The ciphertext itself, as the README says raw SQL sees it.
        var ciphertext = await db.Database.SqlQuery<byte[]>($"SELECT \"Ssn\" AS \"Value\" FROM \"Patients\"").SingleAsync(Ct);
        Assert.Equal(_clinic.ReadRaw("SELECT \"Ssn\" FROM \"Patients\""), ciphertext);

        // A BLOB that is not an encrypted column decodes as SQLite decodes it without EfEnvelope.
        Assert.Equal("abc", await db.Database.SqlQuery<string>($"SELECT CAST('abc' AS BLOB) AS \"Value\"").SingleAsync(Ct));

        // Entity queries (which read ciphertext as bytes) are untouched, tracking or not, through FromSql too.
        Assert.Equal(patient.Ssn, (await db.Patients.AsNoTracking().SingleAsync(Ct)).Ssn);
        Assert.Equal(patient.Ssn, (await db.Patients.FromSql($"SELECT * FROM \"Patients\"").SingleAsync(Ct)).Ssn);
        Assert.Equal(patient.Diagnosis, await db.Patients.Select(p => p.Diagnosis).SingleAsync(Ct));
    }

    private sealed class PatientRow
    {
        public string Name { get; set; } = "";

        public string? Ssn { get; set; }
    }
}
