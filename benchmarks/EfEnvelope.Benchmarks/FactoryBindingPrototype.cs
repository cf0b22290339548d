using System.Reflection;
using EfEnvelope.Benchmarks.Workload;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.ChangeTracking;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Benchmarks;

/// <summary>
/// An experiment for the core, measured by <c>--breakdown</c>: decrypting while EF constructs the entity, through an
/// <see cref="IInstantiationBindingInterceptor"/> that binds the ciphertext shadow properties as factory parameters,
/// instead of in an <see cref="IMaterializationInterceptor"/>. EF builds a per-entity dictionary of property-accessor
/// delegates whenever a materialization interceptor is registered; a binding interceptor costs nothing per row.
/// </summary>
/// <remarks>
/// Not EfEnvelope's format: the rows are sealed by <see cref="CryptoFloor"/> (same crypto work per record), so that
/// the difference to the real read is EF plumbing, not cryptography.
/// </remarks>
public static class FactoryBindingPrototype
{
    private static readonly DecryptingBinding Binding = new();
    private static CryptoFloor? s_floor;

    /// <summary>Creates the prototype's table in a new in-memory database and fills it with sealed rows.</summary>
    public static SqliteConnection CreateDatabase(CryptoFloor floor)
    {
        s_floor = floor;
        var connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();
        using (var context = new SealedContext(connection))
        {
            context.Database.EnsureCreated();
            foreach (var patient in PatientData.Create())
            {
                var record = floor.Encrypt(patient);
                var entry = context.Add(new Patient { Name = patient.Name });
                entry.Property<byte[]>("EfEnvelopeKey").CurrentValue = record.WrappedKey;
                entry.Property<byte[]>("Ssn_Ciphertext").CurrentValue = record.Ssn;
                entry.Property<byte[]>("Diagnosis_Ciphertext").CurrentValue = record.Diagnosis;
                entry.Property<byte[]>("Notes_Ciphertext").CurrentValue = record.Notes;
            }

            context.SaveChanges();
        }

        return connection;
    }

    /// <param name="connection">The prototype's database.</param>
    /// <param name="tracking">Tracking or no-tracking query.</param>
    /// <param name="snapshotByReference">
    /// Gives the binary shadow properties a value comparer whose snapshot is the array itself. EF's default for byte[]
    /// copies every array into the tracking snapshot, in case the application edits it in place; ciphertext arrays
    /// belong to the library and are replaced, never edited.
    /// </param>
    public static List<Patient> Read(SqliteConnection connection, bool tracking, bool snapshotByReference = false)
    {
        using var context = snapshotByReference ? new SnapshotByReferenceContext(connection) : new SealedContext(connection);
        var query = context.Set<Patient>().AsQueryable();
        var patients = (tracking ? query.AsTracking() : query.AsNoTracking()).ToList();
        if (patients[0].Ssn.Length != 11)
        {
            throw new InvalidOperationException("The prototype did not decrypt.");
        }

        // Consumed by the factory, the shadow values must still reach the change tracker (saves and Reload need them).
        if (tracking && context.Entry(patients[0]).Property<byte[]>("Ssn_Ciphertext").CurrentValue is not { Length: > 0 })
        {
            throw new InvalidOperationException("The tracked entry lost its ciphertext.");
        }

        return patients;
    }

    /// <summary>EF calls this to construct each entity, passing the ciphertext columns it read for the row.</summary>
    public static Patient Create(byte[] wrappedKey, byte[] ssn, byte[] diagnosis, byte[] notes)
    {
        var (plainSsn, plainDiagnosis, plainNotes) = s_floor!.Decrypt(new CryptoFloor.Sealed(wrappedKey, ssn, diagnosis, notes));
        return new Patient { Ssn = plainSsn, Diagnosis = plainDiagnosis, Notes = plainNotes };
    }

    private class SealedContext(SqliteConnection connection)
        : DbContext(new DbContextOptionsBuilder().UseSqlite(connection).AddInterceptors(Binding).Options)
    {
        protected virtual bool SnapshotByReference => false;

        protected override void OnModelCreating(ModelBuilder modelBuilder) =>
            modelBuilder.Entity<Patient>(patient =>
            {
                patient.ToTable("Patients");
                patient.Ignore(p => p.Ssn).Ignore(p => p.Diagnosis).Ignore(p => p.Notes);
                foreach (var (property, column) in new[] { ("EfEnvelopeKey", "EfEnvelopeKey"), ("Ssn_Ciphertext", "Ssn"), ("Diagnosis_Ciphertext", "Diagnosis"), ("Notes_Ciphertext", "Notes") })
                {
                    var builder = patient.Property<byte[]>(property).HasColumnName(column);
                    if (SnapshotByReference)
                    {
                        builder.Metadata.SetValueComparer(new ValueComparer<byte[]>(
                            (a, b) => ReferenceEquals(a, b) || (a != null && b != null && SameBytes(a, b)),
                            v => v.Length,
                            v => v));
                    }
                }
            });
    }

    private static bool SameBytes(byte[] a, byte[] b) => a.AsSpan().SequenceEqual(b);

    private sealed class SnapshotByReferenceContext(SqliteConnection connection) : SealedContext(connection)
    {
        protected override bool SnapshotByReference => true;
    }

    private sealed class DecryptingBinding : IInstantiationBindingInterceptor
    {
        private static readonly MethodInfo Factory = typeof(FactoryBindingPrototype).GetMethod(nameof(Create))!;

        public InstantiationBinding ModifyBinding(InstantiationBindingInterceptionData interceptionData, InstantiationBinding binding)
        {
            if (interceptionData.TypeBase is not IEntityType entityType || entityType.ClrType != typeof(Patient))
            {
                return binding;
            }

            // The shadow columns become factory arguments: EF reads them from the row and passes them in, with no
            // per-row delegate or dictionary. (The real library would wrap the original binding too; Patient has a
            // parameterless constructor, so the prototype does not need to.)
            string[] names = ["EfEnvelopeKey", "Ssn_Ciphertext", "Diagnosis_Ciphertext", "Notes_Ciphertext"];
            return new FactoryMethodBinding(
                Factory,
                names.Select(n => (ParameterBinding)new PropertyParameterBinding(entityType.FindProperty(n)!)).ToList(),
                typeof(Patient));
        }
    }
}
