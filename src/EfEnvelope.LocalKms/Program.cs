using System.Globalization;
using EfEnvelope.LocalKms;

// efenvelope-localkms [--port 4599] [--data ./kms-data] [--host 127.0.0.1] [--access-key-id test]
//                     [--secret-access-key test] [--session-token TOKEN] [--account-id 111122223333]
// Every option can also come from the environment: LOCALKMS_PORT, LOCALKMS_DATA, LOCALKMS_HOST,
// LOCALKMS_ACCESS_KEY_ID, LOCALKMS_SECRET_ACCESS_KEY, LOCALKMS_SESSION_TOKEN, LOCALKMS_ACCOUNT_ID.
var settings = new Dictionary<string, string>(StringComparer.Ordinal)
{
    ["port"] = "4599",
    ["data"] = "kms-data",
    ["host"] = "127.0.0.1",
    ["access-key-id"] = "test",
    ["secret-access-key"] = "test",
    ["account-id"] = "111122223333",
};
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
        Console.WriteLine("efenvelope-localkms [--port 4599] [--data ./kms-data] [--host 127.0.0.1] [--access-key-id test] [--secret-access-key test] [--session-token TOKEN] [--account-id 111122223333]");
        return 0;
    }

    if (!settings.ContainsKey(name) && name != "session-token" || i + 1 == args.Length)
    {
        Console.Error.WriteLine($"Unknown option or missing value: '{args[i]}'. Run with --help for the options.");
        return 2;
    }

    settings[name] = args[++i];
}

if (!int.TryParse(settings["port"], NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
{
    Console.Error.WriteLine($"--port must be a TCP port number, not '{settings["port"]}'.");
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
try
{
    server = LocalKmsServer.Start(options);
}
catch (Exception ex) when (ex is InvalidDataException or ArgumentException or System.Net.HttpListenerException or IOException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"The local KMS could not start: {ex.Message}");
    return 1;
}

await using (server)
{
    using var stop = new CancellationTokenSource();
    Console.CancelKeyPress += (_, e) =>
    {
        e.Cancel = true;
        stop.Cancel();
    };
    AppDomain.CurrentDomain.ProcessExit += (_, _) => stop.Cancel();

    // The first line is the contract with scripts: they wait for it and read the URL from it.
    Console.WriteLine($"Local KMS listening on {server.Url} (account {options.AccountId}, keys in {options.DataDirectory})");
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
