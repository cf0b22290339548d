namespace HealthRecords.Api;

/// <summary>A row of the patient list, as the application sees it (decrypted).</summary>
public sealed record PatientSummary(int Id, string Name, DateOnly DateOfBirth, string? Diagnosis, int Visits);

/// <summary>A whole patient record, as the application sees it (decrypted).</summary>
public sealed record PatientDetails(int Id, string Name, string Ssn, DateOnly DateOfBirth, string? Diagnosis, string? Notes, IReadOnlyList<VisitDetails> Visits);

/// <summary>One visit, as the application sees it (decrypted).</summary>
public sealed record VisitDetails(int Id, DateTime At, string Clinician, string Notes);

/// <summary>What the form sends to create or edit a patient.</summary>
public sealed record PatientInput(string? Name, string? Ssn, DateOnly? DateOfBirth, string? Diagnosis, string? Notes);

/// <summary>What the form sends to record or edit a visit.</summary>
public sealed record VisitInput(DateTime? At, string? Clinician, string? Notes);

/// <summary>The two views of one record side by side: what the application sees, and what the database stores.</summary>
public sealed record SideBySide(PatientDetails Application, StoredRecord Database);

/// <summary>How the running sample is configured (shown in the page header).</summary>
public sealed record AboutSample(string Database, string MasterKeyProvider, string MasterKeyId, string Mode, string? Notice);
