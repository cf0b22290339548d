using System.Diagnostics;
using System.Security.Cryptography;
using EfEnvelope.Crypto;
using EfEnvelope.Infrastructure;
using EfEnvelope.KeyManagement;
using EfEnvelope.Metadata;
using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;

namespace EfEnvelope.Reliability.Tests.Hostile;

/// <summary>
/// Random and mutated inputs to the two stored-blob parsers, for a bounded time: the wrapped-key parser and the
/// field decrypt path (including values that authenticate but do not decode). Only the library's documented
/// exceptions, no hang, and no allocation that a forged length could inflate.
/// </summary>
public sealed class ParserFuzzTests : IDisposable
{
    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(2);

    private readonly SqliteConnection _connection = new("Data Source=:memory:");
    private readonly InsecureInMemoryMasterKeyProvider _provider = new("fuzz");
    private readonly ClinicContext _db;

    public ParserFuzzTests()
    {
        _connection.Open();
        _db = new ClinicContext(new DbContextOptionsBuilder<ClinicContext>()
            .UseSqlite(_connection)
            .ManyConfigurationsPerProcess()
            .UseEnvelopeEncryption(e => e.UseProvider(_provider))
            .Options);
        _db.Database.EnsureCreated();
    }

    public void Dispose()
    {
        _db.Dispose();
        _connection.Dispose();
    }

    private EnvelopeRuntime Runtime => _db.GetService<EnvelopeRuntime>();

    private EncryptedEntity Entity<T>() => Runtime.Find(_db.Model.FindEntityType(typeof(T))!)!;

    private byte[] ValidKeyBlob()
    {
        var patient = new Patient { Id = Guid.NewGuid(), Ssn = "fuzz", DateOfBirth = new DateOnly(2000, 1, 1) };
        _db.Patients.Add(patient);
        _db.SaveChanges();
        return _db.Entry(patient).Property<byte[]>("EfEnvelopeKey").CurrentValue;
    }

    private static byte[] Mutate(byte[] valid, Random random)
    {
        var mutated = MutateOnce(valid, random);

        // A mutation can happen to write the bytes that were there (0xFF over 0xFF): then it is no mutation.
        if (mutated.AsSpan().SequenceEqual(valid))
        {
            mutated[random.Next(mutated.Length)] ^= 0x01;
        }

        return mutated;
    }

    private static byte[] MutateOnce(byte[] valid, Random random)
    {
        var blob = valid.ToArray();
        switch (random.Next(6))
        {
            case 0:
                blob[random.Next(blob.Length)] ^= (byte)random.Next(1, 256);
                break;
            case 1:
                // At least one byte left: an empty value of a non-nullable property is a migration's default, not a truncation.
                return blob[..random.Next(1, blob.Length)];
            case 2:
                return [.. blob, .. RandomNumberGenerator.GetBytes(random.Next(1, 64))];
            case 3:
                // Forge a length field (provider name, key id, entity or wrapped key) to its maximum.
                var at = random.Next(18, Math.Min(blob.Length - 1, 120));
                blob[at] = 0xFF;
                blob[at + 1] = 0xFF;
                break;
            case 4:
                var start = random.Next(blob.Length);
                return [.. blob[..start], .. blob[Math.Min(blob.Length, start + random.Next(1, 8))..]];
            default:
                random.NextBytes(blob.AsSpan(random.Next(blob.Length)));
                break;
        }

        return blob;
    }

    [Fact]
    public void The_wrapped_key_parser_never_throws_and_allocates_nothing_that_a_forged_length_controls()
    {
        var valid = ValidKeyBlob();
        Seeds.Run(nameof(The_wrapped_key_parser_never_throws_and_allocates_nothing_that_a_forged_length_controls), random =>
        {
            // Warm up the parser's code paths so that JIT allocations are not counted.
            for (var i = 0; i < 100; i++)
            {
                WrappedKeyBlob.TryParse(Mutate(valid, random), out _, out _);
            }

            var stopwatch = Stopwatch.StartNew();
            var inputs = 0;
            long worstAllocation = 0;
            while (stopwatch.Elapsed < Budget)
            {
                var input = random.Next(4) == 0 ? RandomNumberGenerator.GetBytes(random.Next(0, 400)) : Mutate(valid, random);
                if (random.Next(8) == 0 && input.Length > 2)
                {
                    // A plausible header over random bytes reaches the deeper length checks.
                    input[0] = EnvelopeFormat.Version;
                    input[1] = (byte)random.Next(1, 3);
                }

                var before = GC.GetAllocatedBytesForCurrentThread();
                var parsed = WrappedKeyBlob.TryParse(input, out var blob, out var error);
                var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

                // Only the error message is allocated: never anything sized by the input.
                worstAllocation = Math.Max(worstAllocation, allocated);
                Assert.True(allocated <= 512, $"TryParse of {input.Length} bytes allocated {allocated} bytes");
                Assert.Equal(parsed, error is null);
                if (parsed)
                {
                    // Everything a parsed view exposes lies inside the input.
                    Assert.True(blob.Tail.Length < input.Length);
                    Assert.True(blob.KeyId.Length <= input.Length && blob.Entity.Length <= input.Length && blob.ProviderName.Length <= input.Length);
                    Assert.True(blob.ProviderWrapped.Length < input.Length);
                    if (blob.Mode == EnvelopeFormat.ModeCachedKek)
                    {
                        Assert.Equal(EnvelopeFormat.WrappedDekSize, blob.WrappedDek.Length);
                    }
                }

                inputs++;
            }

            TestContext.Current.TestOutputHelper?.WriteLine($"{inputs} inputs, worst allocation {worstAllocation} bytes");
            Assert.True(inputs > 1000);
        });
    }

    [Fact]
    public async Task Reading_mutated_wrapped_keys_fails_only_with_the_documented_errors()
    {
        var valid = ValidKeyBlob();
        var encrypted = Entity<Patient>();
        // The record's own field blobs, in the order the runtime expects them after the key, then the key value its
        // seal binds.
        var entry = _db.Entry(_db.Patients.Local.Single());
        object?[] fields = [.. encrypted.Properties.Select(p => (object?)entry.Property(p.Ciphertext.Name).CurrentValue), entry.Property("Id").CurrentValue];
        await Seeds.RunAsync(nameof(Reading_mutated_wrapped_keys_fails_only_with_the_documented_errors), async random =>
        {
            var stopwatch = Stopwatch.StartNew();
            var outcomes = new Dictionary<string, int>();
            while (stopwatch.Elapsed < Budget)
            {
                var key = random.Next(5) == 0 ? RandomNumberGenerator.GetBytes(random.Next(0, 300)) : Mutate(valid, random);
                var entity = new Patient();
                var outcome = "decrypted";
                try
                {
                    Runtime.Decrypt(encrypted, entity, [key, .. fields], snapshot: false);
                    Assert.Equal("fuzz", entity.Ssn);
                }
                catch (EnvelopeDecryptionException ex)
                {
                    Assert.Equal(typeof(Patient).FullName, ex.Entity);
                    outcome = "tamper";
                }
                catch (MasterKeyException ex)
                {
                    // Only a blob that names a provider or key id this configuration does not have.
                    Assert.NotNull(ex.KeyId);
                    outcome = "unknown key";
                }

                if (outcome != "decrypted")
                {
                    // A refused record leaves nothing half-decrypted in the entity.
                    Assert.Equal("", entity.Ssn);
                }

                outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
            }

            TestContext.Current.TestOutputHelper?.WriteLine(string.Join(", ", outcomes.Select(o => $"{o.Key}: {o.Value}")));
            Assert.True(outcomes.GetValueOrDefault("tamper") > 100);
            await Task.CompletedTask;
        });
    }

    [Fact]
    public void Random_and_mutated_field_blobs_fail_with_the_tamper_error_without_large_allocations()
    {
        var encrypted = Entity<AllTypes>();
        Seeds.Run(nameof(Random_and_mutated_field_blobs_fail_with_the_tamper_error_without_large_allocations), random =>
        {
            var dataKey = RandomNumberGenerator.GetBytes(32);
            var recordId = RandomNumberGenerator.GetBytes(16);
            using var cipher = new AesGcm(dataKey, 16);
            var source = new AllTypes { Text = "fuzz text", Bytes = [1, 2, 3], Decimal = 1.5m, Enum = BloodType.APositive, NullableDateTime = DateTime.UnixEpoch };
            var valid = encrypted.Properties.Select(p => p.Encrypt(source, cipher, recordId, RandomNumberGenerator.GetBytes(12))).ToArray();

            var stopwatch = Stopwatch.StartNew();
            var inputs = 0;
            while (stopwatch.Elapsed < Budget)
            {
                var index = random.Next(encrypted.Properties.Length);
                var property = encrypted.Properties[index];
                var blob = valid[index] is { } original && random.Next(3) > 0
                    ? Mutate(original, random)
                    // Not empty: an empty value of a non-nullable property is a migration's default (docs/MIGRATIONS.md).
                    : RandomNumberGenerator.GetBytes(random.Next(1, 2000));
                var target = new AllTypes();
                var before = GC.GetAllocatedBytesForCurrentThread();
                var error = Assert.ThrowsAny<EnvelopeDecryptionException>(() => property.Decrypt(target, blob, cipher, recordId, "fuzz", EnvelopeFormat.Version2));
                var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                Assert.Equal(property.Name, error.Property);
                Assert.Equal("fuzz", error.KeyId);

                // Exceptions and their messages cost a few KB; a buffer sized by the input would show here.
                Assert.True(allocated < 16_384, $"decrypting a {blob.Length}-byte blob allocated {allocated} bytes");
                inputs++;
            }

            Assert.True(inputs > 1000);
        });
    }

    [Fact]
    public void Values_that_authenticate_but_do_not_decode_fail_with_the_tamper_error()
    {
        // A writer with the key (a bug, a changed CLR type) can produce authentic bytes that are not a valid value.
        var encrypted = Entity<AllTypes>();
        Seeds.Run(nameof(Values_that_authenticate_but_do_not_decode_fail_with_the_tamper_error), random =>
        {
            var dataKey = RandomNumberGenerator.GetBytes(32);
            var recordId = RandomNumberGenerator.GetBytes(16);
            using var cipher = new AesGcm(dataKey, 16);
            var stopwatch = Stopwatch.StartNew();
            var decoded = 0;
            var refused = 0;
            while (stopwatch.Elapsed < Budget)
            {
                var property = encrypted.Properties[random.Next(encrypted.Properties.Length)];
                var plaintext = new byte[random.Next(4) == 0 ? random.Next(0, 40) : new[] { 1, 2, 4, 8, 10, 16 }[random.Next(6)]];
                random.NextBytes(plaintext);
                var blob = SealRaw(cipher, recordId, property, plaintext);
                try
                {
                    property.Decrypt(new AllTypes(), blob, cipher, recordId, "fuzz", EnvelopeFormat.Version);
                    decoded++;
                }
                catch (EnvelopeDecryptionException ex)
                {
                    Assert.Equal(property.Name, ex.Property);
                    refused++;
                }
            }

            TestContext.Current.TestOutputHelper?.WriteLine($"{decoded} decoded, {refused} refused");
            Assert.True(refused > 100 && decoded > 100);
        });
    }

    /// <summary>Encrypts arbitrary plaintext bytes as the field blob of <paramref name="property"/> (same associated data as the library).</summary>
    private static byte[] SealRaw(AesGcm cipher, byte[] recordId, EncryptedProperty property, byte[] plaintext)
    {
        var binding = EnvelopeFormat.BindingName(property.EntityName);
        byte[] aad = [EnvelopeFormat.Version, .. recordId, .. binding, .. EnvelopeFormat.BindingName(property.Name)];
        var blob = new byte[EnvelopeFormat.FieldOverhead + plaintext.Length];
        blob[0] = EnvelopeFormat.Version;
        RandomNumberGenerator.Fill(blob.AsSpan(1, EnvelopeFormat.NonceSize));
        plaintext.CopyTo(blob, 1 + EnvelopeFormat.NonceSize);
        FieldCipher.Seal(cipher, blob, aad);
        return blob;
    }
}
