using System.Net;
using System.Net.Http.Json;
using System.Text;
using HealthRecords.Api;
using HealthRecords.Setup;

namespace HealthRecords.Tests;

public class PatientApiTests
{
    private static readonly PatientInput Input = new(
        Name: "Quentin Marlowe-Test",
        Ssn: "531-77-0192",
        DateOfBirth: new DateOnly(1973, 8, 29),
        Diagnosis: "Chronic tinnitus, left ear, since a 2019 concert",
        Notes: "Asks for written summaries; hearing aid fitted in March");

    private const string VisitNotes = "Audiogram shows 35 dB loss at 4 kHz on the left";

    private static CancellationToken Cancel => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Created_patient_reads_back_decrypted_over_http()
    {
        await using var app = new SampleApp();
        using var client = app.CreateClient();

        var created = await CreateAsync(client);
        var read = await client.GetFromJsonAsync<PatientDetails>($"/api/patients/{created.Id}", Cancel);

        Assert.NotNull(read);
        Assert.Equal(Input.Name, read.Name);
        Assert.Equal(Input.Ssn, read.Ssn);
        Assert.Equal(Input.DateOfBirth, read.DateOfBirth);
        Assert.Equal(Input.Diagnosis, read.Diagnosis);
        Assert.Equal(Input.Notes, read.Notes);
        Assert.Equal(VisitNotes, Assert.Single(read.Visits).Notes);
    }

    [Fact]
    public async Task Database_file_holds_no_plaintext_of_a_created_patient()
    {
        await using var app = new SampleApp();
        using var client = app.CreateClient();
        await CreateAsync(client);

        // The plain name is found: proof that the scan sees what was just written.
        Assert.True(app.StoresPlaintext(Input.Name!));
        Assert.False(app.StoresPlaintext(Input.Ssn!));
        Assert.False(app.StoresPlaintext("1973-08-29"));
        Assert.False(app.StoresPlaintext(Input.Diagnosis!));
        Assert.False(app.StoresPlaintext(Input.Notes!));
        Assert.False(app.StoresPlaintext(VisitNotes));
    }

    [Fact]
    public async Task A_patient_is_found_by_SSN_through_the_blind_index_and_the_SSN_is_not_stored()
    {
        await using var app = new SampleApp();
        using var client = app.CreateClient();
        var created = await CreateAsync(client);

        var found = await SearchAsync(client, " " + Input.Ssn + " ");
        var missing = await SearchAsync(client, "000-00-0000");

        Assert.Equal(created.Id, Assert.Single(found.Items).Id);
        Assert.Empty(missing.Items);
        Assert.False(app.StoresPlaintext(Input.Ssn!));
    }

    [Fact]
    public async Task Edited_values_are_read_back_and_stored_encrypted()
    {
        await using var app = new SampleApp();
        using var client = app.CreateClient();
        var created = await CreateAsync(client);
        var edited = Input with { Diagnosis = "Tinnitus resolved after treatment in 2026", Ssn = "531-77-0193" };

        var response = await client.PutAsJsonAsync($"/api/patients/{created.Id}", edited, Cancel);
        response.EnsureSuccessStatusCode();
        var read = await client.GetFromJsonAsync<PatientDetails>($"/api/patients/{created.Id}", Cancel);

        Assert.Equal(edited.Diagnosis, read!.Diagnosis);
        Assert.Equal(edited.Ssn, read.Ssn);
        Assert.Equal(Input.Notes, read.Notes);
        Assert.False(app.StoresPlaintext(edited.Diagnosis));
        Assert.False(app.StoresPlaintext(edited.Ssn));
    }

    [Fact]
    public async Task Stored_view_returns_hex_ciphertext_that_is_not_the_plaintext()
    {
        await using var app = new SampleApp();
        using var client = app.CreateClient();
        var created = await CreateAsync(client);

        var stored = await client.GetFromJsonAsync<StoredRecord>($"/api/patients/{created.Id}/stored", Cancel);

        Assert.NotNull(stored);
        var columns = stored.Patient.Columns.ToDictionary(c => c.Name);
        Assert.Equal("plain", columns["Name"].Kind);
        Assert.Equal(Input.Name, columns["Name"].Value);
        foreach (var (column, plaintext) in new[] { ("Ssn", Input.Ssn!), ("DateOfBirth", "1973-08-29"), ("Diagnosis", Input.Diagnosis!), ("Notes", Input.Notes!) })
        {
            var value = columns[column];
            Assert.Equal("ciphertext", value.Kind);
            var bytes = Convert.FromHexString(value.Value!);
            Assert.Equal(value.Length, bytes.Length);
            Assert.DoesNotContain(plaintext, value.Value!, StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotContain(Convert.ToHexString(Encoding.UTF8.GetBytes(plaintext)), value.Value!, StringComparison.OrdinalIgnoreCase);
            Assert.True(bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(plaintext)) < 0, $"{column} holds its plaintext");
        }

        // The blind index is a keyed HMAC of the SSN, neither plain nor ciphertext, and labelled as what it is.
        Assert.Equal("blind-index", columns["Ssn_Index"].Kind);
        Assert.Equal(32, columns["Ssn_Index"].Length);
        Assert.Equal("wrapped-key", columns[StoredRows.KeyColumn].Kind);
        Assert.All(columns.Values.Where(c => c.Name is not ("Id" or "Name")), c => Assert.NotEqual("plain", c.Kind));
        Assert.Equal("in-memory", stored.Patient.WrappedKey!.Provider);
        Assert.StartsWith("healthrecords-dev-", stored.Patient.WrappedKey.MasterKeyId, StringComparison.Ordinal);
        Assert.Equal(typeof(HealthRecords.Data.Patient).FullName, stored.Patient.WrappedKey.Entity);
        Assert.Equal(60, stored.Patient.WrappedKey.ProviderWrappedLength);

        var visit = Assert.Single(stored.Visits).Columns.Single(c => c.Name == "Notes");
        Assert.Equal("ciphertext", visit.Kind);
        Assert.True(Convert.FromHexString(visit.Value!).AsSpan().IndexOf(Encoding.UTF8.GetBytes(VisitNotes)) < 0);
    }

    [Fact]
    public async Task Seeded_demo_patients_are_listed_decrypted_and_stored_encrypted()
    {
        await using var app = new SampleApp(seed: true);
        using var client = app.CreateClient();

        var list = (await client.GetFromJsonAsync<PatientPage>("/api/patients", Cancel))!.Items;

        var demo = DemoData.Patients();
        Assert.Equal(demo.Select(p => p.Name).Order(StringComparer.Ordinal), list.Select(p => p.Name).Order(StringComparer.Ordinal));
        foreach (var patient in demo)
        {
            Assert.Equal(patient.Diagnosis, list.Single(p => p.Name == patient.Name).Diagnosis);
            Assert.True(app.StoresPlaintext(patient.Name));
            Assert.False(app.StoresPlaintext(patient.Ssn));
            Assert.All(new[] { patient.Diagnosis, patient.Notes }.OfType<string>(), text => Assert.False(app.StoresPlaintext(text)));
            Assert.All(patient.Visits, visit => Assert.False(app.StoresPlaintext(visit.Notes)));
        }
    }

    [Fact]
    public async Task Records_written_before_a_restart_are_read_with_the_same_development_key()
    {
        var directory = Path.Combine(Path.GetTempPath(), "healthrecords-tests-" + Guid.NewGuid().ToString("N"));
        try
        {
            int id;
            await using (var first = new SampleApp(directory))
            {
                using var client = first.CreateClient();
                id = (await CreateAsync(client)).Id;
            }

            await using var second = new SampleApp(directory);
            using var again = second.CreateClient();
            var read = await again.GetFromJsonAsync<PatientDetails>($"/api/patients/{id}", Cancel);

            Assert.Equal(Input.Ssn, read!.Ssn);
            Assert.True(File.Exists(Path.Combine(directory, DevelopmentMasterKey.FileName)));
        }
        finally
        {
            SampleApp.DeleteDirectory(directory);
        }
    }

    [Fact]
    public async Task Deleted_patient_and_visits_are_gone()
    {
        await using var app = new SampleApp();
        using var client = app.CreateClient();
        var created = await CreateAsync(client);

        var deleted = await client.DeleteAsync($"/api/patients/{created.Id}", Cancel);
        var read = await client.GetAsync($"/api/patients/{created.Id}", Cancel);
        var stored = await client.GetAsync($"/api/patients/{created.Id}/stored", Cancel);

        Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, read.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, stored.StatusCode);
    }

    [Fact]
    public async Task Patient_without_ssn_is_refused_with_a_validation_problem()
    {
        await using var app = new SampleApp();
        using var client = app.CreateClient();

        var response = await client.PostAsJsonAsync("/api/patients", Input with { Ssn = " " }, Cancel);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("ssn", await response.Content.ReadAsStringAsync(Cancel), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("AwsKms", "HealthRecords:MasterKey:AwsKms:KeyId")]
    [InlineData("Pkcs11", "HealthRecords:MasterKey:Pkcs11:LibraryPath")]
    [InlineData("Vault", "HealthRecords:MasterKey:Provider")]
    public async Task Unusable_master_key_setting_fails_at_start_naming_what_is_missing(string provider, string expected)
    {
        await using var app = new SampleApp(settings: new Dictionary<string, string?> { ["HealthRecords:MasterKey:Provider"] = provider });

        var error = Assert.Throws<InvalidOperationException>(() => app.CreateClient());

        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    internal static async Task<SearchResult> SearchAsync(HttpClient client, string ssn)
    {
        var response = await client.PostAsJsonAsync("/api/patients/search", new SsnSearch(ssn), Cancel);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<SearchResult>(Cancel))!;
    }

    private static async Task<PatientDetails> CreateAsync(HttpClient client)
    {
        var response = await client.PostAsJsonAsync("/api/patients", Input, Cancel);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var created = (await response.Content.ReadFromJsonAsync<PatientDetails>(Cancel))!;
        var visit = await client.PostAsJsonAsync(
            $"/api/patients/{created.Id}/visits",
            new VisitInput(new DateTime(2026, 11, 20, 8, 0, 0, DateTimeKind.Utc), "Dr. Weiss", VisitNotes),
            Cancel);
        Assert.Equal(HttpStatusCode.Created, visit.StatusCode);
        return created;
    }
}
