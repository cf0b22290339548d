using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace EfEnvelope.Diagnostics;

/// <summary>Names of the meter, activity source and instruments EfEnvelope publishes.</summary>
/// <remarks>
/// Subscribe with OpenTelemetry (<c>AddMeter(EnvelopeTelemetry.MeterName)</c>, <c>AddSource(EnvelopeTelemetry.ActivitySourceName)</c>)
/// or a <see cref="MeterListener"/>. No instrument or tag ever carries key bytes or plaintext. The meter and source are
/// process-wide (not created through an <c>IMeterFactory</c>), so every listener in the process sees them whichever
/// DbContext registration is used; the README's Observability table lists them with their units and tests keep it true.
/// </remarks>
public static class EnvelopeTelemetry
{
    /// <summary>The <see cref="Meter"/> name.</summary>
    public const string MeterName = "EfEnvelope";

    /// <summary>The <see cref="ActivitySource"/> name; one span per master-key provider call.</summary>
    public const string ActivitySourceName = "EfEnvelope";

    /// <summary>Counter of provider calls, tagged <c>provider</c>, <c>operation</c>, <c>outcome</c>.</summary>
    public const string ProviderCalls = "efenvelope.provider.calls";

    /// <summary>Histogram of provider call durations in milliseconds, same tags.</summary>
    public const string ProviderDuration = "efenvelope.provider.duration";

    /// <summary>Counter of key-cache hits.</summary>
    public const string CacheHits = "efenvelope.cache.hits";

    /// <summary>Counter of key-cache misses.</summary>
    public const string CacheMisses = "efenvelope.cache.misses";

    /// <summary>Counter of records encrypted (new data keys or re-encrypted properties), tagged <c>entity</c>.</summary>
    public const string RecordsEncrypted = "efenvelope.records.encrypted";

    /// <summary>Counter of records decrypted, tagged <c>entity</c>.</summary>
    public const string RecordsDecrypted = "efenvelope.records.decrypted";

    internal static readonly ActivitySource ActivitySource = new(ActivitySourceName);

    internal static readonly Meter Meter = new(MeterName);

    internal static readonly Counter<long> ProviderCallCounter = Meter.CreateCounter<long>(ProviderCalls, "{call}", "Master-key provider calls.");

    internal static readonly Histogram<double> ProviderDurationHistogram = Meter.CreateHistogram<double>(ProviderDuration, "ms", "Master-key provider call duration.");

    internal static readonly Counter<long> CacheHitCounter = Meter.CreateCounter<long>(CacheHits, "{hit}", "Key-cache hits.");

    internal static readonly Counter<long> CacheMissCounter = Meter.CreateCounter<long>(CacheMisses, "{miss}", "Key-cache misses.");

    internal static readonly Counter<long> RecordsEncryptedCounter = Meter.CreateCounter<long>(RecordsEncrypted, "{record}", "Records encrypted.");

    internal static readonly Counter<long> RecordsDecryptedCounter = Meter.CreateCounter<long>(RecordsDecrypted, "{record}", "Records decrypted.");
}
