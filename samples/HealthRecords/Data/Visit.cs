using EfEnvelope;

namespace HealthRecords.Data;

/// <summary>One visit: when and with whom is plain (scheduling needs it), the clinical notes are encrypted under the visit's own data key.</summary>
public class Visit
{
    public int Id { get; set; }

    public int PatientId { get; set; }

    public DateTime At { get; set; }

    public string Clinician { get; set; } = "";

    [Encrypted]
    public string Notes { get; set; } = "";
}
