using EfEnvelope.Specification.Tests.EntityFramework;

namespace EfEnvelope.Tests.EntityFramework;

public sealed class EncryptionBehaviourSqliteTests(SqliteFixture fixture) : EncryptionBehaviourTests<SqliteFixture>(fixture);

public sealed class EncryptionBehaviourPostgresTests(PostgresFixture fixture) : EncryptionBehaviourTests<PostgresFixture>(fixture);

public sealed class EncryptionBehaviourSqlServerTests(SqlServerFixture fixture) : EncryptionBehaviourTests<SqlServerFixture>(fixture);

public sealed class BlindIndexSqliteTests(SqliteFixture fixture) : BlindIndexTests<SqliteFixture>(fixture);

public sealed class BlindIndexPostgresTests(PostgresFixture fixture) : BlindIndexTests<PostgresFixture>(fixture);

public sealed class BlindIndexSqlServerTests(SqlServerFixture fixture) : BlindIndexTests<SqlServerFixture>(fixture);
