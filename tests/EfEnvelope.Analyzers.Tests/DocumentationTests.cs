using Microsoft.CodeAnalysis;

namespace EfEnvelope.Analyzers.Tests;

/// <summary>Every diagnostic id has its README section, its help link to that section, and its release-tracking line.</summary>
public sealed class DocumentationTests
{
    private static readonly DiagnosticDescriptor[] Descriptors =
        [.. new EncryptedQueryAnalyzer().SupportedDiagnostics, .. new MissingEncryptionAnalyzer().SupportedDiagnostics];

    [Fact]
    public void Each_id_is_documented_in_the_README_and_linked_to_its_section()
    {
        var readme = File.ReadAllText(Path.Combine(RepositoryRoot(), "README.md"));
        var releases = File.ReadAllText(Path.Combine(RepositoryRoot(), "src", "EfEnvelope.Analyzers", "AnalyzerReleases.Unshipped.md"));

        Assert.Equal(8, Descriptors.Select(d => d.Id).Distinct().Count());
        Assert.All(Descriptors, descriptor =>
        {
            var anchor = descriptor.Id.ToLowerInvariant();
            Assert.Contains($"<a id=\"{anchor}\"></a>**{descriptor.Id}:", readme, StringComparison.Ordinal);
            Assert.EndsWith("#" + anchor, descriptor.HelpLinkUri, StringComparison.Ordinal);
            Assert.Contains($"{descriptor.Id} | EfEnvelope | Warning |", releases, StringComparison.Ordinal);
            Assert.Equal(DiagnosticSeverity.Warning, descriptor.DefaultSeverity);
        });
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
