using System.Collections.Concurrent;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;

namespace EfEnvelope.Tests.Regression;

/// <summary>Defects found by an independent review, each pinned by the test that first showed it.</summary>
public sealed class ReviewRegressionTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static Guid Seed(InMemoryClinic clinic, string ssn = "111-22-3333", string diagnosis = "flu")
    {
        using var db = clinic.CreateContext();
        var p = new Patient { Id = Guid.NewGuid(), Name = "Ann", Ssn = ssn, Diagnosis = diagnosis, DateOfBirth = new DateOnly(1980, 1, 2) };
        db.Patients.Add(p);
        db.SaveChanges();
        return p.Id;
    }

    [Fact]
    public void Attach_stub_and_edit_plain_property_keeps_encrypted_values()
    {
        using var clinic = new InMemoryClinic();
        var id = Seed(clinic);
        using (var db = clinic.CreateContext())
        {
            var stub = new Patient { Id = id };
            db.Attach(stub);
            stub.Name = "Renamed";
            db.SaveChanges();
        }

        using var check = clinic.CreateContext();
        var p = check.Patients.AsNoTracking().Single(x => x.Id == id);
        Assert.Equal("Renamed", p.Name);
        Assert.Equal("flu", p.Diagnosis);
        Assert.Equal("111-22-3333", p.Ssn);
    }

    [Fact]
    public void Attach_of_no_tracking_instance_without_edits_sends_no_update()
    {
        using var clinic = new InMemoryClinic();
        var id = Seed(clinic);
        using var db = clinic.CreateContext();
        var p = db.Patients.AsNoTracking().Single(x => x.Id == id);
        db.Attach(p);
        Assert.Equal(0, db.SaveChanges());
    }

    [Fact]
    public void Reload_of_tampered_row_throws()
    {
        using var clinic = new InMemoryClinic();
        var a = Seed(clinic, "AAA");
        var b = Seed(clinic, "BBB");
        using var db = clinic.CreateContext();
        var pa = db.Patients.Single(x => x.Id == a);
        using (var cmd = clinic.Connection.CreateCommand())
        {
            cmd.CommandText = "UPDATE Patients SET Ssn = (SELECT Ssn FROM Patients WHERE Id = $b) WHERE Id = $a";
            cmd.Parameters.AddWithValue("$a", a.ToString().ToUpperInvariant());
            cmd.Parameters.AddWithValue("$b", b.ToString().ToUpperInvariant());
            Assert.Equal(1, cmd.ExecuteNonQuery());
        }

        // A fresh read does refuse it:
        using (var other = clinic.CreateContext())
        {
            Assert.ThrowsAny<System.Security.Cryptography.CryptographicException>(() => other.Patients.AsNoTracking().Single(x => x.Id == a));
        }

        db.Entry(pa).Reload();

        // The stale plaintext is not shown as if current, and the record cannot be saved over the bad data.
        Assert.NotEqual("AAA", pa.Ssn);
        pa.Name = "edited after reload";
        Assert.Throws<EnvelopeDecryptionException>(() => db.SaveChanges());
    }

    // ---- search

    private sealed class Search : IDisposable
    {
        public readonly SqliteConnection Connection = new("Data Source=:memory:");
        public readonly InsecureInMemoryMasterKeyProvider Provider = new("primary");
        public readonly byte[] IndexKey;
        public readonly ConcurrentQueue<string> Logs = new();

        public Search()
        {
            Connection.Open();
            IndexKey = BlindIndexKey.CreateAsync(Provider).GetAwaiter().GetResult();
            using var db = Create();
            db.Database.EnsureCreated();
        }

        public SearchContext Create() => new(new DbContextOptionsBuilder<SearchContext>()
            .UseSqlite(Connection)
            .ManyConfigurationsPerProcess()
            .EnableSensitiveDataLogging()
            .LogTo(m => Logs.Enqueue(m), LogLevel.Trace)
            .UseEnvelopeEncryption(e => e.UseProvider(Provider).UseBlindIndexKey(IndexKey)).Options);

        public void Dispose() => Connection.Dispose();
    }

    [Fact]
    public void A_truncated_index_with_Take_or_in_a_subquery_is_refused_rather_than_answered_wrongly()
    {
        using var s = new Search();
        using var reader = s.Create();
        var city = "city-3";

        #pragma warning disable EFENV008 // The analyzer warns at compile time about what this test expects to be refused at run time.
        var take = Assert.Throws<InvalidOperationException>(() => reader.People.Where(p => p.City == city).Take(1).ToList());
        var subquery = Assert.Throws<InvalidOperationException>(() => reader.People.Where(p => reader.People.Where(q => q.City == city).Any()).ToList());
        var projection = Assert.Throws<InvalidOperationException>(() => reader.People.Where(p => p.City == city).Select(p => p.Name).ToList());
        #pragma warning restore EFENV008

        Assert.All(new[] { take, subquery, projection }, e => Assert.Contains("'", e.Message, StringComparison.Ordinal));
        Assert.Contains("Person.City", take.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Inline_array_contains_keeps_plaintext_out_of_logs()
    {
        using var s = new Search();
        using (var db = s.Create())
        {
            db.People.Add(new Person { Name = "x", Ssn = "SECRET-SSN-987" });
            db.SaveChanges();
        }

        s.Logs.Clear();
        using var reader = s.Create();
        var found = reader.People.Where(p => new[] { "SECRET-SSN-987", "OTHER-SSN-111" }.Contains(p.Ssn)).ToList();
        Assert.Single(found);
        var leaks = s.Logs.Where(l => l.Contains("SECRET-SSN-987")).ToList();
        Assert.True(leaks.Count == 0, string.Join("\n----\n", leaks));
    }

    [Fact]
    public void Equality_constant_keeps_plaintext_out_of_logs()
    {
        using var s = new Search();
        using (var db = s.Create())
        {
            db.People.Add(new Person { Name = "x", Ssn = "SECRET-SSN-987" });
            db.SaveChanges();
        }

        s.Logs.Clear();
        using var reader = s.Create();
        var found = reader.People.Where(p => p.Ssn == "SECRET-SSN-987").ToList();
        Assert.Single(found);
        var leaks = s.Logs.Where(l => l.Contains("SECRET-SSN-987")).ToList();
        Assert.True(leaks.Count == 0, string.Join("\n----\n", leaks));
    }

    // ---- single flight

    private sealed class SlowProvider(IMasterKeyProvider inner) : IMasterKeyProvider
    {
        public string Name => inner.Name;
        public string PrimaryKeyId => inner.PrimaryKeyId;
        public bool IsKeyConfigured(string keyId) => inner.IsKeyConfigured(keyId);
        public Task<GeneratedDataKey> GenerateDataKeyAsync(string keyId, KeyContext context, CancellationToken ct) => inner.GenerateDataKeyAsync(keyId, context, ct);
        public async Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrapped, KeyContext context, CancellationToken ct)
        {
            await Task.Delay(500, ct);
            return await inner.DecryptDataKeyAsync(keyId, wrapped, context, ct);
        }
    }

    [Fact]
    public async Task Cancelling_one_reader_does_not_fail_another_waiting_for_the_same_key()
    {
        var file = Path.Combine(Path.GetTempPath(), Guid.NewGuid() + ".db");
        var provider = new InsecureInMemoryMasterKeyProvider("primary");
        ClinicContext Ctx(IMasterKeyProvider p) => new(new DbContextOptionsBuilder<ClinicContext>().UseSqlite("Data Source=" + file).ManyConfigurationsPerProcess().UseEnvelopeEncryption(e => e.UseProvider(p)).Options);
        Guid id;
        using (var w = Ctx(provider))
        {
            w.Database.EnsureCreated();
            var pat = new Patient { Id = Guid.NewGuid(), Ssn = "x" };
            w.Patients.Add(pat);
            w.SaveChanges();
            id = pat.Id;
        }

        var slow = new SlowProvider(provider);
        using var cts = new CancellationTokenSource();
        using var db1 = Ctx(slow);
        using var db2 = Ctx(slow);
        Assert.Equal(0, db1.Visits.Count());
        Assert.Equal(0, db2.Visits.Count());
        cts.CancelAfter(200);
        var first = db1.Patients.AsNoTracking().Where(p => p.Id == id).ToListAsync(cts.Token);
        await Task.Delay(50, Ct);
        var second = db2.Patients.AsNoTracking().Where(p => p.Id == id).ToListAsync(Ct);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => first);
        var ex = await Record.ExceptionAsync(() => second);
        Assert.Null(ex);
    }

    [Fact]
    public void An_inline_array_in_Contains_stays_out_of_logs_without_sensitive_logging()
    {
        var logs = new ConcurrentQueue<string>();
        using var s = new Search();
        using (var db = s.Create())
        {
            db.People.Add(new Person { Name = "x", Ssn = "SECRET-SSN-987" });
            db.SaveChanges();
        }

        using var reader = new SearchContext(new DbContextOptionsBuilder<SearchContext>()
            .UseSqlite(s.Connection).ManyConfigurationsPerProcess()
            .LogTo(m => logs.Enqueue(m), LogLevel.Debug)
            .UseEnvelopeEncryption(e => e.UseProvider(s.Provider).UseBlindIndexKey(s.IndexKey)).Options);
        var found = reader.People.Where(p => new[] { "SECRET-SSN-987" }.Contains(p.Ssn)).ToList();
        Assert.Single(found);
        var leaks = logs.Where(l => l.Contains("SECRET-SSN-987")).ToList();
        Assert.True(leaks.Count == 0, string.Join("\n----\n", leaks));
    }

    [Fact]
    public void A_join_on_a_truncated_index_is_refused()
    {
        using var s = new Search();
        using var reader = s.Create();

        #pragma warning disable EFENV008 // The analyzer warns at compile time about what this test expects to be refused at run time.
        var error = Assert.Throws<InvalidOperationException>(() => (from a in reader.People join b in reader.People on a.City equals b.City select new { a, b }).ToList());
        #pragma warning restore EFENV008

        Assert.Contains("truncated", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_async_search_on_a_cold_cache_never_blocks_on_the_provider()
    {
        using var s = new Search();
        using (var db = s.Create())
        {
            db.People.Add(new Person { Name = "x", Ssn = "S1" });
            db.SaveChanges();
        }

        // Another configuration (cold cache), async only.
        using var reader = new SearchContext(new DbContextOptionsBuilder<SearchContext>()
            .UseSqlite(s.Connection).ManyConfigurationsPerProcess()
            .UseEnvelopeEncryption(e => e.UseProvider(s.Provider).UseBlindIndexKey(s.IndexKey).UseApplicationName("efenvelope")).Options);
        var found = await reader.People.Where(p => p.Ssn == "S1").ToListAsync(Ct);
        Assert.Single(found);
        Assert.Equal(0, reader.GetEnvelopeKeyCacheStatistics().SynchronousMisses);
    }

    [Fact]
    public void Saved_blind_index_properties_hold_no_plaintext_in_the_change_tracker()
    {
        using var s = new Search();
        using var db = s.Create();
        db.People.Add(new Person { Name = "x", Ssn = "SECRET-SSN-555" });
        db.SaveChanges();
        var view = db.ChangeTracker.DebugView.LongView;
        Assert.DoesNotContain("SECRET-SSN-555", view);
        Assert.Equal("SECRET-SSN-555", db.People.Local.Single().Ssn);
    }

    [Fact]
    public void Reverting_an_edit_after_a_failed_save_writes_the_original_value()
    {
        using var clinic = new InMemoryClinic();
        var id = Seed(clinic, "ORIGINAL");
        var other = Seed(clinic, "OTHER");
        using (var db = clinic.CreateContext())
        {
            var p = db.Patients.Single(x => x.Id == id);
            p.Ssn = "EDITED";
            var dup = new Patient { Id = other, Ssn = "dup" }; // primary key clash: the save fails in the database
            db.Patients.Add(dup);
            Assert.ThrowsAny<DbUpdateException>(() => db.SaveChanges());
            db.Entry(dup).State = EntityState.Detached;
            p.Ssn = "ORIGINAL"; // the user gives up the edit
            db.SaveChanges();
        }

        using var check = clinic.CreateContext();
        Assert.Equal("ORIGINAL", check.Patients.AsNoTracking().Single(x => x.Id == id).Ssn);
    }

    [Fact]
    public void Save_and_update_with_sensitive_logging_keep_plaintext_out_of_logs()
    {
        using var s = new Search();
        s.Logs.Clear();
        using var db = s.Create();
        var person = new Person { Name = "x", Ssn = "SECRET-SSN-321", Email = "secret@mail" };
        db.People.Add(person);
        db.SaveChanges();
        person.Ssn = "SECRET-SSN-654";
        db.SaveChanges();
        db.People.Remove(person);
        db.SaveChanges();
        var leaks = s.Logs.Where(l => l.Contains("SECRET-SSN") || l.Contains("secret@mail")).ToList();
        Assert.True(leaks.Count == 0, string.Join("\n----\n", leaks));
    }
}
