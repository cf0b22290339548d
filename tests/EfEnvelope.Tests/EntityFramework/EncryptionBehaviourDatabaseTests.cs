using EfEnvelope.Specification.Tests.EntityFramework;

namespace EfEnvelope.Tests.EntityFramework;

public sealed class EncryptionBehaviourSqliteTests(SqliteFixture fixture) : EncryptionBehaviourTests<SqliteFixture>(fixture);

public sealed class EncryptionBehaviourPostgresTests(PostgresFixture fixture) : EncryptionBehaviourTests<PostgresFixture>(fixture);

public sealed class EncryptionBehaviourSqlServerTests(SqlServerFixture fixture) : EncryptionBehaviourTests<SqlServerFixture>(fixture);
