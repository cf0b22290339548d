using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Amazon.KeyManagementService;
using Amazon.Runtime;

namespace EfEnvelope.AwsKms.Tests.LocalKms;

/// <summary>A KMS on 127.0.0.1 speaking the service's JSON protocol, so the real SDK client runs end to end.</summary>
/// <remarks>
/// <para>
/// <c>POST /</c> with <c>X-Amz-Target: TrentService.&lt;Operation&gt;</c> and an <c>application/x-amz-json-1.1</c> body;
/// blobs are base64, dates epoch seconds, errors HTTP 400 (or 500) with <c>{"__type": ..., "message": ...}</c>, which
/// the SDK unmarshals into its typed exceptions and retries exactly as it would against AWS.
/// Requests must carry a SigV4 <c>Authorization</c> header; the signature itself is not checked.
/// </para>
/// <para>
/// Every reply sets <c>Content-Length</c>: a chunked <see cref="HttpListener"/> reply stalls about 40 ms per call.
/// </para>
/// </remarks>
public sealed class LocalKmsServer : IAsyncDisposable
{
    public const string Region = "us-east-1";
    public const string AccountId = "111122223333";

    private readonly HttpListener _listener;
    private readonly Task _acceptLoop;
    private readonly LocalKmsKeyStore _keys = new(Region, AccountId);
    private readonly ConcurrentDictionary<string, long> _calls = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<RecordedRequest> _requests = new();
    private int _throttleNext;
    private int _serverErrorNext;
    private long _latencyTicks;
    private volatile bool _denyAccess;
    private int _disposed;

    private LocalKmsServer(HttpListener listener, Uri url)
    {
        _listener = listener;
        Url = url;
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    /// <summary>The endpoint to give the SDK as <c>ServiceURL</c>.</summary>
    public Uri Url { get; }

    /// <summary>Whether to record request bodies (off for bulk tests that only count calls).</summary>
    public bool RecordRequests { get; set; } = true;

    /// <summary>Delay added before every reply.</summary>
    public TimeSpan Latency
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref _latencyTicks));
        set => Interlocked.Exchange(ref _latencyTicks, value.Ticks);
    }

    /// <summary>When true, every call is refused with <c>AccessDeniedException</c> (as a key policy change would).</summary>
    public bool DenyAccess
    {
        get => _denyAccess;
        set => _denyAccess = value;
    }

    /// <summary>Starts a server on a free port of 127.0.0.1.</summary>
    public static LocalKmsServer Start()
    {
        // HttpListener cannot bind port 0, so a port is taken from the OS and then bound; another process may win
        // the race in between, hence the retries.
        for (var attempt = 0; ; attempt++)
        {
            int port;
            var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            try
            {
                port = ((IPEndPoint)probe.LocalEndpoint).Port;
            }
            finally
            {
                probe.Stop();
            }

            var url = new Uri($"http://127.0.0.1:{port}/");
            var listener = new HttpListener();
            listener.Prefixes.Add(url.ToString());
            try
            {
                listener.Start();
                return new LocalKmsServer(listener, url);
            }
            catch (HttpListenerException) when (attempt < 20)
            {
                listener.Close();
            }
        }
    }

    /// <summary>A real SDK client for this endpoint, with any credentials and few retries so fault tests are quick.</summary>
    public AmazonKeyManagementServiceClient CreateClient(int maxErrorRetry = 2)
    {
        var config = new AmazonKeyManagementServiceConfig
        {
            ServiceURL = Url.ToString(),
            AuthenticationRegion = Region,
            MaxErrorRetry = maxErrorRetry,
        };
        return new AmazonKeyManagementServiceClient(new BasicAWSCredentials("AKIDLOCALKMSTEST", "local-kms-test-secret"), config);
    }

    /// <summary>How many requests for <paramref name="operation"/> arrived, whether they succeeded or not.</summary>
    public long CallCount(string operation) => _calls.TryGetValue(operation, out var count) ? count : 0;

    /// <summary>How many requests arrived, of every operation.</summary>
    public long TotalCalls => _calls.Values.Sum();

    /// <summary>The recorded requests for <paramref name="operation"/>, oldest first.</summary>
    public IReadOnlyList<RecordedRequest> Requests(string operation) => [.. _requests.Where(r => r.Operation == operation)];

    /// <summary>Forgets counts and recorded requests (faults stay as set).</summary>
    public void ResetCounters()
    {
        _calls.Clear();
        _requests.Clear();
    }

    /// <summary>Answers the next <paramref name="count"/> calls with <c>ThrottlingException</c>.</summary>
    public void ThrottleNext(int count) => Volatile.Write(ref _throttleNext, count);

    /// <summary>Answers the next <paramref name="count"/> calls with HTTP 500 <c>KMSInternalException</c>.</summary>
    public void FailNextWithServerError(int count) => Volatile.Write(ref _serverErrorNext, count);

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        _listener.Close();
        try
        {
            await _acceptLoop.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException)
        {
            // The accept loop ends by failing on the closed listener.
        }
    }

    private static bool TryConsume(ref int counter)
    {
        while (true)
        {
            var current = Volatile.Read(ref counter);
            if (current <= 0)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref counter, current - 1, current) == current)
            {
                return true;
            }
        }
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
        catch (KmsFault fault)
        {
            (status, reply) = ((int)fault.Status, ErrorBody(fault));
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
        const string targetPrefix = "TrentService.";
        var target = request.Headers["X-Amz-Target"];
        if (request.HttpMethod != "POST" || request.Url?.AbsolutePath != "/" || target is null || !target.StartsWith(targetPrefix, StringComparison.Ordinal))
        {
            throw new KmsFault("UnknownOperationException", "Expected POST / with X-Amz-Target: TrentService.<Operation>.");
        }

        if (request.ContentType?.StartsWith("application/x-amz-json-1.1", StringComparison.Ordinal) != true)
        {
            throw KmsFault.Serialization("Expected Content-Type application/x-amz-json-1.1.");
        }

        if (request.Headers["Authorization"]?.StartsWith("AWS4-HMAC-SHA256 Credential=", StringComparison.Ordinal) != true)
        {
            throw new KmsFault("MissingAuthenticationTokenException", "Missing Authentication Token");
        }

        var operation = target[targetPrefix.Length..];
        string body;
        using (var reader = new StreamReader(request.InputStream, Encoding.UTF8))
        {
            body = await reader.ReadToEndAsync().ConfigureAwait(false);
        }

        _calls.AddOrUpdate(operation, 1, (_, n) => n + 1);
        if (RecordRequests)
        {
            _requests.Enqueue(new RecordedRequest(operation, body, request.Headers["Authorization"]!));
        }

        var latency = Latency;
        if (latency > TimeSpan.Zero)
        {
            await Task.Delay(latency).ConfigureAwait(false);
        }

        if (TryConsume(ref _throttleNext))
        {
            throw new KmsFault("ThrottlingException", "Rate exceeded");
        }

        if (TryConsume(ref _serverErrorNext))
        {
            throw new KmsFault("KMSInternalException", "The request was rejected because an internal exception occurred.", HttpStatusCode.InternalServerError);
        }

        if (_denyAccess)
        {
            throw new KmsFault("AccessDeniedException", $"User: arn:aws:iam::{AccountId}:user/local-test is not authorized to perform: kms:{operation} because no identity-based policy allows the kms:{operation} action");
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body.Length == 0 ? "{}" : body);
        }
        catch (JsonException)
        {
            throw KmsFault.Serialization("The request body is not valid JSON.");
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw KmsFault.Serialization("The request body must be a JSON object.");
            }

            var input = new Input(document.RootElement);
            var output = new ArrayBufferWriter<byte>();
            using (var writer = new Utf8JsonWriter(output))
            {
                writer.WriteStartObject();
                Dispatch(operation, input, writer);
                writer.WriteEndObject();
            }

            return output.WrittenSpan.ToArray();
        }
    }

    private void Dispatch(string operation, Input input, Utf8JsonWriter output)
    {
        switch (operation)
        {
            case "CreateKey":
                CreateKey(input, output);
                break;
            case "DescribeKey":
                WriteMetadata(output, _keys.Resolve(input.RequiredString("KeyId")));
                break;
            case "CreateAlias":
                _keys.CreateAlias(input.RequiredString("AliasName"), input.RequiredString("TargetKeyId"));
                break;
            case "GenerateDataKey":
                GenerateDataKey(input, output, includePlaintext: true);
                break;
            case "GenerateDataKeyWithoutPlaintext":
                GenerateDataKey(input, output, includePlaintext: false);
                break;
            case "Encrypt":
                Encrypt(input, output);
                break;
            case "Decrypt":
                Decrypt(input, output);
                break;
            case "ReEncrypt":
                ReEncrypt(input, output);
                break;
            case "EnableKey":
                SetEnabled(input, enabled: true);
                break;
            case "DisableKey":
                SetEnabled(input, enabled: false);
                break;
            case "ScheduleKeyDeletion":
                ScheduleKeyDeletion(input, output);
                break;
            case "CancelKeyDeletion":
                CancelKeyDeletion(input, output);
                break;
            default:
                throw new KmsFault("UnknownOperationException", $"Operation {operation} is not supported by the local KMS.");
        }
    }

    private void CreateKey(Input input, Utf8JsonWriter output)
    {
        if (input.String("KeyUsage") is { } usage && usage != "ENCRYPT_DECRYPT")
        {
            throw new KmsFault("UnsupportedOperationException", "The local KMS only has symmetric ENCRYPT_DECRYPT keys.");
        }

        if ((input.String("KeySpec") ?? input.String("CustomerMasterKeySpec")) is { } spec && spec != "SYMMETRIC_DEFAULT")
        {
            throw new KmsFault("UnsupportedOperationException", "The local KMS only has SYMMETRIC_DEFAULT keys.");
        }

        WriteMetadata(output, _keys.CreateKey(input.String("Description")));
    }

    private void GenerateDataKey(Input input, Utf8JsonWriter output, bool includePlaintext)
    {
        var key = _keys.Resolve(input.RequiredString("KeyId"));
        var spec = input.String("KeySpec");
        var numberOfBytes = input.Int("NumberOfBytes");
        var size = (spec, numberOfBytes) switch
        {
            ("AES_256", null) => 32,
            ("AES_128", null) => 16,
            (null, >= 1 and <= 1024) => numberOfBytes.Value,
            (null, null) => throw KmsFault.Validation("Please specify either number of bytes or key spec."),
            (not null, not null) => throw KmsFault.Validation("Please specify either number of bytes or key spec, not both."),
            _ => throw KmsFault.Validation("KeySpec must be AES_256 or AES_128; NumberOfBytes between 1 and 1024."),
        };
        var context = input.Context("EncryptionContext");
        LocalKmsKeyStore.RequireUsable(key);

        var plaintext = RandomNumberGenerator.GetBytes(size);
        output.WriteBase64String("CiphertextBlob", LocalKmsKeyStore.Encrypt(key, plaintext, context));
        if (includePlaintext)
        {
            output.WriteBase64String("Plaintext", plaintext);
        }

        output.WriteString("KeyId", key.Arn);
    }

    private void Encrypt(Input input, Utf8JsonWriter output)
    {
        var key = _keys.Resolve(input.RequiredString("KeyId"));
        var plaintext = input.RequiredBlob("Plaintext");
        if (plaintext.Length is < 1 or > 4096)
        {
            throw KmsFault.Validation("Plaintext must be between 1 and 4096 bytes.");
        }

        var context = input.Context("EncryptionContext");
        LocalKmsKeyStore.RequireUsable(key);
        output.WriteBase64String("CiphertextBlob", LocalKmsKeyStore.Encrypt(key, plaintext, context));
        output.WriteString("KeyId", key.Arn);
        output.WriteString("EncryptionAlgorithm", "SYMMETRIC_DEFAULT");
    }

    private void Decrypt(Input input, Utf8JsonWriter output)
    {
        var (key, plaintext) = Open(input.RequiredBlob("CiphertextBlob"), input.String("KeyId"), input.Context("EncryptionContext"));
        output.WriteString("KeyId", key.Arn);
        output.WriteBase64String("Plaintext", plaintext);
        output.WriteString("EncryptionAlgorithm", "SYMMETRIC_DEFAULT");
    }

    private void ReEncrypt(Input input, Utf8JsonWriter output)
    {
        var destination = _keys.Resolve(input.RequiredString("DestinationKeyId"));
        var destinationContext = input.Context("DestinationEncryptionContext");
        var (source, plaintext) = Open(input.RequiredBlob("CiphertextBlob"), input.String("SourceKeyId"), input.Context("SourceEncryptionContext"));
        LocalKmsKeyStore.RequireUsable(destination);
        output.WriteBase64String("CiphertextBlob", LocalKmsKeyStore.Encrypt(destination, plaintext, destinationContext));
        output.WriteString("SourceKeyId", source.Arn);
        output.WriteString("KeyId", destination.Arn);
        output.WriteString("SourceEncryptionAlgorithm", "SYMMETRIC_DEFAULT");
        output.WriteString("DestinationEncryptionAlgorithm", "SYMMETRIC_DEFAULT");
    }

    // Decrypt's checks in KMS's order: a pinned key must exist, the blob must be well formed, name that key, be
    // usable, and authenticate under the exact encryption context.
    private (LocalKey Key, byte[] Plaintext) Open(byte[] blob, string? pinnedKeyId, IReadOnlyDictionary<string, string> context)
    {
        var pinned = pinnedKeyId is null ? null : _keys.Resolve(pinnedKeyId);
        var blobKeyId = LocalKmsKeyStore.KeyIdOf(blob);
        LocalKey key;
        if (pinned is not null)
        {
            key = pinned.Id == blobKeyId
                ? pinned
                : throw new KmsFault("IncorrectKeyException", "The key ID in the request does not identify a CMK that can perform this operation.");
        }
        else
        {
            key = _keys.Resolve(blobKeyId);
        }

        LocalKmsKeyStore.RequireUsable(key);
        return (key, LocalKmsKeyStore.Decrypt(key, blob, context));
    }

    private void SetEnabled(Input input, bool enabled)
    {
        var key = _keys.Resolve(input.RequiredString("KeyId"));
        if (key.State == LocalKeyState.PendingDeletion)
        {
            throw new KmsFault("KMSInvalidStateException", $"{key.Arn} is pending deletion.");
        }

        _keys.SetState(key, enabled ? LocalKeyState.Enabled : LocalKeyState.Disabled);
    }

    private void ScheduleKeyDeletion(Input input, Utf8JsonWriter output)
    {
        var key = _keys.Resolve(input.RequiredString("KeyId"));
        var days = input.Int("PendingWindowInDays") ?? 30;
        if (days is < 7 or > 30)
        {
            throw KmsFault.Validation("PendingWindowInDays must be between 7 and 30.");
        }

        if (key.State == LocalKeyState.PendingDeletion)
        {
            throw new KmsFault("KMSInvalidStateException", $"{key.Arn} is pending deletion.");
        }

        var deletion = DateTimeOffset.UtcNow.AddDays(days);
        _keys.SetState(key, LocalKeyState.PendingDeletion, deletion);
        output.WriteString("KeyId", key.Arn);
        output.WriteNumber("DeletionDate", deletion.ToUnixTimeSeconds());
        output.WriteString("KeyState", "PendingDeletion");
        output.WriteNumber("PendingWindowInDays", days);
    }

    private void CancelKeyDeletion(Input input, Utf8JsonWriter output)
    {
        var key = _keys.Resolve(input.RequiredString("KeyId"));
        if (key.State != LocalKeyState.PendingDeletion)
        {
            throw new KmsFault("KMSInvalidStateException", $"{key.Arn} is not pending deletion.");
        }

        _keys.SetState(key, LocalKeyState.Disabled);
        output.WriteString("KeyId", key.Arn);
    }

    private static void WriteMetadata(Utf8JsonWriter output, LocalKey key)
    {
        output.WriteStartObject("KeyMetadata");
        output.WriteString("AWSAccountId", AccountId);
        output.WriteString("KeyId", key.Id);
        output.WriteString("Arn", key.Arn);
        output.WriteNumber("CreationDate", key.Created.ToUnixTimeSeconds());
        output.WriteBoolean("Enabled", key.State == LocalKeyState.Enabled);
        output.WriteString("Description", key.Description);
        output.WriteString("KeyUsage", "ENCRYPT_DECRYPT");
        output.WriteString("KeyState", key.State.ToString());
        if (key.DeletionDate is { } deletion)
        {
            output.WriteNumber("DeletionDate", deletion.ToUnixTimeSeconds());
        }

        output.WriteString("Origin", "AWS_KMS");
        output.WriteString("KeyManager", "CUSTOMER");
        output.WriteString("KeySpec", "SYMMETRIC_DEFAULT");
        output.WriteString("CustomerMasterKeySpec", "SYMMETRIC_DEFAULT");
        output.WriteStartArray("EncryptionAlgorithms");
        output.WriteStringValue("SYMMETRIC_DEFAULT");
        output.WriteEndArray();
        output.WriteBoolean("MultiRegion", false);
        output.WriteEndObject();
    }

    private static byte[] ErrorBody(KmsFault fault)
    {
        var output = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(output))
        {
            writer.WriteStartObject();
            writer.WriteString("__type", fault.Type);
            writer.WriteString("message", fault.Message);
            writer.WriteEndObject();
        }

        return output.WrittenSpan.ToArray();
    }

    /// <summary>Typed access to a request's members, failing the way KMS does on a wrong type or a missing member.</summary>
    private readonly struct Input(JsonElement root)
    {
        public string? String(string name) => Member(name, JsonValueKind.String)?.GetString();

        public string RequiredString(string name) =>
            String(name) is { Length: > 0 } value ? value : throw KmsFault.Validation($"1 validation error detected: Value null at '{ToCamel(name)}' failed to satisfy constraint: Member must not be null");

        public int? Int(string name) => Member(name, JsonValueKind.Number) is { } value && value.TryGetInt32(out var n)
            ? n
            : root.TryGetProperty(name, out _) ? throw KmsFault.Serialization($"{name} must be an integer.") : null;

        public byte[] RequiredBlob(string name)
        {
            var text = RequiredString(name);
            try
            {
                return Convert.FromBase64String(text);
            }
            catch (FormatException)
            {
                throw KmsFault.Serialization($"{name} is not valid base64.");
            }
        }

        public Dictionary<string, string> Context(string name)
        {
            var context = new Dictionary<string, string>(StringComparer.Ordinal);
            if (Member(name, JsonValueKind.Object) is { } element)
            {
                foreach (var pair in element.EnumerateObject())
                {
                    context[pair.Name] = pair.Value.ValueKind == JsonValueKind.String
                        ? pair.Value.GetString()!
                        : throw KmsFault.Serialization($"{name} values must be strings.");
                }
            }

            return context;
        }

        private JsonElement? Member(string name, JsonValueKind kind)
        {
            if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
            {
                return null;
            }

            return value.ValueKind == kind ? value : throw KmsFault.Serialization($"{name} has the wrong type.");
        }

        private static string ToCamel(string name) => char.ToLowerInvariant(name[0]) + name[1..];
    }
}

/// <summary>A request as it arrived: the operation, the JSON body and the Authorization header.</summary>
public sealed record RecordedRequest(string Operation, string Body, string Authorization)
{
    /// <summary>The <c>KeyId</c> member, if any.</summary>
    public string? KeyId => Parse().TryGetProperty("KeyId", out var id) ? id.GetString() : null;

    /// <summary>The <c>EncryptionContext</c> member as a dictionary (empty if absent).</summary>
    public IReadOnlyDictionary<string, string> EncryptionContext =>
        Parse().TryGetProperty("EncryptionContext", out var context)
            ? context.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!, StringComparer.Ordinal)
            : new Dictionary<string, string>();

    private JsonElement Parse()
    {
        using var document = JsonDocument.Parse(Body);
        return document.RootElement.Clone();
    }
}
