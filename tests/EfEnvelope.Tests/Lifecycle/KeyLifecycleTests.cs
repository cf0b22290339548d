using System.Data.Common;
using System.Text;
using EfEnvelope.KeyManagement;
using EfEnvelope.Lifecycle;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace EfEnvelope.Tests.Lifecycle;

/// <summary>Rotation, re-encryption, resumption, concurrency, revocation and crypto-shredding on a real database.</summary>
public abstract class KeyLifecycleTests<TFixture> : IAsyncLifetime
    where TFixture : DatabaseFixture, new()
{
    private const int Members = 60;

    protected LifecycleDatabase<TFixture> Database { get; } = new();

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        if (Database.SkipReason is null)
        {
            await using var db = Database.Create(e => e.UseProvider(new InsecureInMemoryMasterKeyProvider()));
            await db.Database.EnsureDeletedAsync(Ct);
            await db.Database.EnsureCreatedAsync(Ct);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Database.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    private void SkipIfUnavailable()
    {
        if (Database.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }
    }

    private static string Ssn(int i) => $"SSN-{i:D4}-{(i * 7919) % 10000:D4}";

    private static string Street(int i) => $"{i} Lifecycle Lane";

    private async Task<List<Guid>> SeedAsync(Action<EnvelopeEncryptionOptionsBuilder> configure, int count = Members, Func<int, string>? subject = null)
    {
        var ids = new List<Guid>();
        await using var db = Database.Create(configure);
        for (var i = 0; i < count; i++)
        {
            var member = new Member
            {
                Id = Guid.NewGuid(),
                Subject = subject?.Invoke(i) ?? "s" + (i % 3),
                Ssn = Ssn(i),
                Notes = i % 5 == 0 ? null : "note " + i,
                Address = i % 4 == 0 ? null : new MemberAddress { Street = Street(i) },
            };
            ids.Add(member.Id);
            db.Members.Add(member);
            db.Claims.Add(new Claim { Amount = 10.5m + i });
        }

        await db.SaveChangesAsync(Ct);
        return ids;
    }

    /// <summary>Reads every member and claim and checks each value against what was written.</summary>
    private async Task AssertAllReadAsync(Action<EnvelopeEncryptionOptionsBuilder> configure, int count = Members, IDictionary<Guid, string>? ssnOverrides = null)
    {
        await using var db = Database.Create(configure);
        db.ClearEnvelopeKeyCache();
        var members = await db.Members.AsNoTracking().ToListAsync(Ct);
        Assert.Equal(count, members.Count);
        foreach (var member in members)
        {
            var i = int.Parse(member.Ssn.Split('-')[1], System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(ssnOverrides is not null && ssnOverrides.TryGetValue(member.Id, out var ssn) ? ssn : Ssn(i), member.Ssn);
            Assert.Equal(i % 5 == 0 ? null : "note " + i, member.Notes);
            Assert.Equal(i % 4 == 0 ? null : Street(i), member.Address?.Street);
        }

        var amounts = (await db.Claims.AsNoTracking().Select(c => c.Id).ToListAsync(Ct)).Count;
        Assert.Equal(count, amounts);
        var claims = await db.Claims.AsNoTracking().ToListAsync(Ct);
        Assert.Equal(Enumerable.Range(0, count).Select(i => 10.5m + i).Order(), claims.Select(c => c.Amount).Order());
    }

    /// <summary>Raw column values of a table, keyed by column name, read without EF (what is stored).</summary>
    private async Task<List<Dictionary<string, object?>>> RawRowsAsync(string table)
    {
        await using var db = Database.Create(e => e.UseProvider(new InsecureInMemoryMasterKeyProvider()));
        var connection = db.Database.GetDbConnection();
        await connection.OpenAsync(Ct);
        await using var command = connection.CreateCommand();
        command.CommandText = $"SELECT * FROM \"{table}\"";
        await using var reader = await command.ExecuteReaderAsync(Ct);
        var rows = new List<Dictionary<string, object?>>();
        while (await reader.ReadAsync(Ct))
        {
            var row = new Dictionary<string, object?>();
            for (var i = 0; i < reader.FieldCount; i++)
            {
                row[reader.GetName(i)] = await reader.IsDBNullAsync(i, Ct) ? null : reader.GetValue(i);
            }

            rows.Add(row);
        }

        return rows;
    }

    private static string KeyIdOf(byte[] blob)
    {
        // Layout in docs/FORMAT.md: version, mode, record id (16), provider name (length-prefixed), key id (uint16 length).
        var position = 18 + 1 + blob[18];
        var length = (blob[position] << 8) | blob[position + 1];
        return Encoding.UTF8.GetString(blob, position + 2, length);
    }

    private static string KekOf(byte[] blob) => Convert.ToHexString(blob[18..KeyBlobLayout.HeaderEnd(blob)]);

    private static byte[] RecordIdOf(byte[] blob) => blob[2..18];

    private static IEnumerable<byte[]> Blobs(IEnumerable<Dictionary<string, object?>> rows, string column) =>
        rows.Select(r => r[column]).OfType<byte[]>();

    [Fact]
    public async Task Rotation_rewraps_every_data_key_under_the_new_primary_without_touching_field_ciphertext()
    {
        SkipIfUnavailable();
        var provider = new InsecureInMemoryMasterKeyProvider("old-key");
        // Small KEK budget: 60 members, 45 addresses and 60 claims are spread over several KEKs per entity type.
        Action<EnvelopeEncryptionOptionsBuilder> configure = e => e.UseProvider(provider).ConfigureKeyCache(c => c.MaxEncryptionUses = 10);
        await SeedAsync(configure);
        var before = await RawRowsAsync("Members");
        var claimsBefore = await RawRowsAsync("Claims");
        var distinctKeks = before.SelectMany(r => new[] { r["EfEnvelopeKey"], r["Address_EfEnvelopeKey"] }).Concat(claimsBefore.Select(r => r["EfEnvelopeKey"]))
            .OfType<byte[]>().Select(b => Convert.ToHexString(b[18..KeyBlobLayout.HeaderEnd(b)])).Distinct().Count();

        provider.AddKey("new-key");
        provider.SetPrimaryKey("new-key");
        await using (var db = Database.Create(configure))
        {
            db.ClearEnvelopeKeyCache();
            var (generate, decrypt) = (provider.GenerateDataKeyCalls, provider.DecryptDataKeyCalls);
            var progress = new ProgressLog();
            var result = await EnvelopeKeyLifecycle.RotateAsync(db, new LifecycleOptions { BatchSize = 25 }, progress, Ct);

            Assert.True(result.Succeeded, string.Join("; ", result.Failures));
            Assert.Equal(Members + 45 + Members, result.RecordsChanged);
            Assert.Equal(2 * Members, result.RowsExamined);
            // One unwrap per stored KEK and one new KEK per (entity type, 10 records), never one call per row.
            Assert.Equal(distinctKeks, provider.DecryptDataKeyCalls - decrypt);
            Assert.Equal(6 + 5 + 6, provider.GenerateDataKeyCalls - generate);
            Assert.Equal([25, 50, 60, 85, 110, 120], progress.Reports.Select(p => p.RowsDone));
            Assert.All(progress.Reports, p => Assert.Equal(2 * Members, p.RowsTotal));
        }

        var after = await RawRowsAsync("Members");
        foreach (var row in after)
        {
            var old = before.Single(b => Equals(b["Id"], row["Id"]));
            Assert.Equal("new-key", KeyIdOf((byte[])row["EfEnvelopeKey"]!));
            Assert.Equal(RecordIdOf((byte[])old["EfEnvelopeKey"]!), RecordIdOf((byte[])row["EfEnvelopeKey"]!));
            // The record seal does not cover the wrapped key: rewrapping keeps the trailer as it was, and it still verifies.
            var (oldKey, newKey) = ((byte[])old["EfEnvelopeKey"]!, (byte[])row["EfEnvelopeKey"]!);
            Assert.Equal(oldKey[KeyBlobLayout.TrailerStart(oldKey)..], newKey[KeyBlobLayout.TrailerStart(newKey)..]);
            Assert.Equal(old["Ssn"], row["Ssn"]);
            Assert.Equal(old["Notes"], row["Notes"]);
            Assert.Equal(old["Address_Street"], row["Address_Street"]);
            if (row["Address_EfEnvelopeKey"] is byte[] addressKey)
            {
                Assert.Equal("new-key", KeyIdOf(addressKey));
            }
        }

        Assert.All(Blobs(await RawRowsAsync("Claims"), "EfEnvelopeKey"), b => Assert.Equal("new-key", KeyIdOf(b)));

        // The old key can go: every row reads under the new one alone.
        provider.DisableKey("old-key");
        await AssertAllReadAsync(configure);
        await using (var db = Database.Create(configure))
        {
            var verification = await EnvelopeKeyLifecycle.VerifyAsync(db, cancellationToken: Ct);
            Assert.True(verification.Succeeded, string.Join("; ", verification.Failures));
            Assert.Equal(2 * Members, verification.RowsExamined);

            // Idempotent: a second run finds nothing to do and asks the provider for nothing new.
            var generate = provider.GenerateDataKeyCalls;
            var again = await EnvelopeKeyLifecycle.RotateAsync(db, cancellationToken: Ct);
            Assert.Equal(0, again.RecordsChanged);
            Assert.Equal(Members + 45 + Members, again.RecordsAlreadyDone);
            Assert.Equal(generate, provider.GenerateDataKeyCalls);
        }
    }

    [Fact]
    public async Task Reencryption_gives_every_record_a_new_data_key_and_new_ciphertext()
    {
        SkipIfUnavailable();
        var provider = new InsecureInMemoryMasterKeyProvider();
        Action<EnvelopeEncryptionOptionsBuilder> configure = e => e.UseProvider(provider);
        await SeedAsync(configure);
        var before = await RawRowsAsync("Members");

        await using (var db = Database.Create(configure))
        {
            var result = await EnvelopeKeyLifecycle.ReencryptAsync(db, new LifecycleOptions { BatchSize = 16, VerifyAfterwards = true }, cancellationToken: Ct);
            Assert.True(result.Succeeded, string.Join("; ", result.Failures));
            Assert.Equal(Members + 45 + Members, result.RecordsChanged);
            Assert.NotNull(result.Verification);
            Assert.Equal(2 * Members, result.Verification.RowsExamined);
        }

        var after = await RawRowsAsync("Members");
        var oldKeks = before.Select(r => KekOf((byte[])r["EfEnvelopeKey"]!)).ToHashSet();
        foreach (var row in after)
        {
            var old = before.Single(b => Equals(b["Id"], row["Id"]));
            var key = (byte[])row["EfEnvelopeKey"]!;
            Assert.NotEqual(RecordIdOf((byte[])old["EfEnvelopeKey"]!), RecordIdOf(key));
            Assert.DoesNotContain(KekOf(key), oldKeks);
            Assert.NotEqual(old["Ssn"], row["Ssn"]);
            Assert.Equal(old["Notes"] is null, row["Notes"] is null);
            if (old["Notes"] is not null)
            {
                Assert.NotEqual(old["Notes"], row["Notes"]);
            }

            if (old["Address_EfEnvelopeKey"] is byte[] addressKey)
            {
                Assert.NotEqual(RecordIdOf(addressKey), RecordIdOf((byte[])row["Address_EfEnvelopeKey"]!));
                Assert.NotEqual(old["Address_Street"], row["Address_Street"]);
            }
        }

        await AssertAllReadAsync(configure);
    }

    [Fact]
    public async Task A_cancelled_rotation_started_again_finishes_without_redoing_finished_rows()
    {
        SkipIfUnavailable();
        var provider = new InsecureInMemoryMasterKeyProvider("old-key");
        Action<EnvelopeEncryptionOptionsBuilder> configure = e => e.UseProvider(provider);
        await SeedAsync(configure);
        provider.AddKey("new-key");
        provider.SetPrimaryKey("new-key");

        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var progress = new ProgressLog(p =>
        {
            if (p.Batches == 2)
            {
                cancel.Cancel();
            }
        });
        await using (var db = Database.Create(configure))
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => EnvelopeKeyLifecycle.RotateAsync(db, new LifecycleOptions { BatchSize = 10 }, progress, cancel.Token));
        }

        var rotatedFirst = (await RawRowsAsync("Claims")).Concat(await RawRowsAsync("Members"))
            .Where(r => KeyIdOf((byte[])r["EfEnvelopeKey"]!) == "new-key").ToList();
        Assert.Equal(20, rotatedFirst.Count);
        var firstBlobs = rotatedFirst.Select(r => Convert.ToHexString((byte[])r["EfEnvelopeKey"]!)).ToHashSet();

        // Started again from scratch: finished rows are recognised and left alone.
        await using (var db = Database.Create(configure))
        {
            var result = await EnvelopeKeyLifecycle.RotateAsync(db, new LifecycleOptions { BatchSize = 10 }, cancellationToken: Ct);
            Assert.True(result.Succeeded);
            Assert.Equal(2 * Members - 20, result.RecordsChanged - (await RawRowsAsync("Members")).Count(r => r["Address_EfEnvelopeKey"] is not null));
        }

        var all = (await RawRowsAsync("Claims")).Concat(await RawRowsAsync("Members")).ToList();
        Assert.All(all, r => Assert.Equal("new-key", KeyIdOf((byte[])r["EfEnvelopeKey"]!)));
        Assert.Equal(20, all.Count(r => firstBlobs.Contains(Convert.ToHexString((byte[])r["EfEnvelopeKey"]!))));
        provider.DisableKey("old-key");
        await AssertAllReadAsync(configure);
    }

    [Fact]
    public async Task A_cancelled_reencryption_resumed_from_its_checkpoint_does_not_redo_finished_rows()
    {
        SkipIfUnavailable();
        var provider = new InsecureInMemoryMasterKeyProvider();
        Action<EnvelopeEncryptionOptionsBuilder> configure = e => e.UseProvider(provider);
        await SeedAsync(configure);
        var original = (await RawRowsAsync("Claims")).ToDictionary(r => Convert.ToInt64(r["Id"], System.Globalization.CultureInfo.InvariantCulture), r => (byte[])r["EfEnvelopeKey"]!);

        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        string? checkpoint = null;
        var progress = new ProgressLog(p =>
        {
            checkpoint = p.Last.Checkpoint;
            if (p.Batches == 3)
            {
                cancel.Cancel();
            }
        });
        var options = new LifecycleOptions { BatchSize = 7 };
        options.EntityTypes.Add(typeof(Claim));
        await using (var db = Database.Create(configure))
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => EnvelopeKeyLifecycle.ReencryptAsync(db, options, progress, cancel.Token));
        }

        var afterFirst = (await RawRowsAsync("Claims")).ToDictionary(r => Convert.ToInt64(r["Id"], System.Globalization.CultureInfo.InvariantCulture), r => (byte[])r["EfEnvelopeKey"]!);
        var done = afterFirst.Where(kv => !kv.Value.AsSpan().SequenceEqual(original[kv.Key])).Select(kv => kv.Key).ToHashSet();
        Assert.Equal(21, done.Count);

        options.ResumeFrom = checkpoint;
        await using (var db = Database.Create(configure))
        {
            var progressAgain = new ProgressLog();
            var result = await EnvelopeKeyLifecycle.ReencryptAsync(db, options, progressAgain, Ct);
            Assert.True(result.Succeeded);
            Assert.Equal(Members - 21, result.RecordsChanged);
            Assert.Equal(Members, result.RowsExamined);
            Assert.Equal(28, progressAgain.Reports[0].RowsDone);
        }

        var final = (await RawRowsAsync("Claims")).ToDictionary(r => Convert.ToInt64(r["Id"], System.Globalization.CultureInfo.InvariantCulture), r => (byte[])r["EfEnvelopeKey"]!);
        foreach (var (id, key) in final)
        {
            Assert.False(key.AsSpan().SequenceEqual(original[id]), $"claim {id} was not re-encrypted");
            if (done.Contains(id))
            {
                Assert.Equal(afterFirst[id], key);
            }
        }

        await AssertAllReadAsync(configure);
    }

    [Fact]
    public async Task A_write_made_during_a_batch_is_kept_and_the_row_is_redone()
    {
        SkipIfUnavailable();
        var provider = new InsecureInMemoryMasterKeyProvider();
        Action<EnvelopeEncryptionOptionsBuilder> configure = e => e.UseProvider(provider);
        var ids = await SeedAsync(configure);
        var ordered = ids.Order().ToList();
        var edits = new Dictionary<Guid, string>();
        var batches = 0;
        var options = new LifecycleOptions
        {
            BatchSize = 20,
            AfterBatchRead = async token =>
            {
                // The application edits a row of the batch just read: once an encrypted value (partial update under
                // the same data key), once a whole re-key through Update of a detached instance.
                batches++;
                await using var app = Database.Create(configure);
                if (batches == 1)
                {
                    var member = await app.Members.SingleAsync(m => m.Id == ordered[3], token);
                    member.Ssn = edits[member.Id] = "SSN-0003-EDITED";
                }
                else if (batches == 2)
                {
                    var detached = await app.Members.AsNoTracking().SingleAsync(m => m.Id == ordered[25], token);
                    detached.Ssn = edits[detached.Id] = detached.Ssn.Replace("SSN-", "SSN-", StringComparison.Ordinal) + "-X";
                    app.Update(detached);
                }

                await app.SaveChangesAsync(token);
            },
        };
        options.EntityTypes.Add(typeof(Member));

        await using (var db = Database.Create(configure))
        {
            var result = await EnvelopeKeyLifecycle.ReencryptAsync(db, options, cancellationToken: Ct);
            Assert.True(result.Succeeded, string.Join("; ", result.Failures));
            Assert.Equal(2, result.ConflictsRetried);
        }

        await using (var db = Database.Create(configure))
        {
            db.ClearEnvelopeKeyCache();
            var members = await db.Members.AsNoTracking().ToDictionaryAsync(m => m.Id, Ct);
            Assert.Equal("SSN-0003-EDITED", members[ordered[3]].Ssn);
            Assert.Equal(edits[ordered[25]], members[ordered[25]].Ssn);
        }
    }

    [Fact]
    public async Task A_disabled_master_key_refuses_reads_after_the_cache_bound_and_writes_before_reaching_the_database()
    {
        SkipIfUnavailable();
        var provider = new InsecureInMemoryMasterKeyProvider();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        Action<EnvelopeEncryptionOptionsBuilder> configure = e => e.UseProvider(provider).UseTimeProvider(time).ConfigureKeyCache(c => c.TimeToLive = TimeSpan.FromMinutes(2));
        await SeedAsync(configure, 5);
        await using (var warm = Database.Create(configure))
        {
            Assert.Equal(5, (await warm.Members.AsNoTracking().ToListAsync(Ct)).Count);
        }

        provider.DisableKey(provider.PrimaryKeyId);

        // Within the cache bound the cached keys still serve: revocation is not instant.
        time.Advance(TimeSpan.FromMinutes(1));
        await using (var db = Database.Create(configure))
        {
            Assert.Equal(5, (await db.Members.AsNoTracking().ToListAsync(Ct)).Count);
        }

        // Past the time to live the provider is asked again and refuses.
        time.Advance(TimeSpan.FromMinutes(1.5));
        var capture = new SqlCapture();
        await using (var db = Database.Create(configure, capture))
        {
            var read = await Assert.ThrowsAnyAsync<MasterKeyAccessRevokedException>(() => db.Members.AsNoTracking().ToListAsync(Ct));
            Assert.Contains(provider.PrimaryKeyId, read.Message, StringComparison.Ordinal);

            capture.Clear();
            db.Members.Add(new Member { Id = Guid.NewGuid(), Subject = "s", Ssn = "SSN-9999" });
            await Assert.ThrowsAnyAsync<MasterKeyAccessRevokedException>(() => db.SaveChangesAsync(Ct));
            Assert.Empty(capture.Commands);
        }

        Assert.Equal(5, (await RawRowsAsync("Members")).Count);
        provider.EnableKey(provider.PrimaryKeyId);
        await using (var db = Database.Create(configure))
        {
            Assert.Equal(5, (await db.Members.AsNoTracking().ToListAsync(Ct)).Count);
        }
    }

    private static string? SubjectKey(object entity) => entity switch
    {
        Member member => "subject-" + member.Subject,
        _ => null,
    };

    [Fact]
    public async Task Destroying_one_subjects_master_key_makes_exactly_that_subjects_records_unreadable()
    {
        SkipIfUnavailable();
        var provider = new InsecureInMemoryMasterKeyProvider().AddKey("subject-s0").AddKey("subject-s1").AddKey("subject-s2");
        var logs = new LogCapture();
        using var loggerFactory = LoggerFactory.Create(b => b.AddProvider(logs));
        Action<EnvelopeEncryptionOptionsBuilder> configure = e => e.UseProvider(provider).UseMasterKeySelector(SubjectKey).UseLoggerFactory(loggerFactory);
        var ids = await SeedAsync(configure, 30);
        var raw = await RawRowsAsync("Members");
        Assert.All(raw, r => Assert.Equal("subject-" + r["Subject"], KeyIdOf((byte[])r["EfEnvelopeKey"]!)));

        // Owned records belong to their owner's subject: the selector is asked about the owner.
        Assert.All(raw.Where(r => r["Address_EfEnvelopeKey"] is not null), r => Assert.Equal("subject-" + r["Subject"], KeyIdOf((byte[])r["Address_EfEnvelopeKey"]!)));

        provider.DestroyKey("subject-s1");
        await using var db = Database.Create(configure);
        db.ClearEnvelopeKeyCache();

        var others = await db.Members.AsNoTracking().Where(m => m.Subject != "s1").ToListAsync(Ct);
        Assert.Equal(20, others.Count);
        Assert.All(others, m => Assert.StartsWith("SSN-", m.Ssn, StringComparison.Ordinal));

        var shredded = raw.Where(r => (string)r["Subject"]! == "s1").Select(r => r["Id"]).ToList();
        var error = await Assert.ThrowsAnyAsync<MasterKeyException>(() => db.Members.AsNoTracking().Where(m => m.Subject == "s1").ToListAsync(Ct));
        Assert.Contains("subject-s1", error.Message, StringComparison.Ordinal);

        // The verification pass names exactly the shredded rows, by key, and changes nothing.
        var verification = await EnvelopeKeyLifecycle.VerifyAsync(db, new LifecycleOptions { BatchSize = 8 }, cancellationToken: Ct);
        Assert.Equal(30 + 30, verification.RowsExamined);
        Assert.Equal(10, verification.Failures.Count);
        Assert.All(verification.Failures, f =>
        {
            Assert.Equal(nameof(Member), f.Entity);
            Assert.Contains("subject-s1", f.Error, StringComparison.Ordinal);
            Assert.DoesNotContain("SSN-", f.Error, StringComparison.Ordinal);
        });
        Assert.Equal(
            ids.Where(id => shredded.Any(s => string.Equals(Convert.ToString(s, System.Globalization.CultureInfo.InvariantCulture), id.ToString(), StringComparison.OrdinalIgnoreCase))).Select(id => id.ToString()).Order(),
            verification.Failures.Select(f => f.Key.ToLowerInvariant()).Order());
        Assert.Equal(raw.Count, (await RawRowsAsync("Members")).Count);

        // A new record for the erased subject is refused before anything reaches the database.
        var capture = new SqlCapture();
        await using (var writer = Database.Create(configure, capture))
        {
            writer.Members.Add(new Member { Id = Guid.NewGuid(), Subject = "s1", Ssn = "SSN-NEW" });
            var refused = await Assert.ThrowsAnyAsync<MasterKeyException>(() => writer.SaveChangesAsync(Ct));
            Assert.Contains("subject-s1", refused.Message, StringComparison.Ordinal);
            Assert.Empty(capture.Commands);
        }

        // The job logged its start, each failing row (key and error, no plaintext) and a summary.
        var lines = logs.Lines.Where(l => l.Category == "EfEnvelope.Lifecycle").ToList();
        Assert.Contains(lines, l => l.Message.StartsWith("Key lifecycle job Verify started: 3 entity types, 60 rows", StringComparison.Ordinal));
        Assert.Equal(10, lines.Count(l => l.Level == LogLevel.Warning && l.Message.Contains("subject-s1", StringComparison.Ordinal)));
        Assert.Contains(lines, l => l.Message.StartsWith("Key lifecycle job Verify finished: 60 rows examined, 0 records changed", StringComparison.Ordinal) && l.Message.Contains("10 failed", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.Message.Contains("SSN-", StringComparison.Ordinal));
    }

    // Subject s1 is given a new master key of its own; the others keep theirs (s0 the primary key, s2 its own).
    private static string? KeyBeforeMove(object entity) => entity switch
    {
        Member { Subject: "s1" } => "subject-s1-old",
        Member { Subject: "s2" } => "subject-s2",
        _ => null,
    };

    private static string? KeyAfterMove(object entity) => entity switch
    {
        Member { Subject: "s1" } => "subject-s1-new",
        Member { Subject: "s2" } => "subject-s2",
        _ => null,
    };

    [Fact]
    public async Task A_subject_moved_to_a_new_key_is_refused_until_the_previous_selector_is_accepted_and_rotation_moves_it()
    {
        SkipIfUnavailable();
        var provider = new InsecureInMemoryMasterKeyProvider("primary").AddKey("subject-s1-old").AddKey("subject-s1-new").AddKey("subject-s2");
        Action<EnvelopeEncryptionOptionsBuilder> before = e => e.UseProvider(provider).UseMasterKeySelector(KeyBeforeMove);
        Action<EnvelopeEncryptionOptionsBuilder> after = e => e.UseProvider(provider).UseMasterKeySelector(KeyAfterMove);
        Action<EnvelopeEncryptionOptionsBuilder> moving = e => e.UseProvider(provider).UseMasterKeySelector(KeyAfterMove, o => o.AcceptPreviousSelector(KeyBeforeMove));
        var ids = await SeedAsync(before, 12);
        var s1 = (await RawRowsAsync("Members")).Where(r => (string)r["Subject"]! == "s1").Select(r => (byte[])r["EfEnvelopeKey"]!).ToList();
        Assert.Equal(4, s1.Count);
        Assert.All(s1, b => Assert.Equal("subject-s1-old", KeyIdOf(b)));

        // The selector's choice for s1 changed, and nothing tells reads the old key is legitimate: refused, tracked
        // or not, with a message that names the row and both keys and says what to do. The other subjects read.
        await using (var db = Database.Create(after))
        {
            var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.Members.AsNoTracking().Where(m => m.Subject == "s1").ToListAsync(Ct));
            Assert.Equal(typeof(Member).FullName, error.Entity);
            Assert.Equal("subject-s1-old", error.KeyId);
            Assert.Contains("is under master key 'subject-s1-old', but the master-key selector chooses 'subject-s1-new' for that row", error.Message, StringComparison.Ordinal);
            Assert.Contains("AcceptPreviousSelector", error.Message, StringComparison.Ordinal);
            Assert.Contains("EnvelopeKeyLifecycle.RotateAsync", error.Message, StringComparison.Ordinal);
            Assert.Contains(ids.Select(id => id.ToString()), id => error.Message.Contains($"row with key ({id})", StringComparison.Ordinal));
            Assert.DoesNotContain("SSN-", error.ToString(), StringComparison.Ordinal);
            Assert.DoesNotContain("Lifecycle Lane", error.ToString(), StringComparison.Ordinal);

            await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.Members.Where(m => m.Subject == "s1").ToListAsync(Ct));
            db.ChangeTracker.Clear();
            Assert.Equal(8, (await db.Members.Where(m => m.Subject != "s1").ToListAsync(Ct)).Count);
            Assert.Equal(8, (await db.Members.AsNoTracking().Where(m => m.Subject != "s1").ToListAsync(Ct)).Count);
            db.ChangeTracker.Clear();

            // A job reads through the same check: it reports each refused row by key and writes nothing.
            var refused = await EnvelopeKeyLifecycle.RotateAsync(db, new LifecycleOptions { BatchSize = 5 }, cancellationToken: Ct);
            Assert.Equal(4, refused.Failures.Count);
            Assert.All(refused.Failures, f =>
            {
                Assert.Equal(nameof(Member), f.Entity);
                Assert.Equal(nameof(EnvelopeDecryptionException), f.ErrorType);
                Assert.Contains("AcceptPreviousSelector", f.Error, StringComparison.Ordinal);
                Assert.Contains($"row with key ({f.Key.ToLowerInvariant()})", f.Error.ToLowerInvariant(), StringComparison.Ordinal);
            });
            Assert.Equal(s1.Select(Convert.ToHexString).Order(), (await RawRowsAsync("Members")).Where(r => (string)r["Subject"]! == "s1").Select(r => Convert.ToHexString((byte[])r["EfEnvelopeKey"]!)).Order());
        }

        // During the move the previous selector's choice is accepted too: reads work, and rotation moves s1's records
        // (owned addresses with them) to the key the current selector chooses.
        await AssertAllReadAsync(moving, 12);
        await using (var db = Database.Create(moving))
        {
            Assert.Equal(4, (await db.Members.Where(m => m.Subject == "s1").ToListAsync(Ct)).Count);
            db.ChangeTracker.Clear();
            var result = await EnvelopeKeyLifecycle.RotateAsync(db, new LifecycleOptions { BatchSize = 5 }, cancellationToken: Ct);
            Assert.True(result.Succeeded, string.Join("; ", result.Failures));
        }

        var moved = (await RawRowsAsync("Members")).Where(r => (string)r["Subject"]! == "s1").ToList();
        Assert.All(moved, r => Assert.Equal("subject-s1-new", KeyIdOf((byte[])r["EfEnvelopeKey"]!)));
        Assert.All(moved.Where(r => r["Address_EfEnvelopeKey"] is not null), r => Assert.Equal("subject-s1-new", KeyIdOf((byte[])r["Address_EfEnvelopeKey"]!)));

        // Moved: the previous selector is removed and the old key destroyed; everything reads under the new choice.
        provider.DestroyKey("subject-s1-old");
        await AssertAllReadAsync(after, 12);
    }

    [Fact]
    public async Task A_tracked_edit_that_changes_the_selectors_choice_moves_the_record_and_its_owned_record_to_the_new_key()
    {
        SkipIfUnavailable();
        var provider = new InsecureInMemoryMasterKeyProvider("primary").AddKey("subject-s1-old").AddKey("subject-s1-new").AddKey("subject-s2");
        Action<EnvelopeEncryptionOptionsBuilder> before = e => e.UseProvider(provider).UseMasterKeySelector(KeyBeforeMove);
        Action<EnvelopeEncryptionOptionsBuilder> moving = e => e.UseProvider(provider).UseMasterKeySelector(KeyAfterMove, o => o.AcceptPreviousSelector(KeyBeforeMove));
        Action<EnvelopeEncryptionOptionsBuilder> after = e => e.UseProvider(provider).UseMasterKeySelector(KeyAfterMove);
        var ids = await SeedAsync(before, 9);

        // Member 1 (s1, with an address) moves to tenant s2 through EF; member 4 (s1) is edited during s1's move.
        await using (var db = Database.Create(moving))
        {
            (await db.Members.SingleAsync(m => m.Id == ids[1], Ct)).Subject = "s2";
            (await db.Members.SingleAsync(m => m.Id == ids[4], Ct)).Notes = "edited during the move";
            _ = await db.Members.SingleAsync(m => m.Id == ids[3], Ct); // s0, read and not edited
            await db.SaveChangesAsync(Ct);
        }

        var rows = (await RawRowsAsync("Members")).ToDictionary(r => r["Id"] is Guid g ? g : Guid.Parse((string)r["Id"]!));
        Assert.Equal("subject-s2", KeyIdOf((byte[])rows[ids[1]]["EfEnvelopeKey"]!));
        Assert.Equal("subject-s2", KeyIdOf((byte[])rows[ids[1]]["Address_EfEnvelopeKey"]!));
        Assert.Equal("subject-s1-new", KeyIdOf((byte[])rows[ids[4]]["EfEnvelopeKey"]!));
        Assert.Equal("subject-s1-old", KeyIdOf((byte[])rows[ids[7]]["EfEnvelopeKey"]!)); // not saved: not moved

        provider.DisableKey("subject-s1-old");
        await using var reader = Database.Create(after);
        var one = await reader.Members.AsNoTracking().SingleAsync(m => m.Id == ids[1], Ct);
        Assert.Equal((Ssn(1), Street(1)), (one.Ssn, one.Address!.Street));
        Assert.Equal("edited during the move", (await reader.Members.AsNoTracking().SingleAsync(m => m.Id == ids[4], Ct)).Notes);
    }

    [Fact]
    public async Task During_a_move_a_record_under_neither_selectors_key_for_its_row_is_still_refused()
    {
        SkipIfUnavailable();
        var provider = new InsecureInMemoryMasterKeyProvider("primary").AddKey("subject-s1-old").AddKey("subject-s1-new").AddKey("subject-s2");
        Action<EnvelopeEncryptionOptionsBuilder> moving = e => e.UseProvider(provider).UseMasterKeySelector(KeyAfterMove, o => o.AcceptPreviousSelector(KeyBeforeMove));
        var ids = await SeedAsync(moving, 3);

        // s2's record (under subject-s2) relabelled as s1's: neither the new nor the previous choice for s1 is its key.
        await using (var db = Database.Create(moving))
        {
            Assert.Equal(1, await db.Database.ExecuteSqlRawAsync("UPDATE \"Members\" SET \"Subject\" = 's1' WHERE \"Id\" = {0}", [ids[2]], Ct));
        }

        await using var reader = Database.Create(moving);
        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => reader.Members.SingleAsync(m => m.Id == ids[2], Ct));
        Assert.Contains($"row with key ({ids[2]}) is under master key 'subject-s2', but the master-key selector chooses 'subject-s1-new' for that row and the previous selector 'subject-s1-old'", error.Message, StringComparison.Ordinal);
        Assert.Equal("note 1", (await reader.Members.AsNoTracking().SingleAsync(m => m.Id == ids[1], Ct)).Notes);
    }

    // s2's key by the name the application uses for it; the provider records another name for the same key.
    private static string? Nickname(object entity) => entity is Member { Subject: "s2" } ? NicknamingProvider.Nickname : null;

    [Fact]
    public async Task The_selector_check_asks_the_provider_once_per_pair_of_names_and_time_to_live()
    {
        SkipIfUnavailable();
        var provider = new NicknamingProvider(new InsecureInMemoryMasterKeyProvider("primary").AddKey("subject-s2"));
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        Action<EnvelopeEncryptionOptionsBuilder> configure = e => e.UseProvider(provider).UseMasterKeySelector(Nickname).UseTimeProvider(time).ConfigureKeyCache(c => c.TimeToLive = TimeSpan.FromMinutes(2));
        var ids = await SeedAsync(configure, 9);
        Assert.All((await RawRowsAsync("Members")).Where(r => (string)r["Subject"]! == "s2"), r => Assert.Equal("subject-s2", KeyIdOf((byte[])r["EfEnvelopeKey"]!)));

        // Three s2 rows in two contexts: one question ('subject-s2' against the nickname), then remembered.
        await AssertAllReadAsync(configure, 9);
        await AssertAllReadAsync(configure, 9);
        Assert.Equal(1, provider.SameKeyQuestions);

        time.Advance(TimeSpan.FromMinutes(3));
        await AssertAllReadAsync(configure, 9);
        Assert.Equal(2, provider.SameKeyQuestions);

        // The provider's answer is what the check uses: an s0 record (primary) relabelled as s2's is not the same key.
        await using (var db = Database.Create(configure))
        {
            Assert.Equal(1, await db.Database.ExecuteSqlRawAsync("UPDATE \"Members\" SET \"Subject\" = 's2' WHERE \"Id\" = {0}", [ids[0]], Ct));
            var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.Members.AsNoTracking().SingleAsync(m => m.Id == ids[0], Ct));
            Assert.Contains($"is under master key 'primary', but the master-key selector chooses '{NicknamingProvider.Nickname}'", error.Message, StringComparison.Ordinal);
        }

        Assert.Equal(3, provider.SameKeyQuestions);
    }

    [Fact]
    public async Task Keyset_pagination_over_a_composite_key_visits_every_row_exactly_once()
    {
        SkipIfUnavailable();
        var provider = new InsecureInMemoryMasterKeyProvider("old-key");
        Action<EnvelopeEncryptionOptionsBuilder> configure = e => e.UseProvider(provider);
        var rows = (from pharmacy in new[] { "b-north", "a-south", "c-east", "a-west" }
                    from number in new[] { 3, 1, 20, 2 }
                    select new Prescription { Pharmacy = pharmacy, Number = number, Drug = $"{pharmacy}/{number}" }).ToList();
        await using (var db = Database.Create(configure))
        {
            db.Prescriptions.AddRange(rows);
            await db.SaveChangesAsync(Ct);
        }

        provider.AddKey("new-key");
        provider.SetPrimaryKey("new-key");
        var options = new LifecycleOptions { BatchSize = 3 };
        options.EntityTypes.Add(typeof(Prescription));
        await using (var db = Database.Create(configure))
        {
            var result = await EnvelopeKeyLifecycle.RotateAsync(db, options, cancellationToken: Ct);
            Assert.Equal(rows.Count, result.RowsExamined);
            Assert.Equal(rows.Count, result.RecordsChanged);
            Assert.Equal(6, result.Batches);
        }

        provider.DisableKey("old-key");
        await using (var db = Database.Create(configure))
        {
            db.ClearEnvelopeKeyCache();
            var read = await db.Prescriptions.AsNoTracking().ToListAsync(Ct);
            Assert.Equal(rows.Select(r => r.Drug).Order(StringComparer.Ordinal), read.Select(r => r.Drug).Order(StringComparer.Ordinal));
            Assert.All(read, r => Assert.Equal($"{r.Pharmacy}/{r.Number}", r.Drug));
        }
    }

    [Fact]
    public async Task Rotation_in_direct_mode_gives_each_record_a_fresh_data_key_under_the_new_master_key()
    {
        SkipIfUnavailable();
        var provider = new InsecureInMemoryMasterKeyProvider("old-key");
        Action<EnvelopeEncryptionOptionsBuilder> configure = e => e.UseProvider(provider).UseKeyWrappingMode(KeyWrappingMode.Direct);
        await SeedAsync(configure, 12);
        provider.AddKey("new-key");
        provider.SetPrimaryKey("new-key");

        await using (var db = Database.Create(configure))
        {
            var generate = provider.GenerateDataKeyCalls;
            var result = await EnvelopeKeyLifecycle.RotateAsync(db, new LifecycleOptions { BatchSize = 5 }, cancellationToken: Ct);
            Assert.True(result.Succeeded, string.Join("; ", result.Failures));
            Assert.Equal(12 + 9 + 12, result.RecordsChanged);

            // Direct mode: the provider wraps each data key, so each record costs a call, and nothing more.
            Assert.Equal(12 + 9 + 12, provider.GenerateDataKeyCalls - generate);
        }

        Assert.All(Blobs(await RawRowsAsync("Members"), "EfEnvelopeKey"), b =>
        {
            Assert.Equal(2, b[1]);
            Assert.Equal("new-key", KeyIdOf(b));
        });
        provider.DisableKey("old-key");
        await AssertAllReadAsync(configure, 12);
    }
}

public sealed class KeyLifecycleSqliteTests : KeyLifecycleTests<SqliteFixture>;

public sealed class KeyLifecyclePostgresTests : KeyLifecycleTests<PostgresFixture>;

/// <summary>Knows key 'subject-s2' by a second name too, and records the canonical one, as AWS KMS does with aliases and key ARNs.</summary>
internal sealed class NicknamingProvider(InsecureInMemoryMasterKeyProvider inner) : IMasterKeyProvider
{
    public const string Nickname = "s2-nickname";

    private int _sameKeyQuestions;

    public int SameKeyQuestions => _sameKeyQuestions;

    public string Name => inner.Name;

    public string PrimaryKeyId => inner.PrimaryKeyId;

    public bool IsKeyConfigured(string keyId) => keyId == Nickname || inner.IsKeyConfigured(keyId);

    public Task<GeneratedDataKey> GenerateDataKeyAsync(string keyId, KeyContext context, CancellationToken cancellationToken) =>
        inner.GenerateDataKeyAsync(Canonical(keyId), context, cancellationToken);

    public Task<bool> IsSameKeyAsync(string storedKeyId, string selectedKeyId, KeyContext context, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _sameKeyQuestions);
        return Task.FromResult(Canonical(storedKeyId) == Canonical(selectedKeyId));
    }

    public Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, KeyContext context, CancellationToken cancellationToken) =>
        inner.DecryptDataKeyAsync(Canonical(keyId), wrappedKey, context, cancellationToken);

    private static string Canonical(string keyId) => keyId == Nickname ? "subject-s2" : keyId;
}
