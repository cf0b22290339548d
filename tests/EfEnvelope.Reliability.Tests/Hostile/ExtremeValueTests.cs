using System.Text;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Reliability.Tests.Hostile;

/// <summary>Values at the edges of each type round-trip exactly through a real database, on the sync and async paths.</summary>
public abstract class ExtremeValueTests<TFixture>(TFixture fixture) : IClassFixture<TFixture>
    where TFixture : DatabaseFixture
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private void SkipIfUnavailable()
    {
        if (fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }
    }

    private async Task<AllTypes> RoundTripAsync(AllTypes value, bool synchronous)
    {
        await using (var db = fixture.CreateContext())
        {
            db.AllTypes.Add(value);
            if (synchronous)
            {
                db.SaveChanges();
            }
            else
            {
                await db.SaveChangesAsync(Ct);
            }
        }

        await using var reader = fixture.CreateContext();
        return synchronous
            ? reader.AllTypes.AsNoTracking().Single(a => a.Id == value.Id)
            : await reader.AllTypes.AsNoTracking().SingleAsync(a => a.Id == value.Id, Ct);
    }

    /// <summary>Every Unicode scalar value of every plane, surrogates excluded (they are not scalar values).</summary>
    private static string AllScalarValues()
    {
        var builder = new StringBuilder(2_200_000);
        for (var codePoint = 0; codePoint <= 0x10FFFF; codePoint++)
        {
            if (codePoint is < 0xD800 or > 0xDFFF)
            {
                builder.Append(char.ConvertFromUtf32(codePoint));
            }
        }

        return builder.ToString();
    }

    [Fact]
    public async Task Strings_empty_huge_with_nuls_and_from_every_unicode_plane_round_trip()
    {
        SkipIfUnavailable();
        var tenMegabytes = string.Create(10 * 1024 * 1024, 0, (span, _) =>
        {
            for (var i = 0; i < span.Length; i++)
            {
                span[i] = (char)('a' + (i % 26));
            }
        });
        var values = new[] { "", "\0", "a\0b\0\0c", tenMegabytes, AllScalarValues(), "\uFEFF BOM, \u200B zero width, \U0010FFFF last" };
        for (var i = 0; i < values.Length; i++)
        {
            var read = await RoundTripAsync(new AllTypes { Text = values[i], Bytes = Encoding.UTF8.GetBytes(values[i]) }, synchronous: i % 2 == 0);
            Assert.True(values[i] == read.Text, $"string {i} ({values[i].Length} chars) did not round-trip");
            Assert.Equal(Encoding.UTF8.GetBytes(values[i]), read.Bytes);
        }
    }

    [Fact]
    public async Task A_string_that_is_not_valid_utf16_is_refused_naming_the_property_without_its_content()
    {
        SkipIfUnavailable();
        // One row alone, and one among enough rows that the save encrypts them in parallel.
        foreach (var rows in new[] { 1, 400 })
        {
            await using var db = fixture.CreateContext();
            db.AllTypes.AddRange(Enumerable.Range(0, rows - 1).Select(i => new AllTypes { Text = $"fine {i}" }));
            db.AllTypes.Add(new AllTypes { Text = "SECRET-PREFIX-\uD800-SECRET-SUFFIX" });
            var error = await Assert.ThrowsAnyAsync<Exception>(() => db.SaveChangesAsync(Ct));
            Assert.True(error is InvalidOperationException, $"{rows} rows: {error}");
            Assert.Contains("Text", error.Message, StringComparison.Ordinal);
            Assert.Contains(nameof(AllTypes), error.Message, StringComparison.Ordinal);
            var described = SecretScan.Describe(error);
            Assert.DoesNotContain("SECRET", described, StringComparison.Ordinal);
            Assert.DoesNotContain("uD800", described, StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotContain("index 14", described, StringComparison.OrdinalIgnoreCase);
            Assert.All(db.ChangeTracker.Entries<AllTypes>(), e => Assert.Equal(EntityState.Added, e.State));
        }
    }

    [Fact]
    public async Task Numbers_dates_and_enums_at_their_limits_round_trip_bit_for_bit()
    {
        SkipIfUnavailable();
        var cases = new List<AllTypes>
        {
            new()
            {
                Small = byte.MaxValue, Short = short.MinValue, Int = int.MinValue, Long = long.MinValue,
                Float = float.NaN, Double = double.NegativeInfinity, Decimal = decimal.MaxValue,
                DateTime = DateTime.MinValue, DateTimeOffset = DateTimeOffset.MinValue, DateOnly = DateOnly.MinValue,
                TimeOnly = TimeOnly.MinValue, TimeSpan = TimeSpan.MinValue, Enum = (BloodType)short.MinValue,
                NullableInt = int.MaxValue, NullableGuid = Guid.AllBitsSet, NullableEnum = (BloodType)(-1), NullableDateTime = DateTime.MinValue,
            },
            new()
            {
                Flag = true, Short = short.MaxValue, Int = int.MaxValue, Long = long.MaxValue,
                Float = -0.0f, Double = double.Epsilon, Decimal = decimal.MinValue,
                DateTime = DateTime.SpecifyKind(DateTime.MaxValue, DateTimeKind.Utc), DateTimeOffset = DateTimeOffset.MaxValue,
                DateOnly = DateOnly.MaxValue, TimeOnly = TimeOnly.MaxValue, TimeSpan = TimeSpan.MaxValue, Enum = (BloodType)short.MaxValue,
                NullableEnum = (BloodType)12345, NullableDateTime = DateTime.MaxValue,
            },
            new()
            {
                Float = float.PositiveInfinity, Double = BitConverter.Int64BitsToDouble(0x7FF8_DEAD_BEEF_0001), // a NaN with a payload
                Decimal = new decimal(0, 0, 0, isNegative: true, scale: 28), // negative zero with the largest scale
                DateTime = new DateTime(2024, 2, 29, 23, 59, 59, DateTimeKind.Local).AddTicks(9_999),
                DateTimeOffset = new DateTimeOffset(9999, 12, 31, 0, 0, 0, TimeSpan.FromHours(14)),
                TimeSpan = TimeSpan.FromTicks(1), Enum = BloodType.Unknown,
            },
            new()
            {
                Double = -0.0, Decimal = 0.0000000000000000000000000001m,
                DateTimeOffset = new DateTimeOffset(1, 1, 1, 23, 0, 0, TimeSpan.FromHours(-14)),
                DateTime = DateTime.SpecifyKind(DateTime.MinValue, DateTimeKind.Utc),
            },
        };

        for (var i = 0; i < cases.Count; i++)
        {
            var expected = cases[i];
            var read = await RoundTripAsync(expected, synchronous: i % 2 == 1);
            Assert.Equal(BitConverter.SingleToInt32Bits(expected.Float), BitConverter.SingleToInt32Bits(read.Float));
            Assert.Equal(BitConverter.DoubleToInt64Bits(expected.Double), BitConverter.DoubleToInt64Bits(read.Double));
            Assert.Equal(decimal.GetBits(expected.Decimal), decimal.GetBits(read.Decimal));
            Assert.Equal((expected.DateTime.Ticks, expected.DateTime.Kind), (read.DateTime.Ticks, read.DateTime.Kind));
            Assert.Equal((expected.DateTimeOffset.Ticks, expected.DateTimeOffset.Offset), (read.DateTimeOffset.Ticks, read.DateTimeOffset.Offset));
            Assert.Equal(expected.NullableDateTime?.Ticks, read.NullableDateTime?.Ticks);
            Assert.Equal(expected.NullableDateTime?.Kind, read.NullableDateTime?.Kind);
            Assert.Equal(
                (expected.Flag, expected.Small, expected.Short, expected.Int, expected.Long, expected.DateOnly, expected.TimeOnly, expected.TimeSpan, expected.Enum),
                (read.Flag, read.Small, read.Short, read.Int, read.Long, read.DateOnly, read.TimeOnly, read.TimeSpan, read.Enum));
            Assert.Equal((expected.NullableInt, expected.NullableGuid, expected.NullableEnum), (read.NullableInt, read.NullableGuid, read.NullableEnum));
        }
    }
}

public sealed class SqliteExtremeValueTests(SqliteFixture fixture) : ExtremeValueTests<SqliteFixture>(fixture);

public sealed class PostgresExtremeValueTests(PostgresFixture fixture) : ExtremeValueTests<PostgresFixture>(fixture);
