using System.Collections.Concurrent;
using EfEnvelope.Crypto;
using EfEnvelope.KeyManagement;
using EfEnvelope.Lifecycle;
using EfEnvelope.Specification.Tests;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage.ValueConversion;

namespace EfEnvelope.Reliability.Tests.Tampering;

#pragma warning disable EF1002 // raw SQL built from the test's own constant table and column names

/// <summary>
/// An attacker's review of format version 2: a database writer without the master key, plain SQL on SQLite. Every test
/// asserts the secure outcome (the record is refused with EnvelopeDecryptionException, or a legitimate row reads); a
/// failure says what was read instead. The gaps docs/SECURITY.md lists as open or by design are pinned
/// (<c>..._is_still_the_documented_gap</c>): they fail once a gap closes, so the attack becomes a plain test again.
/// </summary>
public sealed class AttackReviewTests : IDisposable
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"efenvelope-attack-{Guid.NewGuid():N}.db");
    private readonly CountingProvider _provider = new(new InsecureInMemoryMasterKeyProvider("primary").AddKey("secondary"));

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose()
    {
        foreach (var suffix in new[] { "", "-wal", "-shm", "-journal" })
        {
            File.Delete(_path + suffix);
        }
    }

    private DbContextOptions<T> Options<T>(Action<EnvelopeEncryptionOptionsBuilder>? extra = null)
        where T : DbContext =>
        new DbContextOptionsBuilder<T>()
            .UseSqlite($"Data Source={_path};Pooling=False")
            .ManyConfigurationsPerProcess()
            .UseEnvelopeEncryption(e =>
            {
                e.UseProvider(_provider);
                extra?.Invoke(e);
            })
            .Options;

    private static async Task CreateAsync(DbContext db)
    {
        var script = db.Database.GenerateCreateScript().Replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", StringComparison.Ordinal)
            .Replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", StringComparison.Ordinal)
            .Replace("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX IF NOT EXISTS ", StringComparison.Ordinal);
        await db.Database.ExecuteSqlRawAsync(script, Ct);
    }

    private static async Task<byte[]?> RawAsync(DbContext db, string table, string column, object id) =>
        await db.Database.SqlQueryRaw<byte[]?>($"SELECT \"{column}\" AS \"Value\" FROM \"{table}\" WHERE \"Id\" = {{0}}", id).SingleAsync(Ct);

    private static async Task SetAsync(DbContext db, string table, string column, object id, object? value)
    {
        var changed = value is null
            ? await db.Database.ExecuteSqlRawAsync($"UPDATE \"{table}\" SET \"{column}\" = NULL WHERE \"Id\" = {{0}}", [id], Ct)
            : await db.Database.ExecuteSqlRawAsync($"UPDATE \"{table}\" SET \"{column}\" = {{0}} WHERE \"Id\" = {{1}}", [value, id], Ct);
        Assert.Equal(1, changed);
    }

    /// <summary>Reads with <paramref name="read"/>; fails the test (describing what was read) unless the library refuses with its tamper error.</summary>
    private static async Task<EnvelopeDecryptionException> AssertRefusedAsync<T>(string attack, Func<Task<T>> read, Func<T, string> describe)
    {
        T? result = default;
        var error = await Record.ExceptionAsync(async () => result = await read());
        return error switch
        {
            EnvelopeDecryptionException refused => refused,
            null => throw new Xunit.Sdk.XunitException($"NOT DETECTED: {attack}: read {describe(result!)}"),
            _ => throw new Xunit.Sdk.XunitException($"WRONG EXCEPTION: {attack}: {error}"),
        };
    }

    /// <summary>
    /// Runs an attack whose secure outcome docs/SECURITY.md says is not reached yet, and requires that it still is not:
    /// the attack test must fail with its "NOT DETECTED" message. When a gap is closed, this fails: make the attack a
    /// plain test again and update the SECURITY.md row.
    /// </summary>
    private static async Task AssertDocumentedGapAsync(Func<Task> attack)
    {
        var outcome = await Record.ExceptionAsync(attack);
        Assert.True(outcome is Xunit.Sdk.XunitException && outcome.Message.Contains("NOT DETECTED", StringComparison.Ordinal), $"The documented gap changed: {outcome?.ToString() ?? "the attack is now refused"}");
    }

    private static byte[] DowngradeToVersion1(byte[] v2, bool toDirect)
    {
        Assert.True(WrappedKeyBlob.TryParse(v2, out var blob, out _));
        Assert.Equal(EnvelopeFormat.Version2, blob.Version);
        // Version 1 has no trailer: keep the header (mode 2) or header + wrapped data key (mode 1), nothing else.
        var v1 = toDirect ? blob.Header.ToArray() : blob.Unsealed.ToArray();
        v1[0] = EnvelopeFormat.Version;
        if (toDirect)
        {
            v1[1] = EnvelopeFormat.ModeDirect;
        }

        return v1;
    }

    // ---------------------------------------------------------------------------------------------------------
    // A. Version downgrade: direct mode, and mode 1 turned into direct mode while its KEK is cached.
    // ---------------------------------------------------------------------------------------------------------

    [Fact]
    public async Task A1_direct_mode_v2_blob_downgraded_to_v1_with_values_erased_is_refused()
    {
        var options = Options<AttackContext>(e => e.UseKeyWrappingMode(KeyWrappingMode.Direct));
        var id = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.Notes.Add(new AtkNote { Id = id, TenantId = "t", Secret = "secret-A1", Required = "required-A1", Count = 42 });
            await db.SaveChangesAsync(Ct);
            var key = (await RawAsync(db, "AtkNotes", "EfEnvelopeKey", id))!;
            Assert.Equal(EnvelopeFormat.ModeDirect, key[1]);
            await SetAsync(db, "AtkNotes", "EfEnvelopeKey", id, DowngradeToVersion1(key, toDirect: true));
            await SetAsync(db, "AtkNotes", "Secret", id, null);
            await SetAsync(db, "AtkNotes", "Required", id, Array.Empty<byte>());
            await SetAsync(db, "AtkNotes", "Count", id, Array.Empty<byte>());
        }

        // A fresh configuration (cold key cache): the provider itself unwraps the data key, its context names no version.
        var cold = Options<AttackContext>(e => e.UseKeyWrappingMode(KeyWrappingMode.Direct).ConfigureKeyCache(c => c.MaxEntries = 77));
        await using var reader = new AttackContext(cold);
        await AssertRefusedAsync("direct-mode v2 key blob downgraded to v1 (byte 0 = 1, trailer cut), Secret NULL, Required and Count empty",
            () => reader.Notes.AsNoTracking().SingleAsync(n => n.Id == id, Ct),
            n => $"Secret={n.Secret ?? "null"}, Required='{n.Required}', Count={n.Count}");
    }

    [Fact]
    public async Task A2_mode1_v2_blob_rewritten_as_v1_direct_while_its_KEK_is_cached_is_refused()
    {
        var options = Options<AttackContext>();
        var id = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.Notes.Add(new AtkNote { Id = id, TenantId = "t", Secret = "secret-A2", Required = "required-A2", Count = 42 });
            await db.SaveChangesAsync(Ct);
            var key = (await RawAsync(db, "AtkNotes", "EfEnvelopeKey", id))!;
            await SetAsync(db, "AtkNotes", "EfEnvelopeKey", id, DowngradeToVersion1(key, toDirect: true));
            await SetAsync(db, "AtkNotes", "Secret", id, null);
            await SetAsync(db, "AtkNotes", "Required", id, Array.Empty<byte>());
            await SetAsync(db, "AtkNotes", "Count", id, Array.Empty<byte>());
        }

        // Same configuration: the KEK that wrapped the record's data key is in the shared cache (the write key of the insert).
        await using var reader = new AttackContext(options);
        await AssertRefusedAsync("mode 1 v2 blob rewritten to v1 + direct mode (same tail, wrapped DEK and trailer cut), KEK cached, values erased",
            () => reader.Notes.AsNoTracking().SingleAsync(n => n.Id == id, Ct),
            n => $"Secret={n.Secret ?? "null"}, Required='{n.Required}', Count={n.Count}");
    }

    [Fact]
    public async Task A3_mode1_v2_blob_flipped_to_direct_keeping_its_trailer_is_refused_even_with_the_KEK_cached()
    {
        var options = Options<AttackContext>();
        var id = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.Notes.Add(new AtkNote { Id = id, TenantId = "t", Secret = null, Required = "required-A3", Count = 1 });
            await db.SaveChangesAsync(Ct);
            var key = (await RawAsync(db, "AtkNotes", "EfEnvelopeKey", id))!;
            Assert.True(WrappedKeyBlob.TryParse(key, out var blob, out _));
            var forged = (byte[])[.. blob.Header, .. blob.Trailer];
            forged[1] = EnvelopeFormat.ModeDirect;
            await SetAsync(db, "AtkNotes", "EfEnvelopeKey", id, forged);
        }

        await using var reader = new AttackContext(options);
        await AssertRefusedAsync("mode flipped 1 -> 2 (wrapped DEK removed, trailer kept), KEK cached",
            () => reader.Notes.AsNoTracking().SingleAsync(n => n.Id == id, Ct),
            n => $"Secret={n.Secret ?? "null"}, Required='{n.Required}', Count={n.Count}");
    }

    // ---------------------------------------------------------------------------------------------------------
    // B. Erasure without touching the blob format: key column NULL, required values "empty".
    // ---------------------------------------------------------------------------------------------------------

    [Fact]
    public async Task B1_key_NULL_and_required_values_set_to_empty_blobs_read_as_a_migration_default_unless_sealed_records_are_required()
    {
        var options = Options<AttackContext>();
        var id = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.Notes.Add(new AtkNote { Id = id, TenantId = "t", Secret = "secret-B1", Required = "required-B1", Count = 42 });
            await db.SaveChangesAsync(Ct);
            await SetAsync(db, "AtkNotes", "EfEnvelopeKey", id, null);
            await SetAsync(db, "AtkNotes", "Secret", id, null);
            await SetAsync(db, "AtkNotes", "Required", id, Array.Empty<byte>());
            await SetAsync(db, "AtkNotes", "Count", id, Array.Empty<byte>());
        }

        // By default this is what a migration leaves in existing rows, so it reads as the types' defaults (SECURITY.md).
        await using (var reader = new AttackContext(options))
        {
            var note = await reader.Notes.AsNoTracking().SingleAsync(n => n.Id == id, Ct);
            Assert.Equal((null, "", 0), (note.Secret, note.Required, note.Count));
        }

        await using var strict = new AttackContext(Options<AttackContext>(e => e.RequireSealedRecords()));
        var error = await AssertRefusedAsync("key NULL, nullable NULL, required columns X'' (the migration default), sealed records required",
            () => strict.Notes.AsNoTracking().SingleAsync(n => n.Id == id, Ct),
            n => $"Secret={n.Secret ?? "null"}, Required='{n.Required}', Count={n.Count}");
        Assert.Contains("RequireSealedRecords", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task B2_key_and_every_nullable_ciphertext_NULL_reads_as_nulls_unless_sealed_records_are_required()
    {
        var options = Options<AttackContext>();
        var id = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.Optionals.Add(new AtkOptional { Id = id, A = "secret-B2", B = 7 });
            await db.SaveChangesAsync(Ct);
            await SetAsync(db, "AtkOptionals", "EfEnvelopeKey", id, null);
            await SetAsync(db, "AtkOptionals", "A", id, null);
            await SetAsync(db, "AtkOptionals", "B", id, null);
        }

        await using (var reader = new AttackContext(options))
        {
            var optional = await reader.Optionals.AsNoTracking().SingleAsync(n => n.Id == id, Ct);
            Assert.Equal((null, null), (optional.A, optional.B));
        }

        await using var strict = new AttackContext(Options<AttackContext>(e => e.RequireSealedRecords()));
        await AssertRefusedAsync("key column and every (nullable) ciphertext NULL, sealed records required",
            () => strict.Optionals.AsNoTracking().SingleAsync(n => n.Id == id, Ct),
            n => $"A={n.A ?? "null"}, B={n.B?.ToString() ?? "null"}");
    }

    [Fact]
    public async Task Reencryption_seals_rows_without_a_key_so_that_they_read_once_sealed_records_are_required()
    {
        var options = Options<AttackContext>();
        var id = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.Optionals.Add(new AtkOptional { Id = id });
            await db.SaveChangesAsync(Ct);

            // A row from before encryption: no key column, no values.
            await SetAsync(db, "AtkOptionals", "EfEnvelopeKey", id, null);
        }

        await using (var job = new AttackContext(options))
        {
            var result = await EfEnvelope.Lifecycle.EnvelopeKeyLifecycle.ReencryptAsync(job, cancellationToken: Ct);
            Assert.True(result.Succeeded, result.ToString());
            Assert.NotNull(await RawAsync(job, "AtkOptionals", "EfEnvelopeKey", id));
        }

        await using var strict = new AttackContext(Options<AttackContext>(e => e.RequireSealedRecords()));
        var read = await strict.Optionals.AsNoTracking().SingleAsync(n => n.Id == id, Ct);
        Assert.Equal((null, null), (read.A, read.B));
    }

    // ---------------------------------------------------------------------------------------------------------
    // C. Legacy plaintext column beside a key: a value the seal says was NULL.
    // ---------------------------------------------------------------------------------------------------------

    [Fact]
    public async Task C1_legacy_plaintext_written_where_the_sealed_record_had_NULL_is_refused()
    {
        var options = Options<AttackContext>();
        var id = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.Legacies.Add(new AtkLegacy { Id = id, Email = null, Other = "other-C1" });
            await db.SaveChangesAsync(Ct);
            Assert.NotNull(await RawAsync(db, "AtkLegacies", "EfEnvelopeKey", id));
            await db.Database.ExecuteSqlRawAsync("UPDATE \"AtkLegacies\" SET \"Email_Plain\" = 'forged@attacker.example' WHERE \"Id\" = {0}", [id], Ct);
        }

        await using var reader = new AttackContext(options);
        var refused = await AssertRefusedAsync("legacy column set to text beside a v2 key whose seal says Email was NULL",
            () => reader.Legacies.AsNoTracking().SingleAsync(n => n.Id == id, Ct),
            n => $"Email={n.Email ?? "null"}, Other={n.Other}");
        Assert.Equal((nameof(AtkLegacy), nameof(AtkLegacy.Email)), (refused.Entity?.Split('.')[^1], refused.Property));
        Assert.DoesNotContain("forged@attacker.example", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("other-C1", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task C2_a_forged_legacy_value_is_not_laundered_into_a_sealed_ciphertext_by_the_next_edit()
    {
        var options = Options<AttackContext>();
        var id = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.Legacies.Add(new AtkLegacy { Id = id, Email = null, Other = "other-C2" });
            await db.SaveChangesAsync(Ct);
            await db.Database.ExecuteSqlRawAsync("UPDATE \"AtkLegacies\" SET \"Email_Plain\" = 'forged@attacker.example' WHERE \"Id\" = {0}", [id], Ct);
        }

        // The application reads the record to edit another property: the read is refused, so nothing is saved.
        await using (var db = new AttackContext(options))
        {
            await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.Legacies.SingleOrDefaultAsync(n => n.Id == id, Ct));
        }

        // Attached and edited without a read: the stored row is checked against its seal before its key is reused.
        await using (var db = new AttackContext(options))
        {
            var stub = new AtkLegacy { Id = id, Email = null, Other = "other-C2" };
            db.Attach(stub);
            stub.Other = "other-C2-edited";
            var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.SaveChangesAsync(Ct));
            Assert.Equal(nameof(AtkLegacy.Email), error.Property);
        }

        // The migration job refuses the row, naming it, rather than encrypting the forged text.
        await using (var job = new AttackContext(options))
        {
            var result = await EnvelopeKeyLifecycle.EncryptLegacyPlaintextAsync(job, cancellationToken: Ct);
            var failure = Assert.Single(result.Failures);
            Assert.Contains(id.ToString(), failure.Key, StringComparison.OrdinalIgnoreCase);
            Assert.Contains(nameof(AtkLegacy.Email), failure.Error, StringComparison.Ordinal);
            Assert.DoesNotContain("forged@attacker.example", failure.Error, StringComparison.Ordinal);
            Assert.Equal(0, result.RecordsChanged);
        }

        await using var reader = new AttackContext(options);
        Assert.Null(await RawAsync(reader, "AtkLegacies", "Email", id));
        await AssertRefusedAsync("the forged legacy value after a read, an attached edit and the migration job",
            () => reader.Legacies.AsNoTracking().SingleAsync(n => n.Id == id, Ct),
            n => $"Email={n.Email ?? "null"}, Other={n.Other}");
        Assert.False((await EnvelopeKeyLifecycle.VerifyAsync(reader, cancellationToken: Ct)).Succeeded);
    }

    // ---------------------------------------------------------------------------------------------------------
    // D. Row moves the seal does not bind.
    // ---------------------------------------------------------------------------------------------------------

    [Fact]
    public async Task D1_TPH_discriminator_changed_from_one_derived_type_to_another_is_refused()
    {
        var options = Options<AttackContext>();
        var id = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.Payments.Add(new AtkCharge { Id = id, Amount = 100m, Memo = "memo-D1", CardLast4 = "4242" });
            await db.SaveChangesAsync(Ct);
            await db.Database.ExecuteSqlRawAsync("UPDATE \"AtkPayments\" SET \"Discriminator\" = 'AtkRefund' WHERE \"Id\" = {0}", [id], Ct);
        }

        await using var reader = new AttackContext(options);
        await AssertRefusedAsync("TPH discriminator AtkCharge -> AtkRefund (saved as a charge)",
            () => reader.Payments.AsNoTracking().SingleAsync(p => p.Id == id, Ct),
            p => $"a {p.GetType().Name} with Memo='{p.Memo}', Amount={p.Amount}");
    }

    [Fact]
    public async Task D2_JSON_owned_record_copied_to_another_owner_is_refused()
    {
        var options = Options<AttackContext>();
        var a = Guid.NewGuid();
        var b = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.Profiles.AddRange(
                new AtkProfile { Id = a, Name = "alice", Prefs = new AtkPrefs { Secret = "alice-secret-D2" } },
                new AtkProfile { Id = b, Name = "bob", Prefs = new AtkPrefs { Secret = "bob-secret-D2" } });
            await db.SaveChangesAsync(Ct);
            await db.Database.ExecuteSqlRawAsync("UPDATE \"AtkProfiles\" SET \"Prefs\" = (SELECT \"Prefs\" FROM \"AtkProfiles\" WHERE \"Id\" = {0}) WHERE \"Id\" = {1}", [a, b], Ct);
        }

        await using var reader = new AttackContext(options);
        await AssertRefusedAsync("JSON owned document of Alice copied into Bob's row",
            () => reader.Profiles.AsNoTracking().SingleAsync(p => p.Id == b, Ct),
            p => $"{p.Name}'s Prefs.Secret='{p.Prefs?.Secret}'");
    }

    [Fact]
    public async Task D3_owned_collection_items_swapped_within_one_owner_are_refused()
    {
        var options = Options<AttackContext>();
        var id = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.People.Add(new AtkPerson { Id = id, Phones = [new AtkPhone { Kind = "mobile", Number = "+1-mobile-D3" }, new AtkPhone { Kind = "home", Number = "+1-home-D3" }] });
            await db.SaveChangesAsync(Ct);
            var ids = await db.Database.SqlQueryRaw<Guid>("SELECT \"Id\" AS \"Value\" FROM \"AtkPhones\"").ToListAsync(Ct);
            foreach (var column in new[] { "Number", "EfEnvelopeKey" })
            {
                var first = await RawAsync(db, "AtkPhones", column, ids[0]);
                var second = await RawAsync(db, "AtkPhones", column, ids[1]);
                await SetAsync(db, "AtkPhones", column, ids[0], second);
                await SetAsync(db, "AtkPhones", column, ids[1], first);
            }
        }

        await using var reader = new AttackContext(options);
        await AssertRefusedAsync("encrypted columns of two phones of one person swapped",
            () => reader.People.AsNoTracking().SingleAsync(p => p.Id == id, Ct),
            p => string.Join(", ", p.Phones.Select(x => $"{x.Kind}={x.Number}")));
    }

    [Fact]
    public async Task D4_record_with_a_strongly_typed_id_moved_to_another_row_is_refused()
    {
        var options = Options<OrderContext>();
        var a = new AtkOrderId(Guid.NewGuid());
        var b = new AtkOrderId(Guid.NewGuid());
        await using (var db = new OrderContext(options))
        {
            await CreateAsync(db);
            db.Orders.AddRange(new AtkOrder { Id = a, Secret = "order-A-D4" }, new AtkOrder { Id = b, Secret = "order-B-D4" });
            await db.SaveChangesAsync(Ct);
            foreach (var column in new[] { "EfEnvelopeKey", "Secret" })
            {
                await SetAsync(db, "AtkOrders", column, b.Value, await RawAsync(db, "AtkOrders", column, a.Value));
            }
        }

        await using var reader = new OrderContext(options);
        await AssertRefusedAsync("all encrypted columns of order A copied onto order B (key type AtkOrderId with a converter)",
            () => reader.Orders.AsNoTracking().SingleAsync(o => o.Id == b, Ct),
            o => $"order B's Secret='{o.Secret}'");
    }

    /// <summary>Pins a gap docs/SECURITY.md lists: Documented: by default a record with a database-generated key is sealed without its key until its next write, and that write (here ReencryptAsync) binds it to the row it is in; BindStoreGeneratedKeys() closes it (GeneratedKeyBindingTests). docs/SECURITY.md.</summary>
    [Fact]
    public Task D5_identity_keyed_record_moved_then_laundered_by_ReencryptAsync_is_still_the_documented_gap() => AssertDocumentedGapAsync(D5_identity_keyed_record_moved_then_laundered_by_ReencryptAsync);

    private async Task D5_identity_keyed_record_moved_then_laundered_by_ReencryptAsync()
    {
        var options = Options<AttackContext>();
        int a, b;
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            var ra = new AtkCounter { Secret = "counter-A-D5" };
            var rb = new AtkCounter { Secret = "counter-B-D5" };
            db.Counters.AddRange(ra, rb);
            await db.SaveChangesAsync(Ct);
            (a, b) = (ra.Id, rb.Id);
            var key = (await RawAsync(db, "AtkCounters", "EfEnvelopeKey", b))!;
            Assert.True(WrappedKeyBlob.TryParse(key, out var blob, out _));
            Assert.Equal(0, blob.BindingFlags & EnvelopeFormat.FlagKeyBound); // documented: identity rows are sealed without their key
            foreach (var column in new[] { "EfEnvelopeKey", "Secret" })
            {
                await SetAsync(db, "AtkCounters", column, b, await RawAsync(db, "AtkCounters", column, a));
            }
        }

        // Documented as undetectable until the first update. What a re-encryption job then does with it:
        await using (var job = new AttackContext(options))
        {
            var result = await EnvelopeKeyLifecycle.ReencryptAsync(job, cancellationToken: Ct);
            TestContext.Current.TestOutputHelper?.WriteLine($"reencrypt: {result}");
        }

        await using var reader = new AttackContext(options);
        var keyAfter = (await RawAsync(reader, "AtkCounters", "EfEnvelopeKey", b))!;
        Assert.True(WrappedKeyBlob.TryParse(keyAfter, out var after, out _));
        await AssertRefusedAsync($"identity row B holding A's moved record, after ReencryptAsync (B's flags now {after.BindingFlags})",
            () => reader.Counters.AsNoTracking().SingleAsync(c => c.Id == b, Ct),
            c => $"row B's Secret='{c.Secret}'");
    }

    // ---------------------------------------------------------------------------------------------------------
    // E. Tenants: a record under another tenant's master key than the selector chooses for its row.
    // ---------------------------------------------------------------------------------------------------------

    private static string? TenantKey(object entity) => entity is AtkTenantDoc { TenantId: "tenant-b" } ? "secondary" : null;

    [Fact]
    public async Task E1_unbound_tenant_column_changed_so_tenant_B_reads_tenant_A_record_is_refused()
    {
        var options = Options<AttackContext>(e => e.UseMasterKeySelector(TenantKey));
        var a = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.TenantDocs.Add(new AtkTenantDoc { Id = a, TenantId = "tenant-a", Secret = "tenant-A-secret-E1" });
            await db.SaveChangesAsync(Ct);
            await db.Database.ExecuteSqlRawAsync("UPDATE \"AtkTenantDocs\" SET \"TenantId\" = 'tenant-b' WHERE \"Id\" = {0}", [a], Ct);
        }

        await using var reader = new AttackContext(options);
        var refused = await AssertRefusedAsync("tenant column of A's row set to tenant-b (not IsBoundToRecord); blob names 'primary', the selector says 'secondary'",
            () => reader.TenantDocs.AsNoTracking().Where(d => d.TenantId == "tenant-b").SingleAsync(Ct),
            d => $"tenant-b's document with Secret='{d.Secret}'");
        Assert.Contains("under master key 'primary', but the master-key selector chooses 'secondary'", refused.Message, StringComparison.Ordinal);
        Assert.Contains(a.ToString(), refused.Message, StringComparison.Ordinal);
        Assert.Equal("primary", refused.KeyId);
        Assert.DoesNotContain("tenant-A-secret", refused.ToString(), StringComparison.Ordinal);

        // A projection of the encrypted property runs on the materialized entity, so it is checked too.
        await AssertRefusedAsync("as above, the encrypted property projected",
            () => reader.TenantDocs.Where(d => d.TenantId == "tenant-b").Select(d => new { d.Id, d.Secret }).SingleAsync(Ct),
            d => $"Secret='{d.Secret}'");
    }

    [Fact]
    public async Task E2_identity_keyed_tenant_record_moved_into_another_tenants_row_is_refused()
    {
        var options = Options<AttackContext>(e => e.UseMasterKeySelector(TenantKey2));
        int a, b;
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            var ra = new AtkTenantCounter { TenantId = "tenant-a", Secret = "tenant-A-secret-E2" };
            var rb = new AtkTenantCounter { TenantId = "tenant-b", Secret = "tenant-B-secret-E2" };
            db.TenantCounters.AddRange(ra, rb);
            await db.SaveChangesAsync(Ct);
            (a, b) = (ra.Id, rb.Id);
            foreach (var column in new[] { "EfEnvelopeKey", "Secret" })
            {
                await SetAsync(db, "AtkTenantCounters", column, b, await RawAsync(db, "AtkTenantCounters", column, a));
            }
        }

        await using var reader = new AttackContext(options);
        var refused = await AssertRefusedAsync("tenant A's identity-keyed record moved into tenant B's row (tenant column not bound)",
            () => reader.TenantCounters.AsNoTracking().Where(d => d.TenantId == "tenant-b").SingleAsync(Ct),
            d => $"tenant-b's row with Secret='{d.Secret}'");
        Assert.Contains($"row with key ({b}) is under master key 'primary', but the master-key selector chooses 'secondary'", refused.Message, StringComparison.Ordinal);
        Assert.Equal(typeof(AtkTenantCounter).FullName, refused.Entity);
        Assert.DoesNotContain("tenant-A-secret", refused.ToString(), StringComparison.Ordinal);

        // A tracked query is checked as well, and tenant A's own row (under the key the selector chooses) still reads.
        await AssertRefusedAsync("as above, tracked query",
            () => reader.TenantCounters.SingleAsync(d => d.Id == b, Ct),
            d => $"tenant-b's row with Secret='{d.Secret}'");
        Assert.Equal("tenant-A-secret-E2", (await reader.TenantCounters.SingleAsync(d => d.Id == a, Ct)).Secret);
    }

    private static string? TenantKey2(object entity) => entity is AtkTenantCounter { TenantId: "tenant-b" } ? "secondary" : null;

    // ---------------------------------------------------------------------------------------------------------
    // F. Trailer structure: every mutation must be the tamper error, never another exception.
    // ---------------------------------------------------------------------------------------------------------

    [Fact]
    public async Task F1_structural_trailer_mutations_are_all_refused_with_the_tamper_error()
    {
        var options = Options<AttackContext>();
        var id = Guid.NewGuid();
        var other = Guid.NewGuid();
        byte[] original, otherKey;
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.Notes.AddRange(
                new AtkNote { Id = id, TenantId = "t", Secret = "secret-F1", Required = "required-F1", Count = 3 },
                new AtkNote { Id = other, TenantId = "t", Secret = "secret-F1-other", Required = "required-F1-other", Count = 4 });
            await db.SaveChangesAsync(Ct);
            original = (await RawAsync(db, "AtkNotes", "EfEnvelopeKey", id))!;
            otherKey = (await RawAsync(db, "AtkNotes", "EfEnvelopeKey", other))!;
        }

        Assert.True(WrappedKeyBlob.TryParse(original, out var blob, out _));
        var at = original.Length - blob.Trailer.Length; // flags
        int Count(byte[] b) => (b[at + 1] << 8) | b[at + 2];
        byte[] WithCount(byte[] b, int n)
        {
            var copy = b.ToArray();
            copy[at + 1] = (byte)(n >> 8);
            copy[at + 2] = (byte)n;
            return copy;
        }

        var entries = original.AsSpan(at + 3, Count(original) * EnvelopeFormat.TrailerEntrySize).ToArray();
        var seal = original.AsSpan(original.Length - EnvelopeFormat.SealSize).ToArray();
        var head = original.AsSpan(0, at + 3).ToArray();
        Assert.True(WrappedKeyBlob.TryParse(otherKey, out var otherBlob, out _));
        var mutations = new Dictionary<string, byte[]>
        {
            ["flags 0x01 -> 0x00"] = Flag(original, at, 0x00),
            ["flags -> 0x03"] = Flag(original, at, 0x03),
            ["flags -> 0x80 | 0x01"] = Flag(original, at, 0x81),
            ["N + 1 without an entry"] = WithCount(original, Count(original) + 1),
            ["N - 1 without removing an entry"] = WithCount(original, Count(original) - 1),
            ["N = 0xFFFF"] = WithCount(original, 0xFFFF),
            ["first entry duplicated, N + 1"] = [.. WithCount(head, Count(original) + 1), .. entries[..20], .. entries, .. seal],
            ["last entry dropped, N - 1"] = [.. WithCount(head, Count(original) - 1), .. entries[..^20], .. seal],
            ["entries reversed"] = [.. head, .. entries[20..], .. entries[..20], .. seal],
            ["seal cut by 1"] = original[..^1],
            ["seal extended by 1"] = [.. original, 0x00],
            ["whole trailer cut"] = original[..at],
            ["other record's trailer (same KEK)"] = [.. blob.Unsealed, .. otherBlob.Trailer],
            ["other record's seal only"] = [.. original[..^32], .. otherKey[^32..]],
            ["version 2 blob with the version 1 length (trailer cut, byte 0 kept)"] = original[..at],
        };

        var failures = new List<string>();
        foreach (var (name, forged) in mutations)
        {
            await using (var db = new AttackContext(options))
            {
                await SetAsync(db, "AtkNotes", "EfEnvelopeKey", id, forged);
            }

            foreach (var tracking in new[] { false, true })
            {
                await using var reader = new AttackContext(options);
                var query = tracking ? reader.Notes : reader.Notes.AsNoTracking();
                var error = await Record.ExceptionAsync(() => query.SingleAsync(n => n.Id == id, Ct));
                if (error is not EnvelopeDecryptionException)
                {
                    failures.Add($"{name} (tracking {tracking}): {(error is null ? "NOT DETECTED" : "WRONG EXCEPTION " + error.GetType().Name + ": " + error.Message)}");
                }
            }
        }

        Assert.True(failures.Count == 0, string.Join("\n", failures));

        static byte[] Flag(byte[] b, int at, byte value)
        {
            var copy = b.ToArray();
            copy[at] = value;
            return copy;
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // G. Provider calls, untrusted text.
    // ---------------------------------------------------------------------------------------------------------

    [Fact]
    public async Task G1_a_key_blob_of_another_entity_never_reaches_the_provider_under_that_entity()
    {
        var options = Options<AttackContext>();
        var note = Guid.NewGuid();
        var optional = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.Notes.Add(new AtkNote { Id = note, TenantId = "t", Secret = "secret-G1", Required = "r", Count = 1 });
            db.Optionals.Add(new AtkOptional { Id = optional, A = "optional-G1", B = 1 });
            await db.SaveChangesAsync(Ct);
            await SetAsync(db, "AtkOptionals", "EfEnvelopeKey", optional, await RawAsync(db, "AtkNotes", "EfEnvelopeKey", note));
        }

        // A cold cache, so any provider call is seen.
        var cold = Options<AttackContext>(e => e.ConfigureKeyCache(c => c.MaxEntries = 78));
        _provider.Decrypts.Clear();
        await using var reader = new AttackContext(cold);
        await AssertRefusedAsync("AtkNote's key blob in an AtkOptional row",
            () => reader.Optionals.AsNoTracking().SingleAsync(n => n.Id == optional, Ct),
            n => $"A={n.A}");
        var noteEntity = typeof(AtkNote).FullName!;
        Assert.True(!_provider.Decrypts.Any(c => c.Contains(noteEntity, StringComparison.Ordinal)),
            $"The provider was asked to decrypt for the wrong entity: {string.Join(" | ", _provider.Decrypts)}");
    }

    [Fact]
    public async Task G2_a_forged_direct_mode_row_costs_at_most_one_provider_call_per_read()
    {
        var options = Options<AttackContext>(e => e.UseKeyWrappingMode(KeyWrappingMode.Direct));
        var id = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.Optionals.Add(new AtkOptional { Id = id, A = "optional-G2", B = 1 });
            await db.SaveChangesAsync(Ct);
            var key = (await RawAsync(db, "AtkOptionals", "EfEnvelopeKey", id))!;
            Assert.True(WrappedKeyBlob.TryParse(key, out var blob, out _));
            key[EnvelopeFormat.TailOffset + blob.TailLength - 1] ^= 1; // last byte of the provider-wrapped key
            await SetAsync(db, "AtkOptionals", "EfEnvelopeKey", id, key);
        }

        _provider.Decrypts.Clear();
        for (var i = 0; i < 3; i++)
        {
            await using var reader = new AttackContext(options);
            await Record.ExceptionAsync(() => reader.Optionals.AsNoTracking().SingleAsync(n => n.Id == id, Ct));
        }

        Assert.True(_provider.Decrypts.Count <= 3, $"3 async reads of one forged row made {_provider.Decrypts.Count} provider calls (failed unwraps not remembered, prefetch + materializer both ask).");
    }

    [Fact]
    public async Task G3_an_entity_name_with_terminal_escapes_read_from_a_blob_is_escaped_in_the_error()
    {
        var options = Options<AttackContext>();
        var id = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.Optionals.Add(new AtkOptional { Id = id, A = "optional-G3", B = 1 });
            await db.SaveChangesAsync(Ct);
            var key = (await RawAsync(db, "AtkOptionals", "EfEnvelopeKey", id))!;
            Assert.True(WrappedKeyBlob.TryParse(key, out var blob, out _));
            var entity = "\u001b[2J\u001b[31m\nFORGED LOG LINE: admin login ok\r\n";
            var wrapped = blob.ProviderWrapped.ToArray();
            var tail = EnvelopeFormat.BuildTail(blob.ProviderName, blob.KeyId, entity, wrapped);
            byte[] forged = [.. key.AsSpan(0, EnvelopeFormat.TailOffset), .. tail, .. blob.WrappedDek, .. blob.Trailer];
            await SetAsync(db, "AtkOptionals", "EfEnvelopeKey", id, forged);
        }

        await using var reader = new AttackContext(Options<AttackContext>(e => e.ConfigureKeyCache(c => c.MaxEntries = 79)));
        var error = await AssertRefusedAsync("entity name with control characters", () => reader.Optionals.AsNoTracking().SingleAsync(n => n.Id == id, Ct), n => $"A={n.A}");
        Assert.True(!error.Message.Any(char.IsControl), $"The error carries raw control characters from the blob: {error.Message.Replace("\u001b", "<ESC>", StringComparison.Ordinal)}");
    }

    // ---------------------------------------------------------------------------------------------------------
    // H. Lifecycle jobs over tampered rows; legitimate rows that must keep reading.
    // ---------------------------------------------------------------------------------------------------------

    [Fact]
    public async Task H1_ReencryptAsync_does_not_launder_a_downgraded_erased_direct_mode_record()
    {
        var options = Options<AttackContext>(e => e.UseKeyWrappingMode(KeyWrappingMode.Direct));
        var id = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.Optionals.Add(new AtkOptional { Id = id, A = "optional-H1", B = 5 });
            await db.SaveChangesAsync(Ct);
            var key = (await RawAsync(db, "AtkOptionals", "EfEnvelopeKey", id))!;
            await SetAsync(db, "AtkOptionals", "EfEnvelopeKey", id, DowngradeToVersion1(key, toDirect: true));
            await SetAsync(db, "AtkOptionals", "A", id, null);
            await SetAsync(db, "AtkOptionals", "B", id, null);
        }

        LifecycleResult result;
        await using (var job = new AttackContext(options))
        {
            result = await EnvelopeKeyLifecycle.ReencryptAsync(job, new LifecycleOptions { EntityTypes = { typeof(AtkOptional) } }, cancellationToken: Ct);
        }

        await using var reader = new AttackContext(options);
        var key2 = (await RawAsync(reader, "AtkOptionals", "EfEnvelopeKey", id))!;
        Assert.True(result.Failures.Count == 1 && key2[0] == EnvelopeFormat.Version,
            $"NOT DETECTED: ReencryptAsync ({result.RecordsChanged} changed, {result.Failures.Count} failed) turned the erased record into a version {key2[0]} record that verifies: {(await EnvelopeKeyLifecycle.VerifyAsync(reader, cancellationToken: Ct)).Succeeded}");
    }

    [Fact]
    public async Task H2_RotateAsync_refuses_a_row_with_an_erased_value_and_leaves_it_unchanged()
    {
        var options = Options<AttackContext>();
        var id = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.Optionals.Add(new AtkOptional { Id = id, A = "optional-H2", B = 5 });
            await db.SaveChangesAsync(Ct);
            await SetAsync(db, "AtkOptionals", "A", id, null);
        }

        LifecycleResult result;
        byte[] before;
        await using (var job = new AttackContext(options))
        {
            before = (await RawAsync(job, "AtkOptionals", "EfEnvelopeKey", id))!;
            result = await EnvelopeKeyLifecycle.RotateAsync(job, new LifecycleOptions { TargetKeyId = "secondary", EntityTypes = { typeof(AtkOptional) } }, cancellationToken: Ct);
        }

        await using var reader = new AttackContext(options);
        Assert.Single(result.Failures);
        Assert.Equal(before, await RawAsync(reader, "AtkOptionals", "EfEnvelopeKey", id));
        await AssertRefusedAsync("after RotateAsync", () => reader.Optionals.AsNoTracking().SingleAsync(n => n.Id == id, Ct), n => $"A={n.A ?? "null"}");
    }

    [Theory]
    [InlineData("DateTime Utc")]
    [InlineData("DateTime Unspecified")]
    [InlineData("decimal 1.00")]
    [InlineData("decimal 1.5")]
    public async Task H3_a_legitimate_row_with_a_bound_column_still_reads_after_the_database_round_trip(string value)
    {
        var options = Options<AttackContext>();
        var id = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            if (value.StartsWith("DateTime", StringComparison.Ordinal))
            {
                var now = new DateTime(2026, 12, 1, 7, 30, 0, value.EndsWith("Utc", StringComparison.Ordinal) ? DateTimeKind.Utc : DateTimeKind.Unspecified);
                db.Stamps.Add(new AtkStamp { Id = id, CreatedUtc = now, Secret = "stamp-H3" });
            }
            else
            {
                db.Prices.Add(new AtkPrice { Id = id, Price = value == "decimal 1.00" ? 1.00m : 1.5m, Secret = "price-H3" });
            }

            await db.SaveChangesAsync(Ct);
        }

        await using var reader = new AttackContext(options);
        var error = value.StartsWith("DateTime", StringComparison.Ordinal)
            ? await Record.ExceptionAsync(() => reader.Stamps.AsNoTracking().SingleAsync(s => s.Id == id, Ct))
            : await Record.ExceptionAsync(() => reader.Prices.AsNoTracking().SingleAsync(s => s.Id == id, Ct));
        Assert.True(error is null, $"A legitimate row with a bound {value} column is refused: {error?.Message}");
    }

    [Fact]
    public async Task A2b_the_same_rewrite_with_a_cold_key_cache_is_refused()
    {
        var id = Guid.NewGuid();
        await using (var db = new AttackContext(Options<AttackContext>()))
        {
            await CreateAsync(db);
            db.Notes.Add(new AtkNote { Id = id, TenantId = "t", Secret = "secret-A2b", Required = "required-A2b", Count = 42 });
            await db.SaveChangesAsync(Ct);
            var key = (await RawAsync(db, "AtkNotes", "EfEnvelopeKey", id))!;
            await SetAsync(db, "AtkNotes", "EfEnvelopeKey", id, DowngradeToVersion1(key, toDirect: true));
            await SetAsync(db, "AtkNotes", "Secret", id, null);
            await SetAsync(db, "AtkNotes", "Required", id, Array.Empty<byte>());
            await SetAsync(db, "AtkNotes", "Count", id, Array.Empty<byte>());
        }

        await using var reader = new AttackContext(Options<AttackContext>(e => e.ConfigureKeyCache(c => c.MaxEntries = 80)));
        await AssertRefusedAsync("mode 1 v2 blob rewritten to v1 + direct mode, cold cache",
            () => reader.Notes.AsNoTracking().SingleAsync(n => n.Id == id, Ct),
            n => $"Secret={n.Secret ?? "null"}, Required='{n.Required}', Count={n.Count}");
    }

    /// <summary>Pins a gap docs/SECURITY.md lists: Documented: as D5 (the default, without BindStoreGeneratedKeys()), through attach and edit. docs/SECURITY.md.</summary>
    [Fact]
    public Task D6_identity_keyed_record_moved_then_an_attach_and_edit_seals_it_to_the_new_row_is_still_the_documented_gap() => AssertDocumentedGapAsync(D6_identity_keyed_record_moved_then_an_attach_and_edit_seals_it_to_the_new_row);

    private async Task D6_identity_keyed_record_moved_then_an_attach_and_edit_seals_it_to_the_new_row()
    {
        var options = Options<AttackContext>();
        int a, b;
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            var ra = new AtkCounter { Secret = "counter-A-D6" };
            var rb = new AtkCounter { Secret = "counter-B-D6" };
            db.Counters.AddRange(ra, rb);
            await db.SaveChangesAsync(Ct);
            (a, b) = (ra.Id, rb.Id);
            foreach (var column in new[] { "EfEnvelopeKey", "Secret" })
            {
                await SetAsync(db, "AtkCounters", column, b, await RawAsync(db, "AtkCounters", column, a));
            }
        }

        // The application edits B through attach (it believes B holds counter-B-D6).
        Exception? attachError;
        await using (var db = new AttackContext(options))
        {
            var stub = new AtkCounter { Id = b, Secret = "counter-B-D6" };
            db.Attach(stub);
            stub.Secret = "counter-B-D6-edited";
            attachError = await Record.ExceptionAsync(() => db.SaveChangesAsync(Ct));
        }

        await using var reader = new AttackContext(options);
        var key = (await RawAsync(reader, "AtkCounters", "EfEnvelopeKey", b))!;
        var keyA = (await RawAsync(reader, "AtkCounters", "EfEnvelopeKey", a))!;
        Assert.True(WrappedKeyBlob.TryParse(key, out var blob, out _));
        Assert.True(WrappedKeyBlob.TryParse(keyA, out var blobA, out _));
        Assert.True(attachError is EnvelopeDecryptionException,
            $"NOT DETECTED: attach + edit of row B holding A's record succeeded ({attachError?.GetType().Name ?? "no error"}); B now uses A's record id: {blob.RecordId.SequenceEqual(blobA.RecordId)}, B's flags {blob.BindingFlags}");
    }

    [Fact]
    public async Task H4_a_projection_of_a_tampered_record_is_refused()
    {
        var options = Options<AttackContext>();
        var id = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.Optionals.Add(new AtkOptional { Id = id, A = "optional-H4", B = 5 });
            await db.SaveChangesAsync(Ct);
            await SetAsync(db, "AtkOptionals", "B", id, null);
        }

        await using var reader = new AttackContext(options);
        await AssertRefusedAsync("projection Select(n => new { n.Id, n.A }) with B erased",
            () => reader.Optionals.Where(n => n.Id == id).Select(n => new { n.Id, n.A }).SingleAsync(Ct),
            n => $"A={n.A}");
    }

    [Fact]
    public async Task H5_a_whole_older_row_replayed_reads_as_the_older_version_by_design()
    {
        var options = Options<AttackContext>();
        var id = Guid.NewGuid();
        await using (var db = new AttackContext(options))
        {
            await CreateAsync(db);
            db.Optionals.Add(new AtkOptional { Id = id, A = "old-H5", B = 1 });
            await db.SaveChangesAsync(Ct);
        }

        byte[]? key, colA, colB;
        await using (var db = new AttackContext(options))
        {
            (key, colA, colB) = (await RawAsync(db, "AtkOptionals", "EfEnvelopeKey", id), await RawAsync(db, "AtkOptionals", "A", id), await RawAsync(db, "AtkOptionals", "B", id));
            var tracked = await db.Optionals.SingleAsync(n => n.Id == id, Ct);
            tracked.A = "new-H5";
            await db.SaveChangesAsync(Ct);
            await SetAsync(db, "AtkOptionals", "EfEnvelopeKey", id, key);
            await SetAsync(db, "AtkOptionals", "A", id, colA);
            await SetAsync(db, "AtkOptionals", "B", id, colB);
        }

        await using var reader = new AttackContext(options);
        Assert.Equal("old-H5", (await reader.Optionals.AsNoTracking().SingleAsync(n => n.Id == id, Ct)).A);
    }

    [Fact]
    public async Task I1_a_JSON_owned_type_whose_only_property_is_encrypted_can_be_queried()
    {
        var options = Options<JsonOnlyContext>();
        var id = Guid.NewGuid();
        await using (var db = new JsonOnlyContext(options))
        {
            await CreateAsync(db);
            db.Holders.Add(new AtkJsonHolder { Id = id, Vault = new AtkVault { Secret = "vault-I1" } });
            await db.SaveChangesAsync(Ct);
        }

        await using var reader = new JsonOnlyContext(options);
        var error = await Record.ExceptionAsync(() => reader.Holders.AsNoTracking().SingleAsync(h => h.Id == id, Ct));
        Assert.True(error is null, $"CRASH: {error?.GetType().FullName}: {error?.Message}");
    }

    /// <summary>Records every unwrap the library asks for (the context's pairs), like CloudTrail would.</summary>
    private sealed class CountingProvider(IMasterKeyProvider inner) : IMasterKeyProvider
    {
        public ConcurrentQueue<string> Decrypts { get; } = new();

        public string Name => inner.Name;

        public string PrimaryKeyId => inner.PrimaryKeyId;

        public bool IsKeyConfigured(string keyId) => inner.IsKeyConfigured(keyId);

        public Task<GeneratedDataKey> GenerateDataKeyAsync(string keyId, KeyContext context, CancellationToken cancellationToken) =>
            inner.GenerateDataKeyAsync(keyId, context, cancellationToken);

        public Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, KeyContext context, CancellationToken cancellationToken)
        {
            Decrypts.Enqueue(context.ToString());
            return inner.DecryptDataKeyAsync(keyId, wrappedKey, context, cancellationToken);
        }
    }
}

public class AtkNote
{
    public Guid Id { get; set; }

    public string TenantId { get; set; } = "";

    [Encrypted]
    public string? Secret { get; set; }

    [Encrypted]
    public string Required { get; set; } = "";

    [Encrypted]
    public int Count { get; set; }
}

public class AtkOptional
{
    public Guid Id { get; set; }

    [Encrypted]
    public string? A { get; set; }

    [Encrypted]
    public int? B { get; set; }
}

public class AtkLegacy
{
    public Guid Id { get; set; }

    [Encrypted(LegacyPlaintextColumn = "Email_Plain")]
    public string? Email { get; set; }

    [Encrypted]
    public string? Other { get; set; }
}

public class AtkPayment
{
    public Guid Id { get; set; }

    public decimal Amount { get; set; }

    [Encrypted]
    public string? Memo { get; set; }
}

public class AtkCharge : AtkPayment
{
    [Encrypted]
    public string? CardLast4 { get; set; }
}

public class AtkRefund : AtkPayment;

public class AtkProfile
{
    public Guid Id { get; set; }

    public string Name { get; set; } = "";

    public AtkPrefs? Prefs { get; set; }
}

public class AtkPrefs
{
    public string Theme { get; set; } = "dark";

    [Encrypted]
    public string? Secret { get; set; }
}

public class AtkPerson
{
    public Guid Id { get; set; }

    public List<AtkPhone> Phones { get; set; } = [];
}

public class AtkPhone
{
    public Guid Id { get; set; } = Guid.NewGuid();

    public string Kind { get; set; } = "";

    [Encrypted]
    public string Number { get; set; } = "";
}

public readonly record struct AtkOrderId(Guid Value);

public class AtkOrder
{
    public AtkOrderId Id { get; set; }

    [Encrypted]
    public string Secret { get; set; } = "";
}

public class AtkCounter
{
    public int Id { get; set; }

    [Encrypted]
    public string Secret { get; set; } = "";
}

public class AtkTenantDoc
{
    public Guid Id { get; set; }

    public string TenantId { get; set; } = "";

    [Encrypted]
    public string Secret { get; set; } = "";
}

public class AtkTenantCounter
{
    public int Id { get; set; }

    public string TenantId { get; set; } = "";

    [Encrypted]
    public string Secret { get; set; } = "";
}

public class AtkStamp
{
    public Guid Id { get; set; }

    public DateTime CreatedUtc { get; set; }

    [Encrypted]
    public string Secret { get; set; } = "";
}

public class AtkPrice
{
    public Guid Id { get; set; }

    public decimal Price { get; set; }

    [Encrypted]
    public string Secret { get; set; } = "";
}

public class AttackContext(DbContextOptions<AttackContext> options) : DbContext(options)
{
    public DbSet<AtkNote> Notes => Set<AtkNote>();

    public DbSet<AtkOptional> Optionals => Set<AtkOptional>();

    public DbSet<AtkLegacy> Legacies => Set<AtkLegacy>();

    public DbSet<AtkPayment> Payments => Set<AtkPayment>();

    public DbSet<AtkProfile> Profiles => Set<AtkProfile>();

    public DbSet<AtkPerson> People => Set<AtkPerson>();

    public DbSet<AtkCounter> Counters => Set<AtkCounter>();

    public DbSet<AtkTenantDoc> TenantDocs => Set<AtkTenantDoc>();

    public DbSet<AtkTenantCounter> TenantCounters => Set<AtkTenantCounter>();

    public DbSet<AtkStamp> Stamps => Set<AtkStamp>();

    public DbSet<AtkPrice> Prices => Set<AtkPrice>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<AtkNote>().ToTable("AtkNotes");
        modelBuilder.Entity<AtkOptional>().ToTable("AtkOptionals");
        modelBuilder.Entity<AtkLegacy>().ToTable("AtkLegacies");
        modelBuilder.Entity<AtkPayment>().ToTable("AtkPayments");
        modelBuilder.Entity<AtkCharge>();
        modelBuilder.Entity<AtkRefund>();
        modelBuilder.Entity<AtkProfile>().ToTable("AtkProfiles").OwnsOne(p => p.Prefs, o => o.ToJson());
        modelBuilder.Entity<AtkPerson>().ToTable("AtkPeople").OwnsMany(p => p.Phones, o =>
        {
            o.ToTable("AtkPhones");
            o.HasKey(x => x.Id);
        });
        modelBuilder.Entity<AtkCounter>().ToTable("AtkCounters");
        modelBuilder.Entity<AtkTenantDoc>().ToTable("AtkTenantDocs");
        modelBuilder.Entity<AtkTenantCounter>().ToTable("AtkTenantCounters");
        modelBuilder.Entity<AtkStamp>(b =>
        {
            b.ToTable("AtkStamps");
            b.Property(s => s.CreatedUtc).IsBoundToRecord();
        });
        modelBuilder.Entity<AtkPrice>().ToTable("AtkPrices").Property(p => p.Price).IsBoundToRecord();
    }
}

/// <summary>Kept apart: lifecycle jobs refuse a key type they cannot page by, which would stop the jobs of the other tests.</summary>
public class OrderContext(DbContextOptions<OrderContext> options) : DbContext(options)
{
    public DbSet<AtkOrder> Orders => Set<AtkOrder>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<AtkOrder>().ToTable("AtkOrders").Property(o => o.Id)
            .HasConversion(new ValueConverter<AtkOrderId, Guid>(v => v.Value, v => new AtkOrderId(v)));
}

public class AtkJsonHolder
{
    public Guid Id { get; set; }

    public AtkVault? Vault { get; set; }
}

public class AtkVault
{
    [Encrypted]
    public string? Secret { get; set; }
}

public class JsonOnlyContext(DbContextOptions<JsonOnlyContext> options) : DbContext(options)
{
    public DbSet<AtkJsonHolder> Holders => Set<AtkJsonHolder>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<AtkJsonHolder>().ToTable("AtkJsonHolders").OwnsOne(h => h.Vault, o => o.ToJson());
}
