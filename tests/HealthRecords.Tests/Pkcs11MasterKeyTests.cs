using System.Net;
using System.Net.Http.Json;
using HealthRecords.Api;

namespace HealthRecords.Tests;

/// <summary>The sample with its master key in a PKCS#11 token (SoftHSM2 set up by tests/scripts/softhsm.sh).</summary>
public class Pkcs11MasterKeyTests
{
    [Fact]
    public async Task Patient_round_trips_under_a_token_key_that_the_stored_row_names()
    {
        var module = Environment.GetEnvironmentVariable("EFENVELOPE_PKCS11_MODULE");
        var token = Environment.GetEnvironmentVariable("EFENVELOPE_PKCS11_TOKEN");
        var pin = Environment.GetEnvironmentVariable("EFENVELOPE_PKCS11_PIN");
        if (string.IsNullOrEmpty(module) || string.IsNullOrEmpty(token) || string.IsNullOrEmpty(pin)
            || string.IsNullOrEmpty(Environment.GetEnvironmentVariable("SOFTHSM2_CONF")))
        {
            Assert.Skip("No SoftHSM2 token: source tests/scripts/softhsm.sh and run softhsm_setup first.");
        }

        var keyLabel = $"healthrecords-{Guid.NewGuid():N}";
        await using var app = new SampleApp(settings: new Dictionary<string, string?>
        {
            ["HealthRecords:MasterKey:Provider"] = "Pkcs11",
            ["HealthRecords:MasterKey:Pkcs11:LibraryPath"] = module,
            ["HealthRecords:MasterKey:Pkcs11:TokenLabel"] = token,
            ["HealthRecords:MasterKey:Pkcs11:KeyLabel"] = keyLabel,
            ["HealthRecords:MasterKey:Pkcs11:Pin"] = pin,
            ["HealthRecords:MasterKey:Pkcs11:CreateKeyIfMissing"] = "true",
        });
        using var client = app.CreateClient();
        var input = new PatientInput("Token Holder-Test", "604-12-3344", new DateOnly(1990, 1, 31), "Seasonal rhinitis under an HSM key", null);
        var cancel = TestContext.Current.CancellationToken;

        var response = await client.PostAsJsonAsync("/api/patients", input, cancel);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var id = (await response.Content.ReadFromJsonAsync<PatientDetails>(cancel))!.Id;
        var read = await client.GetFromJsonAsync<PatientDetails>($"/api/patients/{id}", cancel);
        var stored = await client.GetFromJsonAsync<StoredRecord>($"/api/patients/{id}/stored", cancel);

        Assert.Equal(input.Ssn, read!.Ssn);
        Assert.Equal(input.Diagnosis, read.Diagnosis);
        Assert.Equal(keyLabel, stored!.Patient.WrappedKey!.MasterKeyId);
        Assert.NotEqual("in-memory", stored.Patient.WrappedKey.Provider);
        Assert.False(app.StoresPlaintext(input.Ssn!));
        Assert.False(app.StoresPlaintext(input.Diagnosis!));
        Assert.False(File.Exists(Path.Combine(app.DataDirectory, Setup.DevelopmentMasterKey.FileName)));
    }
}
