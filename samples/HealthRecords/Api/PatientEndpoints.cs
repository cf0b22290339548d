using HealthRecords.Data;
using HealthRecords.Setup;
using Microsoft.EntityFrameworkCore;

namespace HealthRecords.Api;

/// <summary>
/// The clinic's HTTP API. Note what is absent: no call encrypts or decrypts anything. The entities are read and saved
/// with plain EF Core, and EfEnvelope does the rest. What the API does add is what an application should do about
/// stored data that fails authentication: lists are chosen on plain columns and read through <see cref="RecordReader"/>,
/// so a bad record is marked instead of failing its page, and deletes run in SQL by key, so it can be removed.
/// </summary>
public static partial class PatientEndpoints
{
    public const int DefaultPageSize = 25;

    public const int MaxPageSize = 100;

    private const int MaxText = 4000;

    // An SSN belongs to one patient; a search matching more than this many rows has copied indexes to deal with.
    private const int MaxSearchCandidates = 50;

    public static void MapHealthRecordsApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api");
        api.MapGet("/about", (SampleEnvironment environment) => new AboutSample(
            environment.Database, environment.MasterKey.Provider, environment.MasterKey.KeyId,
            environment.MasterKey.Mode.ToString(), environment.MasterKey.Notice));

        var patients = api.MapGroup("/patients");
        patients.MapGet("/", ListAsync);
        patients.MapPost("/search", SearchBySsnAsync);
        patients.MapGet("/{id:int}", GetAsync);
        patients.MapGet("/{id:int}/stored", GetStoredAsync);
        patients.MapGet("/{id:int}/side-by-side", GetSideBySideAsync);
        patients.MapPost("/", CreateAsync);
        patients.MapPut("/{id:int}", UpdateAsync);
        patients.MapDelete("/{id:int}", DeleteAsync);
        patients.MapPost("/{id:int}/visits", AddVisitAsync);
        patients.MapPut("/{id:int}/visits/{visitId:int}", UpdateVisitAsync);
        patients.MapDelete("/{id:int}/visits/{visitId:int}", DeleteVisitAsync);
    }

    private static async Task<IResult> ListAsync(int? page, int? pageSize, ClinicDbContext db, RecordReader reader, HttpContext http, CancellationToken cancellationToken)
    {
        var (number, size) = (page ?? 1, pageSize ?? DefaultPageSize);
        var errors = new Dictionary<string, string[]>();
        if (number is < 1 or > int.MaxValue / MaxPageSize)
        {
            errors["page"] = [$"Between 1 and {int.MaxValue / MaxPageSize}."];
        }

        if (size is < 1 or > MaxPageSize)
        {
            errors["pageSize"] = [$"Between 1 and {MaxPageSize}."];
        }

        if (errors.Count > 0)
        {
            return Results.ValidationProblem(errors);
        }

        // The page is chosen on plain columns (Name is plain, so the database can sort by it; it could not sort
        // ciphertext), and the visits are counted in SQL: nothing is decrypted to choose the rows.
        var total = await db.Patients.CountAsync(cancellationToken);
        var rows = await db.Patients.OrderBy(p => p.Name).ThenBy(p => p.Id).Skip((number - 1) * size).Take(size)
            .Select(p => new PlainPatient(p.Id, p.Name, p.Visits.Count)).ToListAsync(cancellationToken);
        var read = await reader.ReadAsync(db.Patients.AsNoTracking(), p => p.Id, [.. rows.Select(r => r.Id)], Correlation.Id(http), cancellationToken);
        var items = new List<PatientSummary>(rows.Count);
        foreach (var row in rows)
        {
            if (read.Read.TryGetValue(row.Id, out var patient))
            {
                items.Add(Summary(row, patient));
            }
            else if (read.Unreadable.Contains(row.Id))
            {
                items.Add(new PatientSummary(row.Id, row.Name, null, null, row.Visits, RecordReader.CannotBeDecrypted));
            }
        }

        return Results.Ok(new PatientPage(items, number, size, total));
    }

    private static async Task<IResult> SearchBySsnAsync(
        SsnSearch search, ClinicDbContext db, RecordReader reader, ILoggerFactory loggers, HttpContext http, CancellationToken cancellationToken)
    {
        // Trimmed as the blind index normalises it ([Encrypted(Normalization = Trim)] on Patient.Ssn).
        var ssn = search.Ssn?.Trim();
        if (string.IsNullOrEmpty(ssn) || ssn.Length > 64)
        {
            return Results.ValidationProblem(new Dictionary<string, string[]>
            {
                ["ssn"] = [string.IsNullOrEmpty(ssn) ? "Give the SSN to search for." : "At most 64 characters."],
            });
        }

        // An ordinary equality on an encrypted property: EfEnvelope compares its blind index (a keyed HMAC) in the
        // database, so the SSN itself never appears in the SQL, its parameters or the logs.
        var candidates = await db.Patients.Where(p => p.Ssn == ssn).OrderBy(p => p.Name).ThenBy(p => p.Id).Take(MaxSearchCandidates)
            .Select(p => new PlainPatient(p.Id, p.Name, p.Visits.Count)).ToListAsync(cancellationToken);
        var correlationId = Correlation.Id(http);
        var read = await reader.ReadAsync(db.Patients.AsNoTracking(), p => p.Id, [.. candidates.Select(c => c.Id)], correlationId, cancellationToken);
        var items = new List<PatientSummary>(candidates.Count);
        foreach (var candidate in candidates)
        {
            if (!read.Read.TryGetValue(candidate.Id, out var patient))
            {
                continue;
            }

            // The index column is not authenticated: whoever can write to the table can copy another row's index
            // into it. The SSN is (its ciphertext is bound to this record), so a match counts only once the
            // decrypted SSN agrees.
            if (!string.Equals(patient.Ssn.Trim(), ssn, StringComparison.Ordinal))
            {
                LogIndexMismatch(loggers.CreateLogger(typeof(PatientEndpoints)), candidate.Id, correlationId);
                continue;
            }

            items.Add(Summary(candidate, patient));
        }

        return Results.Ok(new SearchResult(items, read.Unreadable.Count));
    }

    private static async Task<IResult> GetAsync(int id, ClinicDbContext db, RecordReader reader, HttpContext http, CancellationToken cancellationToken) =>
        await reader.ReadOneAsync(db.Patients.AsNoTracking(), id, cancellationToken) is { } patient
            ? Results.Ok(await DetailsAsync(db, reader, patient, Correlation.Id(http), cancellationToken))
            : Results.NotFound();

    private static async Task<IResult> GetStoredAsync(int id, ClinicDbContext db, CancellationToken cancellationToken) =>
        await StoredRows.ReadAsync(db, id, cancellationToken) is { } stored ? Results.Ok(stored) : Results.NotFound();

    private static async Task<IResult> GetSideBySideAsync(int id, ClinicDbContext db, RecordReader reader, HttpContext http, CancellationToken cancellationToken)
    {
        if (await StoredRows.ReadAsync(db, id, cancellationToken) is not { } stored)
        {
            return Results.NotFound();
        }

        var correlationId = Correlation.Id(http);
        try
        {
            return await reader.ReadOneAsync(db.Patients.AsNoTracking(), id, cancellationToken) is { } patient
                ? Results.Ok(new SideBySide(await DetailsAsync(db, reader, patient, correlationId, cancellationToken), stored, null))
                : Results.NotFound();
        }
        catch (RecordUnreadableException unreadable)
        {
            // The stored half is exactly what is worth seeing about a record that fails authentication.
            reader.LogUnreadable(unreadable.Entity, unreadable.Key, unreadable, correlationId);
            return Results.Ok(new SideBySide(null, stored, RecordReader.CannotBeDecrypted));
        }
    }

    private static async Task<IResult> CreateAsync(PatientInput input, ClinicDbContext db, CancellationToken cancellationToken)
    {
        if (Validate(input) is { } errors)
        {
            return Results.ValidationProblem(errors);
        }

        var patient = new Patient();
        Apply(input, patient);
        db.Patients.Add(patient);
        await db.SaveChangesAsync(cancellationToken);
        return Results.Created($"/api/patients/{patient.Id}", Details(patient, []));
    }

    private static async Task<IResult> UpdateAsync(
        int id, PatientInput input, ClinicDbContext db, RecordReader reader, HttpContext http, CancellationToken cancellationToken)
    {
        if (Validate(input) is { } errors)
        {
            return Results.ValidationProblem(errors);
        }

        if (await reader.ReadOneAsync(db.Patients, id, cancellationToken) is not { } patient)
        {
            return Results.NotFound();
        }

        // Plain property assignments on a tracked entity: EfEnvelope notices which encrypted values changed and
        // re-encrypts only those, under the record's existing data key.
        Apply(input, patient);
        await db.SaveChangesAsync(cancellationToken);
        return Results.Ok(await DetailsAsync(db, reader, patient, Correlation.Id(http), cancellationToken));
    }

    private static async Task<IResult> DeleteAsync(int id, ClinicDbContext db, CancellationToken cancellationToken)
    {
        // In SQL, by key: nothing is loaded, so nothing is decrypted, and a record that fails authentication can be
        // removed like any other. The visits go first, in the same transaction, whatever the database's cascades.
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        await db.Visits.Where(v => v.PatientId == id).ExecuteDeleteAsync(cancellationToken);
        var deleted = await db.Patients.Where(p => p.Id == id).ExecuteDeleteAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return deleted == 0 ? Results.NotFound() : Results.NoContent();
    }

    private static async Task<IResult> AddVisitAsync(int id, VisitInput input, ClinicDbContext db, CancellationToken cancellationToken)
    {
        if (Validate(input) is { } errors)
        {
            return Results.ValidationProblem(errors);
        }

        if (!await db.Patients.AnyAsync(p => p.Id == id, cancellationToken))
        {
            return Results.NotFound();
        }

        var visit = new Visit { PatientId = id };
        Apply(input, visit);
        db.Visits.Add(visit);
        await db.SaveChangesAsync(cancellationToken);
        return Results.Created($"/api/patients/{id}/visits/{visit.Id}", Details(visit));
    }

    private static async Task<IResult> UpdateVisitAsync(
        int id, int visitId, VisitInput input, ClinicDbContext db, RecordReader reader, CancellationToken cancellationToken)
    {
        if (Validate(input) is { } errors)
        {
            return Results.ValidationProblem(errors);
        }

        if (await reader.ReadOneAsync(db.Visits.Where(v => v.PatientId == id), visitId, cancellationToken) is not { } visit)
        {
            return Results.NotFound();
        }

        Apply(input, visit);
        await db.SaveChangesAsync(cancellationToken);
        return Results.Ok(Details(visit));
    }

    private static async Task<IResult> DeleteVisitAsync(int id, int visitId, ClinicDbContext db, CancellationToken cancellationToken) =>
        await db.Visits.Where(v => v.Id == visitId && v.PatientId == id).ExecuteDeleteAsync(cancellationToken) == 0
            ? Results.NotFound()
            : Results.NoContent();

    /// <summary>The patient with their visits; a visit that cannot be decrypted is listed with its plain columns and marked.</summary>
    private static async Task<PatientDetails> DetailsAsync(ClinicDbContext db, RecordReader reader, Patient patient, string correlationId, CancellationToken cancellationToken)
    {
        var rows = await db.Visits.Where(v => v.PatientId == patient.Id).OrderBy(v => v.At).ThenBy(v => v.Id)
            .Select(v => new PlainVisit(v.Id, v.At, v.Clinician)).ToListAsync(cancellationToken);
        var read = await reader.ReadAsync(db.Visits.AsNoTracking(), v => v.Id, [.. rows.Select(r => r.Id)], correlationId, cancellationToken);
        var visits = new List<VisitDetails>(rows.Count);
        foreach (var row in rows)
        {
            if (read.Read.TryGetValue(row.Id, out var visit))
            {
                visits.Add(Details(visit));
            }
            else if (read.Unreadable.Contains(row.Id))
            {
                visits.Add(new VisitDetails(row.Id, row.At, row.Clinician, null, RecordReader.CannotBeDecrypted));
            }
        }

        return Details(patient, visits);
    }

    private static PatientDetails Details(Patient p, IReadOnlyList<VisitDetails> visits) =>
        new(p.Id, p.Name, p.Ssn, p.DateOfBirth, p.Diagnosis, p.Notes, visits);

    private static VisitDetails Details(Visit v) => new(v.Id, v.At, v.Clinician, v.Notes);

    private static PatientSummary Summary(PlainPatient row, Patient patient) =>
        new(row.Id, row.Name, patient.DateOfBirth, patient.Diagnosis, row.Visits);

    private static void Apply(PatientInput input, Patient patient)
    {
        patient.Name = input.Name!.Trim();
        patient.Ssn = input.Ssn!.Trim();
        patient.DateOfBirth = input.DateOfBirth!.Value;
        patient.Diagnosis = string.IsNullOrWhiteSpace(input.Diagnosis) ? null : input.Diagnosis.Trim();
        patient.Notes = string.IsNullOrWhiteSpace(input.Notes) ? null : input.Notes.Trim();
    }

    private static void Apply(VisitInput input, Visit visit)
    {
        visit.At = DateTime.SpecifyKind(input.At!.Value, DateTimeKind.Utc);
        visit.Clinician = input.Clinician?.Trim() ?? "";
        visit.Notes = input.Notes!.Trim();
    }

    private static Dictionary<string, string[]>? Validate(PatientInput input)
    {
        var errors = new Dictionary<string, string[]>();
        Require(errors, "name", input.Name, 200);
        Require(errors, "ssn", input.Ssn, 64);
        Limit(errors, "diagnosis", input.Diagnosis);
        Limit(errors, "notes", input.Notes);
        if (input.DateOfBirth is not { } born)
        {
            errors["dateOfBirth"] = ["The date of birth is required."];
        }
        else if (born > DateOnly.FromDateTime(DateTime.UtcNow) || born.Year < 1900)
        {
            errors["dateOfBirth"] = ["The date of birth must be between 1900 and today."];
        }

        return errors.Count == 0 ? null : errors;
    }

    private static Dictionary<string, string[]>? Validate(VisitInput input)
    {
        var errors = new Dictionary<string, string[]>();
        Require(errors, "notes", input.Notes, MaxText);
        if (input.Clinician?.Length > 200)
        {
            errors["clinician"] = ["At most 200 characters."];
        }

        if (input.At is null)
        {
            errors["at"] = ["The visit time is required."];
        }

        return errors.Count == 0 ? null : errors;
    }

    private static void Require(Dictionary<string, string[]> errors, string field, string? value, int maxLength)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            errors[field] = ["Required."];
        }
        else if (value.Length > maxLength)
        {
            errors[field] = [$"At most {maxLength} characters."];
        }
    }

    private static void Limit(Dictionary<string, string[]> errors, string field, string? value)
    {
        if (value?.Length > MaxText)
        {
            errors[field] = [$"At most {MaxText} characters."];
        }
    }

    [LoggerMessage(EventId = 1020, Level = LogLevel.Warning,
        Message = "Patient {PrimaryKey} matched an SSN search by its blind index, but its decrypted SSN differs: the index was copied or is stale; not returned (correlation id {CorrelationId})")]
    private static partial void LogIndexMismatch(ILogger logger, int primaryKey, string correlationId);

    /// <summary>The plain columns of a patient row: what can be read without decrypting.</summary>
    private sealed record PlainPatient(int Id, string Name, int Visits);

    /// <summary>The plain columns of a visit row.</summary>
    private sealed record PlainVisit(int Id, DateTime At, string Clinician);
}
