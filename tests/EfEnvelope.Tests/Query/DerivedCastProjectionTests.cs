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

    [Theory]
    [MemberData(nameof(Runs))]
    public async Task A_cast_to_a_type_below_the_declaring_one_reads_the_column_as_plain_EF_does(bool encrypted, bool tablePerType)
    {
        // Plain EF binds ((Puppy)a).Vet to Dog's column and reads it for every row: a Dog that is not a Puppy reads its
        // own value, only rows without the column read NULL.
        await using (var db = Create(encrypted, tablePerType))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.AddRange(
                new Cat { Id = 1, Name = "Tom" },
                new Dog { Id = 2, Name = "Rex", Vet = "Dr. Who", Age = 4, Clinic = new Clinic { Phone = "555" } },
                new Puppy { Id = 3, Name = "Bit", Vet = "Dr. No", Age = 1, Clinic = new Clinic { Phone = "777" } });
            await db.SaveChangesAsync(Ct);
        }

        await using var read = Create(encrypted, tablePerType);
        var animals = read.Animals.OrderBy(a => a.Id);
        Assert.Equal([null, "Dr. Who", "Dr. No"], await animals.Select(a => ((Puppy)a).Vet).ToListAsync(Ct));
        Assert.Equal([null, "Dr. Who", "Dr. No"], await animals.Select(a => ((Puppy)(Dog)a).Vet).ToListAsync(Ct));
        Assert.Equal([null, "Dr. Who", "Dr. No"], await animals.AsNoTracking().Select(a => (a as Puppy)!.Vet).ToListAsync(Ct));
        Assert.Equal([null, 4, 1], await animals.Select(a => (int?)((Puppy)a).Age).ToListAsync(Ct));
        Assert.Equal([null, "555", "777"], await animals.Select(a => ((Puppy)a).Clinic!.Phone).ToListAsync(Ct));
    }

    [Theory]
    [MemberData(nameof(Runs))]
    public async Task A_narrowing_conversion_that_overflows_fails(bool encrypted, bool tablePerType)
    {
        await using (var db = Create(encrypted, tablePerType))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.AddRange(new Cat { Id = 1, Name = "Tom" }, new Dog { Id = 2, Name = "Rex", Big = 100_000 });
            await db.SaveChangesAsync(Ct);
        }

        await using var read = Create(encrypted, tablePerType);
        // Plain EF's data reader refuses a value that does not fit; the decrypted value's conversion must not truncate.
        await Assert.ThrowsAsync<OverflowException>(() => read.Animals.OrderBy(a => a.Id).Select(a => (short?)((Dog)a).Big).ToListAsync(Ct));
        await Assert.ThrowsAsync<OverflowException>(() => read.Animals.OfType<Dog>().Select(d => (short)d.Big).ToListAsync(Ct));
        await Assert.ThrowsAsync<OverflowException>(() => read.Animals.OfType<Dog>().Select(d => new { Small = (short?)d.Big }).ToListAsync(Ct));
        Assert.Equal([100_000, 100_000.0], (await read.Animals.OfType<Dog>().Select(d => new { I = (int)d.Big, D = (double)d.Big }).ToListAsync(Ct)).SelectMany(x => new[] { x.I, x.D }));
    }

    [Theory]
    [MemberData(nameof(Encryption))]
    public async Task Unsigned_and_enum_conversions_read_as_plain_EF_reads_them(bool encrypted)
    {
        await using (var db = Create(encrypted, tablePerType: false))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Add(new Dog { Id = 1, Name = "Rex", Big = -1, Age = 70 });
            await db.SaveChangesAsync(Ct);
        }

        // From reviews: SQLite reads a ulong from the signed column's bits, while every other integer type (or an enum
        // over one) that does not fit is refused.
        await using var read = Create(encrypted, tablePerType: false);
        Assert.Equal([ulong.MaxValue], await read.Animals.OfType<Dog>().Select(d => (ulong)d.Big).ToListAsync(Ct));
        await Assert.ThrowsAsync<OverflowException>(() => read.Animals.OfType<Dog>().Select(d => (uint)d.Big).ToListAsync(Ct));
        await Assert.ThrowsAsync<OverflowException>(() => read.Animals.OfType<Dog>().Select(d => (ushort?)d.Big).ToListAsync(Ct));
        Assert.Equal([Size.Large], await read.Animals.OfType<Dog>().Select(d => (Size)d.Age).ToListAsync(Ct));
        await Assert.ThrowsAsync<OverflowException>(() => read.Animals.OfType<Dog>().Select(d => (Size)d.Big).ToListAsync(Ct));
    }

    [Theory]
    [MemberData(nameof(Encryption))]
    public async Task A_cast_to_a_type_whose_member_an_unmapped_base_class_declares_reads_that_types_column(bool encrypted)
    {
        // From a review: Vet is declared on Pet, which the model does not map; Hound and Kitten each map a column of
        // their own. ((Hound)b).Vet reads Hound's, so a Kitten's row reads NULL, not the Kitten's value.
        await using (var db = encrypted ? new EncryptedKennelContext(Options(true)) : new KennelContext(Options(false)))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.AddRange(new Hound { Id = 1, Vet = "hound vet" }, new Kitten { Id = 2, Vet = "kitten vet" });
            await db.SaveChangesAsync(Ct);

            db.ChangeTracker.Clear();
            Assert.Equal(["hound vet", null], await db.Beasts.OrderBy(b => b.Id).Select(b => ((Hound)b).Vet).ToListAsync(Ct));
            Assert.Equal(["hound vet", null], await db.Beasts.AsNoTracking().OrderBy(b => b.Id).Select(b => (b as Hound)!.Vet).ToListAsync(Ct));
        }
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

    private class Dog : Animal
    {
        public string? Vet { get; set; }

        public int Age { get; set; }

        public long Big { get; set; }

        public Clinic? Clinic { get; set; }
    }

    private sealed class Puppy : Dog;

    private enum Size : byte
    {
        Small = 1,
        Large = 70,
    }

    private abstract class Beast
    {
        public int Id { get; set; }
    }

    private abstract class Pet : Beast
    {
        public string? Vet { get; set; }
    }

    private sealed class Hound : Pet;

    private sealed class Kitten : Pet;

    private class KennelContext(DbContextOptions options) : DbContext(options)
    {
        public DbSet<Beast> Beasts => Set<Beast>();

        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            modelBuilder.Ignore<Pet>();
            modelBuilder.Entity<Hound>().Property(h => h.Vet).HasColumnName("HoundVet");
            modelBuilder.Entity<Kitten>().Property(k => k.Vet).HasColumnName("KittenVet");
        }
    }

    private sealed class EncryptedKennelContext(DbContextOptions options) : KennelContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            base.OnModelCreating(modelBuilder);
            modelBuilder.Entity<Hound>().Property(h => h.Vet).IsEncrypted();
            modelBuilder.Entity<Kitten>().Property(k => k.Vet).IsEncrypted();
        }
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
            modelBuilder.Entity<Puppy>();
        }
    }

    private sealed class EncryptedZooContext(DbContextOptions options) : ZooContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            base.OnModelCreating(modelBuilder);
            EncryptDogs(modelBuilder);
        }
    }

    private static void EncryptDogs(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<Dog>().Property(d => d.Vet).IsEncrypted();
        modelBuilder.Entity<Dog>().Property(d => d.Age).IsEncrypted();
        modelBuilder.Entity<Dog>().Property(d => d.Big).IsEncrypted();
        modelBuilder.Entity<Dog>().OwnsOne(d => d.Clinic).Property(c => c.Phone).IsEncrypted();
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
            EncryptDogs(modelBuilder);
        }
    }
}
