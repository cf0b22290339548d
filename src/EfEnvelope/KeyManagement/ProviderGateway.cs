using System.Diagnostics;
using EfEnvelope.Diagnostics;
using Microsoft.Extensions.Logging;

namespace EfEnvelope.KeyManagement;

/// <summary>The one path every master-key provider call takes: timeout, logging, metrics, tracing, error normalisation.</summary>
internal sealed partial class ProviderGateway(IMasterKeyProvider provider, TimeSpan timeout, ILogger logger)
{
    public IMasterKeyProvider Provider => provider;

    public Task<GeneratedDataKey> GenerateDataKeyAsync(string keyId, KeyContext context, CancellationToken cancellationToken) =>
        CallAsync("GenerateDataKey", keyId, context, (p, token) => p.GenerateDataKeyAsync(keyId, context, token), cancellationToken);

    public Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrapped, KeyContext context, CancellationToken cancellationToken)
    {
        // A blob naming a key this configuration does not accept is refused here, before anything is sent.
        if (!provider.IsKeyConfigured(keyId))
        {
            throw new MasterKeyConfigurationException(
                $"The stored data names master key '{UntrustedText.Escape(keyId)}', which provider '{provider.Name}' is not configured to use. Add it to the provider's keys for reading (after a rotation), or the data was written by another configuration.",
                provider.Name, keyId, context.Entity);
        }

        return CallAsync("DecryptDataKey", keyId, context, (p, token) => p.DecryptDataKeyAsync(keyId, wrapped, context, token), cancellationToken);
    }

    /// <summary>Whether a blob naming <paramref name="storedKeyId"/> is under the key <paramref name="selectedKeyId"/> names (see <see cref="IMasterKeyProvider.IsSameKeyAsync"/>).</summary>
    public Task<bool> IsSameKeyAsync(string storedKeyId, string selectedKeyId, KeyContext context, CancellationToken cancellationToken) =>
        CallAsync("IsSameKey", selectedKeyId, context, (p, token) => p.IsSameKeyAsync(storedKeyId, selectedKeyId, context, token), cancellationToken);

    /// <summary>Runs an async provider call on a synchronous EF path (a cache miss during materialization or SaveChanges).</summary>
    /// <remarks>
    /// Without a synchronization context the call runs inline (it completes at once when the keys are cached).
    /// With one, it runs on the thread pool so that a provider continuing on the captured context cannot deadlock
    /// the blocked caller. Either way a provider call blocks one thread for its duration: the documented cost of
    /// a cache miss on a synchronous path.
    /// </remarks>
    public static T RunSynchronously<T>(Func<Task<T>> call) =>
        SynchronizationContext.Current is null && TaskScheduler.Current == TaskScheduler.Default
            ? call().GetAwaiter().GetResult()
            : Task.Run(call).GetAwaiter().GetResult();

    private async Task<T> CallAsync<T>(string operation, string keyId, KeyContext context, Func<IMasterKeyProvider, CancellationToken, Task<T>> call, CancellationToken cancellationToken)
    {
        using var activity = EnvelopeTelemetry.ActivitySource.StartActivity("EfEnvelope." + operation, ActivityKind.Client);
        activity?.SetTag("efenvelope.provider", provider.Name);
        activity?.SetTag("efenvelope.key_id", keyId);
        activity?.SetTag("efenvelope.entity", context.Entity);

        using var timeoutSource = timeout == Timeout.InfiniteTimeSpan ? null : new CancellationTokenSource(timeout);
        using var linked = timeoutSource is null
            ? null
            : CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeoutSource.Token);
        var token = linked?.Token ?? cancellationToken;

        var started = Stopwatch.GetTimestamp();
        var outcome = "error";
        try
        {
            var result = await call(provider, token).ConfigureAwait(false);
            outcome = "success";
            return result;
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested && timeoutSource?.IsCancellationRequested == true)
        {
            outcome = "timeout";
            throw new MasterKeyException(
                $"Master-key provider '{provider.Name}' did not answer {operation} for key '{keyId}' (entity '{context.Entity}') within {timeout.TotalSeconds:0.###} s.",
                provider.Name, keyId, context.Entity, ex);
        }
        catch (OperationCanceledException)
        {
            outcome = "cancelled";
            throw;
        }
        catch (MasterKeyAccessRevokedException)
        {
            outcome = "revoked";
            throw;
        }
        catch (EnvelopeDecryptionException)
        {
            outcome = "invalid";
            throw;
        }
        catch (MasterKeyException)
        {
            throw;
        }
        catch (Exception ex)
        {
            // Providers should map their own errors; anything else is wrapped so callers see one family of types.
            throw new MasterKeyException(
                $"Master-key provider '{provider.Name}' failed {operation} for key '{keyId}' (entity '{context.Entity}'): {ex.GetType().Name}.",
                provider.Name, keyId, context.Entity, ex);
        }
        finally
        {
            var elapsed = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            var tags = new TagList { { "provider", provider.Name }, { "operation", operation }, { "outcome", outcome } };
            EnvelopeTelemetry.ProviderCallCounter.Add(1, tags);
            EnvelopeTelemetry.ProviderDurationHistogram.Record(elapsed, tags);
            activity?.SetTag("efenvelope.outcome", outcome);
            if (outcome != "success")
            {
                activity?.SetStatus(ActivityStatusCode.Error, outcome);
            }

            LogProviderCall(logger, provider.Name, operation, UntrustedText.Escape(keyId)!, UntrustedText.Escape(context.Entity), outcome, elapsed);
        }
    }

    [LoggerMessage(EventId = 1, EventName = "ProviderCall", Level = LogLevel.Information,
        Message = "Master-key provider {Provider} {Operation} key {KeyId} for entity {Entity}: {Outcome} in {ElapsedMs:0.0} ms")]
    private static partial void LogProviderCall(ILogger logger, string provider, string operation, string keyId, string? entity, string outcome, double elapsedMs);
}
