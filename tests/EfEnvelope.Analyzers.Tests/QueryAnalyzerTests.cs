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
    [InlineData("await db.Patients.Where(p => {|EFENV001:p.Diagnosis|} == text).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => text != {|EFENV001:p.Diagnosis|}).ToListAsync();")]
    [InlineData("await db.Patients.FirstOrDefaultAsync(p => {|EFENV001:p.Diagnosis|}.Equals(text));")]
    [InlineData("await db.Patients.CountAsync(p => string.Equals({|EFENV001:p.Diagnosis|}, text));")]
    [InlineData("await db.Patients.Where(p => list.Contains({|EFENV001:p.Diagnosis|})).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => p.Name == {|EFENV001:other.Diagnosis|}).ToListAsync();")]
    [InlineData("await db.Visits.Join(db.Visits, a => {|EFENV001:a.Notes|}, b => b.Notes, (a, b) => a.Id).ToListAsync();")]
    [InlineData("await db.Patients.AnyAsync(p => p.Visits.Any(v => {|EFENV001:v.Notes|} == text));")]
    [InlineData("await (from p in db.Patients where {|EFENV001:p.Diagnosis|} == text select p.Name).ToListAsync();")]
    public Task Equality_without_a_blind_index_is_EFENV001(string query) => Query(query);

    [Theory]
    [InlineData("await db.Patients.OrderBy(p => {|EFENV002:p.DateOfBirth|}).ToListAsync();")]
    [InlineData("await db.Patients.OrderBy(p => p.Name).ThenByDescending(p => {|EFENV002:p.Ssn|}).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => {|EFENV002:p.Score|} > 3).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => {|EFENV002:p.DateOfBirth|} <= DateOnly.MinValue).ToListAsync();")]
    [InlineData("await db.Patients.MaxAsync(p => {|EFENV002:p.Score|});")]
    [InlineData("await db.Patients.Where(p => string.Compare({|EFENV002:p.Ssn|}, text) > 0).ToListAsync();")]
    public Task Ordering_and_ranges_are_EFENV002(string query) => Query(query);

    [Theory]
    [InlineData("await db.Patients.Where(p => {|EFENV003:p.Diagnosis|}!.StartsWith(\"flu\")).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => {|EFENV003:p.Ssn|}.Contains(\"12\")).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => EF.Functions.Like({|EFENV003:p.Diagnosis|}, \"%flu%\")).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => {|EFENV003:p.Ssn|}.ToUpper() == text).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => string.IsNullOrEmpty({|EFENV003:p.Diagnosis|})).ToListAsync();")]
    [InlineData("await db.Patients.Select(p => {|EFENV003:p.Ssn|}.Substring(0, 3)).ToListAsync();")]
    [InlineData("await db.Patients.Select(p => $\"{p.Name}: {{|EFENV003:p.Diagnosis|}}\").ToListAsync();")]
    public Task String_functions_and_patterns_are_EFENV003(string query) => Query(query);

    [Theory]
    [InlineData("await db.Patients.GroupBy(p => {|EFENV004:p.Diagnosis|}).Select(g => g.Count()).ToListAsync();")]
    [InlineData("await db.Patients.SumAsync(p => {|EFENV004:p.Score|});")]
    [InlineData("await db.Patients.Join(db.Visits, p => {|EFENV004:p.Ssn|}, v => v.Ssn, (p, v) => v.Id).ToListAsync();")]
    [InlineData("await db.Patients.Join(db.Visits, p => {|EFENV004:p.Ssn|}, v => v.Id.ToString(), (p, v) => v.Id).ToListAsync();")]
    public Task Grouping_joins_and_aggregates_are_EFENV004(string query) => Query(query);

    [Theory]
    [InlineData("await db.Patients.Where(p => p.Id == 1).ExecuteUpdateAsync(s => s.SetProperty(p => {|EFENV005:p.Diagnosis|}, \"x\"));")]
    [InlineData("await db.Patients.Where(p => p.Id == 1).ExecuteUpdateAsync(s => s.SetProperty(p => p.Name, p => {|EFENV005:p.Ssn|}));")]
    [InlineData("await db.Patients.ExecuteUpdateAsync(s => { s.SetProperty(p => p.Name, \"x\"); s.SetProperty(p => {|EFENV005:p.Ssn|}, text); });")]
    public Task ExecuteUpdate_on_encrypted_properties_is_EFENV005(string query) => Query(query);

    [Theory]
    [InlineData("await db.Patients.Where(p => {|EFENV006:p.Score|} + 1 == 3).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => ({|EFENV006:p.Diagnosis|} ?? \"\") == text).ToListAsync();")]
    [InlineData("await db.Patients.Select(p => new { p.Name, {|EFENV006:p.Diagnosis|} }).OrderBy(x => x.Name).ToListAsync();")]
    [InlineData("await db.Patients.Select(p => {|EFENV006:p.Diagnosis|}).CountAsync();")]
    [InlineData("await db.Patients.Select(p => p.Visits.Select(v => {|EFENV006:v.Notes|}).ToList()).ToListAsync();")]
    [InlineData("await db.Visits.Where(v => {|EFENV006:v.Ssn|} == v.Notes).ToListAsync();")]
    public Task Other_reads_in_the_database_are_EFENV006(string query) => Query(query);

    [Theory]
    [InlineData("await db.Patients.Where(p => {|EFENV008:p.Phone|} != text).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => {|EFENV008:p.Phone|} == text || p.Active).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => {|EFENV008:p.Phone|} == text).Select(p => p.Name).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => {|EFENV008:p.Phone|} == text).Take(5).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => p.Visits.Any(v => db.Patients.Any(q => {|EFENV008:q.Phone|} == text))).ToListAsync();")]
    public Task Truncated_index_comparisons_that_cannot_be_checked_are_EFENV008(string query) => Query(query);

    [Theory]
    [InlineData("await db.Patients.Where(p => p.Diagnosis == null || p.Diagnosis != null || null == p.Diagnosis).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => p.Ssn == text && p.Ssn != other.Name && p.Ssn.Equals(text)).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => list.Contains(p.Ssn)).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => new[] { \"a\", \"b\" }.Contains(p.Ssn)).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => p.Ssn == other.Ssn).ToListAsync();")]
    [InlineData("await db.Patients.Join(db.Patients, a => a.Ssn, b => b.Ssn, (a, b) => b.Id).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => p.Active).OrderBy(p => p.Name).Select(p => new { p.Name, p.Diagnosis, p.Ssn }).ToListAsync();")]
    [InlineData("await db.Patients.Select(p => p.Diagnosis).FirstOrDefaultAsync();")]
    [InlineData("await db.Patients.OrderBy(p => p.Id).Select(p => p.Name + p.Diagnosis).Skip(10).Take(10).ToListAsync();")]
    [InlineData("await db.Patients.Select(p => new { p.Id, Visits = p.Visits.Count }).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => p.Phone == text && p.Active).OrderBy(p => p.Name).ToListAsync();")]
    [InlineData("await db.Patients.FirstOrDefaultAsync(p => p.Phone == text);")]
    [InlineData("await db.Patients.CountAsync(p => list.Contains(p.Phone));")]
    [InlineData("await db.Patients.Include(p => p.Visits).AsNoTracking().Where(p => p.Id > 3).ToListAsync();")]
    [InlineData("await db.Patients.Where(p => p.Id == 1).ExecuteUpdateAsync(s => s.SetProperty(p => p.Name, other.Diagnosis));")]
    [InlineData("await db.Patients.Take(other.Score).ToListAsync();")]
    [InlineData("db.Patients.Where(p => p.Name == text).Select(p => new { p.Name, p.Ssn }).ToQueryString();")]
    [InlineData("await db.Patients.FromSql($\"SELECT * FROM Patients WHERE Name = {other.Diagnosis}\").ToListAsync();")]
    [InlineData("db.Patients.AsEnumerable().Where(p => p.Diagnosis == text).OrderBy(p => p.DateOfBirth).ToList();")]
    [InlineData("(await db.Patients.ToListAsync()).Where(p => p.Diagnosis!.StartsWith(text)).ToList();")]
    [InlineData("new List<Patient>().AsQueryable().Where(p => p.Diagnosis == text).OrderBy(p => p.Score).ToList();")]
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
