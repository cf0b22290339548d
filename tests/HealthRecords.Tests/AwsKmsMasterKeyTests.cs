using System.Net;
using System.Net.Http.Json;
using Amazon.KeyManagementService.Model;
using EfEnvelope.AwsKms.Tests.LocalKms;
using HealthRecords.Api;
using HealthRecords.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace HealthRecords.Tests;

/// <summary>The sample with its master key in AWS KMS: the real SDK client against the local KMS endpoint.</summary>
public class AwsKmsMasterKeyTests
{
    [Fact]
    public async Task Patients_round_trip_under_a_kms_key_with_one_data_key_request_per_entity_type()
    {
        var cancel = TestContext.Current.CancellationToken;
        await using var kms = LocalKmsServer.Start();
        kms.RecordRequests = false;
        string keyArn;
        using (var admin = kms.CreateClient())
        {
            keyArn = (await admin.CreateKeyAsync(new CreateKeyRequest { Description = "healthrecords" }, cancel)).KeyMetadata.Arn;
        }

        await using var app = KmsSample(kms, keyArn);
        using var client = app.CreateClient();

        var ids = new List<int>();
        for (var i = 0; i < 3; i++)
        {
            var input = new PatientInput($"Kms Patient {i}-Test", $"321-54-987{i}", new DateOnly(1980 + i, 2, 3), $"Migraine with aura, case {i}", null);
            var response = await client.PostAsJsonAsync("/api/patients", input, cancel);
            Assert.Equal(HttpStatusCode.Created, response.StatusCode);
            var id = (await response.Content.ReadFromJsonAsync<PatientDetails>(cancel))!.Id;
            var visit = await client.PostAsJsonAsync($"/api/patients/{id}/visits", new VisitInput(DateTime.UtcNow, "Dr. Kim", $"Triptan prescribed, case {i}"), cancel);
            Assert.Equal(HttpStatusCode.Created, visit.StatusCode);
            ids.Add(id);
        }

        var read = await client.GetFromJsonAsync<PatientDetails>($"/api/patients/{ids[2]}", cancel);
        var stored = await client.GetFromJsonAsync<StoredRecord>($"/api/patients/{ids[2]}/stored", cancel);

        Assert.Equal("321-54-9872", read!.Ssn);
        Assert.Equal("Triptan prescribed, case 2", Assert.Single(read.Visits).Notes);
        Assert.Equal("aws-kms", stored!.Patient.WrappedKey!.Provider);
        Assert.Equal(keyArn, stored.Patient.WrappedKey.MasterKeyId);
        Assert.False(app.StoresPlaintext("321-54-9872"));
        Assert.False(app.StoresPlaintext("Migraine with aura, case 2"));

        // Six records written, two entity types: the cached key-encryption key means one GenerateDataKey per type,
        // plus one at first start for the blind index key (SSN search).
        Assert.InRange(kms.CallCount("GenerateDataKey"), 2, 3);
    }

    [Fact]
    public async Task A_disabled_kms_key_is_answered_as_an_unavailable_key_service_not_as_a_bad_record()
    {
        var cancel = TestContext.Current.CancellationToken;
        await using var kms = LocalKmsServer.Start();
        using var admin = kms.CreateClient();
        var keyArn = (await admin.CreateKeyAsync(new CreateKeyRequest { Description = "healthrecords-revoked" }, cancel)).KeyMetadata.Arn;
        await using var app = KmsSample(kms, keyArn);
        using var client = app.CreateClient();
        var id = await SampleUnderAttackTests.CreateAsync(client, "Kai Revoked-Test", "432-10-9876", "Sinusitis");

        // Access withdrawn, and the cached key dropped so that the next read has to ask KMS.
        await admin.DisableKeyAsync(new DisableKeyRequest { KeyId = keyArn }, cancel);
        await using (var scope = app.Services.CreateAsyncScope())
        {
            scope.ServiceProvider.GetRequiredService<ClinicDbContext>().ClearEnvelopeKeyCache();
        }

        using var read = await client.GetAsync($"/api/patients/{id}", cancel);
        using var list = await client.GetAsync("/api/patients", cancel);

        // Every record is under the same key: the list cannot be served either, and does not pretend the records are bad.
        foreach (var response in new[] { read, list })
        {
            var problem = await SampleUnderAttackTests.ProblemAsync(response, HttpStatusCode.ServiceUnavailable);
            Assert.Equal(ApiErrorHandler.MasterKeyUnavailableType, problem.GetProperty("type").GetString());
            Assert.Equal("Access to the master key was withdrawn", problem.GetProperty("title").GetString());
        }

        Assert.DoesNotContain(app.Logs.Entries, e => e.Category == "HealthRecords.Api.RecordReader");
    }

    internal static SampleApp KmsSample(LocalKmsServer kms, string keyArn)
    {
        // The sample takes credentials from the SDK's usual chain; the local KMS accepts the pair test/test.
        Environment.SetEnvironmentVariable("AWS_ACCESS_KEY_ID", "test");
        Environment.SetEnvironmentVariable("AWS_SECRET_ACCESS_KEY", "test");
        return new SampleApp(settings: new Dictionary<string, string?>
        {
            ["HealthRecords:MasterKey:Provider"] = "AwsKms",
            ["HealthRecords:MasterKey:AwsKms:KeyId"] = keyArn,
            ["HealthRecords:MasterKey:AwsKms:ServiceUrl"] = kms.Url.ToString(),
            ["HealthRecords:MasterKey:AwsKms:Region"] = LocalKmsServer.Region,
        });
    }
}
