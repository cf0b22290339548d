using System.Globalization;
using System.Runtime.InteropServices;
using EfEnvelope.LocalKms;

const string Usage = "efenvelope-localkms [--port 4599] [--data ./kms-data] [--host 127.0.0.1] [--access-key-id test] [--secret-access-key test] [--session-token TOKEN] [--account-id 111122223333] [--region us-east-1] [--create-alias alias/NAME]...";

// Every option but --create-alias can also come from the environment: LOCALKMS_PORT, LOCALKMS_DATA, LOCALKMS_HOST,
// LOCALKMS_ACCESS_KEY_ID, LOCALKMS_SECRET_ACCESS_KEY, LOCALKMS_SESSION_TOKEN, LOCALKMS_ACCOUNT_ID, LOCALKMS_REGION.
// --create-alias (repeatable) makes sure the alias exists in --region, creating a key for it, and prints its key ARN:
// a development setup needs no KMS client.
var settings = new Dictionary<string, string>(StringComparer.Ordinal)
{
    ["port"] = "4599",
    ["data"] = "kms-data",
    ["host"] = "127.0.0.1",
    ["access-key-id"] = "test",
    ["secret-access-key"] = "test",
    ["account-id"] = "111122223333",
    ["region"] = "us-east-1",
};
var aliases = new List<string>();
foreach (var name in settings.Keys.Append("session-token").ToArray())
{
    if (Environment.GetEnvironmentVariable("LOCALKMS_" + name.Replace('-', '_').ToUpperInvariant()) is { Length: > 0 } value)
    {
        settings[name] = value;
    }
}

for (var i = 0; i < args.Length; i++)
{
    var name = args[i].StartsWith("--", StringComparison.Ordinal) ? args[i][2..] : "";
    if (name is "help" or "h")
    {
        Console.WriteLine(Usage);
        return 0;
    }

    if (!settings.ContainsKey(name) && name is not ("session-token" or "create-alias") || i + 1 == args.Length)
    {
        Console.Error.WriteLine($"Unknown option or missing value: '{args[i]}'. Run with --help for the options.");
        return 2;
    }

    if (name == "create-alias")
    {
        aliases.Add(args[++i]);
    }
    else
    {
        settings[name] = args[++i];
    }
}

// Port 0 takes any free port; scripts read the URL from the first line.
if (!int.TryParse(settings["port"], NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port > 65535)
{
    Console.Error.WriteLine($"--port must be a TCP port number (0 for any free port), not '{settings["port"]}'.");
    return 2;
}

var options = new LocalKmsOptions
{
    Host = settings["host"],
    Port = port,
    DataDirectory = Path.GetFullPath(settings["data"]),
    AccessKeyId = settings["access-key-id"],
    SecretAccessKey = settings["secret-access-key"],
    SessionToken = settings.GetValueOrDefault("session-token"),
    AccountId = settings["account-id"],
};

LocalKmsServer server;
var created = new List<string>();
try
{
    server = LocalKmsServer.Start(options);
    try
    {
        created.AddRange(aliases.Select(alias => $"{alias} -> {server.EnsureAlias(settings["region"], alias)}"));
    }
    catch
    {
        await server.DisposeAsync();
        throw;
    }
}
catch (Exception ex) when (ex is InvalidDataException or ArgumentException or System.Net.HttpListenerException or IOException or UnauthorizedAccessException or KmsErrorException)
{
    Console.Error.WriteLine($"The local KMS could not start: {ex.Message}");
    return 1;
}

await using (server)
{
    // Ctrl+C and SIGTERM end the wait below instead of the process, so the listener closes cleanly. The
    // registrations are disposed before the token source (reverse order of declaration).
    using var stop = new CancellationTokenSource();
    using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
    using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);

    void Stop(PosixSignalContext context)
    {
        context.Cancel = true;
        stop.Cancel();
    }

    // The first line is the contract with scripts: they wait for it and read the URL from it.
    Console.WriteLine($"Local KMS listening on {server.Url} (account {options.AccountId}, keys in {options.DataDirectory})");
    foreach (var line in created)
    {
        Console.WriteLine($"Alias {line}");
    }

    Console.WriteLine($"Sign requests with access key id '{options.AccessKeyId}' and any Region; press Ctrl+C to stop.");
    try
    {
        await Task.Delay(Timeout.Infinite, stop.Token);
    }
    catch (OperationCanceledException)
    {
    }
}

return 0;
