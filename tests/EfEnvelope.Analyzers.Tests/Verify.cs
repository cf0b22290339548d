using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Testing;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Testing;

namespace EfEnvelope.Analyzers.Tests;

/// <summary>Runs an analyzer on C# source with the Roslyn analyzer testing library and compares its diagnostics with the markup.</summary>
/// <remarks>
/// Markup <c>{|EFENV001:p.Diagnosis|}</c> expects that diagnostic on exactly that span, and no other diagnostic may
/// appear. The source compiles against the assemblies this test process runs on (.NET, EF Core, EfEnvelope), so no
/// reference package is downloaded and the analyzer sees the real EfEnvelope and EF Core types.
/// </remarks>
internal static class Verify
{
    internal const string Usings = """
        using System;
        using System.Collections.Generic;
        using System.Linq;
        using System.Threading.Tasks;
        using EfEnvelope;
        using Microsoft.EntityFrameworkCore;
        using Microsoft.Extensions.DependencyInjection;

        """;

    internal static ImmutableArray<MetadataReference> References { get; } = LoadReferences();

    /// <summary>Also expects <paramref name="expected"/>, for diagnostics whose message arguments matter.</summary>
    public static Task Analyzer<TAnalyzer>(string source, params DiagnosticResult[] expected)
        where TAnalyzer : DiagnosticAnalyzer, new()
    {
        var test = new CSharpAnalyzerTest<TAnalyzer, DefaultVerifier>
        {
            TestCode = Usings + source,
            // No reference package: the references are the running framework's, added below.
            ReferenceAssemblies = new ReferenceAssemblies("net10.0"),
        };
        test.TestState.AdditionalReferences.AddRange(References);
        test.ExpectedDiagnostics.AddRange(expected);
        return test.RunAsync(TestContext.Current.CancellationToken);
    }

    private static ImmutableArray<MetadataReference> LoadReferences()
    {
        // Make sure the assemblies the sources use are loaded, then take the platform's and the app's assemblies.
        _ = typeof(EncryptedAttribute).Assembly;
        _ = typeof(Microsoft.EntityFrameworkCore.DbContext).Assembly;
        _ = typeof(Microsoft.EntityFrameworkCore.RelationalQueryableExtensions).Assembly;
        var paths = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator);
        return [.. paths
            .Where(path => Path.GetFileName(path) is var name && (name.StartsWith("System.", StringComparison.Ordinal) || name is "System.dll" or "netstandard.dll" or "mscorlib.dll"
                || name.StartsWith("Microsoft.EntityFrameworkCore", StringComparison.Ordinal) || name.StartsWith("Microsoft.Extensions.", StringComparison.Ordinal)
                || name.StartsWith("EfEnvelope", StringComparison.Ordinal)) && !name.StartsWith("EfEnvelope.Analyzers", StringComparison.Ordinal))
            .Select(path => (MetadataReference)MetadataReference.CreateFromFile(path))];
    }
}
