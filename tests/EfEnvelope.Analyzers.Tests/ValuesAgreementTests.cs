using System.Text.RegularExpressions;
using EfEnvelope.KeyManagement;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Analyzers.Tests;

/// <summary>EFENV009 against what plain EF and EfEnvelope really do with the same <c>SetValues</c> calls.</summary>
/// <remarks>
/// Every body of <see cref="ValuesCorpus"/> is compiled twice: with the clinic model as written (analysed, run with
/// envelope encryption) and with its <c>[Encrypted]</c> attributes removed (run with plain EF). Each run seeds one
/// patient on its own SQLite database, reads it, runs the body and saves; the outcome is the entry's state and the
/// patient's values after the call, the rows the save wrote and the values stored. A body is silently different when
/// both runs complete with different outcomes (an EfEnvelope error is loud, not silent); each list of the corpus
/// states whether its bodies are reported and whether they are silently different.
/// </remarks>
public sealed partial class ValuesAgreementTests
{
    private static readonly (string Body, bool Reported, bool Differs)[] Cases =
    [
        .. Agreement.Bodies(ValuesCorpus.Bypassed).Select(body => (body, true, true)),
        .. Agreement.Bodies(ValuesCorpus.Copied).Select(body => (body, false, false)),
        .. Agreement.Bodies(ValuesCorpus.Missed).Select(body => (body, false, true)),
        .. Agreement.Bodies(ValuesCorpus.Overreported).Select(body => (body, true, false)),
    ];

    [Fact]
    public async Task The_analyzer_reports_the_SetValues_calls_that_differ_silently_from_plain_EF_as_the_corpus_states()
    {
        var ct = TestContext.Current.CancellationToken;
        var encrypted = Compile("ValuesEncrypted", Model.Clinic);
        var plain = Compile("ValuesPlain", Attribute().Replace(Model.Clinic, ""));
        var reported = await Agreement.ReportedCasesAsync(encrypted, new PropertyValuesAnalyzer(), ct);
        var encryptedCases = Agreement.Load(encrypted).GetType("Cases")!;
        var plainCases = Agreement.Load(plain).GetType("Cases")!;

        var provider = new InsecureInMemoryMasterKeyProvider();
        var indexKey = await BlindIndexKey.CreateAsync(provider, cancellationToken: ct);
        var disagreements = new List<string>();
        for (var i = 0; i < Cases.Length; i++)
        {
            var (body, expectReported, expectDiffers) = Cases[i];
            var expected = await RunAsync(plainCases, i, (builder, connection) => builder.UseSqlite(connection), ct);
            var actual = await RunAsync(encryptedCases, i, (builder, connection) => builder.UseSqlite(connection).UseEnvelopeEncryption(e => e.UseProvider(provider).UseBlindIndexKey(indexKey)), ct);
            var differs = actual.Error is null && actual.Outcome != expected.Outcome;
            if (expected.Error is not null)
            {
                disagreements.Add($"fails with plain EF ({expected.Error.GetType().Name}: {expected.Error.Message}): {body}");
            }
            else if (differs != expectDiffers || reported.Contains(i) != expectReported)
            {
                disagreements.Add($"{(reported.Contains(i) ? "reported" : "not reported")}, and EfEnvelope {(differs ? "differs silently" : "does not differ silently")} "
                    + $"(plain EF: {expected.Outcome}; EfEnvelope: {actual.Outcome ?? actual.Error!.Message}): {body}");
            }
        }

        Assert.True(disagreements.Count == 0, string.Join('\n', disagreements));
    }

    [GeneratedRegex(@"\[Encrypted(\([^)]*\))?\] ")]
    private static partial Regex Attribute();

    private static Microsoft.CodeAnalysis.CSharp.CSharpCompilation Compile(string name, string model)
    {
        var source = Verify.Usings + model + $$"""
            public static class Cases
            {
                public static ClinicDb Create(Action<DbContextOptionsBuilder> configure)
                {
                    var builder = new DbContextOptionsBuilder<ClinicDb>();
                    configure(builder);
                    return new ClinicDb(builder.Options);
                }

                public static async Task<string> RunAsync(int index, Action<DbContextOptionsBuilder> configure)
                {
                    await using (var seed = Create(configure))
                    {
                        await seed.Database.EnsureCreatedAsync();
                        seed.Patients.Add(new Patient { Name = "Ann", Ssn = "078-05-1120", Diagnosis = "flu", Score = 3, Phone = "555" });
                        await seed.SaveChangesAsync();
                    }

                    await using var db = Create(configure);
                    await using var second = Create(configure);
                    var p = await db.Patients.SingleAsync();
                    var other = new Patient
                    {
                        Id = p.Id, Name = "Bob", Active = true, Ssn = "219-09-9999", Diagnosis = "cold", DateOfBirth = new DateOnly(1990, 1, 2),
                        Score = 9, Phone = "556", SeenAt = new DateTimeOffset(2020, 1, 1, 0, 0, 0, TimeSpan.Zero),
                    };
                    await (Task)typeof(Cases).GetMethod("Case" + index)!.Invoke(null, [db, p, other, second, "edited"])!;
                    var after = $"{db.Entry(p).State} {Describe(p)}";
                    var written = await db.SaveChangesAsync();
                    await using var reader = Create(configure);
                    return $"after the call {after}, SaveChanges wrote {written}, stored {Describe(await reader.Patients.SingleAsync())}";
                }

                private static string Describe(Patient p) =>
                    string.Join("|", p.Name, p.Active, p.Ssn, p.Diagnosis, p.DateOfBirth, p.Score, p.Phone, p.SeenAt);
            {{Agreement.Methods([.. Cases.Select(c => c.Body)], "ClinicDb db, Patient p, Patient other, ClinicDb second, string text")}}
            }
            """;
        return Agreement.Compile(name, source);
    }

    // Each run on its own in-memory database, so that no case sees another's edits.
    private static async Task<(string? Outcome, Exception? Error)> RunAsync(Type cases, int index, Action<DbContextOptionsBuilder, SqliteConnection> configure, CancellationToken ct)
    {
        await using var connection = new SqliteConnection("Data Source=:memory:");
        await connection.OpenAsync(ct);
        try
        {
            return (await (Task<string>)cases.GetMethod("RunAsync")!.Invoke(null, [index, (Action<DbContextOptionsBuilder>)(builder => configure(builder, connection))])!, null);
        }
#pragma warning disable CA1031 // An error is an outcome to compare, not a test failure.
        catch (Exception e)
#pragma warning restore CA1031
        {
            return (null, e);
        }
    }
}
