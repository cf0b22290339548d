using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace EfEnvelope.LocalKms;

/// <summary>A KMS on this machine speaking the service's JSON protocol, so any AWS SDK's KMS client can use it.</summary>
/// <remarks>
/// <para>
/// <c>POST /</c> with <c>X-Amz-Target: TrentService.&lt;Operation&gt;</c> and an <c>application/x-amz-json-1.1</c> body;
/// blobs are base64, dates epoch seconds, errors HTTP 400 (or 500, or 412 for a dry run) with
/// <c>{"__type": ..., "message": ...}</c>, which SDKs unmarshal into their typed exceptions and retry as they would
/// against AWS. Every request must carry a valid SigV4 signature by the configured key pair; the Region it is signed
/// for selects that Region's keys.
/// </para>
/// <para>
/// Every reply sets <c>Content-Length</c>: a chunked <see cref="HttpListener"/> reply stalls about 40 ms per call.
/// </para>
/// </remarks>
public sealed class LocalKmsServer : IAsyncDisposable
{
    private const string TargetPrefix = "TrentService.";

    private readonly HttpListener _listener;
    private readonly KeyStore _store;
    private readonly KmsOperations _operations;
    private readonly SigV4Verifier _verifier;
    private readonly Func<LocalKmsRequest, CancellationToken, ValueTask>? _onRequest;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _acceptLoop;
    private int _disposed;

    private LocalKmsServer(HttpListener listener, Uri url, KeyStore store, LocalKmsOptions options)
    {
        _listener = listener;
        Url = url;
        _store = store;
        _operations = new KmsOperations(store);
        _verifier = new SigV4Verifier(options.AccessKeyId, options.SecretAccessKey, options.SessionToken, options.TimeProvider);
        _onRequest = options.OnRequest;
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    /// <summary>The endpoint to give an SDK client as its service URL.</summary>
    public Uri Url { get; }

    /// <summary>Opens the key store and starts listening.</summary>
    /// <exception cref="InvalidDataException">The data directory holds keys of another account, or a damaged key file.</exception>
    /// <exception cref="HttpListenerException">The port is taken.</exception>
    public static LocalKmsServer Start(LocalKmsOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentException.ThrowIfNullOrWhiteSpace(options.AccessKeyId, nameof(options));
        ArgumentException.ThrowIfNullOrWhiteSpace(options.SecretAccessKey, nameof(options));
        ArgumentOutOfRangeException.ThrowIfNegative(options.Port, nameof(options));
        if (options.AccountId.Length != 12 || !options.AccountId.All(char.IsAsciiDigit))
        {
            throw new ArgumentException($"{nameof(LocalKmsOptions.AccountId)} must be 12 digits, as AWS account ids are.", nameof(options));
        }

        var store = KeyStore.Open(options.DataDirectory, options.AccountId);
        if (options.Port != 0)
        {
            return Listen(options.Host, options.Port, store, options);
        }

        // HttpListener cannot bind port 0, so a port is taken from the OS and then bound; another process may win
        // the race in between, hence the retries.
        for (var attempt = 0; ; attempt++)
        {
            int port;
            var probe = new TcpListener(IPAddress.TryParse(options.Host, out var address) ? address : IPAddress.Any, 0);
            probe.Start();
            try
            {
                port = ((IPEndPoint)probe.LocalEndpoint).Port;
            }
            finally
            {
                probe.Stop();
            }

            try
            {
                return Listen(options.Host, port, store, options);
            }
            catch (HttpListenerException) when (attempt < 20)
            {
            }
        }
    }

    /// <summary>Returns the key ARN behind <paramref name="aliasName"/> in <paramref name="region"/>, creating a key and the alias if it does not exist.</summary>
    /// <remarks>For setting a development environment up without a KMS client: the program's <c>--create-alias</c>.</remarks>
    /// <exception cref="KmsErrorException">The alias name or Region is invalid.</exception>
    public string EnsureAlias(string region, string aliasName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(region);
        ArgumentException.ThrowIfNullOrWhiteSpace(aliasName);
        if (!KmsOperations.IsRegionName(region))
        {
            throw KmsErrorException.Validation($"'{region}' is not a Region name.");
        }

        if (_store.ListAliases(region, null).FirstOrDefault(a => a.Name == aliasName) is { } existing)
        {
            return _store.Resolve(region, existing.TargetKeyId).Arn;
        }

        var key = _store.CreateKey(region, $"Created for {aliasName}", multiRegion: false);
        _store.CreateAlias(region, aliasName, key.Id);
        return key.Arn;
    }

    /// <summary>Stops listening; requests in flight are abandoned.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        _listener.Close();
        try
        {
            await _acceptLoop.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException)
        {
            // The accept loop ends by failing on the closed listener.
        }

        _stopping.Dispose();
    }

    private static LocalKmsServer Listen(string host, int port, KeyStore store, LocalKmsOptions options)
    {
        var url = new Uri($"http://{host}:{port}/");
        var listener = new HttpListener();
        listener.Prefixes.Add(url.ToString());
        try
        {
            listener.Start();
        }
        catch
        {
            listener.Close();
            throw;
        }

        return new LocalKmsServer(listener, url, store, options);
    }

    private async Task AcceptLoopAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }

            _ = Task.Run(() => HandleAsync(context));
        }
    }

    private async Task HandleAsync(HttpListenerContext http)
    {
        int status;
        byte[] reply;
        try
        {
            (status, reply) = (200, await ProcessAsync(http.Request).ConfigureAwait(false));
        }
        catch (KmsErrorException error)
        {
            (status, reply) = ((int)error.Status, ErrorBody(error.Type, error.Message));
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
            return;
        }
        catch (Exception ex) when (ex is IOException or HttpListenerException)
        {
            // The client went away while its request was being read.
            return;
        }

        try
        {
            var response = http.Response;
            response.StatusCode = status;
            response.ContentType = "application/x-amz-json-1.1";
            response.ContentLength64 = reply.Length;
            response.Headers["x-amzn-RequestId"] = Guid.NewGuid().ToString();
            await response.OutputStream.WriteAsync(reply).ConfigureAwait(false);
            response.Close();
        }
        catch (Exception ex) when (ex is HttpListenerException or IOException or ObjectDisposedException)
        {
            // The client gave up (timeout, cancellation) before the reply: nothing to answer.
        }
    }

    private async Task<byte[]> ProcessAsync(HttpListenerRequest request)
    {
        var target = request.Headers["X-Amz-Target"];
        if (request.HttpMethod != "POST" || request.Url?.AbsolutePath != "/" || target is null || !target.StartsWith(TargetPrefix, StringComparison.Ordinal))
        {
            throw new KmsErrorException("UnknownOperationException", "Expected POST / with X-Amz-Target: TrentService.<Operation>.");
        }

        if (request.ContentType?.StartsWith("application/x-amz-json-1.1", StringComparison.Ordinal) != true)
        {
            throw KmsErrorException.Serialization("Expected Content-Type application/x-amz-json-1.1.");
        }

        byte[] body;
        using (var buffer = new MemoryStream())
        {
            await request.InputStream.CopyToAsync(buffer, _stopping.Token).ConfigureAwait(false);
            body = buffer.ToArray();
        }

        var region = _verifier.Verify(request.HttpMethod, request.Url, name => request.Headers[name], body);
        if (!KmsOperations.IsRegionName(region))
        {
            throw new KmsErrorException("InvalidSignatureException", $"'{region}' in the credential scope is not a Region name.");
        }

        var operation = target[TargetPrefix.Length..];
        var text = Encoding.UTF8.GetString(body);
        if (_onRequest is not null)
        {
            await _onRequest(new LocalKmsRequest(operation, region, text, request.Headers["Authorization"]!), _stopping.Token).ConfigureAwait(false);
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body.Length == 0 ? "{}"u8.ToArray() : body);
        }
        catch (JsonException)
        {
            throw KmsErrorException.Serialization("The request body is not valid JSON.");
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw KmsErrorException.Serialization("The request body must be a JSON object.");
            }

            var output = new ArrayBufferWriter<byte>();
            using (var writer = new Utf8JsonWriter(output))
            {
                writer.WriteStartObject();
                _operations.Run(operation, region, document.RootElement, writer);
                writer.WriteEndObject();
            }

            return output.WrittenSpan.ToArray();
        }
    }

    private static byte[] ErrorBody(string type, string message)
    {
        var output = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(output))
        {
            writer.WriteStartObject();
            writer.WriteString("__type", type);
            writer.WriteString("message", message);
            writer.WriteEndObject();
        }

        return output.WrittenSpan.ToArray();
    }
}
