using EfEnvelope.Specification.Tests;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.SqlServer;

/// <summary>What can be checked for SQL Server (and PostgreSQL) without a server: generated DDL and translated SQL.</summary>
public sealed class SqlServerWithoutServerTests
{
    private static readonly InsecureInMemoryMasterKeyProvider Provider = new();

    private static ClinicContext SqlServer() =>
        new(new DbContextOptionsBuilder<ClinicContext>()
            .UseSqlServer("Server=(none);Database=EfEnvelope;Encrypt=false")
            .ManyConfigurationsPerProcess().UseEnvelopeEncryption(e => e.UseProvider(Provider))
            .Options);

    [Fact]
    public void Ciphertext_and_key_columns_are_varbinary_max_in_the_generated_DDL()
    {
        using var db = SqlServer();

        var ddl = db.Database.GenerateCreateScript();

        Assert.Contains("[Ssn] varbinary(max) NOT NULL", ddl, StringComparison.Ordinal);
        Assert.Contains("[Diagnosis] varbinary(max) NULL", ddl, StringComparison.Ordinal);
        Assert.Contains("[DateOfBirth] varbinary(max) NOT NULL", ddl, StringComparison.Ordinal);
        Assert.Contains("[EfEnvelopeKey] varbinary(max) NULL", ddl, StringComparison.Ordinal);
        Assert.Contains("[HomeAddress_Street] varbinary(max) NULL", ddl, StringComparison.Ordinal);
        Assert.Contains("[HomeAddress_EfEnvelopeKey] varbinary(max) NULL", ddl, StringComparison.Ordinal);
        Assert.Contains("[CardNumber] varbinary(max) NOT NULL", ddl, StringComparison.Ordinal);
        Assert.DoesNotContain("[Ssn] nvarchar", ddl, StringComparison.Ordinal);
    }

    [Fact]
    public void Ciphertext_columns_are_bytea_in_the_PostgreSQL_DDL()
    {
        using var db = new ClinicContext(new DbContextOptionsBuilder<ClinicContext>()
            .UseNpgsql("Host=none")
            .ManyConfigurationsPerProcess().UseEnvelopeEncryption(e => e.UseProvider(Provider))
            .Options);

        var ddl = db.Database.GenerateCreateScript();

        Assert.Contains("\"Ssn\" bytea NOT NULL", ddl, StringComparison.Ordinal);
        Assert.Contains("\"EfEnvelopeKey\" bytea", ddl, StringComparison.Ordinal);
    }

    [Fact]
    public void A_projection_of_an_encrypted_property_selects_its_ciphertext_and_key_columns()
    {
        using var db = SqlServer();

        var sql = db.Patients.Where(p => p.Name == "Ann").Select(p => new { p.Name, p.Ssn }).ToQueryString();

        Assert.Contains("[p].[Ssn]", sql, StringComparison.Ordinal);
        Assert.Contains("[p].[EfEnvelopeKey]", sql, StringComparison.Ordinal);
        Assert.Contains("WHERE [p].[Name] = N'Ann'", sql, StringComparison.Ordinal);
    }

    [Fact]
    public void Comparing_ordering_and_matching_encrypted_properties_are_refused_before_any_SQL()
    {
        using var db = SqlServer();

        var compare = Assert.Throws<InvalidOperationException>(() => db.Patients.Where(p => p.Ssn == "1").ToQueryString());
        var order = Assert.Throws<InvalidOperationException>(() => db.Patients.OrderBy(p => p.Diagnosis).ToQueryString());
        var match = Assert.Throws<InvalidOperationException>(() => db.Patients.Where(p => p.Diagnosis!.Contains("x")).ToQueryString());
        var nested = Assert.Throws<InvalidOperationException>(() => db.Patients.Select(p => new { p.Name, Count = p.Visits.Count(v => v.Notes == "x") }).ToQueryString());

        Assert.Contains("'Patient.Ssn'", compare.Message, StringComparison.Ordinal);
        Assert.Contains("'Patient.Diagnosis'", order.Message, StringComparison.Ordinal);
        Assert.Contains("OrderBy", order.Message, StringComparison.Ordinal);
        Assert.Contains("patterns", match.Message, StringComparison.Ordinal);
        Assert.Contains("'Visit.Notes'", nested.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Queries_on_plain_properties_are_translated_as_usual()
    {
        using var db = SqlServer();

        var sql = db.Patients.Where(p => p.Name.StartsWith("A")).OrderBy(p => p.Name).ToQueryString();

        Assert.Contains("ORDER BY [p].[Name]", sql, StringComparison.Ordinal);
    }
}
