using System.Globalization;

namespace EfEnvelope.Specification.Tests.Differential;

/// <summary>
/// The differential suite: every scenario in <see cref="Scenarios.All"/> runs plain and encrypted and must match or be
/// refused. Scenarios listed in <see cref="KnownDifferences"/> may differ, and must: the list can only shrink.
/// </summary>
public abstract class DifferentialTests<TFixture>(TFixture fixture) : IClassFixture<TFixture>
    where TFixture : DifferentialFixture
{
    protected TFixture Fixture { get; } = fixture;

    [Fact]
    public void There_are_at_least_150_scenarios_with_unique_ids_and_every_known_difference_names_one()
    {
        var ids = Scenarios.All.Select(s => s.Id).ToList();
        Assert.True(ids.Count >= 150, $"{ids.Count} scenarios");
        Assert.Equal(ids.Count, ids.Distinct(StringComparer.Ordinal).Count());
        var known = ids.Concat(Scenarios.IssueOnly.Select(s => s.Id)).Concat(IssueItemChecks.Ids).ToHashSet(StringComparer.Ordinal);
        Assert.Empty(KnownDifferences.Reasons.Keys.Select(KnownDifferences.ScenarioId).Where(id => !known.Contains(id)));
    }

    [Fact]
    public async Task Every_scenario_matches_or_is_refused_except_the_known_differences()
    {
        if (Fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        var runner = new ScenarioRunner(Fixture);
        var output = TestContext.Current.TestOutputHelper!;
        var results = new List<ScenarioResult>();
        foreach (var scenario in Scenarios.All)
        {
            var result = await runner.RunAsync(scenario, TestContext.Current.CancellationToken);
            results.Add(result);
            output.WriteLine($"{scenario.Area,-14} {result.Id,-48} {Label(result)}: {result.Detail}");
        }

        var matched = results.Count(r => r.Verdict == Verdict.Matched);
        var refused = results.Count(r => r.Verdict == Verdict.Refused);
        var differ = results.Count(r => r.Verdict is Verdict.Differs or Verdict.Broken);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Differential suite on {Fixture.Name}: {results.Count} scenarios ran, {matched} matched, {refused} refused, {differ} differ ({results.Count(r => r.Verdict == Verdict.Differs && Listed(r))} of them known)."));

        var problems = KnownDifferences.Problems(results, Fixture.Name);
        Assert.True(problems.Count == 0, string.Join(Environment.NewLine, problems));
    }

    private bool Listed(ScenarioResult result) => KnownDifferences.Find(result.Id, Fixture.Name) is not null;

    private string Label(ScenarioResult result) => result.Verdict switch
    {
        Verdict.Differs when Listed(result) => "differs (known)",
        Verdict.Differs => "DIFFERS (NEW)",
        Verdict.Broken => "BROKEN SCENARIO",
        _ when Listed(result) => result.Verdict.ToString().ToLowerInvariant() + " (KNOWN: remove from the list)",
        _ => result.Verdict.ToString().ToLowerInvariant(),
    };
}
