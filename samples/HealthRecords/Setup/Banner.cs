namespace HealthRecords.Setup;

/// <summary>What the console says once the app listens: where to open it, and what it runs on.</summary>
public static class Banner
{
    public static void Print(SampleEnvironment environment, ICollection<string> urls)
    {
        if (urls.Count == 0)
        {
            // In-process test server: nothing to open in a browser.
            return;
        }

        var key = environment.MasterKey;
        Console.WriteLine();
        Console.WriteLine("  HealthRecords (EfEnvelope sample) is running.");
        foreach (var url in urls)
        {
            Console.WriteLine($"  Open {url}");
        }

        Console.WriteLine($"  Database:   {environment.Database}");
        Console.WriteLine($"  Data:       {environment.DataDirectory}");
        Console.WriteLine($"  Master key: {key.Provider}, key id '{key.KeyId}', {key.Mode} mode");
        if (key.CreatedNewDevelopmentKey)
        {
            Console.WriteLine("  A new development master key was created for this data directory.");
        }

        if (key.Notice is not null)
        {
            Console.WriteLine($"  WARNING: {key.Notice}");
        }

        Console.WriteLine("  Press Ctrl+C to stop.");
        Console.WriteLine();
    }
}
