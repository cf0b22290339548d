using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace HealthRecords.Tests;

/// <summary>One log entry: its category, level and everything it carries (message, structured values, exception).</summary>
public sealed record CapturedLog(string Category, LogLevel Level, int EventId, string Text);

/// <summary>A logger provider that keeps every entry and every scope, so a test can search all that the app logged.</summary>
public sealed class CapturedLogs : ILoggerProvider
{
    private readonly ConcurrentQueue<CapturedLog> _entries = new();

    public IReadOnlyList<CapturedLog> Entries => [.. _entries];

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    private sealed class Logger(CapturedLogs owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull
        {
            // Scopes carry values too (the request path, for one): they are searched like entries.
            owner._entries.Enqueue(new CapturedLog(category, LogLevel.None, 0, $"scope: {Describe(state, null)}"));
            return null;
        }

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner._entries.Enqueue(new CapturedLog(category, logLevel, eventId.Id, $"{formatter(state, exception)} {Describe(state, exception)}"));

        private static string Describe(object? state, Exception? exception)
        {
            var values = state is IEnumerable<KeyValuePair<string, object?>> pairs
                ? string.Join("; ", pairs.Select(pair => $"{pair.Key}={pair.Value}"))
                : Convert.ToString(state, System.Globalization.CultureInfo.InvariantCulture);
            return exception is null ? $"[{values}]" : $"[{values}] {exception}";
        }
    }
}
