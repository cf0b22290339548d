using System.Collections.Concurrent;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;

namespace EfEnvelope.Specification.Tests.EntityFramework;

/// <summary>Equality search on encrypted properties through blind indexes, on a real database.</summary>
public abstract class BlindIndexTests<TFixture>(TFixture fixture) : IClassFixture<TFixture>, IAsyncLifetime
    where TFixture : DatabaseFixture
{
    private readonly ConcurrentQueue<string> _log = new();
    private readonly SqlCapture _sql = new();
    private byte[] _indexKey = [];

    protected TFixture Fixture { get; } = fixture;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        if (Fixture.SkipReason is null)
        {
            _indexKey = await BlindIndexKey.CreateAsync(Fixture.Provider, cancellationToken: Ct);
        }
    }

    public ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        return ValueTask.CompletedTask;
    }

    private SearchContext Search(byte[]? indexKey = null)
    {
        if (Fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        var options = new DbContextOptionsBuilder<SearchContext>(Fixture.CreateOptions<SearchContext>(e => e.UseProvider(Fixture.Provider).UseBlindIndexKey(indexKey ?? _indexKey), _sql))
            .EnableSensitiveDataLogging()
            .LogTo(_log.Enqueue, LogLevel.Trace)
            .Options;
        return new SearchContext(options);
    }

    private static string Unique(string prefix) => prefix + Guid.NewGuid().ToString("N")[..10];

    private async Task<Person> AddAsync(Person person)
    {
        await using var db = Search();
        db.People.Add(person);
        await db.SaveChangesAsync(Ct);
        return person;
    }

    private void AssertNeverSent(params string[] plaintexts)
    {
        foreach (var plaintext in plaintexts)
        {
            Assert.DoesNotContain(_sql.Commands, c => c.Contains(plaintext, StringComparison.OrdinalIgnoreCase));
            Assert.DoesNotContain(_log, line => line.Contains(plaintext, StringComparison.OrdinalIgnoreCase));
        }
    }

    [Fact]
    public async Task Equality_with_a_captured_variable_finds_the_record_without_sending_the_plaintext()
    {
        var ssn = Unique("ssn-");
        var person = await AddAsync(new Person { Name = "A", Ssn = ssn, Email = Unique("a") + "@example.com" });

        await using var db = Search();
        var found = await db.People.SingleOrDefaultAsync(p => p.Ssn == ssn, Ct);

        Assert.NotNull(found);
        Assert.Equal(person.Id, found.Id);
        Assert.Equal(ssn, found.Ssn);
        Assert.Contains(_sql.Commands, c => c.Contains("Ssn_Index", StringComparison.Ordinal));
        AssertNeverSent(ssn, person.Email!);
    }

    [Fact]
    public async Task Equality_with_a_constant_and_in_a_compiled_query_finds_the_record()
    {
        var person = await AddAsync(new Person { Name = "Const", Ssn = "const-ssn-4417" + Guid.NewGuid().ToString("N")[..4] });
        var byParameter = EF.CompileAsyncQuery((SearchContext context, string ssn) => context.People.Single(p => p.Ssn == ssn));

        await using var db = Search();
        var viaCompiled = await byParameter(db, person.Ssn);
        var constantCount = await db.People.CountAsync(p => p.Ssn == "const-ssn-no-such-value", Ct);

        Assert.Equal(person.Id, viaCompiled.Id);
        Assert.Equal(0, constantCount);
        AssertNeverSent(person.Ssn, "const-ssn-no-such-value");
    }

    [Fact]
    public async Task EF_Property_naming_a_searchable_property_uses_the_index_without_logging_the_constant()
    {
        var person = await AddAsync(new Person { Name = "ByName", Ssn = "by-name-ssn-2291" + Guid.NewGuid().ToString("N")[..4] });

        await using var db = Search();
        var missing = await db.People.CountAsync(p => EF.Property<string>(p, "Ssn") == "by-name-no-such-ssn", Ct);

        Assert.Equal(0, missing);
        Assert.Equal(person.Id, (await db.People.SingleAsync(p => EF.Property<string>(p, "Ssn") == person.Ssn, Ct)).Id);
        AssertNeverSent(person.Ssn, "by-name-no-such-ssn");
    }

    [Fact]
    public async Task A_filter_composed_after_a_projection_uses_the_index_without_sending_the_plaintext()
    {
        var ssn = Unique("projected-");
        var person = await AddAsync(new Person { Name = "Projected", Ssn = ssn });

        await using var db = Search();
        var found = await db.People.Select(p => new { p.Id, p.Ssn, p.Name }).Where(x => x.Ssn == ssn).OrderBy(x => x.Name).ToListAsync(Ct);
        // A constant: EF logs the query expression before it compiles it, so it must have become a parameter by then.
        var counted = await db.People.Select(p => new { p.Ssn, p.Notes }).CountAsync(x => x.Ssn == "projected-ssn-none-7731", Ct);

        Assert.Equal(person.Id, Assert.Single(found).Id);
        Assert.Equal(ssn, found[0].Ssn);
        Assert.Equal(0, counted);
        Assert.Contains(_sql.Commands, c => c.Contains("Ssn_Index", StringComparison.Ordinal));
        AssertNeverSent(ssn, "projected-ssn-none-7731");
    }

    [Fact]
    public async Task Not_equal_Equals_Any_Count_First_and_Single_use_the_index()
    {
        var email = Unique("shared") + "@example.com";
        var first = await AddAsync(new Person { Name = "One", Ssn = Unique("s"), Email = email });
        await AddAsync(new Person { Name = "Two", Ssn = Unique("s"), Email = email });

        await using var db = Search();
        Assert.Equal(2, await db.People.CountAsync(p => p.Email == email, Ct));
        Assert.True(await db.People.AnyAsync(p => p.Email!.Equals(email), Ct));
        Assert.Equal(1, await db.People.Where(p => p.Email == email).CountAsync(p => p.Ssn != first.Ssn, Ct));
        Assert.Equal(first.Id, (await db.People.Where(p => p.Email == email).OrderBy(p => p.Id).FirstAsync(Ct)).Id);
        Assert.Equal(first.Id, (await db.People.SingleAsync(p => string.Equals(p.Ssn, first.Ssn), Ct)).Id);
        AssertNeverSent(email, first.Ssn);
    }

    [Fact]
    public async Task Contains_over_a_list_becomes_an_IN_over_index_values()
    {
        var people = new[] { Unique("c1-"), Unique("c2-"), Unique("c3-") }.Select(ssn => new Person { Name = "C", Ssn = ssn }).ToList();
        foreach (var person in people)
        {
            await AddAsync(person);
        }

        var wanted = new List<string> { people[0].Ssn, people[2].Ssn, "absent-" + Guid.NewGuid() };
        await using var db = Search();
        var found = await db.People.Where(p => wanted.Contains(p.Ssn)).Select(p => p.Id).ToListAsync(Ct);

        Assert.Equal(new[] { people[0].Id, people[2].Id }.Order(), found.Order());
        // SQL IN on SQLite and SQL Server, "= ANY (array parameter)" on PostgreSQL: either way one query over index values.
        Assert.Contains(_sql.Commands, c => c.Contains("Ssn_Index\" IN ", StringComparison.OrdinalIgnoreCase) || c.Contains("Ssn_Index\" = ANY", StringComparison.OrdinalIgnoreCase));
        AssertNeverSent([.. wanted]);
    }

    [Fact]
    public async Task A_join_on_a_searchable_property_matches_equal_values()
    {
        var email = Unique("join") + "@example.com";
        var left = await AddAsync(new Person { Name = "Left", Ssn = Unique("j"), Email = email });
        var right = await AddAsync(new Person { Name = "Right", Ssn = Unique("j"), Email = email.ToUpperInvariant() });

        await using var db = Search();
        var pairs = await (from a in db.People
                           join b in db.People on a.Email equals b.Email
                           where a.Id == left.Id && b.Id != a.Id
                           select b.Id).ToListAsync(Ct);

        Assert.Equal([right.Id], pairs);
    }

    [Fact]
    public async Task Normalisation_applies_identically_on_write_and_on_query()
    {
        var local = Unique("Ann.");
        var person = await AddAsync(new Person { Name = "N", Ssn = Unique("n"), Email = $"  {local}@Example.COM ", Phone = "+1 (555) 010-7788" });

        await using var db = Search();
        var byEmail = await db.People.SingleAsync(p => p.Email == local.ToLowerInvariant() + "@example.com", Ct);
        var byPhone = await db.People.Where(p => p.Phone == "15550107788").ToListAsync(Ct);

        Assert.Equal(person.Id, byEmail.Id);
        Assert.Equal($"  {local}@Example.COM ", byEmail.Email);
        Assert.Contains(byPhone, p => p.Id == person.Id);
    }

    [Fact]
    public async Task Non_string_searchable_properties_work()
    {
        var badge = Random.Shared.Next(1_000_000, int.MaxValue);
        var person = await AddAsync(new Person { Name = "B", Ssn = Unique("b"), BadgeNumber = badge });

        await using var db = Search();
        Assert.Equal(person.Id, (await db.People.SingleAsync(p => p.BadgeNumber == badge, Ct)).Id);
    }

    [Fact]
    public async Task Updating_a_value_updates_its_index_and_null_clears_it()
    {
        var email = Unique("old") + "@example.com";
        var person = await AddAsync(new Person { Name = "U", Ssn = Unique("u"), Email = email });
        var newSsn = Unique("new-");

        await using (var db = Search())
        {
            var loaded = await db.People.SingleAsync(p => p.Id == person.Id, Ct);
            loaded.Ssn = newSsn;
            loaded.Email = null;
            await db.SaveChangesAsync(Ct);
        }

        await using var reader = Search();
        Assert.False(await reader.People.AnyAsync(p => p.Ssn == person.Ssn, Ct));
        Assert.Equal(person.Id, (await reader.People.SingleAsync(p => p.Ssn == newSsn, Ct)).Id);
        Assert.False(await reader.People.AnyAsync(p => p.Email == email, Ct));
        Assert.True(await reader.People.AnyAsync(p => p.Id == person.Id && p.Email == null, Ct));

        // Change tracking logged at Trace with sensitive data on: still no plaintext.
        AssertNeverSent(person.Ssn, newSsn, email);
    }

    [Fact]
    public async Task A_unique_searchable_property_refuses_a_duplicate()
    {
        var ssn = Unique("dup");
        await AddAsync(new Person { Name = "First", Ssn = ssn });

        await using var db = Search();
        db.People.Add(new Person { Name = "Second", Ssn = ssn });
        await Assert.ThrowsAsync<DbUpdateException>(() => db.SaveChangesAsync(Ct));
    }

    [Fact]
    public async Task A_truncated_index_never_returns_false_positives()
    {
        // One byte of index: among 600 distinct cities, every index value is shared by several of them.
        var tag = Guid.NewGuid().ToString("N")[..6];
        await using (var db = Search())
        {
            db.People.AddRange(Enumerable.Range(0, 600).Select(i => new Person { Name = tag, Ssn = $"{tag}-{i}", City = $"{tag}-city-{i}" }));
            await db.SaveChangesAsync(Ct);
        }

        await using var reader = Search();
        var target = $"{tag}-city-17";
        var list = await reader.People.Where(p => p.City == target).ToListAsync(Ct);
        var count = await reader.People.CountAsync(p => p.City == target, Ct);
        var single = await reader.People.SingleAsync(p => p.City == target, Ct);
        var any = await reader.People.AnyAsync(p => p.City == $"{tag}-city-none", Ct);

        Assert.Equal(target, Assert.Single(list).City);
        Assert.Equal(1, count);
        Assert.Equal(target, single.City);
        Assert.False(any);
    }

    [Fact]
    public async Task A_rebuild_after_changing_the_index_key_makes_rows_findable_under_the_new_key()
    {
        var ssn = Unique("rk");
        var person = await AddAsync(new Person { Name = "Rekey", Ssn = ssn });
        var newKey = await BlindIndexKey.CreateAsync(Fixture.Provider, cancellationToken: Ct);

        await using (var db = Search(newKey))
        {
            Assert.False(await db.People.AnyAsync(p => p.Ssn == ssn, Ct));
            var rebuilt = await db.RebuildBlindIndexesAsync<Person>(batchSize: 50, cancellationToken: Ct);
            Assert.True(rebuilt > 0);
        }

        await using var reader = Search(newKey);
        Assert.Equal(person.Id, (await reader.People.SingleAsync(p => p.Ssn == ssn, Ct)).Id);
    }

    [Fact]
    public void A_non_searchable_property_is_refused_with_how_to_make_it_searchable()
    {
        using var db = Search();

        #pragma warning disable EFENV001 // The analyzer warns at compile time about what this test expects to be refused at run time.
        var error = Assert.Throws<InvalidOperationException>(() => db.People.Where(p => p.Notes == "x").ToList());
        #pragma warning restore EFENV001

        Assert.Contains("'Person.Notes'", error.Message, StringComparison.Ordinal);
        Assert.Contains("Searchable = true", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Ordering_ranges_and_patterns_stay_refused_on_searchable_properties()
    {
        using var db = Search();

        #pragma warning disable EFENV002, EFENV003, EFENV006 // The analyzer warns at compile time about what this test expects to be refused at run time.
        Assert.Throws<InvalidOperationException>(() => db.People.OrderBy(p => p.Ssn).ToList());
        Assert.Throws<InvalidOperationException>(() => db.People.Where(p => p.Ssn.StartsWith("1")).ToList());
        Assert.Throws<InvalidOperationException>(() => db.People.Where(p => p.BadgeNumber > 5).ToList());
        Assert.Throws<InvalidOperationException>(() => db.People.Where(p => p.Ssn == p.Email).ToList());
        #pragma warning restore EFENV002, EFENV003, EFENV006
    }

    [Fact]
    public void Comparing_a_searchable_property_with_a_plain_column_is_refused_before_reaching_the_database()
    {
        using var db = Search();
        _sql.Clear();

        var error = Assert.Throws<InvalidOperationException>(() => db.People.Where(p => p.Email == p.Name).ToList());

        Assert.Contains("'Person.Email'", error.Message, StringComparison.Ordinal);
        Assert.Contains("another column", error.Message, StringComparison.Ordinal);
        Assert.Empty(_sql.Commands);
    }

    [Fact]
    public void Aggregates_and_emptiness_tests_are_refused_with_their_own_reason()
    {
        using var db = Search();

        // The compile-time analyzer flags both queries; this checks the run-time refusal behind it.
#pragma warning disable EFENV003, EFENV004
        var sum = Assert.Throws<InvalidOperationException>(() => db.People.Sum(p => p.BadgeNumber));
        var empty = Assert.Throws<InvalidOperationException>(() => db.People.Where(p => string.IsNullOrEmpty(p.Notes)).ToList());
#pragma warning restore EFENV003, EFENV004

        Assert.Contains("'Person.BadgeNumber'", sum.Message, StringComparison.Ordinal);
        Assert.Contains("add up", sum.Message, StringComparison.Ordinal);
        Assert.Contains("'Person.Notes'", empty.Message, StringComparison.Ordinal);
        Assert.Contains("== null", empty.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_searchable_property_without_an_index_key_is_refused_when_the_model_is_built()
    {
        if (Fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        using var db = new SearchContext(Fixture.CreateOptions<SearchContext>(e => e.UseProvider(Fixture.Provider), _sql));

        var error = Assert.Throws<InvalidOperationException>(() => db.Model);

        Assert.Contains("UseBlindIndexKey", error.Message, StringComparison.Ordinal);
        Assert.Contains("Searchable encrypted property 'Person.", error.Message, StringComparison.Ordinal);
    }
}
