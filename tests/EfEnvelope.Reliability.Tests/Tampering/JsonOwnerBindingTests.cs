using EfEnvelope.Specification.Tests;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Reliability.Tests.Tampering;

#pragma warning disable EF1002 // raw SQL built from the test's own constant table and column names

/// <summary>
/// A JSON-mapped owned record is sealed to its owner's key (docs/FORMAT.md, "Record seal"): its document copied into
/// another owner's row with plain SQL on SQLite is refused, and legitimate documents read.
/// </summary>
public sealed class JsonOwnerBindingTests : IDisposable
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"efenvelope-json-owner-{Guid.NewGuid():N}.db");
    private readonly KeyManagement.InsecureInMemoryMasterKeyProvider _provider = new("primary");

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose()
    {
        foreach (var suffix in new[] { "", "-wal", "-shm", "-journal" })
        {
            File.Delete(_path + suffix);
        }
    }

    private JsonOwnerContext NewContext() => new(new DbContextOptionsBuilder<JsonOwnerContext>()
        .UseSqlite($"Data Source={_path};Pooling=False")
        .ManyConfigurationsPerProcess()
        .UseEnvelopeEncryption(e => e.UseProvider(_provider))
        .Options);

    // Cold: a logger factory of its own makes it another configuration, with its own (empty) key cache.
    private JsonOwnerContext NewContext(KeyWrappingMode mode, bool cold = false) => new(new DbContextOptionsBuilder<JsonOwnerContext>()
        .UseSqlite($"Data Source={_path};Pooling=False")
        .ManyConfigurationsPerProcess()
        .UseEnvelopeEncryption(e =>
        {
            e.UseProvider(_provider).UseKeyWrappingMode(mode);
            if (cold)
            {
                e.UseLoggerFactory(new Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory());
            }
        })
        .Options);

    [Fact]
    public async Task A_JSON_owned_document_copied_into_another_owners_row_is_refused_and_the_owners_own_documents_read()
    {
        var alice = new JoProfile { Name = "alice", Prefs = new JoPrefs { Secret = "alice-secret" }, Contacts = [new JoContact { Phone = "alice-phone" }] };
        var bob = new JoProfile { Name = "bob", Prefs = new JoPrefs { Secret = "bob-secret" }, Contacts = [new JoContact { Phone = "bob-phone" }] };
        await using (var db = NewContext())
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Profiles.AddRange(alice, bob);
            await db.SaveChangesAsync(Ct);
        }

        await using (var reader = NewContext())
        {
            var read = await reader.Profiles.AsNoTracking().SingleAsync(p => p.Id == bob.Id, Ct);
            Assert.Equal(("bob-secret", "bob-phone"), (read.Prefs!.Secret, read.Contacts.Single().Phone));
        }

        foreach (var column in new[] { "Prefs", "Contacts" })
        {
            await using (var db = NewContext())
            {
                var original = await db.Database.SqlQueryRaw<string>($"SELECT \"{column}\" AS \"Value\" FROM \"Profiles\" WHERE \"Id\" = {{0}}", bob.Id).SingleAsync(Ct);
                await CopyAsync(db, column, alice.Id, bob.Id);
                await using var reader = NewContext();
                var error = await Record.ExceptionAsync(() => reader.Profiles.AsNoTracking().SingleAsync(p => p.Id == bob.Id, Ct));
                var refused = Assert.IsType<EnvelopeDecryptionException>(error);
                Assert.DoesNotContain("alice", refused.Message, StringComparison.Ordinal);
                await db.Database.ExecuteSqlRawAsync($"UPDATE \"Profiles\" SET \"{column}\" = {{0}} WHERE \"Id\" = {{1}}", [original, bob.Id], Ct);
            }
        }
    }

    [Fact]
    public async Task An_item_repeated_inside_a_JSON_collection_is_refused_and_documents_with_distinct_items_read()
    {
        var alice = new JoProfile
        {
            Name = "alice",
            Contacts =
            [
                new JoContact { Phone = "alice-1", Numbers = [new JoNumber { Value = "alice-1-1" }, new JoNumber { Value = "alice-1-2" }] },
                new JoContact { Phone = "alice-2", Numbers = [new JoNumber { Value = "alice-2-1" }] },
                new JoContact { Phone = "alice-3" },
            ],
        };
        var bob = new JoProfile { Name = "bob", Contacts = [new JoContact { Phone = "bob-1" }, new JoContact { Phone = "bob-2", Numbers = [new JoNumber { Value = "bob-2-1" }] }] };
        var carol = new JoProfile { Name = "carol", Contacts = [new JoContact { Phone = "carol-1", Numbers = [new JoNumber { Value = "carol-1-1" }] }, new JoContact { Phone = "carol-2" }] };
        await using (var db = NewContext())
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Profiles.AddRange(alice, bob, carol);
            await db.SaveChangesAsync(Ct);
        }

        // Documents read one after another, each from its first item, and the same document twice, are not repeats.
        await using (var reader = NewContext())
        {
            var all = await reader.Profiles.AsNoTracking().OrderBy(p => p.Name).ToListAsync(Ct);
            Assert.Equal(["alice-1", "alice-2", "alice-3", "bob-1", "bob-2", "carol-1", "carol-2"], all.SelectMany(p => p.Contacts).Select(c => c.Phone));
            Assert.Equal(["alice-1-1", "alice-1-2", "alice-2-1", "bob-2-1", "carol-1-1"], all.SelectMany(p => p.Contacts).SelectMany(c => c.Numbers).Select(n => n.Value));
            Assert.Equal(3, (await reader.Profiles.AsNoTracking().SingleAsync(p => p.Id == alice.Id, Ct)).Contacts.Count);
            Assert.Equal(3, (await reader.Profiles.SingleAsync(p => p.Id == alice.Id, Ct)).Contacts.Count);
        }

        // A writer replaces alice's third contact by a copy of her first, or appends the copy, or copies a number of
        // her first contact into her second contact's numbers.
        await using (var db = NewContext())
        {
            var original = await ContactsAsync(db, alice.Id);
            var items = System.Text.Json.Nodes.JsonNode.Parse(original)!.AsArray();
            var first = items[0]!.ToJsonString();
            var replaced = "[" + string.Join(",", items[0]!.ToJsonString(), items[1]!.ToJsonString(), first) + "]";
            var appended = "[" + string.Join(",", items.Select(i => i!.ToJsonString()).Append(first)) + "]";
            var nested = System.Text.Json.Nodes.JsonNode.Parse(original)!.AsArray();
            nested[1]!["Numbers"]!.AsArray().Add(System.Text.Json.Nodes.JsonNode.Parse(nested[0]!["Numbers"]![0]!.ToJsonString()));
            // A copy of the third item (which has no nested items) with its key column encoded once more (hexadecimal
            // of its hexadecimal text): EF decodes it once and EfEnvelope, which decodes blobs that arrive as text,
            // once again, so the items are compared decoded (a review found them compared before decoding).
            var doubled = System.Text.Json.Nodes.JsonNode.Parse(items[2]!.ToJsonString())!;
            doubled["EfEnvelopeKey"] = Convert.ToHexString(System.Text.Encoding.ASCII.GetBytes(doubled["EfEnvelopeKey"]!.GetValue<string>()));
            var appendedDoubled = "[" + string.Join(",", items.Select(i => i!.ToJsonString()).Append(doubled.ToJsonString())) + "]";
            foreach (var (what, document) in new[]
            {
                ("third item replaced by the first", replaced), ("first item appended", appended),
                ("a nested item copied into another item's collection", nested.ToJsonString()), ("third item appended, its key column encoded twice", appendedDoubled),
            })
            {
                await db.Database.ExecuteSqlRawAsync("UPDATE \"Profiles\" SET \"Contacts\" = {0} WHERE \"Id\" = {1}", [document, alice.Id], Ct);
                foreach (var tracking in new[] { false, true })
                {
                    await using var reader = NewContext();
                    var query = tracking ? reader.Profiles.AsTracking() : reader.Profiles.AsNoTracking();
                    var error = await Record.ExceptionAsync(() => query.OrderBy(p => p.Name).ToListAsync(Ct));
                    var refused = error as EnvelopeDecryptionException;
                    Assert.True(refused is not null, $"{what} (tracking: {tracking}) was not refused: {error}");
                    Assert.Contains("repeats an earlier item of the same document", refused.Message, StringComparison.Ordinal);
                    Assert.DoesNotContain("alice-", refused.Message, StringComparison.Ordinal);
                }
            }

            // Encoded twice more (three layers): EfEnvelope decodes one layer only, and only to a blob, so the check
            // and decryption see the same bytes, and a value still text is refused (a review read it with two
            // decodings, one before the check and one before decryption).
            var tripled = System.Text.Json.Nodes.JsonNode.Parse(doubled.ToJsonString())!;
            tripled["EfEnvelopeKey"] = Convert.ToHexString(System.Text.Encoding.ASCII.GetBytes(tripled["EfEnvelopeKey"]!.GetValue<string>()));
            await db.Database.ExecuteSqlRawAsync(
                "UPDATE \"Profiles\" SET \"Contacts\" = {0} WHERE \"Id\" = {1}",
                ["[" + string.Join(",", items.Select(i => i!.ToJsonString()).Append(tripled.ToJsonString())) + "]", alice.Id],
                Ct);
            await using (var reader = NewContext())
            {
                await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => reader.Profiles.AsNoTracking().OrderBy(p => p.Name).ToListAsync(Ct));
            }

            await db.Database.ExecuteSqlRawAsync("UPDATE \"Profiles\" SET \"Contacts\" = {0} WHERE \"Id\" = {1}", [original, alice.Id], Ct);
        }

        await using (var reader = NewContext())
        {
            Assert.Equal(["alice-1", "alice-2", "alice-3"], (await reader.Profiles.AsNoTracking().SingleAsync(p => p.Id == alice.Id, Ct)).Contacts.Select(c => c.Phone));
        }
    }

    // Keys are remembered per thread between reads: a later context on the same thread (a thread-pool thread serving
    // the next request) must not take an item for a repeat because an earlier context read it at another position.
    [Fact]
    public async Task An_item_read_by_index_in_another_context_after_the_document_was_rewritten_is_not_a_repeat()
    {
        var frank = new JoProfile { Name = "frank", Contacts = [new JoContact { Phone = "frank-1" }, new JoContact { Phone = "frank-2" }] };
        await using (var db = NewContext())
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Profiles.Add(frank);
            await db.SaveChangesAsync(Ct);
        }

        // One query shape, the index a parameter: both reads run the same compiled query.
        static JoContact ContactAt(JsonOwnerContext db, Guid id, int index) =>
            db.Profiles.AsNoTracking().Where(p => p.Id == id).Select(p => p.Contacts[index]).Single();

        using (var first = NewContext())
        {
            Assert.Equal("frank-1", ContactAt(first, frank.Id, 0).Phone);
        }

        // Another application rewrites the document with the same items in the other order (a legitimate rewrite:
        // each item keeps its own seal, and a JSON item is not bound to its position).
        await using (var db = NewContext())
        {
            var items = System.Text.Json.Nodes.JsonNode.Parse(await ContactsAsync(db, frank.Id))!.AsArray();
            var swapped = "[" + items[1]!.ToJsonString() + "," + items[0]!.ToJsonString() + "]";
            await db.Database.ExecuteSqlRawAsync("UPDATE \"Profiles\" SET \"Contacts\" = {0} WHERE \"Id\" = {1}", [swapped, frank.Id], Ct);
        }

        using var second = NewContext();
        Assert.Equal("frank-1", ContactAt(second, frank.Id, 1).Phone);
    }

    // The keys of JSON-mapped owned records are inside the document, where the async prefetch looks as well. In direct
    // mode each record's key is the provider's, so a cold read needs one provider call per item (the owner has no
    // encrypted property of its own): an async query makes them before EF materializes the row, also when it projects
    // the collection alone; a synchronous one makes them on the calling thread.
    [Fact]
    public async Task A_cold_async_read_unwraps_JSON_item_keys_ahead_of_materialization()
    {
        var profile = new JoProfile { Name = "dana", Contacts = [new JoContact { Phone = "dana-1" }, new JoContact { Phone = "dana-2" }] };
        var plain = new JoProfile { Name = "erin" };
        await using (var db = NewContext(KeyWrappingMode.Direct))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Profiles.AddRange(profile, plain);
            await db.SaveChangesAsync(Ct);
        }

        await using (var cold = NewContext(KeyWrappingMode.Direct, cold: true))
        {
            Assert.Equal("erin", (await cold.Profiles.AsNoTracking().SingleAsync(p => p.Id == plain.Id, Ct)).Name);
            Assert.Equal(0, cold.GetEnvelopeKeyCacheStatistics().SynchronousMisses);
        }

        await using (var reader = NewContext(KeyWrappingMode.Direct, cold: true))
        {
            var read = await reader.Profiles.AsNoTracking().SingleAsync(p => p.Id == profile.Id, Ct);
            Assert.Equal(["dana-1", "dana-2"], read.Contacts.Select(c => c.Phone));
            Assert.Equal(0, reader.GetEnvelopeKeyCacheStatistics().SynchronousMisses);
            Assert.Equal(2, reader.GetEnvelopeKeyCacheStatistics().Misses);
        }

        await using (var projection = NewContext(KeyWrappingMode.Direct, cold: true))
        {
            var contacts = await projection.Profiles.AsNoTracking().Where(p => p.Id == profile.Id).Select(p => p.Contacts).SingleAsync(Ct);
            Assert.Equal(["dana-1", "dana-2"], contacts.Select(c => c.Phone));
            Assert.Equal(0, projection.GetEnvelopeKeyCacheStatistics().SynchronousMisses);
        }

        using var synchronous = NewContext(KeyWrappingMode.Direct, cold: true);
        Assert.Equal(["dana-1", "dana-2"], synchronous.Profiles.AsNoTracking().Single(p => p.Id == profile.Id).Contacts.Select(c => c.Phone));
        Assert.Equal(2, synchronous.GetEnvelopeKeyCacheStatistics().SynchronousMisses);
    }

    private static Task<string> ContactsAsync(DbContext db, Guid id) =>
        db.Database.SqlQueryRaw<string>("SELECT \"Contacts\" AS \"Value\" FROM \"Profiles\" WHERE \"Id\" = {0}", id).SingleAsync(Ct);

    private static Task<int> CopyAsync(DbContext db, string column, Guid from, Guid to) =>
        db.Database.ExecuteSqlRawAsync($"UPDATE \"Profiles\" SET \"{column}\" = (SELECT \"{column}\" FROM \"Profiles\" WHERE \"Id\" = {{0}}) WHERE \"Id\" = {{1}}", [from, to], Ct);

    public class JoProfile
    {
        public Guid Id { get; set; } = Guid.NewGuid();

        public string Name { get; set; } = "";

        public JoPrefs? Prefs { get; set; }

        public List<JoContact> Contacts { get; set; } = [];
    }

    public class JoPrefs
    {
        [Encrypted]
        public string? Secret { get; set; }
    }

    public class JoContact
    {
        [Encrypted]
        public string Phone { get; set; } = "";

        public List<JoNumber> Numbers { get; set; } = [];
    }

    public class JoNumber
    {
        [Encrypted]
        public string Value { get; set; } = "";
    }

    public sealed class JsonOwnerContext(DbContextOptions<JsonOwnerContext> options) : DbContext(options)
    {
        public DbSet<JoProfile> Profiles => Set<JoProfile>();

        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            var profile = modelBuilder.Entity<JoProfile>().ToTable("Profiles");
            profile.OwnsOne(p => p.Prefs, o => o.ToJson());
            profile.OwnsMany(p => p.Contacts, o =>
            {
                o.ToJson();
                o.OwnsMany(c => c.Numbers);
            });
        }
    }
}
