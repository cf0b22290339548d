using System.Reflection;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Diagnostics;

namespace EfEnvelope.Analyzers.Tests;

/// <summary>What the tests that check an analyzer against the runtime share: the cases compiled as methods, analysed and loaded.</summary>
/// <remarks>Case <c>i</c> of a corpus becomes the method <c>Case{i}</c> of a class <c>Cases</c>, whose other members the caller writes.</remarks>
internal static partial class Agreement
{
    /// <summary>The bodies of a corpus without their markup.</summary>
    public static IEnumerable<string> Bodies(TheoryData<string> data) =>
        data.Select(row => Markup().Replace(row.Data, "$1"));

    /// <summary>One <c>public static async Task Case{i}(parameters)</c> per body.</summary>
    public static string Methods(IReadOnlyList<string> bodies, string parameters) =>
        string.Concat(bodies.Select((body, i) => $$"""

                public static async Task Case{{i}}({{parameters}})
                {
                    {{body}}
                }

            """));

    public static CSharpCompilation Compile(string assemblyName, string source)
    {
        var compilation = CSharpCompilation.Create(
            assemblyName,
            [CSharpSyntaxTree.ParseText(source, new CSharpParseOptions(LanguageVersion.Latest))],
            Verify.References,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
        var errors = compilation.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
        Assert.True(errors.Count == 0, string.Join('\n', errors));
        return compilation;
    }

    /// <summary>The indexes of the cases in which <paramref name="analyzer"/> reports anything.</summary>
    public static async Task<HashSet<int>> ReportedCasesAsync(CSharpCompilation compilation, DiagnosticAnalyzer analyzer, CancellationToken ct)
    {
        var diagnostics = await compilation.WithAnalyzers([analyzer]).GetAnalyzerDiagnosticsAsync(ct);
        var reported = new HashSet<int>();
        foreach (var diagnostic in diagnostics)
        {
            var node = diagnostic.Location.SourceTree!.GetRoot(ct).FindNode(diagnostic.Location.SourceSpan);
            var method = node.AncestorsAndSelf().OfType<MethodDeclarationSyntax>().First().Identifier.ValueText;
            Assert.StartsWith("Case", method, StringComparison.Ordinal);
            reported.Add(int.Parse(method["Case".Length..], System.Globalization.CultureInfo.InvariantCulture));
        }

        return reported;
    }

    public static Assembly Load(CSharpCompilation compilation)
    {
        using var image = new MemoryStream();
        var emitted = compilation.Emit(image);
        Assert.True(emitted.Success, string.Join('\n', emitted.Diagnostics));
        return Assembly.Load(image.ToArray());
    }

    // {|EFENV001:p.Diagnosis|} → p.Diagnosis
    [GeneratedRegex(@"\{\|EFENV\d{3}:(.*?)\|\}")]
    private static partial Regex Markup();
}
