using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Text.RegularExpressions;
using EfEnvelope.Diagnostics;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace EfEnvelope.Tests.Diagnostics;

/// <summary>
/// Logs, metrics and traces reach an application that only configured its host: no logger factory is passed to EF or
/// to EfEnvelope, the context comes from dependency injection.
/// </summary>
public sealed partial class HostPipelineTests : IDisposable
{
    private readonly SqliteConnection _connection = new("Data Source=:memory:");

    public HostPipelineTests() => _connection.Open();

    public enum Registration
    {
        AddDbContext,
        AddDbContextPool,
        AddDbContextFactory,
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _connection.Dispose();

    [Theory]
    [InlineData(Registration.AddDbContext)]
    [InlineData(Registration.AddDbContextPool)]
    [InlineData(Registration.AddDbContextFactory)]
    public async Task Logs_metrics_and_traces_reach_the_host_through_the_registration(Registration registration)
    {
        // A provider name of its own tells this test's measurements and spans from those of tests running alongside.
        var provider = new NamedProvider("host-" + Guid.NewGuid().ToString("N")[..12], new InsecureInMemoryMasterKeyProvider("host-key"));
        using var signals = new Signals(provider.Name);
        var logs = new CapturingLoggerProvider();
        await using var services = Register(new ServiceCollection().AddLogging(b => b.AddProvider(logs).SetMinimumLevel(LogLevel.Information)), registration, provider)
            .BuildServiceProvider();

        await UseContextAsync(services, registration, async db =>
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Invoices.Add(new Invoice { CardNumber = "4111 1111 1111 1111", Amount = 10 });
            await db.SaveChangesAsync(Ct);
            db.ClearEnvelopeKeyCache();
        });
        await UseContextAsync(services, registration, async db => Assert.Equal("4111 1111 1111 1111", (await db.Invoices.SingleAsync(Ct)).CardNumber));

        var events = logs.Entries.Where(e => e.Category == "EfEnvelope.KeyManagement" && e.Message.Contains(provider.Name, StringComparison.Ordinal)).ToList();
        Assert.Contains(events, e => e.EventId.Name == "ProviderCall" && e.Message.Contains("GenerateDataKey key host-key", StringComparison.Ordinal) && e.Message.Contains("success", StringComparison.Ordinal));
        Assert.Contains(events, e => e.EventId.Name == "ProviderCall" && e.Message.Contains("DecryptDataKey key host-key", StringComparison.Ordinal) && e.Message.Contains("success", StringComparison.Ordinal));
        Assert.DoesNotContain(logs.Entries, e => e.Message.Contains("4111 1111 1111 1111", StringComparison.Ordinal));

        Assert.Contains(signals.Measurements, m => m.Instrument == EnvelopeTelemetry.ProviderCalls && m.Operation == "GenerateDataKey");
        Assert.Contains(signals.Measurements, m => m.Instrument == EnvelopeTelemetry.ProviderDuration && m.Operation == "DecryptDataKey");
        Assert.Contains(signals.Spans, s => s.OperationName == "EfEnvelope.GenerateDataKey" && Equals(s.GetTagItem("efenvelope.outcome"), "success"));
        Assert.Contains(signals.Spans, s => s.OperationName == "EfEnvelope.DecryptDataKey" && Equals(s.GetTagItem("efenvelope.key_id"), "host-key"));
    }

    [Fact]
    public async Task Two_hosts_sharing_one_provider_each_receive_their_own_events()
    {
        var provider = new NamedProvider("two-hosts-" + Guid.NewGuid().ToString("N")[..12], new InsecureInMemoryMasterKeyProvider("shared-key"));
        var firstLogs = new CapturingLoggerProvider();
        var secondLogs = new CapturingLoggerProvider();
        await using var first = Register(new ServiceCollection().AddLogging(b => b.AddProvider(firstLogs)), Registration.AddDbContext, provider).BuildServiceProvider();
        await using var second = Register(new ServiceCollection().AddLogging(b => b.AddProvider(secondLogs)), Registration.AddDbContext, provider).BuildServiceProvider();

        await UseContextAsync(first, Registration.AddDbContext, async db =>
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Invoices.Add(new Invoice { CardNumber = "first", Amount = 1 });
            await db.SaveChangesAsync(Ct);
        });
        await UseContextAsync(second, Registration.AddDbContext, async db =>
        {
            db.Invoices.Add(new Invoice { CardNumber = "second", Amount = 2 });
            await db.SaveChangesAsync(Ct);
        });

        Assert.Single(firstLogs.Entries, e => e.Category == "EfEnvelope.KeyManagement");
        Assert.Single(secondLogs.Entries, e => e.Category == "EfEnvelope.KeyManagement");
    }

    [Fact]
    public void The_readme_lists_every_instrument_of_the_meter_with_its_kind_and_unit()
    {
        var readme = File.ReadAllText(Path.Combine(RepositoryRoot(), "README.md"));
        var documented = InstrumentRow().Matches(readme).Select(m => (m.Groups["name"].Value, m.Groups["kind"].Value, m.Groups["unit"].Value)).ToHashSet();

        var published = new HashSet<(string, string, string)>();
        using (var listener = new MeterListener())
        {
            // Start reports every instrument created so far; touching the meter makes sure they all are.
            listener.InstrumentPublished = (instrument, _) =>
            {
                if (instrument.Meter.Name == EnvelopeTelemetry.MeterName)
                {
                    published.Add((instrument.Name, instrument is Histogram<double> ? "histogram" : instrument is Counter<long> ? "counter" : instrument.GetType().Name, instrument.Unit ?? ""));
                }
            };
            Assert.Equal("EfEnvelope", EnvelopeTelemetry.Meter.Name);
            listener.Start();
        }

        Assert.Equal(6, published.Count);
        Assert.Equal(published.Order(), documented.Order());
        Assert.Contains($"activity source `{EnvelopeTelemetry.ActivitySourceName}`", readme, StringComparison.Ordinal);
        Assert.Contains($"meter `{EnvelopeTelemetry.MeterName}`", readme, StringComparison.Ordinal);
    }

    [GeneratedRegex(@"^\| `(?<name>efenvelope\.[a-z.]+)` \| (?<kind>counter|histogram) \| `(?<unit>[^`]*)` \|", RegexOptions.Multiline)]
    private static partial Regex InstrumentRow();

    private static string RepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "EfEnvelope.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException("EfEnvelope.sln not found above " + AppContext.BaseDirectory);
    }

    private IServiceCollection Register(IServiceCollection services, Registration registration, IMasterKeyProvider provider)
    {
        void Configure(DbContextOptionsBuilder options) =>
            options.UseSqlite(_connection).ManyConfigurationsPerProcess().UseEnvelopeEncryption(e => e.UseProvider(provider));

        return registration switch
        {
            Registration.AddDbContext => services.AddDbContext<ClinicContext>(Configure),
            Registration.AddDbContextPool => services.AddDbContextPool<ClinicContext>(Configure),
            _ => services.AddDbContextFactory<ClinicContext>(Configure),
        };
    }

    private static async Task UseContextAsync(IServiceProvider services, Registration registration, Func<ClinicContext, Task> work)
    {
        if (registration == Registration.AddDbContextFactory)
        {
            await using var db = await services.GetRequiredService<IDbContextFactory<ClinicContext>>().CreateDbContextAsync(Ct);
            await work(db);
            return;
        }

        await using var scope = services.CreateAsyncScope();
        await work(scope.ServiceProvider.GetRequiredService<ClinicContext>());
    }

    /// <summary>Another name for a real provider, so that this test's telemetry can be told apart.</summary>
    private sealed class NamedProvider(string name, IMasterKeyProvider inner) : DelegatingProvider(inner)
    {
        public override string Name => name;
    }

    /// <summary>What a metrics and tracing pipeline (OpenTelemetry's listeners) receives for one provider name.</summary>
    private sealed class Signals : IDisposable
    {
        private readonly MeterListener _meters = new();
        private readonly ActivityListener _activities;

        public Signals(string providerName)
        {
            _meters.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == EnvelopeTelemetry.MeterName)
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            void Record(Instrument instrument, ReadOnlySpan<KeyValuePair<string, object?>> tags)
            {
                var all = tags.ToArray();
                if (all.Any(t => t.Key == "provider" && Equals(t.Value, providerName)))
                {
                    Measurements.Add((instrument.Name, (string?)all.FirstOrDefault(t => t.Key == "operation").Value));
                }
            }

            _meters.SetMeasurementEventCallback<long>((instrument, _, tags, _) => Record(instrument, tags));
            _meters.SetMeasurementEventCallback<double>((instrument, _, tags, _) => Record(instrument, tags));
            _meters.Start();
            _activities = new ActivityListener
            {
                ShouldListenTo = source => source.Name == EnvelopeTelemetry.ActivitySourceName,
                Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
                ActivityStopped = activity =>
                {
                    if (Equals(activity.GetTagItem("efenvelope.provider"), providerName))
                    {
                        Spans.Add(activity);
                    }
                },
            };
            ActivitySource.AddActivityListener(_activities);
        }

        public ConcurrentBag<(string Instrument, string? Operation)> Measurements { get; } = [];

        public ConcurrentBag<Activity> Spans { get; } = [];

        public void Dispose()
        {
            _meters.Dispose();
            _activities.Dispose();
        }
    }

    private sealed class CapturingLoggerProvider : ILoggerProvider
    {
        public ConcurrentQueue<(string Category, EventId EventId, string Message)> Entries { get; } = new();

        public ILogger CreateLogger(string categoryName) => new Logger(categoryName, Entries);

        public void Dispose()
        {
        }

        private sealed class Logger(string category, ConcurrentQueue<(string, EventId, string)> entries) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                entries.Enqueue((category, eventId, formatter(state, exception)));
        }
    }
}
