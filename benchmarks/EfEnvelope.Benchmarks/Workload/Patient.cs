namespace EfEnvelope.Benchmarks.Workload;

/// <summary>The benchmark entity. Which properties are encrypted is decided per context, so every approach maps this one class.</summary>
public class Patient
{
    public int Id { get; set; }

    public string Name { get; set; } = "";

    public string Ssn { get; set; } = "";

    public string Diagnosis { get; set; } = "";

    public string Notes { get; set; } = "";
}

/// <summary>Deterministic rows: Name about 20 characters, Ssn 11, Diagnosis and Notes 200 each.</summary>
public static class PatientData
{
    public const int Rows = 10_000;

    private const string Clinical =
        "Patient presents with intermittent chest pain radiating to the left arm, worse on exertion, relieved by rest. "
        + "History of hypertension and hyperlipidaemia; non-smoker. ECG shows sinus rhythm without acute changes. "
        + "Troponin pending; started aspirin and arranged an outpatient stress test with cardiology follow-up in two weeks.";

    private const string Narrative =
        "Discussed lifestyle changes including diet, regular walking and reduced salt intake. Patient understands the plan "
        + "and agrees to return sooner if symptoms worsen. Daughter present for the consultation and will help with the "
        + "medication schedule. Next review booked; blood pressure diary to bring along, with readings twice a day.";

    private static readonly string[] Surnames = ["Lindqvist", "Okafor", "Ferreira", "Tanaka", "Whitfield", "Novak", "Haddad", "Moreau"];

    public static List<Patient> Create(int rows = Rows)
    {
        var patients = new List<Patient>(rows);
        for (var i = 0; i < rows; i++)
        {
            patients.Add(new Patient
            {
                Name = $"Patient {i:D5} {Surnames[i % Surnames.Length]}",
                Ssn = $"{100 + (i % 800):D3}-{10 + (i % 89):D2}-{i % 10_000:D4}",
                Diagnosis = Clinical.Substring(i % 100, 200),
                Notes = Narrative.Substring((i * 7) % 100, 200),
            });
        }

        return patients;
    }
}
