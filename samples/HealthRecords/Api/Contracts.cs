namespace HealthRecords.Api;

/// <summary>A row of the patient list, as the application sees it (decrypted).</summary>
/// <param name="Problem">Null when the record was read; <c>cannot be decrypted</c> when it was not, and then only its plain columns (id, name, visit count) are given.</param>
public sealed record PatientSummary(int Id, string Name, DateOnly? DateOfBirth, string? Diagnosis, int Visits, string? Problem = null);

/// <summary>One page of the patient list, sorted by name.</summary>
public sealed record PatientPage(IReadOnlyList<PatientSummary> Items, int Page, int PageSize, int Total);

/// <summary>What the search form sends: in the body, so that the SSN is in no URL, browser history or request log.</summary>
public sealed record SsnSearch(string? Ssn);

/// <summary>The patients whose decrypted SSN is the one searched for.</summary>
/// <param name="Unreadable">Records whose blind index matched but which cannot be decrypted, so whose SSN could not be checked; not shown.</param>
public sealed record SearchResult(IReadOnlyList<PatientSummary> Items, int Unreadable);

/// <summary>A whole patient record, as the application sees it (decrypted).</summary>
public sealed record PatientDetails(int Id, string Name, string Ssn, DateOnly DateOfBirth, string? Diagnosis, string? Notes, IReadOnlyList<VisitDetails> Visits);

/// <summary>One visit, as the application sees it (decrypted).</summary>
/// <param name="Problem">Null when the visit was read; <c>cannot be decrypted</c> when it was not, and then <paramref name="Notes"/> is null.</param>
public sealed record VisitDetails(int Id, DateTime At, string Clinician, string? Notes, string? Problem = null);

/// <summary>What the form sends to create or edit a patient.</summary>
public sealed record PatientInput(string? Name, string? Ssn, DateOnly? DateOfBirth, string? Diagnosis, string? Notes);

/// <summary>What the form sends to record or edit a visit.</summary>
public sealed record VisitInput(DateTime? At, string? Clinician, string? Notes);

/// <summary>The two views of one record side by side: what the application sees, and what the database stores.</summary>
/// <param name="Application">Null when the record cannot be decrypted; <paramref name="Problem"/> then says so.</param>
public sealed record SideBySide(PatientDetails? Application, StoredRecord Database, string? Problem);

/// <summary>How the running sample is configured (shown in the page header).</summary>
public sealed record AboutSample(string Database, string MasterKeyProvider, string MasterKeyId, string Mode, string? Notice);
