using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace EfEnvelope.Tests.Lifecycle;

public class Member
{
    public Guid Id { get; set; }

    /// <summary>The data subject (tenant) whose master key protects this record when a selector is configured.</summary>
    public string Subject { get; set; } = "";

    [Encrypted]
    public string Ssn { get; set; } = "";

    [Encrypted]
    public string? Notes { get; set; }

    public MemberAddress? Address { get; set; }
}

public class MemberAddress
{
    [Encrypted]
    public string Street { get; set; } = "";
}

public class Claim
{
    public int Id { get; set; }

    [Encrypted]
    public decimal Amount { get; set; }
}

/// <summary>A composite primary key with a string part: keyset pagination over two columns.</summary>
public class Prescription
{
    public string Pharmacy { get; set; } = "";

    public int Number { get; set; }

    [Encrypted]
    public string Drug { get; set; } = "";
}

/// <summary>The model the lifecycle tests run on: Guid keys with an owned type, and store-generated int keys.</summary>
public sealed class LifecycleContext(DbContextOptions<LifecycleContext> options) : DbContext(options)
{
    public DbSet<Member> Members => Set<Member>();

    public DbSet<Claim> Claims => Set<Claim>();

    public DbSet<Prescription> Prescriptions => Set<Prescription>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<Member>().OwnsOne(m => m.Address);
        modelBuilder.Entity<Prescription>().HasKey(p => new { p.Pharmacy, p.Number });
    }
}

/// <summary>A database of its own per test (SQLite file or PostgreSQL database) and contexts on it.</summary>
public sealed class LifecycleDatabase<TFixture> : IAsyncDisposable
    where TFixture : DatabaseFixture, new()
{
    private readonly TFixture _fixture = new();

    public string? SkipReason => _fixture.SkipReason;

    public TFixture Fixture => _fixture;

    public LifecycleContext Create(Action<EnvelopeEncryptionOptionsBuilder> configure, params IInterceptor[] interceptors) =>
        new(Options<LifecycleContext>(configure, interceptors));

    public DbContextOptions<TContext> Options<TContext>(Action<EnvelopeEncryptionOptionsBuilder> configure, params IInterceptor[] interceptors)
        where TContext : DbContext
    {
        var builder = new DbContextOptionsBuilder<TContext>();
        _fixture.UseDatabase(builder);
        builder.ManyConfigurationsPerProcess().UseEnvelopeEncryption(configure);
        if (interceptors.Length > 0)
        {
            builder.AddInterceptors(interceptors);
        }

        return builder.Options;
    }

    public async ValueTask DisposeAsync()
    {
        if (SkipReason is null)
        {
            await _fixture.DisposeAsync();
        }
    }
}

/// <summary>Reports progress synchronously (Progress&lt;T&gt; posts to the thread pool), so a test can act after exactly N batches.</summary>
public sealed class ProgressLog(Action<LifecycleProgressSnapshot>? onReport = null) : IProgress<EfEnvelope.Lifecycle.LifecycleProgress>
{
    private readonly List<EfEnvelope.Lifecycle.LifecycleProgress> _reports = [];

    public IReadOnlyList<EfEnvelope.Lifecycle.LifecycleProgress> Reports => _reports;

    public void Report(EfEnvelope.Lifecycle.LifecycleProgress value)
    {
        _reports.Add(value);
        onReport?.Invoke(new LifecycleProgressSnapshot(_reports.Count, value));
    }
}

public sealed record LifecycleProgressSnapshot(int Batches, EfEnvelope.Lifecycle.LifecycleProgress Last);

/// <summary>Keeps every log line written, for assertions on what a job logged.</summary>
public sealed class LogCapture : Microsoft.Extensions.Logging.ILoggerProvider
{
    private readonly System.Collections.Concurrent.ConcurrentQueue<(string Category, Microsoft.Extensions.Logging.LogLevel Level, string Message)> _lines = new();

    public IReadOnlyList<(string Category, Microsoft.Extensions.Logging.LogLevel Level, string Message)> Lines => [.. _lines];

    public Microsoft.Extensions.Logging.ILogger CreateLogger(string categoryName) => new Logger(categoryName, _lines);

    public void Dispose()
    {
    }

    private sealed class Logger(string category, System.Collections.Concurrent.ConcurrentQueue<(string, Microsoft.Extensions.Logging.LogLevel, string)> lines) : Microsoft.Extensions.Logging.ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            lines.Enqueue((category, logLevel, formatter(state, exception)));
    }
}
