using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Specification.Tests.Differential;

/// <summary>
/// What a scenario sees in one run: contexts on this run's fresh database (plain or encrypted), and a record of
/// observations that the runner compares between the two runs.
/// </summary>
public sealed class ScenarioRun(DifferentialFixture fixture, FreshDatabase database, bool encrypted, CancellationToken cancellationToken)
{
    private readonly List<(string Label, string Value)> _observations = [];
    private readonly HashSet<(Type Context, Type Entity)> _touched = [];

    public bool Encrypted { get; } = encrypted;

    public CancellationToken Ct { get; } = cancellationToken;

    /// <summary>Every command every context of this run sent.</summary>
    public SqlCapture Sql { get; } = new();

    public DifferentialFixture Fixture => fixture;

    public FreshDatabase Database => database;

    public IReadOnlyList<(string Label, string Value)> Observations => _observations;

    /// <summary>The root entity types (with their context type) this run tracked or declared; the runner reads their rows back at the end.</summary>
    public IReadOnlyCollection<(Type Context, Type Entity)> Touched => _touched;

    /// <summary>A new <see cref="ShopContext"/> on this run's database.</summary>
    public ShopContext NewContext(Action<DbContextOptionsBuilder<ShopContext>>? configure = null) => NewContext<ShopContext>(configure);

    /// <summary>A new context of the given type on this run's database.</summary>
    public TContext NewContext<TContext>(Action<DbContextOptionsBuilder<TContext>>? configure = null)
        where TContext : DifferentialContext
    {
        var builder = new DbContextOptionsBuilder<TContext>();
        Configure(builder);
        configure?.Invoke(builder);
        return Watch((TContext)Activator.CreateInstance(typeof(TContext), builder.Options)!);
    }

    /// <summary>Creates the tables of a context other than <see cref="ShopContext"/>, whose tables every run starts with.</summary>
    public async Task CreateTablesAsync<TContext>()
        where TContext : DifferentialContext
    {
        await using var db = NewContext<TContext>();
        await db.GetService<IRelationalDatabaseCreator>().CreateTablesAsync(Ct);
    }

    /// <summary>Applies this run's database, configuration and command capture to options built elsewhere (DI, pooling).</summary>
    public void Configure(DbContextOptionsBuilder builder)
    {
        fixture.Configure(builder, database, Encrypted);
        builder.AddInterceptors(Sql);
    }

    /// <summary>Remembers the entity types <paramref name="db"/> tracks, so that their rows are compared at the end.</summary>
    public TContext Watch<TContext>(TContext db)
        where TContext : DbContext
    {
        ArgumentNullException.ThrowIfNull(db);
        db.ChangeTracker.Tracked += (_, e) => Touch(db.GetType(), e.Entry.Metadata);
        return db;
    }

    /// <summary>Declares that the rows of <typeparamref name="T"/>'s hierarchy in the shop model are part of the outcome.</summary>
    public void Touch<T>() => _touched.Add((typeof(ShopContext), typeof(T)));

    private void Touch(Type context, IEntityType type)
    {
        while (type.FindOwnership() is { } ownership)
        {
            type = ownership.PrincipalEntityType;
        }

        _touched.Add((context, type.GetRootType().ClrType));
    }

    /// <summary>Records a value for comparison.</summary>
    public void Observe(string label, object? value) => _observations.Add((label, Canonical.Format(value)));

    /// <summary>Adds the entities in a context of their own and saves them.</summary>
    public async Task SeedAsync(params object[] entities)
    {
        await using var db = NewContext();
        db.AddRange(entities);
        await db.SaveChangesAsync(Ct);
    }

    /// <summary>Saves, recording the count EF returns and the number of commands the save sent.</summary>
    public async Task<int> SaveAsync(DbContext db, string label = "save")
    {
        ArgumentNullException.ThrowIfNull(db);
        var before = Sql.Commands.Count;
        var count = await db.SaveChangesAsync(Ct);
        Observe(label, count);
        Observe(label + " commands", Sql.Commands.Count - before);
        return count;
    }

    /// <summary>Runs <paramref name="action"/> and records the type of the exception it throws (or that it throws none).</summary>
    /// <remarks>For what plain EF Core itself throws (a concurrency conflict, a missing row): the other run must throw the same.</remarks>
    public async Task ExpectAsync<TException>(string label, Func<Task> action)
        where TException : Exception
    {
        ArgumentNullException.ThrowIfNull(action);
        try
        {
            await action();
            Observe(label, "no exception");
        }
        catch (TException e)
        {
            Observe(label, e.GetType().Name);
        }
    }

    /// <summary>Records every tracked entry: its type, key and state, and each CLR property's current, original and modified flag.</summary>
    public void Tracker(DbContext db, string label = "tracker")
    {
        ArgumentNullException.ThrowIfNull(db);
        var entries = db.ChangeTracker.Entries().Select(Describe).Order(StringComparer.Ordinal).ToList();
        Observe(label, entries);
    }

    /// <summary>Records one entry as <see cref="Tracker"/> does.</summary>
    public void Entry(EntityEntry entry, string label)
    {
        ArgumentNullException.ThrowIfNull(entry);
        Observe(label, Describe(entry));
    }

    private static string Describe(EntityEntry entry)
    {
        var key = entry.Metadata.FindPrimaryKey()?.Properties.Select(p => Canonical.Format(entry.Property(p.Name).CurrentValue)) ?? [];
        var properties = entry.Properties
            .Where(p => !p.Metadata.IsShadowProperty())
            .OrderBy(p => p.Metadata.Name, StringComparer.Ordinal)
            .Select(p => $"{p.Metadata.Name}={Canonical.Format(p.CurrentValue)}"
                + (entry.State is EntityState.Added ? "" : $"(was {Canonical.Format(p.OriginalValue)}{(p.IsModified ? ", modified" : "")})"));
        return $"{entry.Metadata.DisplayName()}[{string.Join(",", key)}] {entry.State}: {string.Join("; ", properties)}";
    }
}
