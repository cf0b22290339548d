using System.Text.RegularExpressions;

namespace EfEnvelope.Packaging.Tests;

/// <summary>
/// A fresh console project installs the packages named in the README's Installing section from the local feed and
/// runs the README's quick start, as written there.
/// </summary>
public sealed partial class QuickStartTests(PackagedFeed feed)
{
    [Fact]
    public async Task The_readme_quick_start_runs_in_a_fresh_project_that_references_the_packages()
    {
        var readme = File.ReadAllText(Path.Combine(feed.RepositoryRoot, "README.md"));
        var app = Directory.CreateDirectory(Path.Combine(feed.Work.FullName, "app")).FullName;

        // Packages: as the Installing section adds them; ours from the feed, others at the versions the repository uses.
        var installs = AddPackage().Matches(Section(readme, "## Installing")).Select(m => m.Groups[1].Value).ToList();
        Assert.Contains("EfEnvelope", installs);
        var central = File.ReadAllText(Path.Combine(feed.RepositoryRoot, "Directory.Packages.props"));
        var references = installs.Select(id => $"""    <PackageReference Include="{id}" Version="{(id.StartsWith("EfEnvelope", StringComparison.Ordinal) ? feed.Version : CentralVersion(central, id))}" />""");
        File.WriteAllText(Path.Combine(app, "QuickStart.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <ImplicitUsings>enable</ImplicitUsings>
                <Nullable>enable</Nullable>
              </PropertyGroup>
              <ItemGroup>
            {string.Join('\n', references)}
              </ItemGroup>
            </Project>
            """);

        // Restore into a private packages folder, so nothing of this run stays in the machine's cache; packages the
        // machine already has are read from its folder, anything else comes from the configured sources.
        var machinePackages = (await Processes.RunAsync(app, "dotnet", ["nuget", "locals", "global-packages", "--list"])).Split(':', 2)[1].Trim();
        File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <config>
                <add key="globalPackagesFolder" value="{Path.Combine(feed.Work.FullName, "packages")}" />
              </config>
              <packageSources>
                <add key="efenvelope-local" value="{feed.Feed}" />
              </packageSources>
              <fallbackPackageFolders>
                <add key="machine" value="{machinePackages}" />
              </fallbackPackageFolders>
            </configuration>
            """);

        // The quick start's code block, split where C# requires it: statements in Program.cs, types in their own file.
        var code = CodeBlock().Match(Section(readme, "## Quick start")).Groups[1].Value.Split('\n');
        var usings = code.Where(l => l.StartsWith("using ", StringComparison.Ordinal)).ToList();
        var types = new List<string>();
        var statements = new List<string>();
        for (var i = 0; i < code.Length; i++)
        {
            if (code[i].StartsWith("public class", StringComparison.Ordinal))
            {
                // A type runs to its closing brace at the start of a line.
                while (code[i] != "}")
                {
                    types.Add(code[i++]);
                }

                types.Add(code[i]);
            }
            else if (!code[i].StartsWith("using ", StringComparison.Ordinal))
            {
                statements.Add(code[i]);
            }
        }

        Assert.NotEmpty(types);
        File.WriteAllLines(Path.Combine(app, "Model.cs"), [.. usings, "", .. types]);
        File.WriteAllLines(Path.Combine(app, "Program.cs"), [.. usings, .. statements, """Console.WriteLine($"Read back: {ann.Ssn}");"""]);

        var output = await Processes.RunAsync(app, "dotnet", ["run", "-c", "Release", "-nodeReuse:false", "-p:UseSharedCompilation=false"], timeout: TimeSpan.FromMinutes(8));

        Assert.Contains("Read back: 078-05-1120", output, StringComparison.Ordinal);
        Assert.Equal(-1, File.ReadAllBytes(Path.Combine(app, "clinic.db")).AsSpan().IndexOf("078-05-1120"u8));
        var assets = File.ReadAllText(Path.Combine(app, "obj", "project.assets.json"));
        Assert.Contains($"\"EfEnvelope/{feed.Version}\"", assets, StringComparison.Ordinal);
        Assert.DoesNotContain("\"type\": \"project\"", assets, StringComparison.Ordinal);

        // The compile-time analyzer comes with the package: a query EfEnvelope refuses is reported by the build.
        File.WriteAllLines(Path.Combine(app, "Refused.cs"), [.. usings, "", "internal static class Refused", "{", """    internal static int Count(ClinicDb db) => db.Patients.Count(p => p.Diagnosis == "flu");""", "}"]);
        var build = await Processes.RunAsync(app, "dotnet", ["build", "-c", "Release", "-nodeReuse:false", "-p:UseSharedCompilation=false"], timeout: TimeSpan.FromMinutes(8));
        Assert.Contains("warning EFENV001", build, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_tool_installs_from_the_feed_and_runs_as_efenvelope()
    {
        var tools = Path.Combine(feed.Work.FullName, "tools");
        var environment = new Dictionary<string, string> { ["NUGET_PACKAGES"] = Path.Combine(feed.Work.FullName, "tool-packages") };

        await Processes.RunAsync(feed.Work.FullName, "dotnet", ["tool", "install", "EfEnvelope.Cli", "--version", feed.Version, "--tool-path", tools, "--add-source", feed.Feed], environment);
        var help = await Processes.RunAsync(feed.Work.FullName, Path.Combine(tools, "efenvelope"), ["--help"]);

        foreach (var verb in new[] { "inventory", "rotate", "reencrypt", "encrypt-legacy", "verify", "rebuild-indexes" })
        {
            Assert.Contains(verb, help, StringComparison.Ordinal);
        }
    }

    private static string Section(string markdown, string heading)
    {
        var start = markdown.IndexOf(heading + "\n", StringComparison.Ordinal);
        Assert.True(start >= 0, $"README.md has no '{heading}' section.");
        var end = markdown.IndexOf("\n## ", start + heading.Length, StringComparison.Ordinal);
        return markdown[start..(end < 0 ? markdown.Length : end)];
    }

    private static string CentralVersion(string props, string id) =>
        Regex.Match(props, $"""<PackageVersion Include="{Regex.Escape(id)}" Version="([^"]+)" />""").Groups[1] is { Success: true } version
            ? version.Value
            : throw new InvalidOperationException($"The README installs {id}, which Directory.Packages.props does not pin.");

    [GeneratedRegex(@"^dotnet add package (\S+)", RegexOptions.Multiline)]
    private static partial Regex AddPackage();

    [GeneratedRegex(@"```csharp\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex CodeBlock();
}
