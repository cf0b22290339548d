using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.Differential;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Differential;

/// <summary>The differential suite's own rules: what counts as a refusal, when the known list fails the run, how values compare.</summary>
public sealed class OracleTests
{
    private static readonly Dictionary<string, string> Listed = new(StringComparer.Ordinal) { ["a"] = "reason", ["b@SQLite"] = "reason" };

    [Fact]
    public void An_unlisted_difference_fails_the_run()
    {
        var problems = KnownDifferences.Problems([new("c", Verdict.Differs, "detail")], "SQLite", Listed);
        Assert.Contains("c differs and is not a known difference", Assert.Single(problems), StringComparison.Ordinal);
    }

    [Fact]
    public void A_listed_scenario_that_matches_or_is_refused_fails_the_run()
    {
        var problems = KnownDifferences.Problems([new("a", Verdict.Matched, ""), new("b", Verdict.Refused, "")], "SQLite", Listed);
        Assert.Equal(2, problems.Count);
        Assert.All(problems, p => Assert.Contains("remove it from KnownDifferences", p, StringComparison.Ordinal));
    }

    [Fact]
    public void A_listed_difference_passes_and_a_database_specific_entry_applies_to_its_database_only()
    {
        Assert.Empty(KnownDifferences.Problems([new("a", Verdict.Differs, ""), new("b", Verdict.Differs, "")], "SQLite", Listed));
        Assert.Single(KnownDifferences.Problems([new("b", Verdict.Differs, "")], "PostgreSQL", Listed));
    }

    [Fact]
    public void A_broken_scenario_fails_the_run_even_when_listed()
    {
        Assert.Single(KnownDifferences.Problems([new("a", Verdict.Broken, "plain threw")], "SQLite", Listed));
    }

    [Fact]
    public async Task EfEnvelopes_query_refusal_is_a_refusal_and_EFs_own_exception_is_not()
    {
        await using var connection = new SqliteConnection("Data Source=:memory:");
        await connection.OpenAsync(TestContext.Current.CancellationToken);
        var provider = new InsecureInMemoryMasterKeyProvider("primary");
        var indexKey = await BlindIndexKey.CreateAsync(provider, cancellationToken: TestContext.Current.CancellationToken);
        var options = new DbContextOptionsBuilder<ShopContext>().UseSqlite(connection).ManyConfigurationsPerProcess()
            .UseEnvelopeEncryption(e => e.UseProvider(provider).UseBlindIndexKey(indexKey)).Options;
        await using var db = new ShopContext(options);
        await db.Database.EnsureCreatedAsync(TestContext.Current.CancellationToken);

        var refusal = await Assert.ThrowsAnyAsync<InvalidOperationException>(() => db.Customers.Where(c => c.Ssn == "x").ToListAsync(TestContext.Current.CancellationToken));
        Assert.Null(ScenarioRunner.RefusalProblem(refusal));

        var efError = await Assert.ThrowsAnyAsync<Exception>(() => db.Customers.FromSqlRaw("SELECT * FROM \"NoSuchTable\"").ToListAsync(TestContext.Current.CancellationToken));
        Assert.NotNull(ScenarioRunner.RefusalProblem(efError));
        Assert.NotNull(ScenarioRunner.RefusalProblem(new InvalidOperationException("The property 'Customer.Ssn' could not be found. Use another one.")));
    }

    [Fact]
    public void Canonical_text_tells_apart_what_an_application_can_tell_apart()
    {
        var at = new DateTime(2024, 1, 1, 8, 0, 0);
        Assert.NotEqual(Canonical.Format(DateTime.SpecifyKind(at, DateTimeKind.Utc)), Canonical.Format(at));
        Assert.NotEqual(Canonical.Format((string?)null), Canonical.Format("null"));
        Assert.NotEqual(Canonical.Format(new[] { "a", null }), Canonical.Format(new[] { null, "a" }));
        Assert.NotEqual(Canonical.Format(new Address { Street = "x" }), Canonical.Format(new Address { Street = "y" }));
        Assert.Equal(Canonical.Format(12.50m), Canonical.Format(12.5m));
    }

    [Fact]
    public void An_object_that_refers_back_to_itself_is_written_once()
    {
        var customer = new Customer { Name = "c" };
        customer.Orders.Add(new Order { Customer = customer, CardNumber = "1" });
        Assert.Contains("Customer=^Customer", Canonical.Format(customer), StringComparison.Ordinal);
    }
}
