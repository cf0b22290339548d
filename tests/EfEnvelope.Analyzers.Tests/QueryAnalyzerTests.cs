namespace EfEnvelope.Analyzers.Tests;

/// <summary>One test per kind of query EfEnvelope refuses, and the queries it runs, which must stay silent.</summary>
public sealed class QueryAnalyzerTests
{
    private static Task Query(string body, string model = Model.Clinic) => Verify.Analyzer<EncryptedQueryAnalyzer>(model + $$"""
        public static class Queries
        {
            public static async Task Run(ClinicDb db, string text, List<string> list, Patient other)
            {
                {{body}}
            }
        }
        """);

    [Theory]
    [MemberData(nameof(Corpus.ComparedWithoutIndex), MemberType = typeof(Corpus))]
    public Task Equality_without_a_blind_index_is_EFENV001(string query) => Query(query);

    [Theory]
    [MemberData(nameof(Corpus.Ordered), MemberType = typeof(Corpus))]
    public Task Ordering_and_ranges_are_EFENV002(string query) => Query(query);

    [Theory]
    [MemberData(nameof(Corpus.PatternMatched), MemberType = typeof(Corpus))]
    public Task String_functions_and_patterns_are_EFENV003(string query) => Query(query);

    [Theory]
    [MemberData(nameof(Corpus.Grouped), MemberType = typeof(Corpus))]
    public Task Grouping_joins_and_aggregates_are_EFENV004(string query) => Query(query);

    [Theory]
    [MemberData(nameof(Corpus.InExecuteUpdate), MemberType = typeof(Corpus))]
    public Task ExecuteUpdate_on_encrypted_properties_is_EFENV005(string query) => Query(query);

    [Theory]
    [MemberData(nameof(Corpus.ReadByDatabase), MemberType = typeof(Corpus))]
    public Task Other_reads_in_the_database_are_EFENV006(string query) => Query(query);

    [Theory]
    [MemberData(nameof(Corpus.TruncatedIndex), MemberType = typeof(Corpus))]
    public Task Truncated_index_comparisons_that_cannot_be_checked_are_EFENV008(string query) => Query(query);

    [Theory]
    [MemberData(nameof(Corpus.Runs), MemberType = typeof(Corpus))]
    public Task Queries_EfEnvelope_runs_are_not_reported(string query) => Query(query);

    [Fact]
    public Task A_fluent_searchable_setting_makes_an_attributed_property_searchable() => Query(
        "await db.Patients.Where(p => p.Diagnosis == text).ToListAsync();",
        Model.Clinic.Replace(
            "public DbSet<Visit> Visits => Set<Visit>();",
            "public DbSet<Visit> Visits => Set<Visit>();\n    protected override void OnModelCreating(ModelBuilder b) => b.Entity<Patient>().Property(p => p.Diagnosis).IsEncrypted(o => o.IndexBytes = 32);",
            StringComparison.Ordinal));

    [Fact]
    public Task A_fluent_IsEncrypted_makes_a_plain_property_encrypted() => Query(
        "await db.Patients.Where(p => {|EFENV001:p.Name|} == text).ToListAsync();",
        Model.Clinic.Replace(
            "public DbSet<Visit> Visits => Set<Visit>();",
            "public DbSet<Visit> Visits => Set<Visit>();\n    protected override void OnModelCreating(ModelBuilder b) => b.Entity<Patient>().Property(p => p.Name).HasMaxLength(100).IsEncrypted();",
            StringComparison.Ordinal));

    [Fact]
    public Task A_fluent_short_index_is_truncated() => Query(
        "await db.Patients.Where(p => {|EFENV008:p.Diagnosis|} != text).ToListAsync();",
        Model.Clinic.Replace(
            "public DbSet<Visit> Visits => Set<Visit>();",
            "public DbSet<Visit> Visits => Set<Visit>();\n    protected override void OnModelCreating(ModelBuilder b) => b.Entity<Patient>().Property(p => p.Diagnosis).IsEncrypted(o => o.IndexBytes = 8);",
            StringComparison.Ordinal));
}
