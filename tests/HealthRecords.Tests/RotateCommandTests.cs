using System.Net;
using System.Net.Http.Json;
using Amazon.KeyManagementService.Model;
using EfEnvelope.AwsKms.Tests.LocalKms;
using HealthRecords.Api;
using HealthRecords.Setup;

namespace HealthRecords.Tests;

/// <summary>The sample's <c>rotate</c> command between two KMS keys on the local endpoint.</summary>
public class RotateCommandTests
{
    [Fact]
    public async Task Rotate_moves_every_record_to_the_new_kms_key()
    {
        var cancel = TestContext.Current.CancellationToken;
        await using var kms = LocalKmsServer.Start();
        string oldKey, newKey;
        using (var admin = kms.CreateClient())
        {
            oldKey = (await admin.CreateKeyAsync(new CreateKeyRequest { Description = "old" }, cancel)).KeyMetadata.Arn;
            newKey = (await admin.CreateKeyAsync(new CreateKeyRequest { Description = "new" }, cancel)).KeyMetadata.Arn;
        }

        Environment.SetEnvironmentVariable("AWS_ACCESS_KEY_ID", "test");
        Environment.SetEnvironmentVariable("AWS_SECRET_ACCESS_KEY", "test");
        var dataDirectory = Path.Combine(Path.GetTempPath(), "healthrecords-rotate-" + Guid.NewGuid().ToString("N"));
        Dictionary<string, string?> Settings(string keyId, params string[] additional)
        {
            var settings = new Dictionary<string, string?>
            {
                ["HealthRecords:MasterKey:Provider"] = "AwsKms",
                ["HealthRecords:MasterKey:AwsKms:KeyId"] = keyId,
                ["HealthRecords:MasterKey:AwsKms:ServiceUrl"] = kms.Url.ToString(),
                ["HealthRecords:MasterKey:AwsKms:Region"] = LocalKmsServer.Region,
            };
            for (var i = 0; i < additional.Length; i++)
            {
                settings[$"HealthRecords:MasterKey:AwsKms:AdditionalKeyIds:{i}"] = additional[i];
            }

            return settings;
        }

        try
        {
            int id;
            await using (var before = new SampleApp(dataDirectory, seed: true, settings: Settings(oldKey)))
            {
                using var client = before.CreateClient();
                var created = await client.PostAsJsonAsync("/api/patients", new PatientInput("Rotation Patient", "555-12-3456", new DateOnly(1970, 1, 1), "Asthma", null), cancel);
                Assert.Equal(HttpStatusCode.Created, created.StatusCode);
                id = (await created.Content.ReadFromJsonAsync<PatientDetails>(cancel))!.Id;
            }

            // New primary key, old key for reading: the rotate command, with its progress bar.
            await using (var rotating = new SampleApp(dataDirectory, settings: Settings(newKey, oldKey)))
            {
                using var output = new StringWriter();
                Assert.Equal(0, await RotateCommand.RunAsync(rotating.Services, output, cancel));
                var text = output.ToString();
                Assert.Contains("100%", text, StringComparison.Ordinal);
                Assert.Contains("0 failed", text, StringComparison.Ordinal);
                Assert.Contains("rows/s", text, StringComparison.Ordinal);
            }

            // Records now name the new key. The old key stays configured for reading: the sample's blind index key
            // was created under it, and rotation does not rewrap that (docs/KEY-MANAGEMENT.md).
            await using var after = new SampleApp(dataDirectory, settings: Settings(newKey, oldKey));
            using var reader = after.CreateClient();
            var patient = await reader.GetFromJsonAsync<PatientDetails>($"/api/patients/{id}", cancel);
            Assert.Equal("555-12-3456", patient!.Ssn);
            var stored = await reader.GetFromJsonAsync<StoredRecord>($"/api/patients/{id}/stored", cancel);
            Assert.Equal(newKey, stored!.Patient.WrappedKey!.MasterKeyId);
            var list = await reader.GetAsync("/api/patients", cancel);
            Assert.Equal(HttpStatusCode.OK, list.StatusCode);
        }
        finally
        {
            SampleApp.DeleteDirectory(dataDirectory);
        }
    }
}
