using HealthRecords.Data;
using HealthRecords.Setup;
using Microsoft.EntityFrameworkCore;

namespace HealthRecords.Api;

/// <summary>
/// The clinic's HTTP API. Note what is absent: no call encrypts or decrypts anything. The entities are read and saved
/// with plain EF Core, and EfEnvelope does the rest.
/// </summary>
public static class PatientEndpoints
{
    private const int MaxText = 4000;

    public static void MapHealthRecordsApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api");
        api.MapGet("/about", (SampleEnvironment environment) => new AboutSample(
            environment.Database, environment.MasterKey.Provider, environment.MasterKey.KeyId,
            environment.MasterKey.Mode.ToString(), environment.MasterKey.Notice));

        var patients = api.MapGroup("/patients");
        patients.MapGet("/", ListAsync);
        patients.MapGet("/search", SearchBySsnAsync);
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

    private static async Task<List<PatientSummary>> ListAsync(ClinicDbContext db, CancellationToken cancellationToken)
    {
        // Sorting by Name happens in the database (it is plain); sorting by an encrypted property could not.
        var list = await db.Patients.AsNoTracking().Include(p => p.Visits).OrderBy(p => p.Name).ToListAsync(cancellationToken);
        return list.ConvertAll(p => new PatientSummary(p.Id, p.Name, p.DateOfBirth, p.Diagnosis, p.Visits.Count));
    }

    private static async Task<IResult> SearchBySsnAsync(string? ssn, ClinicDbContext db, CancellationToken cancellationToken)
    {
        if (string.IsNullOrWhiteSpace(ssn))
        {
            return Results.ValidationProblem(new Dictionary<string, string[]> { ["ssn"] = ["Give the SSN to search for."] });
        }

        // An ordinary equality on an encrypted property: EfEnvelope compares its blind index (a keyed HMAC) in the
        // database, so the SSN itself never appears in the SQL, its parameters or the logs.
        var found = await db.Patients.AsNoTracking().Include(p => p.Visits).Where(p => p.Ssn == ssn.Trim()).ToListAsync(cancellationToken);
        return Results.Ok(found.ConvertAll(p => new PatientSummary(p.Id, p.Name, p.DateOfBirth, p.Diagnosis, p.Visits.Count)));
    }

    private static async Task<IResult> GetAsync(int id, ClinicDbContext db, CancellationToken cancellationToken) =>
        await LoadAsync(db, id, cancellationToken) is { } patient ? Results.Ok(Details(patient)) : Results.NotFound();

    private static async Task<IResult> GetStoredAsync(int id, ClinicDbContext db, CancellationToken cancellationToken) =>
        await StoredRows.ReadAsync(db, id, cancellationToken) is { } stored ? Results.Ok(stored) : Results.NotFound();

    private static async Task<IResult> GetSideBySideAsync(int id, ClinicDbContext db, CancellationToken cancellationToken)
    {
        if (await LoadAsync(db, id, cancellationToken) is not { } patient
            || await StoredRows.ReadAsync(db, id, cancellationToken) is not { } stored)
        {
            return Results.NotFound();
        }

        return Results.Ok(new SideBySide(Details(patient), stored));
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
        return Results.Created($"/api/patients/{patient.Id}", Details(patient));
    }

    private static async Task<IResult> UpdateAsync(int id, PatientInput input, ClinicDbContext db, CancellationToken cancellationToken)
    {
        if (Validate(input) is { } errors)
        {
            return Results.ValidationProblem(errors);
        }

        if (await db.Patients.Include(p => p.Visits).SingleOrDefaultAsync(p => p.Id == id, cancellationToken) is not { } patient)
        {
            return Results.NotFound();
        }

        // Plain property assignments on a tracked entity: EfEnvelope notices which encrypted values changed and
        // re-encrypts only those, under the record's existing data key.
        Apply(input, patient);
        await db.SaveChangesAsync(cancellationToken);
        return Results.Ok(Details(patient));
    }

    private static async Task<IResult> DeleteAsync(int id, ClinicDbContext db, CancellationToken cancellationToken)
    {
        if (await db.Patients.FindAsync([id], cancellationToken) is not { } patient)
        {
            return Results.NotFound();
        }

        db.Patients.Remove(patient);
        await db.SaveChangesAsync(cancellationToken);
        return Results.NoContent();
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

    private static async Task<IResult> UpdateVisitAsync(int id, int visitId, VisitInput input, ClinicDbContext db, CancellationToken cancellationToken)
    {
        if (Validate(input) is { } errors)
        {
            return Results.ValidationProblem(errors);
        }

        if (await db.Visits.SingleOrDefaultAsync(v => v.Id == visitId && v.PatientId == id, cancellationToken) is not { } visit)
        {
            return Results.NotFound();
        }

        Apply(input, visit);
        await db.SaveChangesAsync(cancellationToken);
        return Results.Ok(Details(visit));
    }

    private static async Task<IResult> DeleteVisitAsync(int id, int visitId, ClinicDbContext db, CancellationToken cancellationToken)
    {
        if (await db.Visits.SingleOrDefaultAsync(v => v.Id == visitId && v.PatientId == id, cancellationToken) is not { } visit)
        {
            return Results.NotFound();
        }

        db.Visits.Remove(visit);
        await db.SaveChangesAsync(cancellationToken);
        return Results.NoContent();
    }

    private static Task<Patient?> LoadAsync(ClinicDbContext db, int id, CancellationToken cancellationToken) =>
        db.Patients.AsNoTracking().Include(p => p.Visits).SingleOrDefaultAsync(p => p.Id == id, cancellationToken);

    private static PatientDetails Details(Patient p) =>
        new(p.Id, p.Name, p.Ssn, p.DateOfBirth, p.Diagnosis, p.Notes, p.Visits.OrderBy(v => v.At).Select(Details).ToList());

    private static VisitDetails Details(Visit v) => new(v.Id, v.At, v.Clinician, v.Notes);

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
}
