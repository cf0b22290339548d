using System.Data.Common;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using static EfEnvelope.Tests.Query.ReadAheadTests;

namespace EfEnvelope.Tests.Query;

/// <summary>
/// While a batch is read ahead, EF runs other code (interceptors, tasks they start, property setters, provider calls):
/// that code must see what it sees when each record is decrypted as EF materializes it.
/// </summary>
public sealed class ReadAheadBoundaryTests
{
    private static readonly AsyncLocal<string?> Ambient = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_query_that_an_interceptor_runs_during_the_read_decrypts_its_own_rows_sync_and_async()
    {
        using var clinic = Seeded();
        var sync = new LookupInterceptor(clinic);
        using (var db = WithInterceptor(clinic, sync))
        {
            Assert.True(IsReadAhead(db.Patients.AsNoTracking()));
            Assert.Equal(Rows, db.Patients.AsNoTracking().OrderBy(p => p.Name).ToList().Count);
        }

        var async = new LookupInterceptor(clinic);
        using (var db = WithInterceptor(clinic, async))
        {
            Assert.Equal(Rows, (await db.Patients.AsNoTracking().OrderBy(p => p.Name).ToListAsync(Ct)).Count);
        }

        Assert.Equal("ssn-p005", sync.SsnSeen);
        Assert.Equal("ssn-p005", async.SsnSeen);
    }

    [Fact]
    public async Task Work_that_an_interceptor_starts_during_the_read_queries_decrypted_values_after_it()
    {
        using var clinic = Seeded();
        var interceptor = new BackgroundStarter(clinic);
        using var db = WithInterceptor(clinic, interceptor);
        Assert.Equal(Rows, db.Patients.AsNoTracking().OrderBy(p => p.Name).ToList().Count);

        interceptor.Go.SetResult();
        Assert.Equal("ssn-p007", await interceptor.Result!.WaitAsync(TimeSpan.FromSeconds(30), Ct));
    }

    [Fact]
    public void A_setter_that_EF_calls_while_materializing_sees_the_decrypted_values_because_its_type_is_not_read_ahead()
    {
        using var connection = new Microsoft.Data.Sqlite.SqliteConnection("Data Source=:memory:");
        connection.Open();
        var provider = new InsecureInMemoryMasterKeyProvider("primary");
        DbContextOptions Options() => new DbContextOptionsBuilder<CardContext>()
            .UseSqlite(connection).ManyConfigurationsPerProcess().UseEnvelopeEncryption(e => e.UseProvider(provider)).Options;
        using (var seed = new CardContext(Options()))
        {
            seed.Database.EnsureCreated();
            seed.Cards.Add(new Card { Number = "4111", Holder = "alice" });
            seed.SaveChanges();
        }

        using var db = new CardContext(Options());
        Assert.False(IsReadAhead(db.Cards.AsNoTracking()));
        Assert.Equal("alice/4111", db.Cards.Single().Label);
        Assert.Equal("alice/4111", db.Cards.AsNoTracking().ToList().Single().Label);
    }

    [Fact]
    public void A_setter_of_an_owned_types_navigation_back_to_its_owner_sees_the_decrypted_owner()
    {
        using var db = Open(o => new FolderContext(o), seed => seed.Add(new Folder { Secret = "s3cret", Tab = new Tab { Name = "t" } }));
        Assert.False(IsReadAhead(db.Folders.AsNoTracking()));

        // Select(f => f) is never read ahead: the same query, decrypted as EF materializes each row.
        Assert.Equal("s3cret", db.Folders.AsNoTracking().Select(f => f).Single().Tab!.SeenSecret);
        Assert.Equal("s3cret", db.Folders.AsNoTracking().ToList().Single().Tab!.SeenSecret);
    }

    [Fact]
    public void An_encrypted_property_written_through_its_setter_sees_the_members_it_sees_without_read_ahead()
    {
        using var db = Open(o => new BadgeContext(o), seed => seed.Add(new Badge { Holder = "alice", Code = "c0de" }));
        Assert.False(IsReadAhead(db.Badges.AsNoTracking()));
        var decryptedAsMaterialized = db.Badges.AsNoTracking().Select(b => b).Single().Label;
        Assert.Equal("/c0de", decryptedAsMaterialized);
        Assert.Equal(decryptedAsMaterialized, db.Badges.AsNoTracking().ToList().Single().Label);
    }

    [Fact]
    public void A_key_the_worker_fetches_is_fetched_in_the_callers_execution_context()
    {
        using var clinic = Seeded();

        // Rows that take a moment to arrive (a remote database): the worker decrypts while EF still reads.
        clinic.Connection.CreateFunction("slow", () =>
        {
            Thread.Sleep(2);
            return 1;
        });

        // A configuration of its own: a cold key cache, so that the first records ask the provider.
        var provider = new AmbientRecordingProvider(clinic.Provider);
        using var db = clinic.CreateContext(e => e.UseProvider(provider));
        var query = db.Patients.FromSqlRaw("SELECT * FROM Patients WHERE slow() = 1 ORDER BY Name").AsNoTracking();
        var consumer = Environment.CurrentManagedThreadId;
        Ambient.Value = "request-42";
        try
        {
            Assert.All(query.ToList(), p => Assert.Equal("ssn-" + p.Name, p.Ssn));
        }
        finally
        {
            Ambient.Value = null;
        }

        // The worker fetched the key (the consumer was reading the next batch meanwhile), with the caller's context.
        Assert.Contains(provider.Seen, seen => seen.Thread != consumer);
        Assert.All(provider.Seen, seen => Assert.Equal("request-42", seen.Ambient));
    }

    private static T Open<T>(Func<DbContextOptions, T> create, Action<T> seed)
        where T : DbContext
    {
        var connection = new Microsoft.Data.Sqlite.SqliteConnection("Data Source=:memory:");
        connection.Open();
        var provider = new InsecureInMemoryMasterKeyProvider("primary");
        var options = new DbContextOptionsBuilder<T>().UseSqlite(connection).ManyConfigurationsPerProcess().UseEnvelopeEncryption(e => e.UseProvider(provider)).Options;
        using (var seeding = create(options))
        {
            seeding.Database.EnsureCreated();
            seed(seeding);
            seeding.SaveChanges();
        }

        // The in-memory database lives as long as its connection: the context returned keeps it.
        return create(options);
    }

    private static ClinicContext WithInterceptor(InMemoryClinic clinic, IInterceptor interceptor) =>
        new(new DbContextOptionsBuilder<ClinicContext>()
            .UseSqlite(clinic.Connection).ManyConfigurationsPerProcess().AddInterceptors(interceptor).UseEnvelopeEncryption(clinic.Configure).Options);

    /// <summary>Looks a patient up in another context when the outer query's reader opens (an audit or cache lookup).</summary>
    private sealed class LookupInterceptor(InMemoryClinic clinic) : DbCommandInterceptor
    {
        // Opened before the outer query: SQLite cannot set up a connection's functions while a statement runs.
        private readonly ClinicContext _other = Opened(clinic.CreateContext());

        public string? SsnSeen { get; private set; }

        public override DbDataReader ReaderExecuted(DbCommand command, CommandExecutedEventData eventData, DbDataReader result)
        {
            Lookup();
            return result;
        }

        public override ValueTask<DbDataReader> ReaderExecutedAsync(DbCommand command, CommandExecutedEventData eventData, DbDataReader result, CancellationToken cancellationToken = default)
        {
            Lookup();
            return ValueTask.FromResult(result);
        }

        private static ClinicContext Opened(ClinicContext context)
        {
            _ = context.Visits.Count();
            return context;
        }

        private void Lookup()
        {
            if (SsnSeen is null)
            {
                SsnSeen = "(looking up)";
                SsnSeen = _other.Patients.Single(p => p.Name == "p005").Ssn;
            }
        }
    }

    /// <summary>Starts, when the outer query's reader opens, a task that reads later: it inherits the flow of the read.</summary>
    private sealed class BackgroundStarter(InMemoryClinic clinic) : DbCommandInterceptor
    {
        public TaskCompletionSource Go { get; } = new();

        public Task<string>? Result { get; private set; }

        public override DbDataReader ReaderExecuted(DbCommand command, CommandExecutedEventData eventData, DbDataReader result)
        {
            Result ??= Task.Run(async () =>
            {
                await Go.Task;
                using var other = clinic.CreateContext();
                return other.Patients.Single(p => p.Name == "p007").Ssn;
            });
            return result;
        }
    }

    private sealed class AmbientRecordingProvider(IMasterKeyProvider inner) : DelegatingProvider(inner)
    {
        public List<(string? Ambient, int Thread)> Seen { get; } = [];

        public override Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, KeyContext context, CancellationToken cancellationToken)
        {
            lock (Seen)
            {
                Seen.Add((Ambient.Value, Environment.CurrentManagedThreadId));
            }

            return base.DecryptDataKeyAsync(keyId, wrappedKey, context, cancellationToken);
        }
    }

    private sealed class FolderContext(DbContextOptions options) : DbContext(options)
    {
        public DbSet<Folder> Folders => Set<Folder>();

        protected override void OnModelCreating(ModelBuilder modelBuilder) =>
            modelBuilder.Entity<Folder>().OwnsOne(f => f.Tab, t => t.WithOwner(x => x.Parent));
    }

    private sealed class Folder
    {
        public int Id { get; set; }

        [Encrypted]
        public string Secret { get; set; } = "";

        public Tab? Tab { get; set; }
    }

    /// <summary>An owned type whose navigation back to its owner has a setter of its own, and no backing field EF finds.</summary>
    private sealed class Tab
    {
        private Folder? _owner;

        public string Name { get; set; } = "";

        public Folder? Parent
        {
            get => _owner;
            set
            {
                _owner = value;
                SeenSecret = value?.Secret;
            }
        }

        [System.ComponentModel.DataAnnotations.Schema.NotMapped]
        public string? SeenSecret { get; private set; }
    }

    private sealed class BadgeContext(DbContextOptions options) : DbContext(options)
    {
        public DbSet<Badge> Badges => Set<Badge>();
    }

    /// <summary>An encrypted property with a setter of its own, and no backing field EF finds.</summary>
    private sealed class Badge
    {
        private string _secretCode = "";

        public int Id { get; set; }

        public string Holder { get; set; } = "";

        [Encrypted]
        public string Code
        {
            get => _secretCode;
            set
            {
                _secretCode = value;
                Label = Holder + "/" + value;
            }
        }

        [System.ComponentModel.DataAnnotations.Schema.NotMapped]
        public string Label { get; private set; } = "";
    }

    private sealed class CardContext(DbContextOptions options) : DbContext(options)
    {
        public DbSet<Card> Cards => Set<Card>();

        protected override void OnModelCreating(ModelBuilder modelBuilder) =>
            modelBuilder.Entity<Card>().Property(c => c.Holder).UsePropertyAccessMode(PropertyAccessMode.Property);
    }

    private sealed class Card
    {
        private string _holder = "";

        public int Id { get; set; }

        [Encrypted]
        public string Number { get; set; } = "";

        public string Holder
        {
            get => _holder;
            set
            {
                _holder = value;
                Label = value + "/" + Number;
            }
        }

        [System.ComponentModel.DataAnnotations.Schema.NotMapped]
        public string Label { get; private set; } = "";
    }
}
