namespace EfEnvelope.Cli.Tests;

/// <summary>Where the repository and the build outputs of this configuration are.</summary>
internal static class Build
{
    public static string RepositoryRoot { get; } = FindRoot();

    /// <summary>Debug or Release: whichever this test assembly was built in (the referenced projects were built alike).</summary>
    public static string Configuration { get; } = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;

    public static string Tool => Path.Combine(RepositoryRoot, "src", "EfEnvelope.Cli", "bin", Configuration, "net10.0", "EfEnvelope.Cli.dll");

    private static string FindRoot()
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
