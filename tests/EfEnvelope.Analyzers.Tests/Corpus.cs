namespace EfEnvelope.Analyzers.Tests;

/// <summary>
/// Query bodies with the expected diagnostics as markup: each kind the runtime refuses, and queries it runs. The
/// analyzer tests check the markup; the agreement test runs every body against EfEnvelope to check that the markup
/// (and so the analyzer) matches what the runtime does.
/// </summary>
/// <remarks>Each body runs with <c>db</c> (a ClinicDb), <c>text</c>, <c>list</c> and <c>other</c> (a detached Patient) in scope.</remarks>
public static class Corpus
{
    public static TheoryData<string> ComparedWithoutIndex { get; } =
    [
        "await db.Patients.Where(p => {|EFENV001:p.Diagnosis|} == text).ToListAsync();",
        "await db.Patients.Where(p => text != {|EFENV001:p.Diagnosis|}).ToListAsync();",
        "await db.Patients.Select(p => new { p.Name, p.Diagnosis }).Where(x => {|EFENV001:x.Diagnosis|} == text).ToListAsync();",
        "await db.Patients.Select(p => new { p.Name, p.Diagnosis }).CountAsync(x => {|EFENV001:x.Diagnosis|} == text);",
        "await db.Patients.FirstOrDefaultAsync(p => {|EFENV001:p.Diagnosis|}.Equals(text));",
        "await db.Patients.CountAsync(p => string.Equals({|EFENV001:p.Diagnosis|}, text));",
        "await db.Patients.Where(p => list.Contains({|EFENV001:p.Diagnosis|})).ToListAsync();",
        "await db.Visits.Join(db.Visits, a => {|EFENV001:a.Notes|}, b => b.Notes, (a, b) => a.Id).ToListAsync();",
        "await db.Patients.AnyAsync(p => p.Visits.Any(v => {|EFENV001:v.Notes|} == text));",
        "await (from p in db.Patients where {|EFENV001:p.Diagnosis|} == text select p.Name).ToListAsync();",
    ];

    public static TheoryData<string> Ordered { get; } =
    [
        "await db.Patients.OrderBy(p => {|EFENV002:p.DateOfBirth|}).ToListAsync();",
        "await db.Patients.OrderBy(p => p.Name).ThenByDescending(p => {|EFENV002:p.Ssn|}).ToListAsync();",
        "await db.Patients.Where(p => {|EFENV002:p.Score|} > 3).ToListAsync();",
        "await db.Patients.Where(p => {|EFENV002:p.DateOfBirth|} <= DateOnly.MinValue).ToListAsync();",
        "await db.Patients.MaxAsync(p => {|EFENV002:p.Score|});",
        "await db.Patients.Where(p => string.Compare({|EFENV002:p.Ssn|}, text) > 0).ToListAsync();",
        "await db.Patients.Select(p => p.Visits.OrderBy(v => {|EFENV002:v.Notes|}).Select(v => v.Id).ToList()).ToListAsync();",
        "await db.Patients.Select(p => new { p.Id, p.DateOfBirth }).OrderBy(x => {|EFENV002:x.DateOfBirth|}).ToListAsync();",
        "await db.Patients.Select(p => {|EFENV002:p.Score|}).OrderBy(s => s).ToListAsync();",
    ];

    public static TheoryData<string> PatternMatched { get; } =
    [
        "await db.Patients.Where(p => {|EFENV003:p.Diagnosis|}!.StartsWith(\"flu\")).ToListAsync();",
        "await db.Patients.Where(p => {|EFENV003:p.Ssn|}.Contains(\"12\")).ToListAsync();",
        "await db.Patients.Where(p => EF.Functions.Like({|EFENV003:p.Diagnosis|}, \"%flu%\")).ToListAsync();",
        "await db.Patients.Where(p => {|EFENV003:p.Ssn|}.ToUpper() == text).ToListAsync();",
        "await db.Patients.Where(p => string.IsNullOrEmpty({|EFENV003:p.Diagnosis|})).ToListAsync();",
        "await db.Patients.Select(p => {|EFENV003:p.Ssn|}.Substring(0, 3)).ToListAsync();",
        "await db.Patients.Select(p => $\"{p.Name}: {{|EFENV003:p.Diagnosis|}}\").ToListAsync();",
    ];

    public static TheoryData<string> Grouped { get; } =
    [
        "await db.Patients.GroupBy(p => {|EFENV004:p.Diagnosis|}).Select(g => g.Count()).ToListAsync();",
        "await db.Patients.SumAsync(p => {|EFENV004:p.Score|});",
        "await db.Patients.AverageAsync(p => {|EFENV004:p.Score|});",
        "await db.Patients.DistinctBy(p => {|EFENV004:p.Diagnosis|}).ToListAsync();",
        "await db.Patients.Join(db.Visits, p => {|EFENV004:p.Ssn|}, v => v.Ssn, (p, v) => v.Id).ToListAsync();",
        "await db.Patients.Join(db.Visits, p => {|EFENV004:p.Ssn|}, v => v.Id.ToString(), (p, v) => v.Id).ToListAsync();",
    ];

    public static TheoryData<string> InExecuteUpdate { get; } =
    [
        "await db.Patients.Where(p => p.Id == 1).ExecuteUpdateAsync(s => s.SetProperty(p => {|EFENV005:p.Diagnosis|}, \"x\"));",
        "await db.Patients.Where(p => p.Id == 1).ExecuteUpdateAsync(s => s.SetProperty(p => p.Name, p => {|EFENV005:p.Ssn|}));",
        "await db.Patients.ExecuteUpdateAsync(s => { s.SetProperty(p => p.Name, \"x\"); s.SetProperty(p => {|EFENV005:p.Ssn|}, text); });",
    ];

    public static TheoryData<string> ReadByDatabase { get; } =
    [
        "await db.Patients.Where(p => {|EFENV006:p.Score|} + 1 == 3).ToListAsync();",
        "await db.Patients.Where(p => ({|EFENV006:p.Diagnosis|} ?? \"\") == text).ToListAsync();",
        "await db.Patients.Select(p => {|EFENV006:p.Diagnosis|}).Distinct().Take(3).ToListAsync();",
        "await db.Patients.Select(p => new Visit { Notes = {|EFENV006:p.Diagnosis|} }).Distinct().ToListAsync();",
        "await db.Patients.Select(p => new { p.Name, Seen = {|EFENV006:p.SeenAt|} }).Distinct().ToListAsync();",
        "await db.Patients.Select(p => {|EFENV006:p.DateOfBirth|}.ToString()).ToListAsync();",
        "await db.Patients.Select(p => p.Name + {|EFENV006:p.SeenAt|}).ToListAsync();",
        "await db.Patients.Select(p => \"seen \" + {|EFENV006:p.DateOfBirth|}).ToListAsync();",
        "await db.Patients.Select(p => new { p.Id, {|EFENV006:p.Ssn|} }).GroupBy(x => x.Id).Select(g => g.Count()).ToListAsync();",
        "await db.Visits.Where(v => {|EFENV006:v.Ssn|} == v.Notes).ToListAsync();",
    ];

    public static TheoryData<string> TruncatedIndex { get; } =
    [
        "await db.Patients.Where(p => {|EFENV008:p.Phone|} != text).ToListAsync();",
        "await db.Patients.Where(p => {|EFENV008:p.Phone|} == text || p.Active).ToListAsync();",
        "await db.Patients.Where(p => {|EFENV008:p.Phone|} == text).Select(p => p.Name).ToListAsync();",
        "await db.Patients.Where(p => {|EFENV008:p.Phone|} == text).Take(5).ToListAsync();",
        "await db.Patients.Where(p => {|EFENV008:p.Phone|} == text).ExecuteDeleteAsync();",
        "await db.Patients.Join(db.Patients, a => {|EFENV008:a.Phone|}, b => b.Phone, (a, b) => a.Id).ToListAsync();",
        "await db.Patients.Where(p => p.Visits.Any(v => db.Patients.Any(q => {|EFENV008:q.Phone|} == text))).ToListAsync();",
    ];

    public static TheoryData<string> Runs { get; } =
    [
        "await db.Patients.Select(p => p.Diagnosis).Distinct().ToListAsync();",
        "await db.Patients.Select(p => new { p.Diagnosis, p.Score }).Distinct().CountAsync();",
        "await db.Patients.Select(p => p.SeenAt).Distinct().ToListAsync();",
        "await db.Patients.Select(p => p.Score.ToString()).ToListAsync();",
        "await db.Patients.Select(p => \"score \" + p.Score).ToListAsync();",
        "await db.Patients.Select(p => \"triage \" + p.Triage).ToListAsync();",
        "await db.Patients.Select(p => p.Triage.ToString()).ToListAsync();",
        "await db.Patients.Select(p => p.DateOfBirth.ToString(\"yyyy-MM-dd\", System.Globalization.CultureInfo.InvariantCulture)).ToListAsync();",
        "await db.Patients.Where(p => p.Diagnosis == null || p.Diagnosis != null || null == p.Diagnosis).ToListAsync();",
        "await db.Patients.Where(p => p.Rating.HasValue || p.Rating == null).ToListAsync();",
        "await db.Patients.CountAsync(p => !p.Rating.HasValue);",
        "await db.Patients.OrderBy(p => p.Rating.HasValue).Select(p => new { p.Id, Rated = p.Rating.HasValue }).ToListAsync();",
        "await db.Patients.Where(p => p.Ssn == text && p.Ssn != other.Name && p.Ssn.Equals(text)).ToListAsync();",
        "await db.Patients.Where(p => list.Contains(p.Ssn)).ToListAsync();",
        "await db.Patients.Where(p => new[] { \"a\", \"b\" }.Contains(p.Ssn)).ToListAsync();",
        "await db.Patients.Where(p => p.Ssn == other.Ssn).ToListAsync();",
        "await db.Patients.Where(p => p.Name == other.Diagnosis && p.Id < other.Score).OrderBy(p => other.Score).ToListAsync();",
        "await db.Patients.Join(db.Patients, a => a.Ssn, b => b.Ssn, (a, b) => b.Id).ToListAsync();",
        "await db.Patients.Join(db.Visits, p => p.Id, v => v.PatientId, (p, v) => new { p.Diagnosis, v.Notes }).ToListAsync();",
        "await db.Patients.Join(db.Patients, a => a.Ssn, b => b.Ssn, (a, b) => new { a.Id, b.Diagnosis }).ToListAsync();",
        "await db.Patients.LeftJoin(db.Visits, p => p.Id, v => v.PatientId, (p, v) => new { p.Id, p.Ssn, Notes = v == null ? null : v.Notes }).OrderBy(x => x.Id).ToListAsync();",
        "await db.Patients.OrderBy(p => p.Id).SelectMany(p => p.Visits, (p, v) => new { p.Diagnosis, v.Notes }).ToListAsync();",
        "await db.Patients.Where(p => p.Active).OrderBy(p => p.Name).Select(p => new { p.Name, p.Diagnosis, p.Ssn }).ToListAsync();",
        "await db.Patients.Select(p => p.Diagnosis).FirstOrDefaultAsync();",
        "await db.Patients.OrderBy(p => p.Id).Select(p => p.Name + p.Diagnosis).Skip(10).Take(10).ToListAsync();",
        "await db.Patients.Select(p => new { p.Id, Visits = p.Visits.Count }).ToListAsync();",
        "await db.Patients.Select(p => new { p.Name, p.Diagnosis }).OrderBy(x => x.Name).ToListAsync();",
        "await db.Patients.Select(p => new { p.Name, p.Diagnosis }).Where(x => x.Name != text).OrderBy(x => x.Name).Skip(1).Take(2).ToListAsync();",
        "await db.Patients.Select(p => p.Diagnosis).CountAsync();",
        "await db.Patients.Select(p => new { p.Name, p.Ssn }).FirstOrDefaultAsync(x => x.Name == text);",
        "await db.Patients.Select(p => new { p.Name, p.Ssn }).Where(x => x.Ssn == text).OrderBy(x => x.Name).ToListAsync();",
        "await db.Patients.Select(p => p.Visits.Select(v => v.Notes).ToList()).ToListAsync();",
        "await db.Patients.OrderBy(p => p.Id).Select(p => p.Visits.OrderBy(v => v.Id).Select(v => new { v.Id, v.Notes }).ToList()).ToListAsync();",
        "await db.Patients.Where(p => p.Phone == text && p.Active).OrderBy(p => p.Name).ToListAsync();",
        "await db.Patients.FirstOrDefaultAsync(p => p.Phone == text);",
        "await db.Patients.CountAsync(p => list.Contains(p.Phone));",
        "await db.Patients.Include(p => p.Visits).AsNoTracking().Where(p => p.Id > 3).ToListAsync();",
        "await db.Patients.Where(p => p.Id == 1).ExecuteUpdateAsync(s => s.SetProperty(p => p.Name, other.Diagnosis));",
        "await db.Patients.Take(other.Score).ToListAsync();",
        "db.Patients.Where(p => p.Name == text).Select(p => new { p.Name, p.Ssn }).ToQueryString();",
        "await db.Patients.FromSql($\"SELECT * FROM Patients WHERE Name = {other.Diagnosis}\").ToListAsync();",
        "db.Patients.AsEnumerable().Where(p => p.Diagnosis == text).OrderBy(p => p.DateOfBirth).ToList();",
        "(await db.Patients.ToListAsync()).Where(p => p.Diagnosis!.StartsWith(text)).ToList();",
        "new List<Patient>().AsQueryable().Where(p => p.Diagnosis == text).OrderBy(p => p.Score).ToList();",
    ];
}
