using EfEnvelope.KeyManagement;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Benchmarks.Workload;

/// <summary>The ways of storing <see cref="Patient"/> that the benchmarks compare.</summary>
public enum Approach
{
    /// <summary>No encryption: the baseline.</summary>
    PlainEf,

    /// <summary>EfEnvelope, default mode: per-record data keys wrapped under a cached key-encryption key.</summary>
    EfEnvelope,

    /// <summary>EfEnvelope, direct mode: every data key wrapped by the provider.</summary>
    EfEnvelopeDirect,

    /// <summary>A fixed-key AES-GCM value converter storing base64 text.</summary>
    FixedKeyConverter,

    /// <summary>EfEnvelope, default mode, with <c>BindStoreGeneratedKeys()</c>: the inserting save binds the identity keys.</summary>
    EfEnvelopeBoundKeys,
}

public class PlainContext(DbContextOptions options) : DbContext(options)
{
    public DbSet<Patient> Patients => Set<Patient>();
}

public class EnvelopeContext(DbContextOptions options) : DbContext(options)
{
    public DbSet<Patient> Patients => Set<Patient>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<Patient>(patient =>
        {
            patient.Property(p => p.Ssn).IsEncrypted();
            patient.Property(p => p.Diagnosis).IsEncrypted();
            patient.Property(p => p.Notes).IsEncrypted();
        });
}

public class ConverterContext(DbContextOptions options) : DbContext(options)
{
    public DbSet<Patient> Patients => Set<Patient>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        var converter = new FixedKeyAesGcmConverter();
        modelBuilder.Entity<Patient>(patient =>
        {
            patient.Property(p => p.Ssn).HasConversion(converter);
            patient.Property(p => p.Diagnosis).HasConversion(converter);
            patient.Property(p => p.Notes).HasConversion(converter);
        });
    }
}

/// <summary>Creates the context of an approach over an open in-memory SQLite connection.</summary>
/// <remarks>
/// The options are built once per approach and reused, as an application does with <c>AddDbContext</c>: EfEnvelope
/// contexts configured with the same provider share one key cache.
/// </remarks>
public sealed class Store : IDisposable
{
    private readonly DbContextOptions _options;
    private readonly bool _ownsConnection;

    /// <summary>Opens a new in-memory database, or uses <paramref name="connection"/> (to read one database through another provider instance).</summary>
    public Store(Approach approach, IMasterKeyProvider provider, SqliteConnection? connection = null)
    {
        Approach = approach;
        _ownsConnection = connection is null;
        Connection = connection ?? new SqliteConnection("Data Source=:memory:");
        if (_ownsConnection)
        {
            Connection.Open();
        }

        var builder = new DbContextOptionsBuilder().UseSqlite(Connection);
        if (approach is Approach.EfEnvelope or Approach.EfEnvelopeDirect or Approach.EfEnvelopeBoundKeys)
        {
            builder.UseEnvelopeEncryption(e =>
            {
                e.UseProvider(provider)
                    .UseKeyWrappingMode(approach == Approach.EfEnvelopeDirect ? KeyWrappingMode.Direct : KeyWrappingMode.CachedKeyEncryptionKey);
                if (approach == Approach.EfEnvelopeBoundKeys)
                {
                    e.BindStoreGeneratedKeys();
                }
            });
        }

        _options = builder.Options;
        using var context = CreateContext();
        context.Database.EnsureCreated();
    }

    public Approach Approach { get; }

    public SqliteConnection Connection { get; }

    public DbContext CreateContext() => Approach switch
    {
        Approach.PlainEf => new PlainContext(_options),
        Approach.FixedKeyConverter => new ConverterContext(_options),
        _ => new EnvelopeContext(_options),
    };

    public void Insert(List<Patient> patients)
    {
        using var context = CreateContext();
        context.Set<Patient>().AddRange(patients);
        context.SaveChanges();
    }

    public List<Patient> Read(bool tracking)
    {
        using var context = CreateContext();
        var query = context.Set<Patient>().AsQueryable();
        return (tracking ? query.AsTracking() : query.AsNoTracking()).ToList();
    }

    /// <summary>Looks up <paramref name="ids"/> one at a time, each in a fresh context (a request per lookup).</summary>
    public int Lookup(IReadOnlyList<int> ids)
    {
        var characters = 0;
        foreach (var id in ids)
        {
            using var context = CreateContext();
            characters += context.Set<Patient>().Single(p => p.Id == id).Ssn.Length;
        }

        return characters;
    }

    /// <summary>A context tracking the first <paramref name="rows"/> patients, for <see cref="EditNotes"/>.</summary>
    public DbContext Track(int rows)
    {
        var context = CreateContext();
        _ = context.Set<Patient>().OrderBy(p => p.Id).Take(rows).ToList();
        return context;
    }

    /// <summary>Changes one encrypted property of every patient <paramref name="context"/> tracks and saves.</summary>
    public static int EditNotes(DbContext context, string suffix)
    {
        foreach (var patient in context.ChangeTracker.Entries<Patient>())
        {
            patient.Entity.Notes = patient.Entity.Notes[..^suffix.Length] + suffix;
        }

        return context.SaveChanges();
    }

    public void Dispose()
    {
        if (_ownsConnection)
        {
            Connection.Dispose();
        }
    }
}
