using EfEnvelope.Infrastructure;
using EfEnvelope.Specification.Tests;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;

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
    public void The_partition_table_of_shared_lifecycle_jobs_uses_SQL_Server_types()
    {
        using var db = SqlServer();

        var ddl = new EfEnvelope.Lifecycle.JobPartitionTable(db).CreateTableSql();

        Assert.Equal(
            "CREATE TABLE [EfEnvelopeJobPartitions] ([Job] nvarchar(200) NOT NULL, [Partition] int NOT NULL, [Entity] nvarchar(max) NOT NULL, "
            + "[After] nvarchar(max) NULL, [UpTo] nvarchar(max) NULL, [Checkpoint] nvarchar(max) NULL, [Owner] nvarchar(200) NULL, "
            + "[LeaseUntil] bigint NULL, [Done] int NOT NULL, PRIMARY KEY ([Job], [Partition]))",
            ddl);
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

        #pragma warning disable EFENV001, EFENV002, EFENV003 // The analyzer warns at compile time about what this test expects to be refused at run time.
        var compare = Assert.Throws<InvalidOperationException>(() => db.Patients.Where(p => p.Ssn == "1").ToQueryString());
        var order = Assert.Throws<InvalidOperationException>(() => db.Patients.OrderBy(p => p.Diagnosis).ToQueryString());
        var match = Assert.Throws<InvalidOperationException>(() => db.Patients.Where(p => p.Diagnosis!.Contains("x")).ToQueryString());
        var nested = Assert.Throws<InvalidOperationException>(() => db.Patients.Select(p => new { p.Name, Count = p.Visits.Count(v => v.Notes == "x") }).ToQueryString());
        #pragma warning restore EFENV001, EFENV002, EFENV003

        Assert.Contains("'Patient.Ssn'", compare.Message, StringComparison.Ordinal);
        Assert.Contains("'Patient.Diagnosis'", order.Message, StringComparison.Ordinal);
        Assert.Contains("OrderBy", order.Message, StringComparison.Ordinal);
        Assert.Contains("patterns", match.Message, StringComparison.Ordinal);
        Assert.Contains("'Visit.Notes'", nested.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_seal_update_of_BindStoreGeneratedKeys_is_SQL_Server_SQL_matching_the_key_and_the_inserted_blob()
    {
        using var db = SqlServer();
        var patient = new Patient { Id = Guid.NewGuid(), Name = "Ann" };
        db.Add(patient);
        db.Entry(patient).Property<byte[]?>("EfEnvelopeKey").CurrentValue = [1];
        var encrypted = db.GetService<EnvelopeRuntime>().Find(db.Model.FindEntityType(typeof(Patient))!)!;

        var write = new EfEnvelope.Lifecycle.RecordTable(encrypted, db.GetService<Microsoft.EntityFrameworkCore.Storage.ISqlGenerationHelper>())
            .ReplaceKey(db.Entry(patient), [2]);

        Assert.Equal("UPDATE [Patients] SET [EfEnvelopeKey] = @lifecycle0 WHERE [Id] = @lifecycle1 AND [EfEnvelopeKey] = @lifecycle2", write.Sql(db.GetService<Microsoft.EntityFrameworkCore.Storage.ISqlGenerationHelper>()));
    }

    [Fact]
    public void Queries_on_plain_properties_are_translated_as_usual()
    {
        using var db = SqlServer();

        var sql = db.Patients.Where(p => p.Name.StartsWith("A")).OrderBy(p => p.Name).ToQueryString();

        Assert.Contains("ORDER BY [p].[Name]", sql, StringComparison.Ordinal);
    }

    private static async Task<SearchContext> SqlServerSearchAsync()
    {
        var indexKey = await BlindIndexKey.CreateAsync(Provider, cancellationToken: TestContext.Current.CancellationToken);
        return new(new DbContextOptionsBuilder<SearchContext>()
            .UseSqlServer("Server=(none);Database=EfEnvelope;Encrypt=false")
            .ManyConfigurationsPerProcess()
            .UseEnvelopeEncryption(e => e.UseProvider(Provider).UseBlindIndexKey(indexKey))
            .Options);
    }

    [Fact]
    public async Task Blind_index_columns_are_short_varbinary_with_a_database_index()
    {
        await using var db = await SqlServerSearchAsync();

        var ddl = db.Database.GenerateCreateScript();

        Assert.Contains("[Ssn_Index] varbinary(32) NULL", ddl, StringComparison.Ordinal);
        Assert.Contains("[City_Index] varbinary(1) NULL", ddl, StringComparison.Ordinal);
        Assert.Contains("CREATE UNIQUE INDEX [IX_People_Ssn_Index] ON [People] ([Ssn_Index])", ddl, StringComparison.Ordinal);
        Assert.Contains("CREATE INDEX [IX_People_Email_Index] ON [People] ([Email_Index])", ddl, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Equality_on_a_searchable_property_is_translated_to_its_index_without_the_plaintext()
    {
        await using var db = await SqlServerSearchAsync();
        var ssn = "078-05-1120";
        var wanted = new[] { "111-22-3333", "444-55-6666" };

        var equality = db.People.Where(p => p.Ssn == ssn).ToQueryString();
        var constant = db.People.Where(p => p.Email == "ann@example.com").ToQueryString();
        var inList = db.People.Where(p => wanted.Contains(p.Ssn)).ToQueryString();

        Assert.Contains("[p].[Ssn_Index] = @", equality, StringComparison.Ordinal);
        Assert.Contains("varbinary(32)", equality, StringComparison.Ordinal);
        Assert.Contains("[p].[Email_Index] = @", constant, StringComparison.Ordinal);
        Assert.Contains("[p].[Ssn_Index] IN (", inList, StringComparison.Ordinal);
        foreach (var plaintext in new[] { ssn, "ann@example.com", wanted[0], wanted[1] })
        {
            Assert.DoesNotContain(plaintext, equality + constant + inList, StringComparison.Ordinal);
        }
    }
}
