using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Text;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace EfEnvelope.Reliability.Tests.Tampering;

/// <summary>
/// A database writer edits a wrapped-key blob so that the reader looks its key up wrongly: another mode, another
/// entity, a forged name. The lookup must neither reuse a cached key for another purpose, nor send the provider a
/// blob for an entity the row does not belong to, nor let forged names through to messages and logs (issue 12, items
/// 9, 10 and 11).
/// </summary>
public abstract class KeyLookupTamperingTests<TFixture>(TFixture fixture) : IClassFixture<TFixture>
    where TFixture : DatabaseFixture
{
    private static readonly string PatientEntity = typeof(Patient).FullName!;
    private static readonly string VisitEntity = typeof(Visit).FullName!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private void SkipIfUnavailable()
    {
        if (fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }
    }

    private static Patient NewPatient() => new()
    {
        Id = Guid.NewGuid(),
        Name = "Lookup Target",
        Ssn = $"SSN-{Guid.NewGuid():N}",
        Diagnosis = $"Diagnosis-{Guid.NewGuid():N}",
        DateOfBirth = new DateOnly(1980, 2, 3),
        HomeAddress = new Address { City = "Springfield", Street = $"Street-{Guid.NewGuid():N}" },
    };

    private async Task InsertAsync(Patient patient)
    {
        await using var db = fixture.CreateContext();
        db.Patients.Add(patient);
        await db.SaveChangesAsync(Ct);
    }

    private static async Task<Exception> ReadFailsAsync(ClinicContext db, Guid id, bool synchronous)
    {
        var error = await Record.ExceptionAsync(async () =>
        {
            var read = synchronous
                ? db.Patients.AsNoTracking().Single(p => p.Id == id)
                : await db.Patients.AsNoTracking().SingleAsync(p => p.Id == id, Ct);
            Assert.Fail($"The tampered row was read (Ssn '{read.Ssn}').");
        });
        Assert.True(error is EnvelopeDecryptionException or MasterKeyException, $"expected the library's error, got {error}");
        return error;
    }

    [Fact]
    public async Task A_blob_flipped_to_direct_mode_never_finds_the_cached_key_encryption_key()
    {
        SkipIfUnavailable();
        var patient = NewPatient();
        await InsertAsync(patient);
        var provider = new RecordingProvider(fixture.Provider);
        await using var db = fixture.CreateContext(e => e.UseProvider(provider));

        // The row reads, and its KEK is now cached.
        Assert.Equal(patient.Ssn, (await db.Patients.AsNoTracking().SingleAsync(p => p.Id == patient.Id, Ct)).Ssn);
        var before = provider.Decrypts.Count;

        // Mode 1 -> direct: the same tail (provider, key id, entity, provider-wrapped KEK) without the wrapped data key
        // (60 bytes right after the tail; a version 2 record trailer, if any, stays).
        var stored = (await RawSql.ReadAsync(fixture, "Patients", "EfEnvelopeKey", patient.Id))!;
        var regions = BlobRegions.Of(stored);
        var dekStart = regions.WrappedStart + BinaryPrimitives.ReadUInt16BigEndian(stored.AsSpan(regions.WrappedStart - 2));
        byte[] flipped = [.. stored[..dekStart], .. stored[(dekStart + 60)..]];
        flipped[1] = 0x02;
        await RawSql.WriteAsync(fixture, "Patients", "EfEnvelopeKey", patient.Id, flipped);

        foreach (var synchronous in new[] { false, true })
        {
            var error = Assert.IsType<EnvelopeDecryptionException>(await ReadFailsAsync(db, patient.Id, synchronous), exactMatch: false);

            // Refused at the key: the provider was asked to unwrap it as a direct-mode data key (bound to the record)
            // and refused. Using the cached KEK as the data key would have failed only at a field, naming a property.
            Assert.Equal(PatientEntity, error.Entity);
            Assert.Null(error.Property);
        }

        // One provider call for the flipped blob, whose refusal then answers the second read.
        Assert.Equal(before + 1, provider.Decrypts.Count);
        Assert.Equal(PatientEntity, provider.Decrypts.Last().Entity);
        Assert.True(provider.Decrypts.Last().Record is not null, "the flipped blob was not unwrapped as a direct-mode key of its record");
    }

    [Fact]
    public async Task The_prefetch_never_asks_the_provider_for_the_entity_a_moved_blob_names()
    {
        SkipIfUnavailable();
        var victim = NewPatient();
        var other = NewPatient();
        var visit = new Visit { At = DateTime.UtcNow, Notes = $"Notes-{Guid.NewGuid():N}" };
        other.Visits.Add(visit);
        await using (var writer = fixture.CreateContext())
        {
            writer.Patients.AddRange(victim, other);
            await writer.SaveChangesAsync(Ct);
        }

        // A Visit's authentic key blob, moved into a Patient row: the provider would unwrap it for entity Visit.
        await RawSql.WriteAsync(fixture, "Patients", "EfEnvelopeKey", victim.Id, await RawSql.ReadAsync(fixture, "Visits", "EfEnvelopeKey", visit.Id));
        var provider = new RecordingProvider(fixture.Provider);
        await using var db = fixture.CreateContext(e => e.UseProvider(provider));

        var error = Assert.IsType<EnvelopeDecryptionException>(await ReadFailsAsync(db, victim.Id, synchronous: false), exactMatch: false);
        Assert.Equal(PatientEntity, error.Entity);
        Assert.Contains("copied from another table", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(provider.Decrypts, call => call.Entity == VisitEntity);
        Assert.Equal(0, db.GetEnvelopeKeyCacheStatistics().SynchronousMisses);

        // A query that returns Visits too (a join with two key columns) still asks for each key as its own entity.
        var withVisits = await db.Patients.AsNoTracking().Include(p => p.Visits).SingleAsync(p => p.Id == other.Id, Ct);
        Assert.Equal(visit.Notes, Assert.Single(withVisits.Visits).Notes);

        Assert.Contains(provider.Decrypts, call => call.Entity == VisitEntity);
        Assert.Equal(0, db.GetEnvelopeKeyCacheStatistics().SynchronousMisses);
    }

    [Fact]
    public async Task A_refused_blob_costs_one_provider_call_per_period_and_never_blocks_an_async_read()
    {
        SkipIfUnavailable();
        var patient = NewPatient();
        await InsertAsync(patient);

        // Corrupt the provider-wrapped KEK (the region after the entity name): only the provider can tell.
        var stored = (await RawSql.ReadAsync(fixture, "Patients", "EfEnvelopeKey", patient.Id))!;
        var regions = BlobRegions.Of(stored);
        stored[regions.WrappedStart + 3] ^= 0x41;
        await RawSql.WriteAsync(fixture, "Patients", "EfEnvelopeKey", patient.Id, stored);

        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var provider = new RecordingProvider(fixture.Provider);
        await using var db = fixture.CreateContext(e => e.UseProvider(provider).UseTimeProvider(time).ConfigureKeyCache(c => c.FailureMemory = TimeSpan.FromSeconds(10)));

        for (var read = 0; read < 4; read++)
        {
            await ReadFailsAsync(db, patient.Id, synchronous: read % 2 == 1);
        }

        // Four reads (two async, each with a prefetch and a materialization; two synchronous): one provider call.
        Assert.Single(provider.Decrypts, call => call.Entity == PatientEntity);
        Assert.Equal(0, db.GetEnvelopeKeyCacheStatistics().SynchronousMisses);

        // After the period the provider is asked again, once.
        time.Advance(TimeSpan.FromSeconds(11));
        await ReadFailsAsync(db, patient.Id, synchronous: false);
        await ReadFailsAsync(db, patient.Id, synchronous: false);
        Assert.Equal(2, provider.Decrypts.Count(call => call.Entity == PatientEntity));
        Assert.Equal(0, db.GetEnvelopeKeyCacheStatistics().SynchronousMisses);
    }

    [Theory]
    [InlineData("entity")]
    [InlineData("key id")]
    [InlineData("provider")]
    public async Task Forged_names_in_a_blob_reach_messages_and_logs_truncated_and_escaped(string field)
    {
        SkipIfUnavailable();
        var patient = NewPatient();
        await InsertAsync(patient);
        var stored = (await RawSql.ReadAsync(fixture, "Patients", "EfEnvelopeKey", patient.Id))!;

        // A line break that would forge a log line, a terminal colour escape, and (for the entity) a 60 KB name.
        const string Forged = "FORGED\r\nEfEnvelope.KeyManagement: Information: all good\u001b[31mRED\u009b2J\u202e";
        var forged = field switch
        {
            "entity" => BlobRegions.Replace(stored, entity: Forged + new string('A', 60_000)),
            "key id" => BlobRegions.Replace(stored, keyId: Forged),
            _ => BlobRegions.Replace(stored, provider: "forged\r\n\u001b[31m"),
        };
        await RawSql.WriteAsync(fixture, "Patients", "EfEnvelopeKey", patient.Id, forged);

        var logs = new LogLines();
        using var loggerFactory = LoggerFactory.Create(b => b.AddProvider(logs).SetMinimumLevel(LogLevel.Trace));
        var options = new DbContextOptionsBuilder<ClinicContext>(fixture.CreateOptions<ClinicContext>(e => e.UseProvider(fixture.Provider).UseLoggerFactory(loggerFactory)))
            .UseLoggerFactory(loggerFactory)
            .Options;
        await using var db = new ClinicContext(options);
        var errors = new List<Exception>
        {
            await ReadFailsAsync(db, patient.Id, synchronous: false),
            await ReadFailsAsync(db, patient.Id, synchronous: true),
        };

        var texts = errors.Select(e => e.Message).Concat(logs.Lines).ToList();
        Assert.NotEmpty(logs.Lines);
        foreach (var text in texts)
        {
            Assert.DoesNotContain('\u001b', text);
            Assert.DoesNotContain('\u009b', text);
            Assert.DoesNotContain('\u202e', text);
            Assert.DoesNotContain("FORGED\r", text, StringComparison.Ordinal);
            Assert.DoesNotContain("forged\r", text, StringComparison.Ordinal);
            Assert.DoesNotContain(new string('A', 1000), text, StringComparison.Ordinal);
        }

        // The messages still say what was found, escaped, so an operator can see the forgery.
        var messages = string.Join("\n", errors.Select(e => e.Message));
        Assert.Contains(field == "provider" ? "forged\\u000D\\u000A\\u001B[31m" : "FORGED\\u000D\\u000AEfEnvelope", messages, StringComparison.Ordinal);
        Assert.All(errors, e => Assert.DoesNotContain('\n', e.Message));
    }

    /// <summary>Offsets of a mode 1 blob's regions (docs/FORMAT.md), and rebuilding one with other names.</summary>
    private readonly record struct BlobRegions(int ProviderStart, int ProviderLength, int KeyIdStart, int KeyIdLength, int EntityStart, int EntityLength, int WrappedStart)
    {
        public static BlobRegions Of(byte[] blob)
        {
            var providerLength = blob[18];
            var keyIdStart = 19 + providerLength + 2;
            var keyIdLength = BinaryPrimitives.ReadUInt16BigEndian(blob.AsSpan(19 + providerLength));
            var entityStart = keyIdStart + keyIdLength + 2;
            var entityLength = BinaryPrimitives.ReadUInt16BigEndian(blob.AsSpan(keyIdStart + keyIdLength));
            return new BlobRegions(19, providerLength, keyIdStart, keyIdLength, entityStart, entityLength, entityStart + entityLength + 2);
        }

        public static byte[] Replace(byte[] blob, string? provider = null, string? keyId = null, string? entity = null)
        {
            var at = Of(blob);
            static byte[] Short(string text) => [.. BitConverter.IsLittleEndian ? BitConverter.GetBytes((ushort)Encoding.UTF8.GetByteCount(text)).Reverse() : BitConverter.GetBytes((ushort)Encoding.UTF8.GetByteCount(text)), .. Encoding.UTF8.GetBytes(text)];
            byte[] providerPart = provider is null ? blob[18..(19 + at.ProviderLength)] : [(byte)Encoding.UTF8.GetByteCount(provider), .. Encoding.UTF8.GetBytes(provider)];
            var keyIdPart = keyId is null ? blob[(at.KeyIdStart - 2)..(at.KeyIdStart + at.KeyIdLength)] : Short(keyId);
            var entityPart = entity is null ? blob[(at.EntityStart - 2)..(at.EntityStart + at.EntityLength)] : Short(entity);
            return [.. blob[..18], .. providerPart, .. keyIdPart, .. entityPart, .. blob[(at.WrappedStart - 2)..]];
        }
    }

    /// <summary>A real provider, recording the key id and context of every unwrap it is asked for.</summary>
    private sealed class RecordingProvider(IMasterKeyProvider inner) : IMasterKeyProvider
    {
        private readonly ConcurrentQueue<(string KeyId, string? Entity, string? Record)> _decrypts = new();

        public IReadOnlyCollection<(string KeyId, string? Entity, string? Record)> Decrypts => _decrypts;

        public string Name => inner.Name;

        public string PrimaryKeyId => inner.PrimaryKeyId;

        public bool IsKeyConfigured(string keyId) => inner.IsKeyConfigured(keyId);

        public Task<GeneratedDataKey> GenerateDataKeyAsync(string keyId, KeyContext context, CancellationToken cancellationToken) =>
            inner.GenerateDataKeyAsync(keyId, context, cancellationToken);

        public Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, KeyContext context, CancellationToken cancellationToken)
        {
            var record = context.Pairs.FirstOrDefault(p => p.Key == KeyContext.RecordKey).Value;
            _decrypts.Enqueue((keyId, context.Entity, record));
            return inner.DecryptDataKeyAsync(keyId, wrappedKey, context, cancellationToken);
        }
    }

    /// <summary>Every log line, formatted, with its structured values.</summary>
    private sealed class LogLines : ILoggerProvider, ILogger
    {
        private readonly ConcurrentQueue<string> _lines = new();

        public IReadOnlyCollection<string> Lines => _lines;

        public ILogger CreateLogger(string categoryName) => this;

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            _lines.Enqueue(formatter(state, exception) + (exception is null ? "" : " | " + exception.Message));
            if (state is IEnumerable<KeyValuePair<string, object?>> values)
            {
                foreach (var (name, value) in values)
                {
                    _lines.Enqueue($"{name}={value}");
                }
            }
        }

        public void Dispose()
        {
        }
    }
}

public sealed class SqliteKeyLookupTamperingTests(SqliteFixture fixture) : KeyLookupTamperingTests<SqliteFixture>(fixture);

public sealed class PostgresKeyLookupTamperingTests(PostgresFixture fixture) : KeyLookupTamperingTests<PostgresFixture>(fixture);
