using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Amazon.KeyManagementService;
using Amazon.KeyManagementService.Model;
using Amazon.Runtime;

namespace EfEnvelope.AwsKms.Tests.LocalKms;

/// <summary>The <c>efenvelope-localkms</c> program itself, started as a developer starts it, stopped and started again.</summary>
public sealed class LocalKmsProgramTests : IDisposable
{
    private readonly string _data = Directory.CreateTempSubdirectory("localkms-program-").FullName;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => Directory.Delete(_data, recursive: true);

    [Fact]
    public async Task Keys_created_through_the_program_outlive_a_restart_and_requests_must_be_signed_with_the_secret_from_options_or_environment()
    {
        var port = FreePort();
        string arn;
        MemoryStream blob;
        using (var first = await StartAsync("--port", port, "--data", _data, "--secret-access-key", "dev-secret"))
        {
            using var client = Client(first.Url, "dev-secret");
            arn = (await client.CreateKeyAsync(new CreateKeyRequest { Description = "sample" }, Ct)).KeyMetadata.Arn;
            await client.CreateAliasAsync(new CreateAliasRequest { AliasName = "alias/sample", TargetKeyId = arn }, Ct);
            blob = (await client.GenerateDataKeyAsync(new GenerateDataKeyRequest { KeyId = "alias/sample", KeySpec = DataKeySpec.AES_256 }, Ct)).CiphertextBlob;
            using var wrong = Client(first.Url, "test");
            var refused = await Assert.ThrowsAnyAsync<AmazonKeyManagementServiceException>(() => wrong.DescribeKeyAsync(new DescribeKeyRequest { KeyId = arn }, Ct));
            Assert.Equal("InvalidSignatureException", refused.ErrorCode);
        }

        // The same settings through the environment this time.
        using var second = await StartAsync(new Dictionary<string, string> { ["LOCALKMS_PORT"] = port, ["LOCALKMS_DATA"] = _data, ["LOCALKMS_SECRET_ACCESS_KEY"] = "dev-secret" });
        using var again = Client(second.Url, "dev-secret");
        var decrypted = await again.DecryptAsync(new DecryptRequest { CiphertextBlob = blob, KeyId = arn }, Ct);

        Assert.Equal(32, decrypted.Plaintext.Length);
        Assert.Equal(arn, (await again.DescribeKeyAsync(new DescribeKeyRequest { KeyId = "alias/sample" }, Ct)).KeyMetadata.Arn);
    }

    [Fact]
    public async Task An_unknown_option_is_refused_with_exit_code_2_and_a_hint()
    {
        using var process = Process.Start(StartInfo("--colour", "blue"))!;
        var error = await process.StandardError.ReadToEndAsync(Ct);
        await process.WaitForExitAsync(Ct);

        Assert.Equal(2, process.ExitCode);
        Assert.Contains("--colour", error, StringComparison.Ordinal);
        Assert.Contains("--help", error, StringComparison.Ordinal);
    }

    private static AmazonKeyManagementServiceClient Client(Uri url, string secret) =>
        new(new BasicAWSCredentials("test", secret), new AmazonKeyManagementServiceConfig { ServiceURL = url.ToString(), AuthenticationRegion = "eu-central-1", MaxErrorRetry = 0 });

    private static string FreePort()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        try
        {
            return ((IPEndPoint)probe.LocalEndpoint).Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        finally
        {
            probe.Stop();
        }
    }

    private static ProcessStartInfo StartInfo(params string[] arguments) => StartInfo(new Dictionary<string, string>(), arguments);

    private static ProcessStartInfo StartInfo(Dictionary<string, string> environment, params string[] arguments)
    {
        // The program's build output is copied next to the tests by the project reference.
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "EfEnvelope.LocalKms.dll"));
        foreach (var (name, value) in environment)
        {
            info.Environment[name] = value;
        }

        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        return info;
    }

    private static Task<RunningProgram> StartAsync(params string[] arguments) => StartAsync(new Dictionary<string, string>(), arguments);

    private static async Task<RunningProgram> StartAsync(Dictionary<string, string> environment, params string[] arguments)
    {
        var process = Process.Start(StartInfo(environment, arguments))!;
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        wait.CancelAfter(TimeSpan.FromSeconds(30));
        var line = await process.StandardOutput.ReadLineAsync(wait.Token);
        if (line is null || !line.StartsWith("Local KMS listening on ", StringComparison.Ordinal))
        {
            process.Kill(entireProcessTree: true);
            throw new InvalidOperationException($"The local KMS did not start: {line} {await process.StandardError.ReadToEndAsync(Ct)}");
        }

        return new RunningProgram(process, new Uri(line.Split(' ')[4]));
    }

    private sealed class RunningProgram(Process process, Uri url) : IDisposable
    {
        public Uri Url { get; } = url;

        public void Dispose()
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            process.Dispose();
        }
    }
}
