using EfEnvelope.Crypto;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace EfEnvelope.Tests.KeyManagement;

public sealed class KeyCacheTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static Patient NewPatient(int i) => new() { Id = Guid.NewGuid(), Name = "P" + i, Ssn = $"000-00-{i:0000}", DateOfBirth = new DateOnly(1990, 1, 1) };

    [Fact]
    public async Task Ten_thousand_inserts_cost_one_key_generation_and_a_cold_read_one_unwrap()
    {
        var provider = new InsecureInMemoryMasterKeyProvider("primary");
        using var clinic = new InMemoryClinic(provider);
        await using (var db = clinic.CreateContext())
        {
            db.Visits.AddRange(Enumerable.Range(0, 10_000).Select(i => new Visit { PatientId = Guid.Empty, Notes = "note " + i }));
            db.Database.ExecuteSql($"PRAGMA foreign_keys = OFF");
            await db.SaveChangesAsync(Ct);
        }

        Assert.Equal(1, provider.GenerateDataKeyCalls);

        // A new configuration (new application-level cache) reading everything back: one unwrap for all rows.
        await using var cold = clinic.CreateContext(e => e.UseProvider(provider).UseProviderTimeout(TimeSpan.FromSeconds(29)));
        var notes = await cold.Visits.AsNoTracking().Select(v => v.Notes).ToListAsync(Ct);

        Assert.Equal(10_000, notes.Count);
        Assert.Equal(1, provider.DecryptDataKeyCalls);
        Assert.Equal(0, cold.GetEnvelopeKeyCacheStatistics().SynchronousMisses);
    }

    [Fact]
    public async Task In_direct_mode_rows_written_or_read_before_cost_no_provider_call_up_to_MaxDataKeys_and_one_call_per_row_past_it()
    {
        var provider = new InsecureInMemoryMasterKeyProvider("primary");
        using var clinic = new InMemoryClinic(provider, e => e.UseProvider(provider).UseKeyWrappingMode(KeyWrappingMode.Direct));
        await using (var db = clinic.CreateContext())
        {
            db.Visits.AddRange(Enumerable.Range(0, 3_000).Select(i => new Visit { PatientId = Guid.Empty, Notes = "note " + i }));
            db.Database.ExecuteSql($"PRAGMA foreign_keys = OFF");
            await db.SaveChangesAsync(Ct);
        }

        // A working set of 3,000 rows, above the 1,000 key-encryption keys MaxEntries holds: the data keys have their
        // own bound, so the second read is served from the cache.
        async Task<long> CallsToReadAllAsync(Action<KeyCacheOptions>? cache)
        {
            await using var db = cache is null ? clinic.CreateContext() : clinic.CreateContext(e => e.UseProvider(provider).UseKeyWrappingMode(KeyWrappingMode.Direct).ConfigureKeyCache(cache));
            var before = provider.DecryptDataKeyCalls;
            Assert.Equal(3_000, (await db.Visits.AsNoTracking().Select(v => v.Notes).ToListAsync(Ct)).Count);
            return provider.DecryptDataKeyCalls - before;
        }

        // The configuration that wrote the rows holds their data keys already.
        Assert.Equal(0, await CallsToReadAllAsync(cache: null));

        // Another configuration (another cache, as in another process) unwraps each record once.
        Assert.Equal(3_000, await CallsToReadAllAsync(c => c.MaxDataKeys = 5_000));
        Assert.Equal(0, await CallsToReadAllAsync(c => c.MaxDataKeys = 5_000));

        // Past the bound the least recently used keys go, and their rows ask the provider again.
        Assert.True(await CallsToReadAllAsync(c => c.MaxDataKeys = 1_000) >= 3_000);
        Assert.True(await CallsToReadAllAsync(c => c.MaxDataKeys = 1_000) >= 2_000);
    }

    [Fact]
    public async Task An_expired_write_key_is_replaced_after_its_time_to_live()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var provider = new InsecureInMemoryMasterKeyProvider("primary");
        using var clinic = new InMemoryClinic(provider, e => e.UseProvider(provider).UseTimeProvider(time).ConfigureKeyCache(c => c.TimeToLive = TimeSpan.FromMinutes(1)));

        await using (var db = clinic.CreateContext())
        {
            db.Patients.Add(NewPatient(1));
            db.Patients.Add(NewPatient(2));
            await db.SaveChangesAsync(Ct);
            time.Advance(TimeSpan.FromSeconds(59));
            db.Patients.Add(NewPatient(3));
            await db.SaveChangesAsync(Ct);
            Assert.Equal(1, provider.GenerateDataKeyCalls);

            time.Advance(TimeSpan.FromSeconds(2));
            db.Patients.Add(NewPatient(4));
            await db.SaveChangesAsync(Ct);
        }

        Assert.Equal(2, provider.GenerateDataKeyCalls);
    }

    [Fact]
    public async Task An_expired_read_key_is_asked_for_again_and_a_disabled_master_key_then_refuses()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var provider = new InsecureInMemoryMasterKeyProvider("primary");
        using var clinic = new InMemoryClinic(provider, e => e.UseProvider(provider).UseTimeProvider(time).ConfigureKeyCache(c => c.TimeToLive = TimeSpan.FromMinutes(5)));
        var patient = NewPatient(1);
        await using (var db = clinic.CreateContext())
        {
            db.Patients.Add(patient);
            await db.SaveChangesAsync(Ct);
        }

        provider.DisableKey("primary");
        await using (var db = clinic.CreateContext())
        {
            // Within the time to live, cached keys keep working: the documented bound on revocation.
            Assert.Equal(patient.Ssn, (await db.Patients.SingleAsync(Ct)).Ssn);
        }

        time.Advance(TimeSpan.FromMinutes(6));
        await using (var db = clinic.CreateContext())
        {
            var error = await Assert.ThrowsAsync<MasterKeyAccessRevokedException>(() => db.Patients.ToListAsync(Ct));
            Assert.Contains("primary", error.Message, StringComparison.Ordinal);
        }

        provider.EnableKey("primary");
        await using (var db = clinic.CreateContext())
        {
            Assert.Equal(patient.Ssn, (await db.Patients.SingleAsync(Ct)).Ssn);
        }
    }

    [Fact]
    public async Task A_write_key_wraps_at_most_its_configured_number_of_data_keys()
    {
        var provider = new InsecureInMemoryMasterKeyProvider("primary");
        using var clinic = new InMemoryClinic(provider, e => e.UseProvider(provider).ConfigureKeyCache(c => c.MaxEncryptionUses = 10));

        await using (var db = clinic.CreateContext())
        {
            db.Patients.AddRange(Enumerable.Range(0, 25).Select(NewPatient));
            await db.SaveChangesAsync(Ct);
        }

        Assert.Equal(3, provider.GenerateDataKeyCalls);
        await using var reader = clinic.CreateContext();
        Assert.Equal(25, (await reader.Patients.ToListAsync(Ct)).Select(p => p.Ssn).Distinct().Count());
    }

    [Fact]
    public async Task The_cache_holds_at_most_its_configured_number_of_keys()
    {
        var provider = new InsecureInMemoryMasterKeyProvider("primary");
        using var clinic = new InMemoryClinic(provider, e => e.UseProvider(provider).ConfigureKeyCache(c => { c.MaxEntries = 5; c.MaxEncryptionUses = 1; }));

        // One write key per record: 40 distinct keys pass through a cache of 5.
        await using (var db = clinic.CreateContext())
        {
            db.Patients.AddRange(Enumerable.Range(0, 40).Select(NewPatient));
            await db.SaveChangesAsync(Ct);
        }

        await using var reader = clinic.CreateContext();
        Assert.Equal(40, (await reader.Patients.ToListAsync(Ct)).Count);

        // MemoryCache compacts on a background thread: give it a moment, then the bound holds.
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (reader.GetEnvelopeKeyCacheStatistics().CachedKeys > 5 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, Ct);
        }

        Assert.InRange(reader.GetEnvelopeKeyCacheStatistics().CachedKeys, 0, 5);
    }

    [Fact]
    public void An_evicted_key_is_zeroed_once_its_last_reader_releases_it()
    {
        var key = new CachedKey(KeySlot.ForKek("Entity", [1, 2, 3]), "primary", Enumerable.Repeat((byte)0xAB, 32).ToArray(), DateTimeOffset.MaxValue, 0);
        Assert.True(key.TryAcquire());
        var cipher = key.RentCipher();

        key.Evict();

        // The reader still holding it can finish its work with intact key material.
        Assert.False(key.IsZeroed);
        Assert.False(key.TryAcquire());
        Span<byte> tag = stackalloc byte[16];
        cipher.Encrypt(new byte[12], new byte[4], new byte[4], tag);
        key.ReturnCipher(cipher);

        key.Release();

        Assert.True(key.IsZeroed);
        Assert.True(key.IsDisposed);
    }

    [Fact]
    public void Leases_and_eviction_racing_on_many_threads_never_zero_a_key_in_use()
    {
        for (var round = 0; round < 200; round++)
        {
            var key = new CachedKey(KeySlot.ForKek("Entity", [1]), "primary", Enumerable.Repeat((byte)0x5A, 32).ToArray(), DateTimeOffset.MaxValue, 0);
            var failures = 0;
            Parallel.For(0, 8, i =>
            {
                if (i == 0)
                {
                    key.Evict();
                    return;
                }

                if (key.TryAcquire())
                {
                    if (key.IsZeroed)
                    {
                        Interlocked.Increment(ref failures);
                    }

                    key.Release();
                }
            });

            Assert.Equal(0, failures);
            Assert.True(key.IsZeroed);
        }
    }

    [Fact]
    public async Task Parallel_cold_reads_of_one_key_share_a_single_provider_call()
    {
        var provider = new InsecureInMemoryMasterKeyProvider("primary");
        var gateway = new ProviderGateway(provider, TimeSpan.FromSeconds(5), NullLogger.Instance);
        using var cache = new KeyCache(gateway, new KeyCacheOptions(), TimeProvider.System, "app");
        using var generated = await provider.GenerateDataKeyAsync("primary", KeyContext.For("app", "Entity"), Ct);
        var tail = EnvelopeFormat.BuildTail(provider.Name, "primary", "Entity", generated.WrappedKey);
        var blobBytes = new byte[EnvelopeFormat.TailOffset + tail.Length + EnvelopeFormat.WrappedDekSize];
        blobBytes[0] = 1;
        blobBytes[1] = 1;
        tail.CopyTo(blobBytes, EnvelopeFormat.TailOffset);
        Assert.True(WrappedKeyBlob.TryParse(blobBytes, out var blob, out _));

        var keys = await Task.WhenAll(Enumerable.Range(0, 16).Select(_ => Task.Run(() => cache.GetAsync("Entity", blob, null, Ct), Ct)));

        Assert.Equal(1, provider.DecryptDataKeyCalls);
        Assert.All(keys, k => Assert.Same(keys[0], k));
        Assert.Equal(1, cache.Misses);
        foreach (var key in keys)
        {
            key.Release();
        }
    }

    [Fact]
    public async Task A_synchronous_cold_read_works_and_is_counted_while_an_async_one_never_blocks()
    {
        var provider = new InsecureInMemoryMasterKeyProvider("primary");
        using var clinic = new InMemoryClinic(provider);
        await using (var db = clinic.CreateContext())
        {
            db.Patients.AddRange(Enumerable.Range(0, 3).Select(NewPatient));
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = clinic.CreateContext(e => e.UseProvider(provider).UseApplicationName("efenvelope").UseProviderTimeout(TimeSpan.FromSeconds(28))))
        {
            Assert.Equal(3, db.Patients.ToList().Count);
            Assert.Equal(1, db.GetEnvelopeKeyCacheStatistics().SynchronousMisses);
        }

        await using (var db = clinic.CreateContext(e => e.UseProvider(provider).UseProviderTimeout(TimeSpan.FromSeconds(27))))
        {
            Assert.Equal(3, (await db.Patients.ToListAsync(Ct)).Count);
            var statistics = db.GetEnvelopeKeyCacheStatistics();
            Assert.Equal(0, statistics.SynchronousMisses);
            Assert.Equal(1, statistics.Misses);
            Assert.True(statistics.Hits >= 3);
        }
    }

    [Fact]
    public async Task Warming_up_fills_the_cache_so_synchronous_paths_never_miss()
    {
        var provider = new InsecureInMemoryMasterKeyProvider("primary");
        using var clinic = new InMemoryClinic(provider);
        await using (var db = clinic.CreateContext())
        {
            var patients = Enumerable.Range(0, 3).Select(NewPatient).ToList();
            patients[0].HomeAddress = new Address { City = "C", Street = "S" };
            db.Patients.AddRange(patients);
            await db.SaveChangesAsync(Ct);
        }

        await using var warm = clinic.CreateContext(e => e.UseProvider(provider).UseProviderTimeout(TimeSpan.FromSeconds(26)));
        await warm.WarmUpEnvelopeKeysAsync(cancellationToken: Ct);
        var afterWarmUp = warm.GetEnvelopeKeyCacheStatistics();

        Assert.Equal(3, warm.Patients.ToList().Count);
        warm.Invoices.Add(new Invoice { CardNumber = "4111", Amount = 1 });
        warm.SaveChanges();

        var after = warm.GetEnvelopeKeyCacheStatistics();
        Assert.Equal(0, after.SynchronousMisses);
        Assert.Equal(afterWarmUp.Misses, after.Misses);
    }

    [Fact]
    public async Task An_idle_cache_zeroes_expired_keys_on_time()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var provider = new InsecureInMemoryMasterKeyProvider("primary");
        var gateway = new ProviderGateway(provider, TimeSpan.FromSeconds(5), NullLogger.Instance);
        using var cache = new KeyCache(gateway, new KeyCacheOptions { TimeToLive = TimeSpan.FromSeconds(30) }, time, "app");
        var (key, records) = Assert.Single(await cache.ReserveWriteKeysAsync("Entity", "primary", 1, Ct));
        key.Release();

        time.Advance(TimeSpan.FromSeconds(29));
        Assert.False(key.IsZeroed);

        // Nothing uses the cache after this: only its own sweep can notice that the key expired.
        time.Advance(TimeSpan.FromSeconds(31));

        Assert.Equal(1, records);
        Assert.True(key.IsZeroed);
    }

    [Fact]
    public async Task A_cleared_read_key_cannot_be_used_as_a_hint_once_Clear_returns()
    {
        // MemoryCache runs eviction callbacks on the thread pool after Compact returns. A key a reader or a tracked
        // record still holds as its hint must nevertheless be unusable as soon as Clear (ClearEnvelopeKeyCache)
        // returns, or the next save skips the provider, and a master key disabled meanwhile is not noticed.
        var provider = new InsecureInMemoryMasterKeyProvider("primary");
        var gateway = new ProviderGateway(provider, TimeSpan.FromSeconds(5), NullLogger.Instance);
        using var cache = new KeyCache(gateway, new KeyCacheOptions(), TimeProvider.System, "app");
        for (var round = 0; round < 50; round++)
        {
            var (writeKey, _) = Assert.Single(await cache.ReserveWriteKeysAsync("Entity", "primary", 1, Ct));
            var bytes = new byte[EnvelopeFormat.TailOffset + writeKey.Tail.Length + EnvelopeFormat.WrappedDekSize];
            bytes[0] = EnvelopeFormat.Version;
            bytes[1] = EnvelopeFormat.ModeCachedKek;
            writeKey.Tail.CopyTo(bytes, EnvelopeFormat.TailOffset);
            writeKey.Release();
            Assert.True(WrappedKeyBlob.TryParse(bytes, out var blob, out _));
            cache.Clear();

            var hint = await cache.GetAsync("Entity", blob, null, Ct);
            hint.Release();
            cache.Clear();

            Assert.False(cache.TryGet("Entity", blob, hint, out _), $"round {round}: the cleared key was used");
        }
    }
}
