using EfEnvelope.Specification.Tests.Differential;

namespace EfEnvelope.Tests.Differential;

public sealed class DifferentialSqliteTests(SqliteDifferentialFixture fixture) : DifferentialTests<SqliteDifferentialFixture>(fixture);

public sealed class DifferentialPostgresTests(PostgresDifferentialFixture fixture) : DifferentialTests<PostgresDifferentialFixture>(fixture);

public sealed class IssueItemSqliteTests(SqliteDifferentialFixture fixture) : IssueItemTests<SqliteDifferentialFixture>(fixture);

public sealed class IssueItemPostgresTests(PostgresDifferentialFixture fixture) : IssueItemTests<PostgresDifferentialFixture>(fixture);
