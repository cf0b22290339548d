using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HealthRecords.Api;
using Microsoft.Extensions.Logging;

namespace HealthRecords.Tests;

/// <summary>
/// The sample attacked through its database file (someone with write access flips bytes, copies an index, rewrites a
/// key id) and read through its logs: what a client sees, and what the operator is told.
/// </summary>
public class SampleUnderAttackTests
{
    private const string UnreadableType = ApiErrorHandler.RecordUnreadableType;

    private static CancellationToken Cancel => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_searched_ssn_is_sent_in_the_body_and_appears_in_no_log_line_at_any_level()
    {
        const string ssn = "604-91-2287";
        await using var app = new SampleApp();
        using var client = app.CreateClient();
        var created = await CreateAsync(client, "Ines Search-Test", ssn, "Hypertension, stage 1");

        var found = await PatientApiTests.SearchAsync(client, $"  {ssn} ");
        var opened = await client.GetFromJsonAsync<PatientDetails>($"/api/patients/{created}", Cancel);
        using var malformed = await client.PostAsync("/api/patients/search", Json($"{{\"ssn\": {ssn}}}"), Cancel);

        Assert.Equal(created, Assert.Single(found.Items).Id);
        Assert.Equal(ssn, opened!.Ssn);
        Assert.Equal(HttpStatusCode.BadRequest, malformed.StatusCode);

        // Proof that the capture sees all levels and the requests themselves: EF's commands (Debug), the hosting
        // log of each request (Information) and its path.
        var logs = app.Logs.Entries;
        Assert.Contains(logs, e => e.Level == LogLevel.Trace);
        Assert.Contains(logs, e => e.Level == LogLevel.Debug && e.Category.StartsWith("Microsoft.EntityFrameworkCore", StringComparison.Ordinal));
        Assert.Contains(logs, e => e.Category == "Microsoft.AspNetCore.Hosting.Diagnostics" && e.Text.Contains("POST", StringComparison.Ordinal) && e.Text.Contains("/api/patients/search", StringComparison.Ordinal));
        Assert.Contains(logs, e => e.Text.Contains("Ines Search-Test", StringComparison.Ordinal) || e.Text.Contains("Ssn_Index", StringComparison.Ordinal));
        foreach (var form in new[] { ssn, ssn.Replace("-", "", StringComparison.Ordinal), Uri.EscapeDataString(ssn) })
        {
            Assert.DoesNotContain(logs, e => e.Text.Contains(form, StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task A_patient_that_fails_authentication_is_marked_in_the_list_and_the_others_are_served()
    {
        await using var app = new SampleApp();
        using var client = app.CreateClient();
        var first = await CreateAsync(client, "Anna Intact-Test", "111-22-3333", "Gout");
        var bad = await CreateAsync(client, "Bruno Tampered-Test", "222-33-4444", "Anaemia");
        var last = await CreateAsync(client, "Cora Intact-Test", "333-44-5555", "Eczema");
        FlipLastByte(app, "Patients", "Diagnosis", bad);

        using var response = await client.GetAsync("/api/patients", Cancel);
        var page = (await response.Content.ReadFromJsonAsync<PatientPage>(Cancel))!;

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal([first, bad, last], page.Items.Select(p => p.Id));
        Assert.Equal("Gout", page.Items[0].Diagnosis);
        Assert.Equal("Eczema", page.Items[2].Diagnosis);
        var marked = page.Items[1];
        Assert.Equal(("Bruno Tampered-Test", RecordReader.CannotBeDecrypted, null, null), (marked.Name, marked.Problem, marked.Diagnosis, marked.DateOfBirth));
        Assert.All([page.Items[0], page.Items[2]], p => Assert.Null(p.Problem));

        // The operator learns which record, which property and which key, under the id the client was given.
        var correlationId = Assert.Single(response.Headers.GetValues(Correlation.Header));
        var entry = Assert.Single(app.Logs.Entries, e => Logged(e, "RecordReader", 1001));
        Assert.Equal(LogLevel.Error, entry.Level);
        foreach (var part in new[] { $"Patient {bad} cannot be decrypted", "property Diagnosis", "master key healthrecords-dev-", correlationId })
        {
            Assert.Contains(part, entry.Text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_visit_that_fails_authentication_is_marked_and_its_patient_still_opens()
    {
        await using var app = new SampleApp();
        using var client = app.CreateClient();
        var id = await CreateAsync(client, "Dana Visits-Test", "444-55-6666", "Migraine");
        var good = await AddVisitAsync(client, id, "Triptan works", new DateTime(2026, 1, 5, 9, 0, 0, DateTimeKind.Utc));
        var bad = await AddVisitAsync(client, id, "Referred to neurology", new DateTime(2026, 2, 5, 9, 0, 0, DateTimeKind.Utc));
        FlipLastByte(app, "Visits", "Notes", bad);

        var list = await client.GetFromJsonAsync<PatientPage>("/api/patients", Cancel);
        var patient = await client.GetFromJsonAsync<PatientDetails>($"/api/patients/{id}", Cancel);

        Assert.Equal(2, Assert.Single(list!.Items).Visits);
        Assert.Equal("Migraine", patient!.Diagnosis);
        Assert.Equal([good, bad], patient.Visits.Select(v => v.Id));
        Assert.Equal(("Triptan works", null), (patient.Visits[0].Notes, patient.Visits[0].Problem));
        Assert.Equal((null, RecordReader.CannotBeDecrypted, "Dr. Attack"), (patient.Visits[1].Notes, patient.Visits[1].Problem, patient.Visits[1].Clinician));
        Assert.Contains(app.Logs.Entries, e => Logged(e, "RecordReader", 1001) && e.Text.Contains($"Visit {bad} cannot be decrypted", StringComparison.Ordinal));

        using var deleted = await client.DeleteAsync($"/api/patients/{id}/visits/{bad}", Cancel);
        Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        Assert.Equal([good], (await client.GetFromJsonAsync<PatientDetails>($"/api/patients/{id}", Cancel))!.Visits.Select(v => v.Id));
    }

    [Fact]
    public async Task A_patient_that_fails_authentication_is_refused_as_an_integrity_problem_and_can_be_deleted()
    {
        await using var app = new SampleApp();
        using var client = app.CreateClient();
        var id = await CreateAsync(client, "Emil Deleted-Test", "555-66-7777", "Psoriasis");
        await AddVisitAsync(client, id, "Topical steroid", DateTime.UtcNow);
        FlipLastByte(app, "Patients", "Notes", id);

        using var read = await client.GetAsync($"/api/patients/{id}", Cancel);
        var problem = await ProblemAsync(read, HttpStatusCode.InternalServerError);
        var sideBySide = await client.GetFromJsonAsync<SideBySide>($"/api/patients/{id}/side-by-side", Cancel);
        using var deleted = await client.DeleteAsync($"/api/patients/{id}", Cancel);
        using var after = await client.GetAsync($"/api/patients/{id}", Cancel);

        var body = problem.GetRawText();
        Assert.True(problem.GetProperty("type").GetString() == UnreadableType, body);
        Assert.Equal(["correlationId", "detail", "status", "title", "type"], problem.EnumerateObject().Select(m => m.Name).Order(StringComparer.Ordinal));
        foreach (var detail in new[] { "Patient", "Notes", "healthrecords-dev-" })
        {
            Assert.DoesNotContain(detail, body, StringComparison.Ordinal);
        }

        var correlationId = problem.GetProperty(Correlation.ProblemMember).GetString()!;
        Assert.Contains(app.Logs.Entries, e => Logged(e, "RecordReader", 1001) && e.Text.Contains($"Patient {id} cannot be decrypted: property Notes", StringComparison.Ordinal) && e.Text.Contains(correlationId, StringComparison.Ordinal));
        Assert.Null(sideBySide!.Application);
        Assert.Equal(RecordReader.CannotBeDecrypted, sideBySide.Problem);
        Assert.Contains(sideBySide.Database.Patient.Columns, c => c.Name == "Notes" && c.Kind == "ciphertext" && c.Value is not null);
        Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        await ProblemAsync(after, HttpStatusCode.NotFound);
        Assert.Equal(0L, app.CountRows("Visits"));
        Assert.Equal(0L, app.CountRows("Patients"));
    }

    [Fact]
    public async Task A_rewritten_key_id_is_an_integrity_problem_not_an_outage_and_is_logged_escaped()
    {
        const string forged = "evil\u001b[2J\r\n2026-12-01 INFO all good\u202e";
        await using var app = new SampleApp();
        using var client = app.CreateClient();
        var id = await CreateAsync(client, "Farid Rewritten-Test", "666-77-8888", "Coeliac disease");
        var other = await CreateAsync(client, "Gita Intact-Test", "777-88-9999", "Hay fever");
        app.WriteStored("Patients", StoredRows.KeyColumn, id, WithKeyId((byte[])app.ReadStored("Patients", StoredRows.KeyColumn, id)!, forged));

        using var read = await client.GetAsync($"/api/patients/{id}", Cancel);
        var problem = await ProblemAsync(read, HttpStatusCode.InternalServerError);
        var page = await client.GetFromJsonAsync<PatientPage>("/api/patients", Cancel);

        Assert.Equal(UnreadableType, problem.GetProperty("type").GetString());
        Assert.DoesNotContain("evil", problem.GetRawText(), StringComparison.Ordinal);
        Assert.Equal(RecordReader.CannotBeDecrypted, page!.Items.Single(p => p.Id == id).Problem);
        Assert.Equal("Hay fever", page.Items.Single(p => p.Id == other).Diagnosis);

        var logged = app.Logs.Entries.Where(e => Logged(e, "RecordReader", 1002)).ToList();
        Assert.Equal(2, logged.Count);
        Assert.All(logged, e => Assert.Contains(
            $"Patient {id} cannot be decrypted: it names master key evil\\u001B[2J\\u000D\\u000A2026-12-01 INFO all good\\u202E,",
            e.Text,
            StringComparison.Ordinal));

        // No log line, from any category, carries the raw escape, the forged line break or the direction override.
        Assert.DoesNotContain(app.Logs.Entries, e => e.Text.Contains('\u001b', StringComparison.Ordinal) || e.Text.Contains('\u202e', StringComparison.Ordinal) || e.Text.Contains("\r\n2026-12-01", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_copied_blind_index_does_not_return_another_patient()
    {
        const string ssn = "888-12-3456";
        await using var app = new SampleApp();
        using var client = app.CreateClient();
        var owner = await CreateAsync(client, "Hana Owner-Test", ssn, "Asthma");
        var impostor = await CreateAsync(client, "Ivo Impostor-Test", "999-12-3456", "Back pain");
        app.ExecuteSql(
            "UPDATE \"Patients\" SET \"Ssn_Index\" = (SELECT \"Ssn_Index\" FROM \"Patients\" WHERE \"Id\" = $owner) WHERE \"Id\" = $impostor",
            ("$owner", owner), ("$impostor", impostor));

        var found = await PatientApiTests.SearchAsync(client, ssn);

        Assert.Equal(owner, Assert.Single(found.Items).Id);
        Assert.Equal(0, found.Unreadable);
        var warning = Assert.Single(app.Logs.Entries, e => Logged(e, "PatientEndpoints", 1020));
        Assert.Equal(LogLevel.Warning, warning.Level);
        Assert.Contains($"Patient {impostor} matched an SSN search", warning.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_search_match_that_cannot_be_decrypted_is_counted_not_shown()
    {
        const string ssn = "123-45-0000";
        await using var app = new SampleApp();
        using var client = app.CreateClient();
        var id = await CreateAsync(client, "Jonas Unverified-Test", ssn, "Tinnitus");
        FlipLastByte(app, "Patients", "Ssn", id);

        var found = await PatientApiTests.SearchAsync(client, ssn);

        Assert.Empty(found.Items);
        Assert.Equal(1, found.Unreadable);
    }

    internal static async Task<JsonElement> ProblemAsync(HttpResponseMessage response, HttpStatusCode status)
    {
        Assert.Equal(status, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>(Cancel);
        Assert.Equal((int)status, problem.GetProperty("status").GetInt32());
        Assert.False(string.IsNullOrEmpty(problem.GetProperty("title").GetString()));
        Assert.Equal(Assert.Single(response.Headers.GetValues(Correlation.Header)), problem.GetProperty(Correlation.ProblemMember).GetString());
        return problem;
    }

    internal static async Task<int> CreateAsync(HttpClient client, string name, string ssn, string diagnosis)
    {
        using var response = await client.PostAsJsonAsync("/api/patients", new PatientInput(name, ssn, new DateOnly(1980, 5, 17), diagnosis, "Notes of " + name), Cancel);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<PatientDetails>(Cancel))!.Id;
    }

    private static async Task<int> AddVisitAsync(HttpClient client, int patient, string notes, DateTime at)
    {
        using var response = await client.PostAsJsonAsync($"/api/patients/{patient}/visits", new VisitInput(at, "Dr. Attack", notes), Cancel);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<VisitDetails>(Cancel))!.Id;
    }

    private static bool Logged(CapturedLog entry, string type, int eventId) =>
        entry.Category == $"HealthRecords.Api.{type}" && entry.EventId == eventId;

    private static StringContent Json(string text) => new(text, Encoding.UTF8, "application/json");

    // The last byte of an AES-GCM field is part of its tag: one flipped bit and the field fails authentication.
    private static void FlipLastByte(SampleApp app, string table, string column, int id)
    {
        var stored = (byte[])app.ReadStored(table, column, id)!;
        stored[^1] ^= 0x01;
        app.WriteStored(table, column, id, stored);
    }

    // The wrapped-key blob with another master-key id (layout in docs/FORMAT.md, as Api/StoredRows.cs reads it):
    // version, mode, 16-byte record id, 1-byte-length provider name, then the 2-byte-length key id.
    private static byte[] WithKeyId(byte[] blob, string keyId)
    {
        var providerEnd = 2 + 16 + 1 + blob[18];
        var oldLength = BinaryPrimitives.ReadUInt16BigEndian(blob.AsSpan(providerEnd));
        var newId = Encoding.UTF8.GetBytes(keyId);
        var length = new byte[2];
        BinaryPrimitives.WriteUInt16BigEndian(length, (ushort)newId.Length);
        return [.. blob.AsSpan(0, providerEnd), .. length, .. newId, .. blob.AsSpan(providerEnd + 2 + oldLength)];
    }
}
