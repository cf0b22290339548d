using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Metadata;

/// <summary>
/// Global query filters (<c>HasQueryFilter</c>) that read encrypted properties: EF inlines them after the query guard
/// runs, so a null test is rewritten when the model is built, and any other use is refused then (found by a new-user
/// probe: every query of the type, <c>Find</c> included, failed with EF's "could not be translated").
/// </summary>
public sealed class QueryFilterTests : IDisposable
{
    private readonly InsecureInMemoryMasterKeyProvider _provider = new();
    private readonly List<SqliteConnection> _connections = [];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose()
    {
        foreach (var connection in _connections)
        {
            connection.Dispose();
        }
    }

    public class Memo
    {
        public int Id { get; set; }

        public string? Text { get; set; }

        public int? Score { get; set; }
    }

    private sealed class MemoContext(DbContextOptions options, bool encrypted, Action<ModelBuilder> filter) : DbContext(options)
    {
        public DbSet<Memo> Memos => Set<Memo>();

        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            modelBuilder.Entity<Memo>(memo =>
            {
                if (encrypted)
                {
                    memo.Property(m => m.Text).IsEncrypted();
                    memo.Property(m => m.Score).IsEncrypted();
                }
            });
            filter(modelBuilder);
        }
    }

    // One context per configuration (no model cache key would tell the filters apart).
    private MemoContext Open(bool encrypted, Action<ModelBuilder> filter)
    {
        var connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();
        _connections.Add(connection);
        var options = new DbContextOptionsBuilder<MemoContext>().ManyConfigurationsPerProcess().UseSqlite(connection)
            .ReplaceService<Microsoft.EntityFrameworkCore.Infrastructure.IModelCacheKeyFactory, NoModelCache>();
        if (encrypted)
        {
            options.UseEnvelopeEncryption(e => e.UseProvider(_provider));
        }

        return new MemoContext(options.Options, encrypted, filter);
    }

    private sealed class NoModelCache : Microsoft.EntityFrameworkCore.Infrastructure.IModelCacheKeyFactory
    {
        public object Create(DbContext context, bool designTime) => new object();
    }

    private async Task<(string Listed, bool Found, int Unfiltered)> RunAsync(bool encrypted, Action<ModelBuilder> filter)
    {
        await using var db = Open(encrypted, filter);
        await db.Database.EnsureCreatedAsync(Ct);
        db.Memos.AddRange(
            new Memo { Id = 1, Text = "kept", Score = 3 },
            new Memo { Id = 2, Text = null, Score = 4 },
            new Memo { Id = 3, Text = "no score", Score = null },
            new Memo { Id = 4, Text = null, Score = null });
        await db.SaveChangesAsync(Ct);
        db.ChangeTracker.Clear();

        var listed = string.Join(",", await db.Memos.OrderBy(m => m.Id).Select(m => m.Id).ToListAsync(Ct));
        var found = await db.Memos.FindAsync([2], Ct) is not null;
        var unfiltered = await db.Memos.IgnoreQueryFilters().CountAsync(Ct);
        return (listed, found, unfiltered);
    }

    [Fact]
    public async Task Null_tests_of_encrypted_properties_in_query_filters_filter_as_in_plain_EF()
    {
        void Filter(ModelBuilder m) => m.Entity<Memo>().HasQueryFilter(x => x.Text != null && x.Score.HasValue);

        var plain = await RunAsync(encrypted: false, Filter);
        var encrypted = await RunAsync(encrypted: true, Filter);

        Assert.Equal("1", plain.Listed);
        Assert.Equal(plain, encrypted);
    }

    [Fact]
    public async Task Named_query_filters_are_rewritten_too()
    {
        void Filter(ModelBuilder m) => m.Entity<Memo>().HasQueryFilter("withText", x => x.Text == null).HasQueryFilter("withoutScore", x => !x.Score.HasValue);

        var plain = await RunAsync(encrypted: false, Filter);
        var encrypted = await RunAsync(encrypted: true, Filter);

        Assert.Equal("4", plain.Listed);
        Assert.Equal(plain, encrypted);
    }

    [Fact]
    public async Task A_null_test_naming_the_property_through_EF_Property_filters_as_in_plain_EF()
    {
        // Found by a user-style hunt: EF's "could not be translated" on every query of the type.
        void Filter(ModelBuilder m) => m.Entity<Memo>().HasQueryFilter(x => EF.Property<string?>(x, nameof(Memo.Text)) != null && EF.Property<int?>(x, "Score") == null);

        var plain = await RunAsync(encrypted: false, Filter);
        var encrypted = await RunAsync(encrypted: true, Filter);

        Assert.Equal("3", plain.Listed);
        Assert.Equal(plain, encrypted);
    }

    [Fact]
    public void A_query_filter_comparing_an_encrypted_value_is_refused_when_the_model_is_built()
    {
        using var db = Open(encrypted: true, m => m.Entity<Memo>().HasQueryFilter(x => x.Text != "hidden"));

        var error = Assert.Throws<InvalidOperationException>(() => db.Model);
        Assert.Contains("The query filter of entity type", error.Message, StringComparison.Ordinal);
        Assert.Contains("'Memo.Text'", error.Message, StringComparison.Ordinal);

        using var byName = Open(encrypted: true, m => m.Entity<Memo>().HasQueryFilter(x => EF.Property<string>(x, "Text") != "hidden"));
        Assert.Contains("'Memo.Text'", Assert.Throws<InvalidOperationException>(() => byName.Model).Message, StringComparison.Ordinal);
    }
}
