using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using EfEnvelope.Diagnostics;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;

namespace EfEnvelope.Tests.Diagnostics;

public sealed class TelemetryTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Every_provider_call_is_logged_counted_and_traced_without_secrets()
    {
        var logs = new CapturingLoggerProvider();
        using var loggerFactory = LoggerFactory.Create(b => b.AddProvider(logs).SetMinimumLevel(LogLevel.Trace));
        var provider = new InsecureInMemoryMasterKeyProvider("audit-key");
        var measurements = new ConcurrentBag<(string Instrument, long Value, Dictionary<string, object?> Tags)>();
        using var meters = new MeterListener();
        meters.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == EnvelopeTelemetry.MeterName)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        meters.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
            measurements.Add((instrument.Name, value, tags.ToArray().ToDictionary(t => t.Key, t => t.Value))));
        meters.Start();
        var spans = new ConcurrentBag<Activity>();
        using var activities = new ActivityListener
        {
            ShouldListenTo = source => source.Name == EnvelopeTelemetry.ActivitySourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = spans.Add,
        };
        ActivitySource.AddActivityListener(activities);

        using var clinic = new InMemoryClinic(provider, e => e.UseProvider(provider).UseLoggerFactory(loggerFactory));
        var patient = new Patient { Id = Guid.NewGuid(), Ssn = "321-54-9876", Diagnosis = "Secret diagnosis", DateOfBirth = new DateOnly(1970, 5, 5) };
        await using (var db = clinic.CreateContext())
        {
            db.Patients.Add(patient);
            await db.SaveChangesAsync(Ct);
        }

        provider.DisableKey("audit-key");
        await using (var db = clinic.CreateContext(e => e.UseProvider(provider).UseLoggerFactory(loggerFactory).UseApplicationName("efenvelope")))
        {
            db.ClearEnvelopeKeyCache();
            await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => db.Patients.ToListAsync(Ct));
        }

        meters.RecordObservableInstruments();

        var entries = logs.Entries.Where(e => e.Category == "EfEnvelope.KeyManagement").ToList();
        Assert.Contains(entries, e => e.Message.Contains("GenerateDataKey", StringComparison.Ordinal) && e.Message.Contains("audit-key", StringComparison.Ordinal) && e.Message.Contains(typeof(Patient).FullName!, StringComparison.Ordinal) && e.Message.Contains("success", StringComparison.Ordinal));
        Assert.Contains(entries, e => e.Message.Contains("DecryptDataKey", StringComparison.Ordinal) && e.Message.Contains("revoked", StringComparison.Ordinal));
        Assert.Contains(measurements, m => m.Instrument == EnvelopeTelemetry.ProviderCalls && Equals(m.Tags["operation"], "GenerateDataKey") && Equals(m.Tags["outcome"], "success"));
        Assert.Contains(measurements, m => m.Instrument == EnvelopeTelemetry.ProviderCalls && Equals(m.Tags["operation"], "DecryptDataKey") && Equals(m.Tags["outcome"], "revoked"));
        Assert.Contains(measurements, m => m.Instrument == EnvelopeTelemetry.RecordsEncrypted);
        Assert.Contains(measurements, m => m.Instrument == EnvelopeTelemetry.CacheMisses);
        Assert.Contains(spans, s => s.OperationName == "EfEnvelope.GenerateDataKey" && Equals(s.GetTagItem("efenvelope.key_id"), "audit-key"));
        Assert.Contains(spans, s => s.OperationName == "EfEnvelope.DecryptDataKey" && s.Status == ActivityStatusCode.Error);

        foreach (var text in logs.Entries.Select(e => e.Message + e.Exception))
        {
            Assert.DoesNotContain(patient.Ssn, text, StringComparison.Ordinal);
            Assert.DoesNotContain(patient.Diagnosis, text, StringComparison.Ordinal);
        }
    }

    private sealed class CapturingLoggerProvider : ILoggerProvider
    {
        public ConcurrentQueue<(string Category, string Message, Exception? Exception)> Entries { get; } = new();

        public ILogger CreateLogger(string categoryName) => new Logger(categoryName, Entries);

        public void Dispose()
        {
        }

        private sealed class Logger(string category, ConcurrentQueue<(string, string, Exception?)> entries) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                entries.Enqueue((category, formatter(state, exception), exception));
        }
    }
}
