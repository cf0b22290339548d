using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.EntityFramework;

/// <summary>A SQLite file database of its own per test class.</summary>
public class SqliteFixture : DatabaseFixture
{
    public string DatabasePath { get; } = Path.Combine(Path.GetTempPath(), $"efenvelope-{Guid.NewGuid():N}.db");

    public override void UseDatabase(DbContextOptionsBuilder builder) => builder.UseSqlite($"Data Source={DatabasePath};Pooling=False");
}

public sealed class EncryptionBehaviourSqliteTests(SqliteFixture fixture) : EncryptionBehaviourTests<SqliteFixture>(fixture);
