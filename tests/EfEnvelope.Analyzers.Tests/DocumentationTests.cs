using Microsoft.CodeAnalysis;

namespace EfEnvelope.Analyzers.Tests;

/// <summary>The analyzer's documentation, and its wiring into the repository's own projects.</summary>
public sealed class DocumentationTests
{
    private static readonly DiagnosticDescriptor[] Descriptors =
        [.. new EncryptedQueryAnalyzer().SupportedDiagnostics, .. new MissingEncryptionAnalyzer().SupportedDiagnostics, .. new PropertyValuesAnalyzer().SupportedDiagnostics];

    [Fact]
    public void Each_id_is_documented_in_the_README_and_linked_to_its_section()
    {
        var readme = File.ReadAllText(Path.Combine(RepositoryRoot(), "README.md"));
        var releases = File.ReadAllText(Path.Combine(RepositoryRoot(), "src", "EfEnvelope.Analyzers", "AnalyzerReleases.Unshipped.md"));

        Assert.Equal(9, Descriptors.Select(d => d.Id).Distinct().Count());
        Assert.All(Descriptors, descriptor =>
        {
            var anchor = descriptor.Id.ToLowerInvariant();
            Assert.Contains($"<a id=\"{anchor}\"></a>**{descriptor.Id}:", readme, StringComparison.Ordinal);
            Assert.EndsWith("#" + anchor, descriptor.HelpLinkUri, StringComparison.Ordinal);
            Assert.Contains($"{descriptor.Id} | EfEnvelope | Warning |", releases, StringComparison.Ordinal);
            Assert.Equal(DiagnosticSeverity.Warning, descriptor.DefaultSeverity);
        });
    }

    // The repository's tests, sample and benchmarks build with the analyzer and warnings as errors, so a query it
    // reports there fails the build: that is the check that they have no EFENV warning, as long as it stays wired.
    [Fact]
    public void The_repositorys_tests_sample_and_benchmarks_build_with_the_analyzer()
    {
        const string Reference = "EfEnvelope.Analyzers.csproj\" OutputItemType=\"Analyzer\" ReferenceOutputAssembly=\"false\"";
        var root = RepositoryRoot();
        var consumers = Directory.GetFiles(Path.Combine(root, "samples"), "*.csproj", SearchOption.AllDirectories)
            .Concat(Directory.GetFiles(Path.Combine(root, "benchmarks"), "*.csproj", SearchOption.AllDirectories))
            .Where(project => File.ReadAllText(project).Contains("EfEnvelope.csproj", StringComparison.Ordinal))
            .ToList();

        Assert.NotEmpty(consumers);
        Assert.All(consumers, project => Assert.Contains(Reference, File.ReadAllText(project), StringComparison.Ordinal));
        Assert.Contains(Reference, File.ReadAllText(Path.Combine(root, "tests", "Directory.Build.props")), StringComparison.Ordinal);
        Assert.Contains("TreatWarningsAsErrors>true<", File.ReadAllText(Path.Combine(root, "Directory.Build.props")), StringComparison.Ordinal);
    }

    private static string RepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "EfEnvelope.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException("EfEnvelope.sln not found above " + AppContext.BaseDirectory);
    }
}
