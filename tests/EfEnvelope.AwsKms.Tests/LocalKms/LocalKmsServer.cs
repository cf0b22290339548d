using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using Amazon.KeyManagementService;
using Amazon.Runtime;
using EfEnvelope.LocalKms;

namespace EfEnvelope.AwsKms.Tests.LocalKms;

/// <summary>The local KMS program (<c>src/EfEnvelope.LocalKms</c>) hosted in the test process, with counters and faults.</summary>
/// <remarks>
/// The server is the same code the <c>efenvelope-localkms</c> tool runs; this wrapper only adds, through its
/// <see cref="LocalKmsOptions.OnRequest"/> hook, what tests need to observe and disturb it: per-operation counts,
/// recorded requests, latency, stalls, throttling, server errors and arbitrary error replies.
/// </remarks>
public sealed class LocalKmsServer : IAsyncDisposable
{
    /// <summary>The Region clients sign for unless a test chooses another.</summary>
    public const string Region = "us-east-1";

    /// <summary>The account id in every ARN.</summary>
    public const string AccountId = "111122223333";

    /// <summary>The key pair the server accepts (the tool's defaults).</summary>
    public static readonly BasicAWSCredentials Credentials = new("test", "test");

    private readonly ConcurrentDictionary<string, long> _calls = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<RecordedRequest> _requests = new();
    private readonly ConcurrentQueue<(string? Operation, Func<CancellationToken, Task> Fault)> _faults = new();
    private readonly EfEnvelope.LocalKms.LocalKmsServer _server;
    private long _latencyTicks;
    private volatile bool _denyAccess;

    private LocalKmsServer(string? dataDirectory)
    {
        _server = EfEnvelope.LocalKms.LocalKmsServer.Start(new LocalKmsOptions
        {
            DataDirectory = dataDirectory,
            AccountId = AccountId,
            OnRequest = OnRequestAsync,
        });
    }

    /// <summary>The endpoint to give the SDK as <c>ServiceURL</c>.</summary>
    public Uri Url => _server.Url;

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

    /// <summary>How many requests arrived, of every operation.</summary>
    public long TotalCalls => _calls.Values.Sum();

    /// <summary>Starts a server on a free port of 127.0.0.1, keeping its keys in <paramref name="dataDirectory"/> or in memory.</summary>
    public static LocalKmsServer Start(string? dataDirectory = null) => new(dataDirectory);

    /// <summary>A real SDK client for this endpoint, signing with the accepted credentials for <paramref name="region"/>.</summary>
    public AmazonKeyManagementServiceClient CreateClient(int maxErrorRetry = 2, string region = Region, AWSCredentials? credentials = null)
    {
        var config = new AmazonKeyManagementServiceConfig
        {
            ServiceURL = Url.ToString(),
            AuthenticationRegion = region,
            MaxErrorRetry = maxErrorRetry,
        };
        return new AmazonKeyManagementServiceClient(credentials ?? Credentials, config);
    }

    /// <summary>How many requests for <paramref name="operation"/> arrived, whether they succeeded or not.</summary>
    public long CallCount(string operation) => _calls.TryGetValue(operation, out var count) ? count : 0;

    /// <summary>The recorded requests for <paramref name="operation"/>, oldest first.</summary>
    public IReadOnlyList<RecordedRequest> Requests(string operation) => [.. _requests.Where(r => r.Operation == operation)];

    /// <summary>Forgets counts and recorded requests (faults stay as set).</summary>
    public void ResetCounters()
    {
        _calls.Clear();
        _requests.Clear();
    }

    /// <summary>Answers the next <paramref name="count"/> calls with <c>ThrottlingException</c>.</summary>
    public void ThrottleNext(int count) => FailNext(count, "ThrottlingException", "Rate exceeded");

    /// <summary>Answers the next <paramref name="count"/> calls with HTTP 500 <c>KMSInternalException</c>.</summary>
    public void FailNextWithServerError(int count) =>
        FailNext(count, "KMSInternalException", "The request was rejected because an internal exception occurred.", HttpStatusCode.InternalServerError);

    /// <summary>Answers the next <paramref name="count"/> calls (of <paramref name="operation"/>, or any) with the given KMS error.</summary>
    public void FailNext(int count, string type, string message, HttpStatusCode status = HttpStatusCode.BadRequest, string? operation = null)
    {
        for (var i = 0; i < count; i++)
        {
            _faults.Enqueue((operation, _ => throw new KmsErrorException(type, message, status)));
        }
    }

    /// <summary>Holds the next <paramref name="count"/> calls for <paramref name="stall"/> before answering (a hung connection).</summary>
    public void StallNext(int count, TimeSpan stall, string? operation = null)
    {
        for (var i = 0; i < count; i++)
        {
            _faults.Enqueue((operation, token => Task.Delay(stall, token)));
        }
    }

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    private async ValueTask OnRequestAsync(LocalKmsRequest request, CancellationToken cancellationToken)
    {
        _calls.AddOrUpdate(request.Operation, 1, (_, n) => n + 1);
        if (RecordRequests)
        {
            _requests.Enqueue(new RecordedRequest(request.Operation, request.Body, request.Authorization, request.Region));
        }

        var latency = Latency;
        if (latency > TimeSpan.Zero)
        {
            await Task.Delay(latency, cancellationToken);
        }

        if (TakeFault(request.Operation) is { } fault)
        {
            await fault(cancellationToken);
        }

        if (_denyAccess)
        {
            throw new KmsErrorException("AccessDeniedException", $"User: arn:aws:iam::{AccountId}:user/local-test is not authorized to perform: kms:{request.Operation} because no identity-based policy allows the kms:{request.Operation} action");
        }
    }

    // Faults are taken in order; one aimed at another operation stays queued for it.
    private Func<CancellationToken, Task>? TakeFault(string operation)
    {
        lock (_faults)
        {
            var pending = _faults.ToArray();
            var index = Array.FindIndex(pending, f => f.Operation is null || f.Operation == operation);
            if (index < 0)
            {
                return null;
            }

            _faults.Clear();
            for (var i = 0; i < pending.Length; i++)
            {
                if (i != index)
                {
                    _faults.Enqueue(pending[i]);
                }
            }

            return pending[index].Fault;
        }
    }
}

/// <summary>A request as it arrived: the operation, the JSON body, the Authorization header and the signed Region.</summary>
public sealed record RecordedRequest(string Operation, string Body, string Authorization, string Region)
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
