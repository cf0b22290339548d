using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Storage;

public sealed class CiphertextReadGuardSqliteTests(SqliteFixture fixture) : CiphertextReadGuardTests<SqliteFixture>(fixture);

public sealed class CiphertextReadGuardPostgresTests(PostgresFixture fixture) : CiphertextReadGuardTests<PostgresFixture>(fixture);

/// <summary>
/// Raw SQL that reads an encrypted column as text or a number: plain EF returns the value; with encryption
/// Microsoft.Data.Sqlite would decode the ciphertext as UTF-8 garbage and Npgsql would refuse the cast without a word
/// about encryption, so EfEnvelope refuses the read, naming the property.
/// </summary>
public abstract class CiphertextReadGuardTests<TFixture>(TFixture fixture) : IClassFixture<TFixture>
    where TFixture : DatabaseFixture
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private async Task<Patient> InsertAsync()
    {
        if (fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        var patient = new Patient { Id = Guid.NewGuid(), Name = "Ann Example", Ssn = "123-45-6789", Diagnosis = "Hypertension", DateOfBirth = new DateOnly(1980, 2, 29) };
        await using var db = fixture.CreateContext();
        db.Patients.Add(patient);
        await db.SaveChangesAsync(Ct);
        return patient;
    }

    [Fact]
    public async Task Reading_an_encrypted_column_as_text_through_SqlQuery_is_refused_naming_the_property()
    {
        var patient = await InsertAsync();
        await using var db = fixture.CreateContext();
        var id = patient.Id;

        var errors = new List<InvalidOperationException>
        {
            await Assert.ThrowsAsync<InvalidOperationException>(() => db.Database.SqlQuery<string>($"SELECT \"Ssn\" AS \"Value\" FROM \"Patients\" WHERE \"Id\" = {id}").ToListAsync(Ct)),
            Assert.Throws<InvalidOperationException>(() => db.Database.SqlQuery<string>($"SELECT \"Ssn\" AS \"Value\" FROM \"Patients\" WHERE \"Id\" = {id}").ToList()),
            await Assert.ThrowsAsync<InvalidOperationException>(() => db.Database.SqlQuery<string>($"SELECT p.\"Ssn\" AS \"Value\" FROM \"Patients\" AS p WHERE p.\"Id\" = {id}").Where(v => v != "x").ToListAsync(Ct)),
            await Assert.ThrowsAsync<InvalidOperationException>(() => db.Database.SqlQueryRaw<string>("SELECT \"Diagnosis\" AS \"Value\" FROM \"Patients\" WHERE \"Id\" = {0}", id).SingleAsync(Ct)),
            await Assert.ThrowsAsync<InvalidOperationException>(() => db.Database.SqlQuery<PatientRow>($"SELECT \"Name\", \"Ssn\" FROM \"Patients\" WHERE \"Id\" = {id}").ToListAsync(Ct)),
        };

        // Async, with the key column in the result: the reader is also wrapped by the key prefetch.
        errors.Add(await Assert.ThrowsAsync<InvalidOperationException>(() => db.Database.SqlQueryRaw<PatientRow>("SELECT * FROM \"Patients\" WHERE \"Id\" = {0}", id).ToListAsync(Ct)));

        Assert.All(errors, error =>
        {
            Assert.Contains("encrypted property 'Patient.", error.Message, StringComparison.Ordinal);
            Assert.Contains("of table 'Patients'", error.Message, StringComparison.Ordinal);
            Assert.Contains("read the column as byte[]", error.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("123-45-6789", error.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("Hypertension", error.Message, StringComparison.Ordinal);
        });
        Assert.Contains("column 'Ssn'", errors[0].Message, StringComparison.Ordinal);
        Assert.Contains("as String", errors[0].Message, StringComparison.Ordinal);
        Assert.Contains("'Patient.Ssn'", errors[1].Message, StringComparison.Ordinal);
        Assert.Contains("'Patient.Diagnosis'", errors[3].Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_view_over_the_table_is_refused_on_SQLite_too()
    {
        var patient = await InsertAsync();
        await using var db = fixture.CreateContext();
        if (!db.Database.IsSqlite())
        {
            Assert.Skip("The view's origin columns are looked up through SQLite's schema table; on PostgreSQL through the catalog, covered above.");
        }

        await db.Database.ExecuteSqlAsync($"CREATE VIEW IF NOT EXISTS \"PatientNumbers\" AS SELECT \"Id\", \"Ssn\" AS \"Number\" FROM \"Patients\"", Ct);
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => db.Database.SqlQuery<string>($"SELECT \"Number\" AS \"Value\" FROM \"PatientNumbers\" WHERE \"Id\" = {patient.Id}").ToListAsync(Ct));
        Assert.Contains("'Patient.Ssn'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task On_PostgreSQL_a_same_named_table_in_another_schema_and_a_failed_catalog_lookup_keep_Npgsqls_error()
    {
        var patient = await InsertAsync();
        await using var db = fixture.CreateContext();
        if (db.Database.IsSqlite())
        {
            Assert.Skip("SQLite has no schemas, and its origin lookup needs no second connection.");
        }

        await db.Database.ExecuteSqlAsync($"CREATE SCHEMA IF NOT EXISTS elsewhere", Ct);
        await db.Database.ExecuteSqlAsync($"CREATE TABLE IF NOT EXISTS elsewhere.\"Patients\" (\"Ssn\" bytea)", Ct);
        await db.Database.ExecuteSqlAsync($"INSERT INTO elsewhere.\"Patients\" VALUES ('abc'::bytea)", Ct);
        await Assert.ThrowsAsync<InvalidCastException>(() => db.Database.SqlQuery<string>($"SELECT \"Ssn\" AS \"Value\" FROM elsewhere.\"Patients\"").ToListAsync(Ct));

        // A pool of one connection, which the open reader holds: the catalog cannot be asked, and Npgsql's own
        // error is what the application gets, after the pool's timeout.
        var builder = new DbContextOptionsBuilder<ClinicContext>().ManyConfigurationsPerProcess()
            .UseNpgsql(db.Database.GetConnectionString() + ";Maximum Pool Size=1;Timeout=1")
            .UseEnvelopeEncryption(e => e.UseProvider(fixture.Provider));
        await using var single = new ClinicContext(builder.Options);
        await Assert.ThrowsAsync<InvalidCastException>(() => single.Database.SqlQuery<string>($"SELECT \"Ssn\" AS \"Value\" FROM \"Patients\" WHERE \"Id\" = {patient.Id}").ToListAsync(Ct));
    }

    [Fact]
    public async Task Plain_columns_ciphertext_as_bytes_and_other_binary_values_read_as_in_plain_EF()
    {
        var patient = await InsertAsync();
        var id = patient.Id;
        await using var db = fixture.CreateContext();

        Assert.Equal(["Ann Example"], await db.Database.SqlQuery<string>($"SELECT \"Name\" AS \"Value\" FROM \"Patients\" WHERE \"Id\" = {id}").ToListAsync(Ct));
        var rows = await db.Database.SqlQuery<PatientRow>($"SELECT \"Name\", NULL AS \"Ssn\" FROM \"Patients\" WHERE \"Id\" = {id}").ToListAsync(Ct);
        Assert.Equal("Ann Example", Assert.Single(rows).Name);

        // The ciphertext itself, as the README says raw SQL sees it.
        var ciphertext = await db.Database.SqlQuery<byte[]>($"SELECT \"Ssn\" AS \"Value\" FROM \"Patients\" WHERE \"Id\" = {id}").SingleAsync(Ct);
        Assert.True(ciphertext.Length >= 28 + patient.Ssn.Length, $"{ciphertext.Length} bytes");
        Assert.False(ciphertext.AsSpan().IndexOf(System.Text.Encoding.UTF8.GetBytes(patient.Ssn)) >= 0);

        // A binary value that is not an encrypted column reads as the provider reads it without EfEnvelope: SQLite
        // decodes it, Npgsql refuses the cast with its own exception.
        if (db.Database.IsSqlite())
        {
            Assert.Equal("abc", await db.Database.SqlQuery<string>($"SELECT CAST('abc' AS BLOB) AS \"Value\"").SingleAsync(Ct));
        }
        else
        {
            await Assert.ThrowsAsync<InvalidCastException>(() => db.Database.SqlQuery<string>($"SELECT 'abc'::bytea AS \"Value\"").SingleAsync(Ct));
        }

        // Entity queries (which read ciphertext as bytes) are untouched, tracking or not, through FromSql too.
        Assert.Equal(patient.Ssn, (await db.Patients.AsNoTracking().SingleAsync(p => p.Id == id, Ct)).Ssn);
        Assert.Equal(patient.Ssn, (await db.Patients.FromSql($"SELECT * FROM \"Patients\"").SingleAsync(p => p.Id == id, Ct)).Ssn);
        Assert.Equal(patient.Diagnosis, await db.Patients.Where(p => p.Id == id).Select(p => p.Diagnosis).SingleAsync(Ct));
    }

    private sealed class PatientRow
    {
        public string Name { get; set; } = "";

        public string? Ssn { get; set; }
    }
}

/// <summary>On SQLite, ciphertext is recognized by its BLOB values too, whatever type name its column was declared with.</summary>
public sealed class CiphertextReadGuardDeclaredTypeTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_ciphertext_column_declared_with_another_type_name_is_refused()
    {
        await using var connection = new Microsoft.Data.Sqlite.SqliteConnection("Data Source=:memory:");
        await connection.OpenAsync(Ct);
        var options = new DbContextOptionsBuilder<VarbinaryContext>().UseSqlite(connection).ManyConfigurationsPerProcess()
            .UseEnvelopeEncryption(e => e.UseProvider(new EfEnvelope.KeyManagement.InsecureInMemoryMasterKeyProvider("primary"))).Options;
        await using var db = new VarbinaryContext(options);
        await db.Database.EnsureCreatedAsync(Ct);
        db.Secrets.Add(new Secret { Id = 1, Ssn = "123-45-6789" });
        await db.SaveChangesAsync(Ct);

        Assert.Equal("VARBINARY", await db.Database.SqlQuery<string>($"SELECT type AS \"Value\" FROM pragma_table_info('Secrets') WHERE name = 'Ssn'").SingleAsync(Ct));
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => db.Database.SqlQuery<string>($"SELECT \"Ssn\" AS \"Value\" FROM \"Secrets\"").ToListAsync(Ct));
        Assert.Contains("'Secret.Ssn'", error.Message, StringComparison.Ordinal);
        Assert.Equal("123-45-6789", (await db.Secrets.SingleAsync(Ct)).Ssn);
    }

    public sealed class Secret
    {
        public int Id { get; set; }

        [Encrypted]
        public string Ssn { get; set; } = "";
    }

    public sealed class VarbinaryContext(DbContextOptions<VarbinaryContext> options) : DbContext(options)
    {
        public DbSet<Secret> Secrets => Set<Secret>();

        // An ordinary convention that also reaches the ciphertext's shadow property: the column is declared VARBINARY.
        protected override void ConfigureConventions(ModelConfigurationBuilder configurationBuilder) =>
            configurationBuilder.Properties<byte[]>().HaveColumnType("VARBINARY");
    }
}
