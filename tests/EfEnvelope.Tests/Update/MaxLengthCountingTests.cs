using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Storage;

namespace EfEnvelope.Tests.Update;

public sealed class MaxLengthCountingSqliteTests(SqliteFixture fixture) : MaxLengthCountingTests<SqliteFixture>(fixture);

public sealed class MaxLengthCountingPostgresTests(PostgresFixture fixture) : MaxLengthCountingTests<PostgresFixture>(fixture);

/// <summary>
/// A maximum length is counted as the database counts it: PostgreSQL's varchar(n) in characters (a character
/// outside the BMP is one), SQL Server's nvarchar(n) and EfEnvelope on SQLite (which checks none) in UTF-16 code units.
/// Run beside plain EF on the same database: the encrypted column accepts what the plain one accepts.
/// </summary>
public abstract class MaxLengthCountingTests<TFixture>(TFixture fixture) : IClassFixture<TFixture>
    where TFixture : DatabaseFixture
{
    // Three characters outside the Basic Multilingual Plane: 3 code points, 6 UTF-16 code units.
    private const string ThreeEmoji = "\U0001F600\U0001F601\U0001F602";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_string_of_as_many_characters_as_the_maximum_is_saved_where_the_plain_column_takes_it()
    {
        if (fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        await using var encrypted = new NamesContext(fixture.CreateOptions<NamesContext>());
        await encrypted.GetService<IRelationalDatabaseCreator>().CreateTablesAsync(Ct);
        var plainOptions = new DbContextOptionsBuilder<PlainNamesContext>().ManyConfigurationsPerProcess();
        fixture.UseDatabase(plainOptions);
        await using var plain = new PlainNamesContext(plainOptions.Options);
        await plain.GetService<IRelationalDatabaseCreator>().CreateTablesAsync(Ct);

        plain.Names.Add(new PlainName { Id = 1, Nickname = ThreeEmoji });
        await plain.SaveChangesAsync(Ct);
        encrypted.Names.Add(new Name { Id = 1, Nickname = ThreeEmoji });
        if (encrypted.Database.IsNpgsql())
        {
            await encrypted.SaveChangesAsync(Ct);
            await using var reader = new NamesContext(fixture.CreateOptions<NamesContext>());
            Assert.Equal(ThreeEmoji, (await reader.Names.SingleAsync(Ct)).Nickname);

            // One character more is refused, counted in characters, as varchar(3) refuses it.
            reader.Names.Add(new Name { Id = 2, Nickname = ThreeEmoji + "x" });
            var error = await Assert.ThrowsAsync<InvalidOperationException>(() => reader.SaveChangesAsync(Ct));
            Assert.Contains("is 4 characters long, more than its maximum length 3", error.Message, StringComparison.Ordinal);
            plain.Names.Add(new PlainName { Id = 2, Nickname = ThreeEmoji + "x" });
            await Assert.ThrowsAsync<DbUpdateException>(() => plain.SaveChangesAsync(Ct));
        }
        else
        {
            // SQLite keeps any length in the plain column; EfEnvelope checks in UTF-16 code units (documented).
            var error = await Assert.ThrowsAsync<InvalidOperationException>(() => encrypted.SaveChangesAsync(Ct));
            Assert.Contains("is 6 characters long, more than its maximum length 3", error.Message, StringComparison.Ordinal);
        }
    }

    public sealed class Name
    {
        public int Id { get; set; }

        [Encrypted]
        [System.ComponentModel.DataAnnotations.MaxLength(3)]
        public string Nickname { get; set; } = "";
    }

    public sealed class PlainName
    {
        public int Id { get; set; }

        [System.ComponentModel.DataAnnotations.MaxLength(3)]
        public string Nickname { get; set; } = "";
    }

    public sealed class NamesContext(DbContextOptions<NamesContext> options) : DbContext(options)
    {
        public DbSet<Name> Names => Set<Name>();
    }

    public sealed class PlainNamesContext(DbContextOptions<PlainNamesContext> options) : DbContext(options)
    {
        public DbSet<PlainName> Names => Set<PlainName>();

        protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.Entity<PlainName>().ToTable("PlainNames");
    }
}
