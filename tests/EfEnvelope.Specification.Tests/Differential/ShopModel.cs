using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace EfEnvelope.Specification.Tests.Differential;

// The differential model. The same CLR types serve both runs of a scenario: the context applies IsEncrypted() to the
// properties listed in ShopContext.EncryptedProperties only when its options carry EfEnvelope's extension, so "plain"
// is EF Core as it ships and "encrypted" is the same model with those properties encrypted.

public enum Tier
{
    Bronze = 0,
    Silver = 1,
    Gold = 2,
}

public class Customer
{
    public int Id { get; set; }

    public string Name { get; set; } = "";

    public string? Email { get; set; }

    public string Ssn { get; set; } = "";

    public string? Notes { get; set; }

    public DateOnly BirthDate { get; set; }

    public int Score { get; set; }

    public decimal CreditLimit { get; set; }

    public bool Vip { get; set; }

    public Tier Tier { get; set; }

    public DateTimeOffset? LastSeen { get; set; }

    public int Version { get; set; }

    public Address? Home { get; set; }

    public List<Order> Orders { get; set; } = [];
}

public class Address
{
    public string City { get; set; } = "";

    public string Street { get; set; } = "";
}

public class Order
{
    public int Id { get; set; }

    public int CustomerId { get; set; }

    public Customer? Customer { get; set; }

    public string CardNumber { get; set; } = "";

    public string? Note { get; set; }

    public decimal Total { get; set; }

    public int Quantity { get; set; }

    public DateTime? ShippedAt { get; set; }
}

/// <summary>JSON-owned with a nested owned type.</summary>
public class Member
{
    public int Id { get; set; }

    public string Name { get; set; } = "";

    public Profile? Profile { get; set; }
}

public class Profile
{
    public string Bio { get; set; } = "";

    public string Nickname { get; set; } = "";

    public Social? Social { get; set; }
}

public class Social
{
    public int Followers { get; set; }

    public string Handle { get; set; } = "";
}

/// <summary>JSON-owned whose only property is encrypted.</summary>
public class Vault
{
    public int Id { get; set; }

    public string Label { get; set; } = "";

    public Secret? Secret { get; set; }
}

public class Secret
{
    public string Pin { get; set; } = "";
}

/// <summary>TPH.</summary>
public abstract class Payment
{
    public int Id { get; set; }

    public decimal Amount { get; set; }

    public string Reference { get; set; } = "";
}

public class CardPayment : Payment
{
    public string Pan { get; set; } = "";
}

public class BankPayment : Payment
{
    public string? Iban { get; set; }
}

/// <summary>TPT.</summary>
public class Document
{
    public int Id { get; set; }

    public string Title { get; set; } = "";

    public string? Body { get; set; }
}

public class Contract : Document
{
    public string Party { get; set; } = "";
}

/// <summary>TPC (keys are assigned by the scenario: SQLite has no sequences).</summary>
public abstract class Vehicle
{
    public int Id { get; set; }

    public string Plate { get; set; } = "";
}

public class Car : Vehicle
{
    public int Seats { get; set; }

    public string Vin { get; set; } = "";
}

public class Truck : Vehicle
{
    public int Payload { get; set; }
}

/// <summary>Constructor binding: EF calls the primary constructor, encrypted parameter included.</summary>
public record Book(Guid Id, string Title, string Isbn)
{
    public string? Summary { get; set; }
}

/// <summary>A class whose constructor takes an encrypted value.</summary>
public class Badge(int id, string code)
{
    public int Id { get; private set; } = id;

    public string Code { get; private set; } = code;

    public string Holder { get; set; } = "";
}

/// <summary>Seeded through HasData: a nullable encrypted property (the required case is issue item 8's own model).</summary>
public class Country
{
    public int Id { get; set; }

    public string Code { get; set; } = "";

    public string? Motto { get; set; }
}

/// <summary>A context of the differential suite: encrypts what it marks with <see cref="Encrypt"/> only when its options register EfEnvelope.</summary>
public abstract class DifferentialContext(DbContextOptions options) : DbContext(options)
{
    /// <summary>Whether this context's options register EfEnvelope.</summary>
    public bool Encrypted { get; } = IsEncrypted(options);

    public static bool IsEncrypted(IDbContextOptions options) =>
        options.Extensions.Any(e => e.GetType().Assembly == typeof(EncryptedAttribute).Assembly);

    protected void Encrypt<TProperty>(PropertyBuilder<TProperty> property)
    {
        if (Encrypted)
        {
            property.IsEncrypted();
        }
    }
}

/// <summary>
/// The main model. Types whose encrypted model fails to build today (constructor binding) live in
/// <see cref="LibraryContext"/>, so that such a failure costs its own scenarios only.
/// </summary>
public class ShopContext(DbContextOptions<ShopContext> options) : DifferentialContext(options)
{
    /// <summary>The properties that are encrypted in the encrypted run, as "Type.Property".</summary>
    public static readonly IReadOnlyList<string> EncryptedProperties =
    [
        "Customer.Email", "Customer.Ssn", "Customer.Notes", "Customer.BirthDate", "Customer.Score", "Customer.CreditLimit",
        "Customer.Vip", "Customer.Tier", "Customer.LastSeen", "Address.Street", "Order.CardNumber", "Order.Note", "Order.ShippedAt",
        "Profile.Nickname", "Social.Handle", "Secret.Pin", "Payment.Reference", "CardPayment.Pan", "BankPayment.Iban",
        "Document.Body", "Contract.Party", "Vehicle.Plate", "Car.Vin", "Book.Isbn", "Badge.Code", "Country.Motto", "Region.Anthem", "Region.Motto",
        "Ticket.Stamp", "Ticket.Memo", "Ticket.Secret", "Ticket.Photo", "BasketLine.Code",
    ];

    public DbSet<Customer> Customers => Set<Customer>();

    public DbSet<Order> Orders => Set<Order>();

    public DbSet<Member> Members => Set<Member>();

    public DbSet<Vault> Vaults => Set<Vault>();

    public DbSet<Payment> Payments => Set<Payment>();

    public DbSet<Document> Documents => Set<Document>();

    public DbSet<Contract> Contracts => Set<Contract>();

    public DbSet<Vehicle> Vehicles => Set<Vehicle>();


    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<Customer>(customer =>
        {
            // Email is searchable, so that equality filters have a translation in the encrypted run.
            if (Encrypted)
            {
                customer.Property(c => c.Email).IsEncrypted(search => search.IndexBytes = 32);
            }

            Encrypt(customer.Property(c => c.Ssn));
            Encrypt(customer.Property(c => c.Notes));
            Encrypt(customer.Property(c => c.BirthDate));
            Encrypt(customer.Property(c => c.Score));
            Encrypt(customer.Property(c => c.CreditLimit).HasPrecision(18, 2));
            Encrypt(customer.Property(c => c.Vip));
            Encrypt(customer.Property(c => c.Tier));
            Encrypt(customer.Property(c => c.LastSeen));
            customer.Property(c => c.Version).IsConcurrencyToken();
            customer.OwnsOne(c => c.Home, home => Encrypt(home.Property(a => a.Street)));
            customer.HasMany(c => c.Orders).WithOne(o => o.Customer).HasForeignKey(o => o.CustomerId);
        });
        modelBuilder.Entity<Order>(order =>
        {
            Encrypt(order.Property(o => o.CardNumber));
            Encrypt(order.Property(o => o.Note));
            Encrypt(order.Property(o => o.ShippedAt));
            order.Property(o => o.Total).HasPrecision(18, 2);
        });
        modelBuilder.Entity<Member>().OwnsOne(m => m.Profile, profile =>
        {
            profile.ToJson();
            Encrypt(profile.Property(p => p.Nickname));
            profile.OwnsOne(p => p.Social, social => Encrypt(social.Property(s => s.Handle)));
        });
        modelBuilder.Entity<Vault>().OwnsOne(v => v.Secret, secret =>
        {
            secret.ToJson();
            Encrypt(secret.Property(s => s.Pin));
        });
        modelBuilder.Entity<Payment>(payment =>
        {
            payment.Property(p => p.Amount).HasPrecision(18, 2);
            Encrypt(payment.Property(p => p.Reference));
        });
        Encrypt(modelBuilder.Entity<CardPayment>().Property(p => p.Pan));
        Encrypt(modelBuilder.Entity<BankPayment>().Property(p => p.Iban));
        modelBuilder.Entity<Document>().UseTptMappingStrategy();
        Encrypt(modelBuilder.Entity<Document>().Property(d => d.Body));
        Encrypt(modelBuilder.Entity<Contract>().Property(c => c.Party));
        modelBuilder.Entity<Vehicle>(vehicle =>
        {
            vehicle.UseTpcMappingStrategy();
            vehicle.Property(v => v.Id).ValueGeneratedNever();
            Encrypt(vehicle.Property(v => v.Plate));
        });
        Encrypt(modelBuilder.Entity<Car>().Property(c => c.Vin));
        modelBuilder.Entity<Truck>();
    }

}

/// <summary>Constructor binding: a record and a class whose constructors take an encrypted value.</summary>
public class LibraryContext(DbContextOptions<LibraryContext> options) : DifferentialContext(options)
{
    public DbSet<Book> Books => Set<Book>();

    public DbSet<Badge> Badges => Set<Badge>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        Encrypt(modelBuilder.Entity<Book>().Property(b => b.Isbn));
        modelBuilder.Entity<Badge>(badge =>
        {
            badge.Property(b => b.Id).ValueGeneratedNever();
            Encrypt(badge.Property(b => b.Code));
        });
    }
}

/// <summary>Keys EF's model cache on the run's configuration as well as the context type, so the two models never mix.</summary>
public sealed class ShopModelCacheKeyFactory : IModelCacheKeyFactory
{
    public object Create(DbContext context, bool designTime) =>
        (context.GetType(), context is DifferentialContext { Encrypted: true }, designTime);
}
