namespace EfEnvelope.LocalKms;

/// <summary>How a <see cref="LocalKmsServer"/> listens, whom it accepts, and where it keeps its keys.</summary>
public sealed class LocalKmsOptions
{
    /// <summary>The address to listen on. The default is <c>127.0.0.1</c>: the local KMS is for this machine only.</summary>
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>The TCP port; 0 (the default) takes a free one, which <see cref="LocalKmsServer.Url"/> then shows.</summary>
    public int Port { get; set; }

    /// <summary>The directory that keeps keys and aliases across restarts; null keeps them in memory only.</summary>
    public string? DataDirectory { get; set; }

    /// <summary>The access key id requests must be signed with. The default is <c>test</c>.</summary>
    public string AccessKeyId { get; set; } = "test";

    /// <summary>The secret access key requests must be signed with. The default is <c>test</c>.</summary>
    public string SecretAccessKey { get; set; } = "test";

    /// <summary>A session token requests must carry (<c>X-Amz-Security-Token</c>); null (the default) refuses any token.</summary>
    public string? SessionToken { get; set; }

    /// <summary>The AWS account id in every ARN. The default is <c>111122223333</c>.</summary>
    public string AccountId { get; set; } = "111122223333";

    /// <summary>The clock that signatures' dates are checked against.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Called for every authenticated request before it is carried out; a test seam for latency and faults.</summary>
    /// <remarks>
    /// The hook may delay (a slow or stalled KMS) or throw a <see cref="KmsErrorException"/> (throttling, a service
    /// error, a denied call), which is answered as KMS would answer that error. Unset, requests are carried out at once.
    /// </remarks>
    public Func<LocalKmsRequest, CancellationToken, ValueTask>? OnRequest { get; set; }
}

/// <summary>An authenticated request as it arrived: the operation, the Region it was signed for, and its JSON body.</summary>
/// <param name="Operation">The KMS operation, for example <c>Decrypt</c>.</param>
/// <param name="Region">The Region of the signature's credential scope.</param>
/// <param name="Body">The JSON request body.</param>
/// <param name="Authorization">The SigV4 <c>Authorization</c> header.</param>
public sealed record LocalKmsRequest(string Operation, string Region, string Body, string Authorization);
