using System.IO.Compression;
using System.Reflection.Metadata;
using System.Reflection.Metadata.Ecma335;
using System.Text;
using System.Text.Json;
using System.Xml.Linq;

namespace EfEnvelope.Packaging.Tests;

/// <summary>What each package carries: metadata, README, XML docs, symbols with Source Link, reproducible paths.</summary>
public sealed class PackageContentTests(PackagedFeed feed)
{
    // The SourceLink custom debug information of a portable PDB (its kind GUID is fixed by the format).
    private static readonly Guid SourceLinkKind = new("CC110556-A091-4D38-9FEC-25AB9A351A6A");

    public static TheoryData<string> Libraries => ["EfEnvelope", "EfEnvelope.AwsKms", "EfEnvelope.Pkcs11"];

    [Fact]
    public void Every_package_has_the_version_set_in_one_place_and_a_symbol_package()
    {
        var files = Directory.GetFiles(feed.Feed).Select(f => Path.GetFileName(f)).ToHashSet();
        var suffix = $".{feed.Version}.nupkg";

        // The shipped packages are there (other projects under src/ may add packages of their own)...
        Assert.Superset(new HashSet<string> { "EfEnvelope", "EfEnvelope.AwsKms", "EfEnvelope.Cli", "EfEnvelope.Pkcs11" }, files.Where(f => f.EndsWith(suffix, StringComparison.Ordinal)).Select(f => f[..^suffix.Length]).ToHashSet());

        // ...every one of them at the one version, with its symbol package.
        Assert.All(files, f => Assert.True(f.EndsWith(suffix, StringComparison.Ordinal) || f.EndsWith($".{feed.Version}.snupkg", StringComparison.Ordinal), $"{f} is not at version {feed.Version}"));
        Assert.All(files.Where(f => f.EndsWith(".nupkg", StringComparison.Ordinal)), f => Assert.Contains(Path.ChangeExtension(f, ".snupkg"), files));
        Assert.StartsWith(feed.VersionPrefix + "-packtest.", feed.Version, StringComparison.Ordinal);

        // src/Directory.Build.props is the one place: no project sets a version of its own.
        foreach (var project in Directory.GetFiles(Path.Combine(feed.RepositoryRoot, "src"), "*.csproj", SearchOption.AllDirectories))
        {
            Assert.DoesNotMatch(@"<(Version|VersionPrefix|PackageVersion)>", File.ReadAllText(project));
        }
    }

    [Theory]
    [MemberData(nameof(Libraries))]
    [InlineData("EfEnvelope.Cli")]
    public void The_nuspec_carries_license_readme_repository_and_description(string id)
    {
        using var package = ZipFile.OpenRead(feed.Package(id));
        var nuspec = XDocument.Load(package.GetEntry($"{id}.nuspec")!.Open());
        XNamespace ns = nuspec.Root!.Name.Namespace;
        var metadata = nuspec.Root.Element(ns + "metadata")!;

        Assert.Equal(feed.Version, metadata.Element(ns + "version")!.Value);
        var license = metadata.Element(ns + "license")!;
        Assert.Equal(("expression", "MIT"), (license.Attribute("type")!.Value, license.Value));
        Assert.Equal("README.md", metadata.Element(ns + "readme")!.Value);
        Assert.NotNull(package.GetEntry("README.md"));
        Assert.False(string.IsNullOrWhiteSpace(metadata.Element(ns + "description")!.Value));
        var repository = metadata.Element(ns + "repository")!;
        Assert.Equal("git", repository.Attribute("type")!.Value);
        Assert.Equal(PackagedFeed.RemoteUrl, repository.Attribute("url")!.Value);
        Assert.Equal(feed.Commit, repository.Attribute("commit")!.Value);
    }

    [Theory]
    [InlineData("EfEnvelope.AwsKms")]
    [InlineData("EfEnvelope.Pkcs11")]
    public void Provider_packages_depend_on_the_core_package_of_the_same_version(string id)
    {
        using var package = ZipFile.OpenRead(feed.Package(id));
        var nuspec = XDocument.Load(package.GetEntry($"{id}.nuspec")!.Open());

        var core = Assert.Single(nuspec.Descendants(), e => e.Name.LocalName == "dependency" && e.Attribute("id")?.Value == "EfEnvelope");
        Assert.Equal(feed.Version, core.Attribute("version")!.Value);
    }

    [Theory]
    [MemberData(nameof(Libraries))]
    public void Libraries_ship_xml_docs_and_symbols_with_source_link_and_no_build_machine_paths(string id)
    {
        using var package = ZipFile.OpenRead(feed.Package(id));
        Assert.NotNull(package.GetEntry($"lib/net10.0/{id}.xml"));
        var assembly = Read(package, $"lib/net10.0/{id}.dll");

        using var symbols = ZipFile.OpenRead(feed.SymbolPackage(id));
        var pdb = Read(symbols, $"lib/net10.0/{id}.pdb");
        using var provider = MetadataReaderProvider.FromPortablePdbImage(System.Collections.Immutable.ImmutableArray.Create(pdb));
        var reader = provider.GetMetadataReader();

        // Deterministic, path-mapped build: sources are named /_/..., and the build directory appears nowhere.
        var documents = reader.Documents.Select(d => reader.GetString(reader.GetDocument(d).Name)).ToList();
        Assert.NotEmpty(documents);
        Assert.All(documents.Where(d => d.EndsWith(".cs", StringComparison.Ordinal) && !d.Contains("/obj/", StringComparison.Ordinal)), d => Assert.StartsWith("/_/src/", d, StringComparison.Ordinal));
        foreach (var image in new[] { assembly, pdb })
        {
            Assert.Equal(-1, image.AsSpan().IndexOf(Encoding.UTF8.GetBytes(feed.Work.FullName)));
        }

        var sourceLink = reader.CustomDebugInformation
            .Select(reader.GetCustomDebugInformation)
            .Single(c => reader.GetGuid(c.Kind) == SourceLinkKind);
        using var json = JsonDocument.Parse(reader.GetBlobBytes(sourceLink.Value));
        var mapping = json.RootElement.GetProperty("documents").EnumerateObject().Single();
        Assert.Equal("/_/*", mapping.Name);
        Assert.Equal($"https://raw.githubusercontent.com/efenvelope-packaging-test/EfEnvelope/{feed.Commit}/*", mapping.Value.GetString());
    }

    private static byte[] Read(ZipArchive archive, string path)
    {
        var entry = archive.GetEntry(path) ?? throw new InvalidOperationException($"{path} is not in the package; it has: {string.Join(", ", archive.Entries.Select(e => e.FullName))}");
        using var stream = entry.Open();
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }
}
