using EfEnvelope;
using HealthRecords.Data;
using Microsoft.EntityFrameworkCore;

namespace HealthRecords.Setup;

/// <summary>Creates the schema and, when the database has no patients, a few invented ones.</summary>
public static class DemoData
{
    /// <summary>Invented people, so that the first screen has something to open. Every value is fictional.</summary>
    public static IReadOnlyList<Patient> Patients() =>
    [
        new()
        {
            Name = "Ada Lindqvist",
            Ssn = "078-05-1120",
            DateOfBirth = new DateOnly(1961, 3, 14),
            Diagnosis = "Type 2 diabetes mellitus, well controlled on metformin",
            Notes = "Prefers morning appointments. Allergic to penicillin.",
            Visits =
            [
                new() { At = new DateTime(2026, 9, 2, 9, 30, 0, DateTimeKind.Utc), Clinician = "Dr. Okafor", Notes = "HbA1c 6.8%. Continue metformin 500 mg twice daily." },
                new() { At = new DateTime(2026, 11, 4, 10, 0, 0, DateTimeKind.Utc), Clinician = "Nurse Patel", Notes = "Foot exam normal. Reminded about annual eye screening." },
            ],
        },
        new()
        {
            Name = "Tomás Ferreira",
            Ssn = "219-09-9999",
            DateOfBirth = new DateOnly(1987, 11, 2),
            Diagnosis = "Mild persistent asthma",
            Notes = "Uses inhaler before football training.",
            Visits =
            [
                new() { At = new DateTime(2026, 10, 12, 14, 15, 0, DateTimeKind.Utc), Clinician = "Dr. Okafor", Notes = "Peak flow 480 L/min. Step down to low-dose inhaled steroid." },
            ],
        },
        new()
        {
            Name = "Mei Tanaka",
            Ssn = "457-55-5462",
            DateOfBirth = new DateOnly(1994, 6, 21),
            Diagnosis = null,
            Notes = "New patient; registration only.",
        },
    ];

    public static async Task InitializeAsync(IServiceProvider services, bool seed, CancellationToken cancellationToken)
    {
        await using var scope = services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ClinicDbContext>();
        await db.Database.EnsureCreatedAsync(cancellationToken);
        if (seed && !await db.Patients.AnyAsync(cancellationToken))
        {
            db.Patients.AddRange(Patients());
            await db.SaveChangesAsync(cancellationToken);
        }

        // EF materialises rows synchronously, so a key missing from the cache during a query means a blocking call to
        // the master-key provider (a KMS round trip). Fetching the keys now keeps that off the request path. Skipped
        // in direct mode, where every record has a provider-wrapped key of its own and there is no shared key to fetch.
        if (services.GetRequiredService<SampleEnvironment>().MasterKey.Mode == KeyWrappingMode.CachedKeyEncryptionKey)
        {
            await db.WarmUpEnvelopeKeysAsync(cancellationToken: cancellationToken);
        }
    }
}
