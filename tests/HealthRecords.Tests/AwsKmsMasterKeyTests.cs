using System.Net;
using System.Net.Http.Json;
using Amazon.KeyManagementService.Model;
using EfEnvelope.AwsKms.Tests.LocalKms;
using HealthRecords.Api;

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

        // The sample takes credentials from the SDK's usual chain; the local KMS accepts the pair test/test.
        Environment.SetEnvironmentVariable("AWS_ACCESS_KEY_ID", "test");
        Environment.SetEnvironmentVariable("AWS_SECRET_ACCESS_KEY", "test");
        await using var app = new SampleApp(settings: new Dictionary<string, string?>
        {
            ["HealthRecords:MasterKey:Provider"] = "AwsKms",
            ["HealthRecords:MasterKey:AwsKms:KeyId"] = keyArn,
            ["HealthRecords:MasterKey:AwsKms:ServiceUrl"] = kms.Url.ToString(),
            ["HealthRecords:MasterKey:AwsKms:Region"] = LocalKmsServer.Region,
        });
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
}
