using System.Collections;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Logging;

namespace EfEnvelope.Reliability.Tests.Secrets;

/// <summary>
/// A representative workload with every log level on (EF's own logging with sensitive data, and the library's),
/// failures included; then every log line, structured log value and exception text is scanned for plaintext values
/// and key bytes (the master key, every key-encryption key and every data key, known through a recording random source).
/// </summary>
public sealed class SecretLeakTests : IDisposable
{
    private readonly SqliteConnection _connection = new("Data Source=:memory:");
    private readonly LogCapture _logs = new();
    private readonly ILoggerFactory _loggerFactory;
    private readonly RecordingRandom _random = new();
    private readonly byte[] _masterKey = RandomNumberGenerator.GetBytes(32);
    private readonly InsecureInMemoryMasterKeyProvider _provider;
    private readonly List<string> _plaintexts = [];
    private readonly StringBuilder _errors = new();

    public SecretLeakTests()
    {
        _connection.Open();
        _loggerFactory = LoggerFactory.Create(b => b.AddProvider(_logs).SetMinimumLevel(LogLevel.Trace));
        _provider = new InsecureInMemoryMasterKeyProvider("scan-key", _masterKey, _random);
        _provider.AddKey("second-key");
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose()
    {
        _loggerFactory.Dispose();
        _connection.Dispose();
    }

    private DbContextOptions<TContext> Options<TContext>(Action<EnvelopeEncryptionOptionsBuilder>? extra = null)
        where TContext : DbContext =>
        new DbContextOptionsBuilder<TContext>()
            .UseSqlite(_connection)
            .UseLoggerFactory(_loggerFactory)
            .EnableSensitiveDataLogging()
            .EnableDetailedErrors()
            .ManyConfigurationsPerProcess()
            .UseEnvelopeEncryption(e =>
            {
                e.UseProvider(_provider).UseLoggerFactory(_loggerFactory).UseRandomSource(_random);
                extra?.Invoke(e);
            })
            .Options;

    private string Secret(string kind)
    {
        var value = $"{kind}-{Convert.ToHexString(RandomNumberGenerator.GetBytes(6))}";
        _plaintexts.Add(value);
        return value;
    }

    private async Task Expect<TException>(Func<Task> action)
        where TException : Exception
    {
        var error = await Assert.ThrowsAnyAsync<TException>(action);
        _errors.AppendLine(SecretScan.Describe(error));
    }

    [Fact]
    public async Task Logs_at_every_level_and_exception_texts_carry_no_plaintext_and_no_key_bytes()
    {
        var indexKey = await BlindIndexKey.CreateAsync(_provider, random: _random, cancellationToken: Ct);
        await using (var db = new ClinicContext(Options<ClinicContext>()))
        {
            await db.Database.EnsureCreatedAsync(Ct);
        }

        await using (var search = new SearchContext(Options<SearchContext>(e => e.UseBlindIndexKey(indexKey))))
        {
            await search.GetService<IRelationalDatabaseCreator>().CreateTablesAsync(Ct);
        }

        var patients = Enumerable.Range(0, 5).Select(_ => new Patient
        {
            Id = Guid.NewGuid(),
            Name = "not secret",
            Ssn = Secret("SSN"),
            Diagnosis = Secret("DIAGNOSIS"),
            DateOfBirth = new DateOnly(1971, 3, 4),
            HomeAddress = new Address { City = "not secret", Street = Secret("STREET") },
            Emergency = new EmergencyContact { Relation = "not secret", Phone = Secret("PHONE") },
            Visits = [new Visit { At = DateTime.UtcNow, Notes = Secret("NOTES") }],
        }).ToList();

        // Writes, reads on both paths, edits, reloads and deletes.
        await using (var db = new ClinicContext(Options<ClinicContext>()))
        {
            db.Patients.AddRange(patients);
            db.Invoices.Add(new Invoice { CardNumber = Secret("CARD"), Amount = 1 });
            await db.SaveChangesAsync(Ct);
            db.ChangeTracker.Clear();

            var loaded = await db.Patients.Include(p => p.Visits).OrderBy(p => p.Name).ToListAsync(Ct);
            loaded = [.. patients.Select(p => loaded.Single(l => l.Id == p.Id))];
            loaded[0].Ssn = Secret("EDITED-SSN");
            loaded[1].Visits[0].Notes = Secret("EDITED-NOTES");
            db.SaveChanges();
            await db.Entry(loaded[0]).ReloadAsync(Ct);
            db.Patients.Remove(loaded[2]);
            await db.SaveChangesAsync(Ct);
            _ = db.Patients.AsNoTracking().Select(p => new { p.Ssn, p.Diagnosis }).ToList();
            _ = await db.Invoices.FromSqlRaw("SELECT * FROM \"Invoices\"").ToListAsync(Ct);
        }

        // Blind-index searches and a unique-index violation.
        await using (var search = new SearchContext(Options<SearchContext>(e => e.UseBlindIndexKey(indexKey))))
        {
            var ssn = Secret("PERSON-SSN");
            search.People.Add(new Person { Name = "n", Ssn = ssn, Email = Secret("EMAIL") + "@example.org", City = Secret("CITY"), Phone = "555 0100", Notes = Secret("PERSON-NOTES") });
            await search.SaveChangesAsync(Ct);
            Assert.Single(await search.People.Where(p => p.Ssn == ssn).ToListAsync(Ct));
            search.People.Add(new Person { Name = "dup", Ssn = ssn });
            await Expect<DbUpdateException>(() => search.SaveChangesAsync(Ct));
        }

        // Refusals, tampering, a revoked key, a provider failure.
        await using (var db = new ClinicContext(Options<ClinicContext>()))
        {
            var known = patients[3].Ssn;
            #pragma warning disable EFENV001, EFENV003, EFENV005 // The analyzer warns at compile time about what this test expects to be refused at run time.
            await Expect<InvalidOperationException>(() => db.Patients.Where(p => p.Ssn == known).ToListAsync(Ct));
            await Expect<InvalidOperationException>(() => db.Patients.Where(p => p.Diagnosis!.Contains(known)).ToListAsync(Ct));
            await Expect<InvalidOperationException>(() => db.Patients.Where(p => p.Id == patients[3].Id).ExecuteUpdateAsync(s => s.SetProperty(p => p.Ssn, known), Ct));
            #pragma warning restore EFENV001, EFENV003, EFENV005

            await db.Database.ExecuteSqlRawAsync("UPDATE \"Patients\" SET \"Ssn\" = \"Diagnosis\" WHERE \"Id\" = {0}", [patients[3].Id], Ct);
            await Expect<EnvelopeDecryptionException>(() => db.Patients.AsNoTracking().Where(p => p.Id == patients[3].Id).ToListAsync(Ct));
        }

        await using (var db = new ClinicContext(Options<ClinicContext>(e => e.ConfigureKeyCache(c => c.TimeToLive = TimeSpan.FromMilliseconds(1)))))
        {
            _provider.DisableKey("scan-key");
            await Task.Delay(5, Ct);
            await Expect<MasterKeyAccessRevokedException>(() => db.Patients.AsNoTracking().Where(p => p.Id == patients[4].Id).ToListAsync(Ct));
            db.Patients.Add(new Patient { Id = Guid.NewGuid(), Ssn = Secret("UNSAVED-SSN") });
            await Expect<MasterKeyAccessRevokedException>(() => db.SaveChangesAsync(Ct));
            _provider.EnableKey("scan-key");
        }

        var text = _logs.Text + "\n" + _errors;
        Assert.True(_logs.Count > 50, $"the workload logged only {_logs.Count} entries: logging is not reaching the capture");
        // Trace is enabled too; EF and the library emit nothing at it in this workload.
        Assert.Contains(LogLevel.Debug, _logs.Levels);
        Assert.Contains(LogLevel.Information, _logs.Levels);
        // Sensitive-data logging is really on: parameter values (the plaintext of unencrypted columns) are in the logs,
        // so the encrypted ones would be too if they were sent in the clear.
        Assert.Contains("not secret", text, StringComparison.Ordinal);
        var keys = _random.Keys().Append(_masterKey).ToList();
        Assert.True(keys.Count > 5, "the recording random source saw no keys");
        SecretScan.AssertFree(text, _plaintexts, keys, "captured logs and exceptions");
        TestContext.Current.TestOutputHelper?.WriteLine($"{_logs.Count} log entries, {text.Length} characters, {_plaintexts.Count} plaintexts and {keys.Count} keys scanned for");
    }

    /// <summary>Captures every log entry at every level: the formatted message, the exception, and each structured value.</summary>
    private sealed class LogCapture : ILoggerProvider, ILogger
    {
        private readonly ConcurrentQueue<string> _entries = new();
        private readonly ConcurrentDictionary<LogLevel, byte> _levels = new();

        public int Count => _entries.Count;

        public ICollection<LogLevel> Levels => _levels.Keys;

        public string Text => string.Join("\n", _entries);

        public ILogger CreateLogger(string categoryName) => this;

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            _levels[logLevel] = 0;
            var entry = new StringBuilder().Append(logLevel).Append(' ').Append(eventId.Name).Append(": ").Append(formatter(state, exception));
            if (exception is not null)
            {
                entry.Append('\n').Append(exception);
            }

            if (state is IEnumerable<KeyValuePair<string, object?>> values)
            {
                foreach (var (name, value) in values)
                {
                    entry.Append("\n  ").Append(name).Append('=').Append(Render(value));
                }
            }

            _entries.Enqueue(entry.ToString());
        }

        // Raw bytes in a structured value would not show in the message: render them in every form the scan knows.
        private static string Render(object? value) => value switch
        {
            byte[] bytes => Convert.ToHexString(bytes) + " " + Convert.ToBase64String(bytes),
            string text => text,
            IEnumerable items => string.Join(",", items.Cast<object?>().Select(Render)),
            _ => value?.ToString() ?? "null",
        };

        public void Dispose()
        {
        }
    }

    /// <summary>A system random source that remembers every key it handed out.</summary>
    /// <remarks>
    /// Providers fill exactly 32 bytes for a key-encryption key; the library draws a new record's data key as the
    /// first 32 bytes of one larger fill (data key, record id, nonces), at least 72 bytes for the model here. Nonce-only
    /// fills (edits) are shorter, and nonces are stored in the clear anyway.
    /// </remarks>
    private sealed class RecordingRandom : IRandomSource
    {
        private readonly ConcurrentQueue<byte[]> _keys = new();

        public void Fill(Span<byte> buffer)
        {
            RandomNumberGenerator.Fill(buffer);
            if (buffer.Length == 32 || buffer.Length >= 72)
            {
                _keys.Enqueue(buffer[..32].ToArray());
            }
        }

        public IEnumerable<byte[]> Keys() => _keys;
    }
}
