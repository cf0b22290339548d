using EfEnvelope.KeyManagement;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Analyzers.Tests;

/// <summary>The analyzer's warnings against what EfEnvelope really does with the same queries.</summary>
/// <remarks>
/// Every query body of <see cref="Corpus"/> is compiled into one assembly, analysed, loaded and run against SQLite with
/// envelope encryption (a searchable, a truncated and plain encrypted properties, one seeded patient). A query must
/// be reported by the analyzer exactly when the runtime refuses it, and the refusal must be EfEnvelope's own.
/// </remarks>
public sealed class RuntimeAgreementTests
{
    private static readonly string[] Cases =
    [
        .. Agreement.Bodies(Corpus.ComparedWithoutIndex), .. Agreement.Bodies(Corpus.Ordered), .. Agreement.Bodies(Corpus.PatternMatched),
        .. Agreement.Bodies(Corpus.Grouped), .. Agreement.Bodies(Corpus.InExecuteUpdate), .. Agreement.Bodies(Corpus.ReadByDatabase),
        .. Agreement.Bodies(Corpus.TruncatedIndex), .. Agreement.Bodies(Corpus.Runs),
    ];

    [Fact]
    public async Task The_analyzer_reports_exactly_the_queries_EfEnvelope_refuses()
    {
        var ct = TestContext.Current.CancellationToken;
        var compilation = Compile();
        var reported = await Agreement.ReportedCasesAsync(compilation, new EncryptedQueryAnalyzer(), ct);
        var assembly = Agreement.Load(compilation);

        await using var connection = new SqliteConnection("Data Source=:memory:");
        await connection.OpenAsync(ct);
        var provider = new InsecureInMemoryMasterKeyProvider();
        var indexKey = await BlindIndexKey.CreateAsync(provider, cancellationToken: ct);
        var cases = assembly.GetType("Cases")!;
        Action<DbContextOptionsBuilder> configure = builder => builder.UseSqlite(connection).UseEnvelopeEncryption(e => e.UseProvider(provider).UseBlindIndexKey(indexKey));
        await Invoke(cases, "SeedAsync", configure);

        var disagreements = new List<string>();
        for (var i = 0; i < Cases.Length; i++)
        {
            var refusal = await RunAsync(cases, i, configure);
            var refused = refusal is not null && IsEfEnvelopeRefusal(refusal);
            if (refusal is not null && !refused)
            {
                disagreements.Add($"failed for another reason ({refusal.GetType().Name}: {refusal.Message}): {Cases[i]}");
            }
            else if (refused != reported.Contains(i))
            {
                disagreements.Add($"{(refused ? "refused at run time, not reported" : "reported, but runs")}: {Cases[i]}");
            }
        }

        Assert.True(Cases.Length > 50, "the corpus lost its cases");
        Assert.Contains(Cases.Select((_, i) => i), reported.Contains);
        Assert.True(disagreements.Count == 0, string.Join('\n', disagreements));
    }

    private static CSharpCompilation Compile()
    {
        var source = Verify.Usings + Model.Clinic + $$"""
            public static class Cases
            {
                public static ClinicDb Create(Action<DbContextOptionsBuilder> configure)
                {
                    var builder = new DbContextOptionsBuilder<ClinicDb>();
                    configure(builder);
                    return new ClinicDb(builder.Options);
                }

                public static async Task SeedAsync(Action<DbContextOptionsBuilder> configure)
                {
                    await using var db = Create(configure);
                    await db.Database.EnsureCreatedAsync();
                    db.Patients.Add(new Patient { Name = "Ann", Ssn = "078-05-1120", Diagnosis = "flu", Phone = "555", Score = 3, Visits = { new Visit { Notes = "n", Ssn = "078-05-1120" } } });
                    await db.SaveChangesAsync();
                }

                public static async Task RunAsync(int index, Action<DbContextOptionsBuilder> configure)
                {
                    await using var db = Create(configure);
                    var other = new Patient { Name = "Ann", Ssn = "078-05-1120", Diagnosis = "flu", Score = 1 };
                    await (Task)typeof(Cases).GetMethod("Case" + index)!.Invoke(null, [db, "flu", new List<string> { "flu" }, other])!;
                }
            {{Agreement.Methods(Cases, "ClinicDb db, string text, List<string> list, Patient other")}}
            }
            """;
        return Agreement.Compile("AgreementCases", source);
    }

    // The cases are async methods: their failures come back in the task, never wrapped by reflection.
    private static async Task<Exception?> RunAsync(Type cases, int index, Action<DbContextOptionsBuilder> configure)
    {
        try
        {
            await Invoke(cases, "RunAsync", index, configure);
            return null;
        }
#pragma warning disable CA1031 // Any failure of a query is an outcome to compare, not a test error.
        catch (Exception e)
#pragma warning restore CA1031
        {
            return e;
        }
    }

    private static Task Invoke(Type cases, string name, params object[] arguments) =>
        (Task)cases.GetMethod(name)!.Invoke(null, arguments)!;

    // EfEnvelope's query refusals name the encrypted property or the truncated index; EF's own errors do not.
    private static bool IsEfEnvelopeRefusal(Exception error) =>
        error is InvalidOperationException
        && (error.Message.Contains("encrypted propert", StringComparison.Ordinal) || error.Message.Contains("blind index is truncated", StringComparison.Ordinal));
}
