using EfEnvelope.Specification.Tests;
using EfEnvelope.KeyManagement;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Tests.Metadata;

/// <summary>Encryption that cannot work is refused when the model is built, naming the property.</summary>
public sealed class ModelValidationTests
{
    private static readonly InsecureInMemoryMasterKeyProvider Provider = new();

    public class EncryptedKey
    {
        [Encrypted]
        public string Id { get; set; } = "";
    }

    public class Parent
    {
        public int Id { get; set; }

        public Money Price { get; set; } = new();
    }

    public class Money
    {
        [Encrypted]
        public decimal Amount { get; set; }

        public string Currency { get; set; } = "";
    }

    public class Named
    {
        public int Id { get; set; }

        [Encrypted]
        [System.ComponentModel.DataAnnotations.Schema.Column("secret_column")]
        [System.ComponentModel.DataAnnotations.MaxLength(40)]
        public string? Secret { get; set; }
    }

    public class Tagged
    {
        public int Id { get; set; }

        public Label Label { get; set; } = new();
    }

    public class Label
    {
        public string Text { get; set; } = "";
    }

    public class Child
    {
        public int Id { get; set; }

        public int ParentId { get; set; }

        public string Code { get; set; } = "";

        public string Color { get; set; } = "";
    }

    public class Notifying : System.ComponentModel.INotifyPropertyChanged
    {
        private string _text = "";

        public event System.ComponentModel.PropertyChangedEventHandler? PropertyChanged;

        public int Id { get; set; }

        public string Text
        {
            get => _text;
            set
            {
                _text = value;
                PropertyChanged?.Invoke(this, new(nameof(Text)));
            }
        }
    }

    public class Unsupported
    {
        public int Id { get; set; }

        [Encrypted]
        public Uri? Homepage { get; set; }
    }

    public class Seeded
    {
        public int Id { get; set; }

        public string Name { get; set; } = "";

        [Encrypted]
        public string? Note { get; set; }
    }

    private sealed class ModelContext(Action<ModelBuilder> configure) : DbContext
    {
        protected override void OnConfiguring(DbContextOptionsBuilder optionsBuilder) =>
            optionsBuilder.UseSqlite("Data Source=:memory:").ManyConfigurationsPerProcess().UseEnvelopeEncryption(e => e.UseProvider(Provider))
                .ReplaceService<Microsoft.EntityFrameworkCore.Infrastructure.IModelCacheKeyFactory, NoModelCache>();

        protected override void OnModelCreating(ModelBuilder modelBuilder) => configure(modelBuilder);
    }

    private sealed class NoModelCache : Microsoft.EntityFrameworkCore.Infrastructure.IModelCacheKeyFactory
    {
        public object Create(DbContext context, bool designTime) => new object();
    }

    private static string BuildError(Action<ModelBuilder> configure)
    {
        using var context = new ModelContext(configure);
        return Assert.Throws<InvalidOperationException>(() => context.Model).Message;
    }

    [Fact]
    public void The_encrypted_attribute_combines_with_other_data_annotations()
    {
        // EF reads [Column] as a single attribute: an [Encrypted] deriving from ColumnAttribute would make it ambiguous.
        using var context = new ModelContext(m => m.Entity<Named>());
        var ciphertext = context.Model.FindEntityType(typeof(Named))!.FindProperty("Secret_Ciphertext")!;
        Assert.Equal("secret_column", ciphertext.GetColumnName());
        Assert.Equal(ValueGenerated.Never, ciphertext.ValueGenerated);
    }

    // The column holds ciphertext, so the database would apply none of these to the value: refused, not ignored.
    [Theory]
    [InlineData("column type")]
    [InlineData("collation")]
    [InlineData("fixed length")]
    [InlineData("precision of a non-decimal")]
    public void A_column_facet_the_database_cannot_apply_to_ciphertext_is_refused(string facet)
    {
        var error = BuildError(m => m.Entity<Child>(b =>
        {
            _ = facet switch
            {
                "column type" => b.Property(c => c.Code).IsEncrypted().HasColumnType("varchar(3)"),
                "collation" => b.Property(c => c.Code).IsEncrypted().UseCollation("NOCASE"),
                "fixed length" => b.Property(c => c.Code).IsEncrypted().HasMaxLength(3).IsFixedLength(),
                _ => b.Property(c => c.Color).IsEncrypted().HasPrecision(3, 1),
            };
        }));

        Assert.Contains(facet == "precision of a non-decimal" ? "'Child.Color'" : "'Child.Code'", error, StringComparison.Ordinal);
        Assert.Contains("has a column facet the database would apply to the plain value", error, StringComparison.Ordinal);
    }

    private sealed class CodeGenerator : Microsoft.EntityFrameworkCore.ValueGeneration.ValueGenerator<string>
    {
        public override bool GeneratesTemporaryValues => false;

        public override string Next(Microsoft.EntityFrameworkCore.ChangeTracking.EntityEntry entry) => "generated";
    }

    [Fact]
    public void A_value_generator_on_an_encrypted_property_is_refused_rather_than_never_run()
    {
        // EF runs value generators for the properties of its model; the encrypted one leaves it, so the value
        // silently stayed null (found by a user-style review).
        var error = BuildError(m => m.Entity<Child>().Property(c => c.Code).IsEncrypted().HasValueGenerator<CodeGenerator>());

        Assert.Contains("Encrypted property 'Child.Code' has a value generator (HasValueGenerator), which EF does not run for an encrypted property", error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_database_default_value_is_refused_with_the_application_side_alternative()
    {
        // Refused before as "generated by the database" (found by a user-style hunt): the constant is the application's.
        var error = BuildError(m => m.Entity<Child>().Property(c => c.Code).IsEncrypted().HasDefaultValue("none"));

        Assert.Contains("Encrypted property 'Child.Code' has a database default value (HasDefaultValue), which the database would store as plaintext", error, StringComparison.Ordinal);
        Assert.Contains("constructor or property initializer", error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_database_generated_value_is_refused() =>
        Assert.Contains(
            "Encrypted property 'Child.Code' is generated by the database, which cannot encrypt",
            BuildError(m => m.Entity<Child>().Property(c => c.Code).IsEncrypted().HasDefaultValueSql("'x'")),
            StringComparison.Ordinal);

    [Fact]
    public void A_maximum_length_and_a_decimal_precision_are_kept_for_the_save_check()
    {
        using var context = new ModelContext(m =>
        {
            m.Entity<Child>().Property(c => c.Code).IsEncrypted().HasMaxLength(3);
            m.Entity<Parent>().OwnsOne(p => p.Price).Property(p => p.Amount).HasPrecision(5, 2);
        });

        var code = context.Model.FindEntityType(typeof(Child))!.FindProperty("Code_Ciphertext")!;
        var amount = context.Model.FindEntityType(typeof(Money))!.FindProperty("Amount_Ciphertext")!;
        Assert.Equal(3, code["EfEnvelope:MaxLength"]);
        Assert.Equal((5, 2), ((int)amount["EfEnvelope:Precision"]!, (int)amount["EfEnvelope:Scale"]!));
    }

    [Fact]
    public void Encrypting_a_primary_key_is_refused() =>
        Assert.Contains("'EncryptedKey.Id' is part of a key", BuildError(m => m.Entity<EncryptedKey>()), StringComparison.Ordinal);

    [Fact]
    public void Encrypting_a_foreign_key_is_refused() =>
        Assert.Contains("'Child.ParentId' is part of a foreign key", BuildError(m =>
        {
            m.Entity<Parent>().Ignore(p => p.Price);
            m.Entity<Child>().HasOne<Parent>().WithMany().HasForeignKey(c => c.ParentId);
            m.Entity<Child>().Property(c => c.ParentId).IsEncrypted();
        }), StringComparison.Ordinal);

    [Fact]
    public void Encrypting_an_alternate_key_is_refused() =>
        Assert.Contains("'Child.Code' is part of a key", BuildError(m =>
        {
            m.Entity<Child>().HasAlternateKey(c => c.Code);
            m.Entity<Child>().Property(c => c.Code).IsEncrypted();
        }), StringComparison.Ordinal);

    [Fact]
    public void Encrypting_an_indexed_property_is_refused() =>
        Assert.Contains("'Child.Color' is part of an index", BuildError(m =>
        {
            m.Entity<Child>().HasIndex(c => c.Color);
            m.Entity<Child>().Property(c => c.Color).IsEncrypted();
        }), StringComparison.Ordinal);

    [Fact]
    public void An_encrypted_property_of_a_keyless_entity_type_is_refused_instead_of_failing_on_every_row()
    {
        // A view over the table another type saves: before, each row read failed as tampered.
        var error = BuildError(m => m.Entity<Child>(b =>
        {
            b.HasNoKey().ToView("Children");
            b.Property(c => c.Code).IsEncrypted();
        }));

        Assert.Contains("'Child.Code' belongs to the keyless entity type 'Child'", error, StringComparison.Ordinal);
        Assert.Contains("project what you need with Select", error, StringComparison.Ordinal);
    }

    public abstract class Animal
    {
        public int Id { get; set; }
    }

    public class Dog : Animal
    {
        public string? Bark { get; set; }
    }

    public class Cat : Animal
    {
        public string? Meow { get; set; }
    }

    [Fact]
    public void An_explicit_column_name_shared_by_two_encrypted_properties_of_a_hierarchy_stays_one_column()
    {
        // Before, the ciphertext properties carried the name as a convention, and EF renamed one of them ("Dog_Sound").
        using var context = new ModelContext(m =>
        {
            m.Entity<Animal>();
            m.Entity<Dog>().Property(d => d.Bark).HasColumnName("Sound").IsEncrypted();
            m.Entity<Cat>().Property(c => c.Meow).HasColumnName("Sound").IsEncrypted();
        });

        Assert.Equal("Sound", context.Model.FindEntityType(typeof(Dog))!.FindProperty("Bark_Ciphertext")!.GetColumnName());
        Assert.Equal("Sound", context.Model.FindEntityType(typeof(Cat))!.FindProperty("Meow_Ciphertext")!.GetColumnName());
        Assert.DoesNotContain("Dog_Sound", context.Database.GenerateCreateScript(), StringComparison.Ordinal);
    }

    [Fact]
    public void An_explicit_column_shared_by_an_encrypted_and_a_plain_property_is_refused_instead_of_split()
    {
        var error = BuildError(m =>
        {
            m.Entity<Animal>();
            m.Entity<Dog>().Property(d => d.Bark).HasColumnName("Sound").IsEncrypted();
            m.Entity<Cat>().Property(c => c.Meow).HasColumnName("Sound");
        });

        Assert.Contains("'Sound'", error, StringComparison.Ordinal);
        Assert.Contains("Encrypted property 'Dog.Bark' and property 'Cat.Meow', which is not encrypted, both map to column 'Sound'", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Encrypting_a_complex_type_property_is_refused_instead_of_storing_plaintext()
    {
        var error = BuildError(m => m.Entity<Parent>().ComplexProperty(p => p.Price));

        Assert.Contains("Money.Amount", error, StringComparison.Ordinal);
        Assert.Contains("complex type", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Encrypting_a_complex_type_property_fluently_is_refused()
    {
        var error = BuildError(m => m.Entity<Tagged>().ComplexProperty(t => t.Label, label => label.Property(l => l.Text).IsEncrypted()));

        Assert.Contains("Label.Text", error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_value_conversion_on_an_encrypted_property_is_refused_instead_of_never_running() =>
        Assert.Contains("'Child.Code' has a value conversion", BuildError(m =>
            m.Entity<Child>().Property(c => c.Code).IsEncrypted().HasConversion(v => v.ToLowerInvariant(), v => v)), StringComparison.Ordinal);

    [Fact]
    public void A_value_comparer_on_an_encrypted_property_is_refused_instead_of_being_ignored() =>
        Assert.Contains("'Child.Code' has a value comparer", BuildError(m =>
            m.Entity<Child>().Property(c => c.Code).IsEncrypted().Metadata.SetValueComparer(
                new Microsoft.EntityFrameworkCore.ChangeTracking.ValueComparer<string>((a, b) => string.Equals(a, b, StringComparison.OrdinalIgnoreCase), v => v.ToUpperInvariant().GetHashCode(StringComparison.Ordinal)))),
            StringComparison.Ordinal);

    [Fact]
    public void A_notification_change_tracking_strategy_is_refused_instead_of_losing_edits()
    {
        var error = BuildError(m => m.Entity<Notifying>(b =>
        {
            b.HasChangeTrackingStrategy(ChangeTrackingStrategy.ChangedNotifications);
            b.Property(n => n.Text).IsEncrypted();
        }));

        Assert.Contains("'Notifying.Text'", error, StringComparison.Ordinal);
        Assert.Contains("HasChangeTrackingStrategy(ChangeTrackingStrategy.Snapshot)", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Encrypting_an_unsupported_type_is_refused() =>
        Assert.Contains("'Unsupported.Homepage' has type 'Uri'", BuildError(m => m.Entity<Unsupported>().Property(u => u.Homepage).HasConversion<string>()), StringComparison.Ordinal);

    [Fact]
    public void Seeding_an_encrypted_value_with_HasData_is_refused_instead_of_storing_or_dropping_it()
    {
        var error = BuildError(m => m.Entity<Child>(b =>
        {
            b.Property(c => c.Color).IsEncrypted();
            b.HasData(new Child { Id = 1, Code = "a", Color = "red" });
        }));

        Assert.Contains("'Child.Color' has seed data (HasData)", error, StringComparison.Ordinal);
        Assert.Contains("SaveChanges", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Seeding_a_row_whose_encrypted_value_is_null_is_allowed()
    {
        using var context = new ModelContext(m => m.Entity<Seeded>().HasData(new Seeded { Id = 1, Name = "plain" }));

        Assert.Single(context.GetService<Microsoft.EntityFrameworkCore.Metadata.IDesignTimeModel>().Model.FindEntityType(typeof(Seeded))!.GetSeedData());
    }

    [Fact]
    public void Registering_without_a_provider_is_refused_with_the_fix()
    {
        var options = new DbContextOptionsBuilder().UseSqlite("Data Source=:memory:").ManyConfigurationsPerProcess().UseEnvelopeEncryption(_ => { }).Options;

        var error = Assert.Throws<InvalidOperationException>(() =>
        {
            using var context = new DbContext(options);
            return context.Model;
        });

        Assert.Contains("UseProvider", error.Message, StringComparison.Ordinal);
    }
}
