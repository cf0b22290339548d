using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Lifecycle;

public class LegacyCustomer
{
    public int Id { get; set; }

    [Encrypted(LegacyPlaintextColumn = "Iban_Plaintext")]
    public string Iban { get; set; } = "";

    [Encrypted(LegacyPlaintextColumn = "Score_Plaintext")]
    public int Score { get; set; }
}

public sealed class LegacyCustomerContext(DbContextOptions<LegacyCustomerContext> options) : DbContext(options)
{
    public DbSet<LegacyCustomer> Customers => Set<LegacyCustomer>();
}

public sealed class LegacyPlaintextModelTests
{
    private static LegacyCustomerContext Create() => new(new DbContextOptionsBuilder<LegacyCustomerContext>()
        .UseSqlite("Data Source=:memory:")
        .ManyConfigurationsPerProcess()
        .UseEnvelopeEncryption(e => e.UseProvider(new InsecureInMemoryMasterKeyProvider()))
        .Options);

    [Fact]
    public void The_attribute_maps_a_nullable_legacy_column_of_the_property_type_next_to_a_nullable_ciphertext_column()
    {
        using var db = Create();
        var entity = db.Model.FindEntityType(typeof(LegacyCustomer))!;

        var iban = entity.FindProperty("Iban_LegacyPlaintext")!;
        Assert.Equal(typeof(string), iban.ClrType);
        Assert.True(iban.IsNullable);
        Assert.Equal("Iban_Plaintext", iban.GetColumnName());

        // A non-nullable value type gets a nullable legacy column: the job empties it.
        var score = entity.FindProperty("Score_LegacyPlaintext")!;
        Assert.Equal(typeof(int?), score.ClrType);
        Assert.Equal("Score_Plaintext", score.GetColumnName());

        // Rows not converted yet have no ciphertext, so the ciphertext column must accept NULL.
        Assert.True(entity.FindProperty("Iban_Ciphertext")!.IsNullable);
        Assert.True(entity.FindProperty("Score_Ciphertext")!.IsNullable);
        Assert.Contains("\"Iban_Plaintext\" TEXT NULL", db.Database.GenerateCreateScript(), StringComparison.Ordinal);
    }
}
