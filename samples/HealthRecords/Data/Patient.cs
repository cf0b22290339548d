using EfEnvelope;

namespace HealthRecords.Data;

/// <summary>A patient: the name is stored in plain text (it is what staff search and sort by), everything clinical is encrypted.</summary>
public class Patient
{
    public int Id { get; set; }

    public string Name { get; set; } = "";

    /// <summary>Searchable: a keyed blind index beside the ciphertext lets the clinic find a patient by SSN.</summary>
    [Encrypted(Searchable = true, Normalization = BlindIndexNormalization.Trim)]
    public string Ssn { get; set; } = "";

    [Encrypted]
    public DateOnly DateOfBirth { get; set; }

    [Encrypted]
    public string? Diagnosis { get; set; }

    [Encrypted]
    public string? Notes { get; set; }

    public List<Visit> Visits { get; set; } = [];
}
