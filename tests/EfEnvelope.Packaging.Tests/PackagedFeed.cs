using System.Text.RegularExpressions;

[assembly: AssemblyFixture(typeof(EfEnvelope.Packaging.Tests.PackagedFeed))]

namespace EfEnvelope.Packaging.Tests;

/// <summary>
/// Packs every packable project under src/ into a local folder feed, once for all tests, the way a release would:
/// Release, ContinuousIntegrationBuild, from a git repository with an origin remote (which Source Link needs).
/// </summary>
/// <remarks>
/// The sources are copied (without bin and obj) into a throwaway git repository so that packing neither disturbs the
/// working tree's build outputs nor depends on how the working tree was cloned. The version is the one set in
/// src/Directory.Build.props with a suffix unique to this run, so that no package cached from an earlier run can be
/// picked up in place of the one just built.
/// </remarks>
public sealed partial class PackagedFeed : IAsyncLifetime
{
    /// <summary>The origin remote of the throwaway repository: Source Link turns it into raw.githubusercontent.com links.</summary>
    public const string RemoteUrl = "https://github.com/efenvelope-packaging-test/EfEnvelope";

    public string RepositoryRoot { get; } = FindRepositoryRoot();

    public DirectoryInfo Work { get; } = Directory.CreateTempSubdirectory("efenvelope-packaging-");

    public string Snapshot => Path.Combine(Work.FullName, "repo");

    public string Feed => Path.Combine(Work.FullName, "feed");

    public string Version { get; private set; } = "";

    public string VersionPrefix { get; private set; } = "";

    public string Commit { get; private set; } = "";

    public async ValueTask InitializeAsync()
    {
        VersionPrefix = VersionPrefixElement().Match(File.ReadAllText(Path.Combine(RepositoryRoot, "src", "Directory.Build.props"))).Groups[1].Value;
        var suffix = "packtest." + Guid.NewGuid().ToString("N")[..12];
        Version = $"{VersionPrefix}-{suffix}";

        foreach (var file in new[] { "Directory.Build.props", "Directory.Packages.props", "global.json", "README.md" })
        {
            Directory.CreateDirectory(Snapshot);
            File.Copy(Path.Combine(RepositoryRoot, file), Path.Combine(Snapshot, file));
        }

        CopyTree(Path.Combine(RepositoryRoot, "src"), Path.Combine(Snapshot, "src"));
        CopyTree(Path.Combine(RepositoryRoot, "docs"), Path.Combine(Snapshot, "docs"));

        string[] identity = ["-c", "user.name=EfEnvelope packaging test", "-c", "user.email=packaging-test@localhost"];
        await Processes.RunAsync(Snapshot, "git", ["init", "-q", "-b", "main"]);
        await Processes.RunAsync(Snapshot, "git", ["add", "-A"]);
        await Processes.RunAsync(Snapshot, "git", [.. identity, "commit", "-q", "-m", "snapshot"]);
        await Processes.RunAsync(Snapshot, "git", ["remote", "add", "origin", RemoteUrl]);
        Commit = (await Processes.RunAsync(Snapshot, "git", ["rev-parse", "HEAD"])).Trim();

        var projects = Directory.GetFiles(Path.Combine(Snapshot, "src"), "*.csproj", SearchOption.AllDirectories).Order().ToList();
        await Processes.RunAsync(Snapshot, "dotnet", ["new", "sln", "-n", "packages"]);
        var solution = Directory.GetFiles(Snapshot, "packages.sln*").Single();
        await Processes.RunAsync(Snapshot, "dotnet", ["sln", solution, "add", .. projects]);
        await Processes.RunAsync(
            Snapshot,
            "dotnet",
            ["pack", solution, "-c", "Release", "-o", Feed, $"-p:VersionSuffix={suffix}", "-p:ContinuousIntegrationBuild=true", "-nodeReuse:false", "-p:UseSharedCompilation=false"],
            timeout: TimeSpan.FromMinutes(10));
    }

    public ValueTask DisposeAsync()
    {
        Work.Delete(recursive: true);
        return ValueTask.CompletedTask;
    }

    public string Package(string id) => Path.Combine(Feed, $"{id}.{Version}.nupkg");

    public string SymbolPackage(string id) => Path.Combine(Feed, $"{id}.{Version}.snupkg");

    private static void CopyTree(string from, string to)
    {
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(from, file);
            var parts = relative.Split(Path.DirectorySeparatorChar);
            if (parts.Any(p => p is "bin" or "obj"))
            {
                continue;
            }

            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(to, relative))!);
            File.Copy(file, Path.Combine(to, relative));
        }
    }

    private static string FindRepositoryRoot()
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

    [GeneratedRegex(@"<VersionPrefix>([^<]+)</VersionPrefix>")]
    private static partial Regex VersionPrefixElement();
}
