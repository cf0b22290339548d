// The child process of the kill test (EfEnvelope.Reliability.Tests/Faults/ProcessKillTests.cs): inserts and updates
// encrypted rows of a SQLite file in a loop, printing "saved N" after each committed save, until it is killed.
// Every save gives each row it touches one generation tag in all of its encrypted properties, so the parent can tell
// an old state from a new one and a mix of the two from either.
// With "forgotten-registration <sqlite-file>" it is instead the child of ForgottenRegistrationProcessTests.
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

if (args is ["forgotten-registration", var forgottenFile])
{
    return await ForgottenRegistration.RunAsync(forgottenFile);
}

if (args.Length != 2)
{
    Console.Error.WriteLine("usage: EfEnvelope.Reliability.Child <sqlite-file> <seed>");
    return 2;
}

var masterKey = Convert.FromBase64String(Environment.GetEnvironmentVariable("EFENVELOPE_CHILD_MASTER_KEY")
    ?? throw new InvalidOperationException("EFENVELOPE_CHILD_MASTER_KEY is not set."));
var provider = new InsecureInMemoryMasterKeyProvider("kill-test", masterKey);
var options = new DbContextOptionsBuilder<ClinicContext>()
    .UseSqlite($"Data Source={args[0]};Pooling=False")
    .ManyConfigurationsPerProcess()
    .UseEnvelopeEncryption(e => e.UseProvider(provider))
    .Options;
var random = new Random(int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture));

for (var generation = 1; ; generation++)
{
    await using var db = new ClinicContext(options);
    var tag = $"gen-{args[1]}-{generation}";
    var existing = await db.Patients.OrderBy(p => p.Id).Skip(random.Next(40)).Take(25).ToListAsync();
    foreach (var patient in existing)
    {
        Tag(patient, tag);
    }

    for (var i = 0; i < 10; i++)
    {
        var patient = new Patient { Id = Guid.NewGuid(), Name = "child", HomeAddress = new Address { City = "K" } };
        Tag(patient, tag);
        db.Patients.Add(patient);
    }

    if (generation % 2 == 0)
    {
        db.SaveChanges();
    }
    else
    {
        await db.SaveChangesAsync();
    }

    Console.WriteLine($"saved {generation}");
}

static void Tag(Patient patient, string tag)
{
    patient.Ssn = tag;
    patient.Diagnosis = tag;
    patient.HomeAddress!.Street = tag;
}
