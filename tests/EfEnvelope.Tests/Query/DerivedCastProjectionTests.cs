using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Query;

/// <summary>
/// A projection that reads an encrypted property of a derived type through a cast (<c>((Dog)a).Vet</c>,
/// <c>(a as Dog)!.Vet</c>) gives null for rows of another type, as plain EF reads NULL from the column, in TPH and TPT.
/// Found by a user-style review: the cast threw InvalidCastException on the client, the <c>as</c> form a
/// NullReferenceException.
/// </summary>
public sealed class DerivedCastProjectionTests : PlainAndEncryptedSqlite
{


    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static TheoryData<bool, bool> Runs => new() { { false, false }, { true, false }, { false, true }, { true, true } };

    [Theory]
    [MemberData(nameof(Runs))]
    public async Task A_cast_to_a_derived_type_reads_null_for_rows_of_another_type(bool encrypted, bool tablePerType)
    {
        await using (var db = Create(encrypted, tablePerType))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.AddRange(new Cat { Id = 1, Name = "Tom" }, new Dog { Id = 2, Name = "Rex", Vet = "Dr. Who", Age = 4, Clinic = new Clinic { Phone = "555" } });
            await db.SaveChangesAsync(Ct);
        }

        await using var read = Create(encrypted, tablePerType);
        Assert.Equal([null, "Dr. Who"], await read.Animals.OrderBy(a => a.Id).Select(a => ((Dog)a).Vet).ToListAsync(Ct));
        Assert.Equal([null, "Dr. Who"], await read.Animals.AsNoTracking().OrderBy(a => a.Id).Select(a => (a as Dog)!.Vet).ToListAsync(Ct));
        Assert.Equal([null, 4], await read.Animals.OrderBy(a => a.Id).Select(a => (int?)((Dog)a).Age).ToListAsync(Ct));
        Assert.Equal([null, 4L], await read.Animals.OrderBy(a => a.Id).Select(a => (long?)((Dog)a).Age).ToListAsync(Ct));
        Assert.Equal([null, "555"], await read.Animals.OrderBy(a => a.Id).Select(a => ((Dog)a).Clinic!.Phone).ToListAsync(Ct));
        Assert.Equal([(1, (string?)null), (2, "Dr. Who")], (await read.Animals.OrderBy(a => a.Id).Select(a => new { a.Id, ((Dog)a).Vet }).ToListAsync(Ct)).Select(x => (x.Id, x.Vet)));
    }

    private ZooContext Create(bool encrypted, bool tablePerType)
    {
        var options = Options(encrypted);
        return (encrypted, tablePerType) switch
        {
            (false, false) => new ZooContext(options),
            (true, false) => new EncryptedZooContext(options),
            (false, true) => new TptZooContext(options),
            _ => new EncryptedTptZooContext(options),
        };
    }

    private abstract class Animal
    {
        public int Id { get; set; }

        public string Name { get; set; } = "";
    }

    private sealed class Cat : Animal;

    private sealed class Dog : Animal
    {
        public string? Vet { get; set; }

        public int Age { get; set; }

        public Clinic? Clinic { get; set; }
    }

    private sealed class Clinic
    {
        public string? Phone { get; set; }
    }

    // One context type per model, because EF builds one model per context type.
    private class ZooContext(DbContextOptions options) : DbContext(options)
    {
        public DbSet<Animal> Animals => Set<Animal>();

        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            modelBuilder.Entity<Cat>();
            modelBuilder.Entity<Dog>().OwnsOne(d => d.Clinic);
        }
    }

    private sealed class EncryptedZooContext(DbContextOptions options) : ZooContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            base.OnModelCreating(modelBuilder);
            modelBuilder.Entity<Dog>().Property(d => d.Vet).IsEncrypted();
            modelBuilder.Entity<Dog>().Property(d => d.Age).IsEncrypted();
            modelBuilder.Entity<Dog>().OwnsOne(d => d.Clinic).Property(c => c.Phone).IsEncrypted();
        }
    }

    private class TptZooContext(DbContextOptions options) : ZooContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            base.OnModelCreating(modelBuilder);
            modelBuilder.Entity<Animal>().UseTptMappingStrategy();
        }
    }

    private sealed class EncryptedTptZooContext(DbContextOptions options) : TptZooContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            base.OnModelCreating(modelBuilder);
            modelBuilder.Entity<Dog>().Property(d => d.Vet).IsEncrypted();
            modelBuilder.Entity<Dog>().Property(d => d.Age).IsEncrypted();
            modelBuilder.Entity<Dog>().OwnsOne(d => d.Clinic).Property(c => c.Phone).IsEncrypted();
        }
    }
}
