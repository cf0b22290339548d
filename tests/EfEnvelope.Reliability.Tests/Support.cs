using System.Text;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Reliability.Tests;

/// <summary>The patients the tampering suites attack: every encrypted value random, so no two tests share plaintext.</summary>
internal static class TamperTargets
{
    public static Patient NewPatient(Random random, string name) => new()
    {
        Id = Guid.NewGuid(),
        Name = name,
        Ssn = $"SSN-{random.Next(100_000_000, 999_999_999)}",
        Diagnosis = $"Diagnosis-{random.Next(100_000_000, 999_999_999)}",
        DateOfBirth = new DateOnly(1970 + random.Next(50), 1 + random.Next(12), 1 + random.Next(28)),
        HomeAddress = new Address { City = "Springfield", Street = $"Street-{random.Next(100_000_000, 999_999_999)}" },
    };
}

/// <summary>Fixed seeds for every randomised test: the seed is printed with any failure so it can be replayed.</summary>
internal static class Seeds
{
    /// <summary>The seed for <paramref name="test"/>: EFENVELOPE_SEED if set (to replay a failure), else a fixed value.</summary>
    public static int For(string test) =>
        int.TryParse(Environment.GetEnvironmentVariable("EFENVELOPE_SEED"), out var forced) ? forced : StableHash(test);

    /// <summary>Runs <paramref name="body"/> with the test's seeded random; a failure is rethrown with the seed in its message.</summary>
    public static async Task RunAsync(string test, Func<Random, Task> body)
    {
        var seed = For(test);
        TestContext.Current.TestOutputHelper?.WriteLine($"{test}: seed {seed} (replay with EFENVELOPE_SEED={seed})");
        try
        {
            await body(new Random(seed));
        }
        catch (Exception ex) when (ex is not SeededFailureException)
        {
            throw new SeededFailureException($"{test} failed with seed {seed} (replay with EFENVELOPE_SEED={seed}): {ex.Message}", ex);
        }
    }

    public static void Run(string test, Action<Random> body) =>
        RunAsync(test, random =>
        {
            body(random);
            return Task.CompletedTask;
        }).GetAwaiter().GetResult();

    // string.GetHashCode is randomised per process; a fixed seed needs a stable hash.
    private static int StableHash(string text)
    {
        var hash = 17;
        foreach (var c in text)
        {
            hash = unchecked((hash * 31) + c);
        }

        return hash & int.MaxValue;
    }
}

/// <summary>A failure of a seeded test, carrying the seed in its message.</summary>
public sealed class SeededFailureException(string message, Exception inner) : Exception(message, inner);

/// <summary>Raw SQL access to the stored blobs, the way an attacker with database access would see them.</summary>
/// <remarks>Table and column names are constants of the tests, never input; values go in as parameters.</remarks>
#pragma warning disable EF1002
internal static class RawSql
{
    public static async Task<byte[]?> ReadAsync(DatabaseFixture fixture, string table, string column, object id)
    {
        await using var db = fixture.CreateContext();
        return await db.Database
            .SqlQueryRaw<byte[]?>($"SELECT \"{column}\" AS \"Value\" FROM \"{table}\" WHERE \"Id\" = {{0}}", id)
            .SingleAsync(TestContext.Current.CancellationToken);
    }

    public static async Task WriteAsync(DatabaseFixture fixture, string table, string column, object id, byte[]? value)
    {
        await using var db = fixture.CreateContext();
        var changed = value is null
            ? await db.Database.ExecuteSqlRawAsync($"UPDATE \"{table}\" SET \"{column}\" = NULL WHERE \"Id\" = {{0}}", [id], TestContext.Current.CancellationToken)
            : await db.Database.ExecuteSqlRawAsync($"UPDATE \"{table}\" SET \"{column}\" = {{0}} WHERE \"Id\" = {{1}}", [value, id], TestContext.Current.CancellationToken);
        Assert.Equal(1, changed);
    }
}

#pragma warning restore EF1002

/// <summary>Checks that text (an exception message, a log) carries none of the given secrets, in any common encoding.</summary>
internal static class SecretScan
{
    public static void AssertFree(string text, IEnumerable<string> plaintexts, IEnumerable<byte[]> keys, string where)
    {
        foreach (var plaintext in plaintexts)
        {
            Assert.False(text.Contains(plaintext, StringComparison.Ordinal), $"{where} contains the plaintext '{plaintext}'.");
            var utf8 = Encoding.UTF8.GetBytes(plaintext);
            Assert.False(text.Contains(Convert.ToHexString(utf8), StringComparison.OrdinalIgnoreCase), $"{where} contains the plaintext '{plaintext}' as hex.");
            Assert.False(text.Contains(Convert.ToBase64String(utf8), StringComparison.Ordinal), $"{where} contains the plaintext '{plaintext}' as base64.");
        }

        foreach (var key in keys)
        {
            Assert.False(text.Contains(Convert.ToHexString(key), StringComparison.OrdinalIgnoreCase), $"{where} contains key bytes as hex.");
            Assert.False(text.Contains(Convert.ToBase64String(key), StringComparison.Ordinal), $"{where} contains key bytes as base64.");

            // Any 8-byte window of the key, so that partial dumps are caught too.
            for (var i = 0; i + 8 <= key.Length; i += 4)
            {
                Assert.False(text.Contains(Convert.ToHexString(key, i, 8), StringComparison.OrdinalIgnoreCase), $"{where} contains part of a key as hex.");
            }
        }
    }

    /// <summary>The message of an exception and of all its inner exceptions, and its ToString (stack and all).</summary>
    public static string Describe(Exception error) => error + "\n" + string.Join("\n", Chain(error).Select(e => e.Message));

    private static IEnumerable<Exception> Chain(Exception? error)
    {
        for (; error is not null; error = error.InnerException)
        {
            yield return error;
        }
    }
}
