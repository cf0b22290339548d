using System.Reflection;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Specification.Tests.Differential;

/// <summary>One scenario: code that uses EF Core and records what it observes. It must not depend on the configuration.</summary>
/// <param name="RefusalAllowed">
/// False where a refusal is itself the defect: plain EF Core answers the scenario and nothing in it needs the database to
/// compare or compute over ciphertext (composition over plain columns after a projection, for example).
/// </param>
public sealed record Scenario(string Id, string Area, Func<ScenarioRun, Task> Body, bool RefusalAllowed = true)
{
    /// <summary>This scenario with refusals counted as differences.</summary>
    public Scenario MustMatch() => this with { RefusalAllowed = false };

    public override string ToString() => Id;
}

public enum Verdict
{
    /// <summary>Both runs observed the same.</summary>
    Matched,

    /// <summary>The encrypted run stopped with EfEnvelope's InvalidOperationException that names the property and the way out.</summary>
    Refused,

    /// <summary>The encrypted run observed something else, or failed in any other way.</summary>
    Differs,

    /// <summary>The plain run failed: the scenario itself is wrong.</summary>
    Broken,
}

public sealed record ScenarioResult(string Id, Verdict Verdict, string Detail);

/// <summary>Runs a scenario plain and encrypted, each on a fresh database, and compares what the two runs observed.</summary>
public sealed class ScenarioRunner(DifferentialFixture fixture)
{
    private static readonly Assembly EfEnvelopeAssembly = typeof(EncryptedAttribute).Assembly;

    // A refusal says what to do instead; these are the words such advice is written with.
    private static readonly string[] Advice =
    [
        "instead", "Use ", "use ", "Mark ", "mark ", "Call ", "call ", "Configure", "configure", "Remove ", "remove ", "Load ", "load ", "after loading",
    ];

    public async Task<ScenarioResult> RunAsync(Scenario scenario, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(scenario);
        var (plain, plainError) = await RunOnceAsync(scenario, encrypted: false, cancellationToken);
        if (plainError is not null)
        {
            return new(scenario.Id, Verdict.Broken, "the plain run threw " + Describe(plainError));
        }

        var (encrypted, error) = await RunOnceAsync(scenario, encrypted: true, cancellationToken);
        if (error is not null)
        {
            return RefusalProblem(error) is { } problem
                ? new(scenario.Id, Verdict.Differs, $"threw {Describe(error)} ({problem})")
                : scenario.RefusalAllowed
                    ? new(scenario.Id, Verdict.Refused, error.Message)
                    : new(scenario.Id, Verdict.Differs, "refused what needs no computation over ciphertext: " + Shorten(error.Message));
        }

        return FirstDifference(plain, encrypted) is { } difference
            ? new(scenario.Id, Verdict.Differs, difference)
            : new(scenario.Id, Verdict.Matched, $"{plain.Count} observations");
    }

    /// <summary>Why <paramref name="error"/> is not an acceptable refusal, or null when it is one.</summary>
    public static string? RefusalProblem(Exception error)
    {
        ArgumentNullException.ThrowIfNull(error);
        if (error is not InvalidOperationException)
        {
            return "not an InvalidOperationException";
        }

        if (error.TargetSite?.DeclaringType?.Assembly != EfEnvelopeAssembly)
        {
            return $"thrown by {error.TargetSite?.DeclaringType?.FullName ?? "unknown code"}, not by EfEnvelope";
        }

        if (!ShopContext.EncryptedProperties.Any(p => error.Message.Contains(p[(p.IndexOf('.', StringComparison.Ordinal) + 1)..], StringComparison.Ordinal)))
        {
            return "the message names no encrypted property";
        }

        return Advice.Any(a => error.Message.Contains(a, StringComparison.Ordinal)) ? null : "the message does not say what to do instead";
    }

    private async Task<(List<(string Label, string Value)> Observations, Exception? Error)> RunOnceAsync(Scenario scenario, bool encrypted, CancellationToken cancellationToken)
    {
        await using var database = await fixture.CreateShopAsync(encrypted, cancellationToken);
        var run = new ScenarioRun(fixture, database, encrypted, cancellationToken);
        try
        {
            await scenario.Body(run);
            await ReadBackAsync(run);
            return ([.. run.Observations], null);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return ([.. run.Observations], e);
        }
    }

    /// <summary>Records the rows of every hierarchy the scenario touched, read through a fresh context of the same configuration.</summary>
    private static async Task ReadBackAsync(ScenarioRun run)
    {
        foreach (var group in run.Touched.GroupBy(t => t.Context).OrderBy(g => g.Key.Name, StringComparer.Ordinal))
        {
            var newContext = typeof(ScenarioRun).GetMethods().Single(m => m.Name == nameof(ScenarioRun.NewContext) && m.IsGenericMethod).MakeGenericMethod(group.Key);
            await using var db = (DbContext)newContext.Invoke(run, [null])!;
            var navigationTargets = db.Model.GetEntityTypes().Where(t => !t.IsOwned()).Select(t => t.ClrType).ToHashSet();
            foreach (var type in group.Select(t => t.Entity).OrderBy(t => t.Name, StringComparer.Ordinal))
            {
                var rows = await ((Task<List<object>>)ReadAllMethod.MakeGenericMethod(type).Invoke(null, [db, run.Ct])!);
                run.Observe("rows " + type.Name, rows.Select(r => Canonical.Format(r, navigationTargets)).Order(StringComparer.Ordinal).ToList());
            }
        }
    }

    private static readonly MethodInfo ReadAllMethod = typeof(ScenarioRunner).GetMethod(nameof(ReadAllAsync), BindingFlags.NonPublic | BindingFlags.Static)!;

    private static async Task<List<object>> ReadAllAsync<T>(DbContext db, CancellationToken cancellationToken)
        where T : class =>
        [.. await db.Set<T>().AsNoTracking().ToListAsync(cancellationToken)];

    /// <summary>Null when the runs agree; else the labels that differ and the first difference in full.</summary>
    private static string? FirstDifference(List<(string Label, string Value)> plain, List<(string Label, string Value)> encrypted)
    {
        var differing = new List<string>();
        string? first = null;
        for (var i = 0; i < Math.Max(plain.Count, encrypted.Count); i++)
        {
            var p = i < plain.Count ? plain[i] : ("(nothing)", "");
            var e = i < encrypted.Count ? encrypted[i] : ("(nothing)", "");
            if (p != e)
            {
                differing.Add(p.Item1 == e.Item1 ? p.Item1 : $"{p.Item1}/{e.Item1}");
                first ??= p.Item1 == e.Item1
                    ? $"{p.Item1}: plain {Shorten(p.Item2)} | encrypted {Shorten(e.Item2)}"
                    : $"observation {i}: plain '{p.Item1}' {Shorten(p.Item2)} | encrypted '{e.Item1}' {Shorten(e.Item2)}";
            }
        }

        return first is null ? null : $"differs in [{string.Join(", ", differing)}]; first: {first}";
    }

    private static string Describe(Exception e) =>
        $"{e.GetType().Name} from {e.TargetSite?.DeclaringType?.FullName ?? "?"}: {Shorten(e.Message)}";

    private static string Shorten(string text)
    {
        text = text.ReplaceLineEndings(" ");
        return text.Length <= 400 ? text : text[..400] + "...";
    }
}
