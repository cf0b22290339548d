using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Specification.Tests.Differential;

/// <summary>Every differential scenario, one file per area of EF Core.</summary>
public static partial class Scenarios
{
    public static IReadOnlyList<Scenario> All { get; } =
    [
        .. ChangeTracking(), .. StateTransitions(), .. Filters(), .. Projections(), .. Navigations(), .. SetsAndAggregates(), .. ConstructorBinding(),
        .. Inheritance(), .. Owned(), .. SeedDataAndTypes(), .. CompiledQueries(), .. RawSql(), .. BulkOperations(),
        .. Transactions(), .. Concurrency(), .. ExecutionStrategies(), .. TransientFailures(), .. Pooling(), .. DependencyInjection(),
        .. ApplicationInterceptors(), .. PropertyAccess(),
    ];

    /// <summary>Scenarios that only the issue-11 item checks run.</summary>
    public static IReadOnlyList<Scenario> IssueOnly { get; } =
    [
        new("has-data-required-encrypted", "has-data", async r =>
        {
            await r.CreateTablesAsync<SeedContext>();
            await using var db = r.NewContext<SeedContext>();
            r.Observe("regions", await db.Regions.OrderBy(x => x.Id).ToListAsync(r.Ct));
        }),
    ];
}
