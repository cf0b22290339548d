using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Reliability.Tests.Tampering;

#pragma warning disable EF1002 // raw SQL built from the test's own table and column names

/// <summary>
/// Issue 12: a database writer without the master key edits whole records with plain SQL. Each attack here read as
/// something the record was never saved as before format version 2; the record seal must refuse it.
/// </summary>
public abstract class RecordIntegrityTests<TFixture>(TFixture fixture) : IClassFixture<TFixture>
    where TFixture : DatabaseFixture
{
    private static readonly string PatientEntity = typeof(Patient).FullName!;
    private static readonly SemaphoreSlim TablesCreated = new(1, 1);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private void SkipIfUnavailable()
    {
        if (fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }
    }

    private static Patient NewPatient(Random random) => TamperTargets.NewPatient(random, "Integrity Target");

    private async Task InsertAsync(params Patient[] patients)
    {
        await using var db = fixture.CreateContext();
        db.Patients.AddRange(patients);
        await db.SaveChangesAsync(Ct);
    }

    /// <summary>Reads the patient (no tracking, then tracking) and asserts both refuse with the seal error, carrying none of <paramref name="secrets"/>.</summary>
    private async Task AssertRefusedAsync(Guid id, string what, params string?[] secrets)
    {
        foreach (var tracking in new[] { false, true })
        {
            await using var db = fixture.CreateContext();
            var query = tracking ? db.Patients : db.Patients.AsNoTracking();
            Patient? read = null;
            var error = await Record.ExceptionAsync(async () => read = await query.SingleAsync(p => p.Id == id, Ct));
            if (error is not EnvelopeDecryptionException refused)
            {
                Assert.Fail($"{what} (tracking: {tracking}): expected the seal to refuse, got {(error is null ? $"Ssn '{read?.Ssn}', Diagnosis '{read?.Diagnosis}'" : error.ToString())}");
                return;
            }

            Assert.Equal(PatientEntity, refused.Entity);
            Assert.NotNull(refused.KeyId);
            SecretScan.AssertFree(SecretScan.Describe(error), secrets.OfType<string>(), [], what);
        }
    }

    [Fact]
    public async Task Item01_a_nullable_encrypted_value_set_to_NULL_is_refused()
    {
        SkipIfUnavailable();
        await Seeds.RunAsync(nameof(Item01_a_nullable_encrypted_value_set_to_NULL_is_refused), async random =>
        {
            var patient = NewPatient(random);
            await InsertAsync(patient);
            await RawSql.WriteAsync(fixture, "Patients", "Diagnosis", patient.Id, null);
            await AssertRefusedAsync(patient.Id, "Diagnosis set to NULL", patient.Ssn, patient.Diagnosis);

            // A value that was NULL when saved reads as NULL: the seal records absence too.
            var empty = NewPatient(random);
            empty.Diagnosis = null;
            await InsertAsync(empty);
            await using var db = fixture.CreateContext();
            Assert.Null((await db.Patients.AsNoTracking().SingleAsync(p => p.Id == empty.Id, Ct)).Diagnosis);
        });
    }

    [Fact]
    public async Task Item02_an_older_ciphertext_of_one_property_written_back_after_an_edit_is_refused()
    {
        SkipIfUnavailable();
        await Seeds.RunAsync(nameof(Item02_an_older_ciphertext_of_one_property_written_back_after_an_edit_is_refused), async random =>
        {
            var patient = NewPatient(random);
            await InsertAsync(patient);
            var oldDiagnosis = await RawSql.ReadAsync(fixture, "Patients", "Diagnosis", patient.Id);
            var oldKey = (await RawSql.ReadAsync(fixture, "Patients", "EfEnvelopeKey", patient.Id))!;

            await using (var db = fixture.CreateContext())
            {
                var tracked = await db.Patients.SingleAsync(p => p.Id == patient.Id, Ct);
                tracked.Diagnosis = "Diagnosis-EDITED";
                await db.SaveChangesAsync(Ct);
            }

            // The edit kept the record's data key and record id (only the seal changed), as an edit must.
            var newKey = (await RawSql.ReadAsync(fixture, "Patients", "EfEnvelopeKey", patient.Id))!;
            Assert.Equal(oldKey[..KeyBlobLayout.TrailerStart(oldKey)], newKey[..KeyBlobLayout.TrailerStart(newKey)]);

            await RawSql.WriteAsync(fixture, "Patients", "Diagnosis", patient.Id, oldDiagnosis);
            await AssertRefusedAsync(patient.Id, "the old Diagnosis written back", patient.Ssn, patient.Diagnosis, "Diagnosis-EDITED");
        });
    }

    [Fact]
    public async Task Item03_an_owned_records_columns_moved_to_another_owner_are_refused()
    {
        SkipIfUnavailable();
        await Seeds.RunAsync(nameof(Item03_an_owned_records_columns_moved_to_another_owner_are_refused), async random =>
        {
            var source = NewPatient(random);
            var target = NewPatient(random);
            await InsertAsync(source, target);
            foreach (var column in new[] { "HomeAddress_EfEnvelopeKey", "HomeAddress_Street" })
            {
                await RawSql.WriteAsync(fixture, "Patients", column, target.Id, await RawSql.ReadAsync(fixture, "Patients", column, source.Id));
            }

            await using var db = fixture.CreateContext();
            var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.Patients.AsNoTracking().SingleAsync(p => p.Id == target.Id, Ct));
            Assert.Contains("Address", error.Entity, StringComparison.Ordinal);
            SecretScan.AssertFree(SecretScan.Describe(error), [source.HomeAddress!.Street, target.HomeAddress!.Street], [], "owned columns moved");
        });
    }

    [Fact]
    public async Task Item03_a_record_moved_to_another_tenants_row_or_a_changed_bound_tenant_column_is_refused()
    {
        SkipIfUnavailable();
        await EnsureTablesAsync(Tenants());
        var a = new TenantNote { Id = Guid.NewGuid(), TenantId = "tenant-a", Secret = $"A-{Guid.NewGuid():N}", Level = 1 };
        var b = new TenantNote { Id = Guid.NewGuid(), TenantId = "tenant-b", Secret = $"B-{Guid.NewGuid():N}", Level = 2 };
        await using (var db = Tenants())
        {
            db.Notes.AddRange(a, b);
            await db.SaveChangesAsync(Ct);
        }

        // Each tenant's record is under its own master key (the selector's choice).
        Assert.Equal("secondary", (await ReadNoteAsync(b.Id)).KeyId);

        async Task Refused(string what)
        {
            await using var db = Tenants();
            var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.Notes.AsNoTracking().SingleAsync(n => n.Id == b.Id, Ct));
            Assert.Equal(typeof(TenantNote).FullName, error.Entity);
            SecretScan.AssertFree(SecretScan.Describe(error), [a.Secret, b.Secret], [], what);
        }

        var saved = new Dictionary<string, byte[]?>();
        foreach (var column in new[] { "EfEnvelopeKey", "Secret", "Level" })
        {
            saved[column] = await RawNoteAsync(b.Id, column);
            await WriteNoteAsync(b.Id, column, await RawNoteAsync(a.Id, column));
        }

        await Refused("tenant A's record moved into tenant B's row");
        foreach (var (column, value) in saved)
        {
            await WriteNoteAsync(b.Id, column, value);
        }

        Assert.Equal(b.Secret, (await ReadNoteAsync(b.Id)).Note.Secret);

        // The plain, bound tenant column changed by SQL: the record no longer belongs to the row it says.
        await using (var db = Tenants())
        {
            await db.Database.ExecuteSqlRawAsync("UPDATE \"TenantNotes\" SET \"TenantId\" = 'tenant-a' WHERE \"Id\" = {0}", [b.Id], Ct);
        }

        await Refused("the bound tenant column changed");

        // Through EF the same change is a legitimate edit: the save writes a new seal over the new value.
        await using (var db = Tenants())
        {
            await db.Database.ExecuteSqlRawAsync("UPDATE \"TenantNotes\" SET \"TenantId\" = 'tenant-b' WHERE \"Id\" = {0}", [b.Id], Ct);
            var tracked = await db.Notes.SingleAsync(n => n.Id == b.Id, Ct);
            tracked.TenantId = "tenant-c";
            await db.SaveChangesAsync(Ct);
        }

        Assert.Equal(("tenant-c", b.Secret), ((await ReadNoteAsync(b.Id)).Note.TenantId, (await ReadNoteAsync(b.Id)).Note.Secret));
    }

    [Fact]
    public async Task Item05_a_ciphertext_set_to_NULL_beside_a_forged_legacy_plaintext_is_refused()
    {
        SkipIfUnavailable();
        var options = fixture.CreateOptions<LegacyAccountsContext>(e => e.UseProvider(fixture.Provider));
        await EnsureTablesAsync(new LegacyAccountsContext(options));
        var encrypted = new LegacyAccount { Id = Guid.NewGuid(), Iban = $"DE{Guid.NewGuid():N}" };
        var legacy = Guid.NewGuid();
        await using (var db = new LegacyAccountsContext(options))
        {
            db.Accounts.Add(encrypted);
            await db.SaveChangesAsync(Ct);
            await db.Database.ExecuteSqlRawAsync("UPDATE \"LegacyAccounts\" SET \"Iban\" = NULL, \"Iban_Plaintext\" = 'FORGED-IBAN' WHERE \"Id\" = {0}", [encrypted.Id], Ct);

            // A row from before encryption (no key yet) still reads its legacy column, as the migration needs.
            await db.Database.ExecuteSqlRawAsync("INSERT INTO \"LegacyAccounts\" (\"Id\", \"Iban_Plaintext\") VALUES ({0}, 'DE-LEGACY')", [legacy], Ct);
        }

        await using var reader = new LegacyAccountsContext(options);
        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => reader.Accounts.AsNoTracking().SingleAsync(a => a.Id == encrypted.Id, Ct));
        Assert.Equal(nameof(LegacyAccount.Iban), error.Property);
        SecretScan.AssertFree(SecretScan.Describe(error), [encrypted.Iban, "FORGED-IBAN"], [], "legacy plaintext beside a key");
        Assert.Equal("DE-LEGACY", (await reader.Accounts.AsNoTracking().SingleAsync(a => a.Id == legacy, Ct)).Iban);
    }

    [Fact]
    public async Task Item07_editing_an_attached_record_whose_key_column_was_replaced_is_refused_and_writes_nothing()
    {
        SkipIfUnavailable();
        await Seeds.RunAsync(nameof(Item07_editing_an_attached_record_whose_key_column_was_replaced_is_refused_and_writes_nothing), async random =>
        {
            var a = NewPatient(random);
            var b = NewPatient(random);
            await InsertAsync(a, b);
            var bKey = await RawSql.ReadAsync(fixture, "Patients", "EfEnvelopeKey", b.Id);
            var bSsn = await RawSql.ReadAsync(fixture, "Patients", "Ssn", b.Id);
            await RawSql.WriteAsync(fixture, "Patients", "EfEnvelopeKey", b.Id, await RawSql.ReadAsync(fixture, "Patients", "EfEnvelopeKey", a.Id));

            await using (var db = fixture.CreateContext())
            {
                var stub = new Patient { Id = b.Id, Name = b.Name, Ssn = b.Ssn, Diagnosis = b.Diagnosis, DateOfBirth = b.DateOfBirth };
                db.Attach(stub);
                stub.Ssn = "SSN-EDITED-ON-ATTACH";
                var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => db.SaveChangesAsync(Ct));
                Assert.Equal(PatientEntity, error.Entity);
                SecretScan.AssertFree(SecretScan.Describe(error), [a.Ssn, b.Ssn, "SSN-EDITED-ON-ATTACH"], [], "attach + edit");
            }

            // Nothing was written: the row still holds B's ciphertext, and A's data key encrypted nothing new.
            Assert.Equal(bSsn, await RawSql.ReadAsync(fixture, "Patients", "Ssn", b.Id));
            await RawSql.WriteAsync(fixture, "Patients", "EfEnvelopeKey", b.Id, bKey);
            await using var reader = fixture.CreateContext();
            Assert.Equal(b.Ssn, (await reader.Patients.AsNoTracking().SingleAsync(p => p.Id == b.Id, Ct)).Ssn);
            Assert.Equal(a.Ssn, (await reader.Patients.AsNoTracking().SingleAsync(p => p.Id == a.Id, Ct)).Ssn);

            // With the row intact, attach + edit works and keeps the record's data key.
            await using (var db = fixture.CreateContext())
            {
                var stub = new Patient { Id = b.Id, Name = b.Name, Ssn = b.Ssn, Diagnosis = b.Diagnosis, DateOfBirth = b.DateOfBirth };
                db.Attach(stub);
                stub.Diagnosis = "Diagnosis-EDITED-ON-ATTACH";
                await db.SaveChangesAsync(Ct);
            }

            await using var check = fixture.CreateContext();
            var edited = await check.Patients.AsNoTracking().SingleAsync(p => p.Id == b.Id, Ct);
            Assert.Equal((b.Ssn, "Diagnosis-EDITED-ON-ATTACH"), (edited.Ssn, edited.Diagnosis));
        });
    }

    [Fact]
    public async Task Item12_a_record_with_its_key_and_every_ciphertext_set_to_NULL_is_refused_when_a_value_is_required()
    {
        // A derived type's required property has a nullable column (one table for the hierarchy): NULLing it and the
        // key column used to skip the required-property check and read the required value as null.
        SkipIfUnavailable();
        var options = fixture.CreateOptions<DocumentsContext>(e => e.UseProvider(fixture.Provider));
        await EnsureTablesAsync(new DocumentsContext(options));
        var id = Guid.NewGuid();
        await using (var db = new DocumentsContext(options))
        {
            db.Documents.Add(new SignedDocument { Id = id, Title = "contract", Signature = $"signed-{Guid.NewGuid():N}", Remark = "remark" });
            await db.SaveChangesAsync(Ct);
            foreach (var column in new[] { "EfEnvelopeKey", "Signature", "Remark" })
            {
                await db.Database.ExecuteSqlRawAsync($"UPDATE \"Documents\" SET \"{column}\" = NULL WHERE \"Id\" = {{0}}", [id], Ct);
            }
        }

        await using var reader = new DocumentsContext(options);
        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => reader.Documents.AsNoTracking().SingleAsync(d => d.Id == id, Ct));
        Assert.Equal(typeof(Document).FullName, error.Entity);
        Assert.Equal(nameof(SignedDocument.Signature), error.Property);
    }

    [Fact]
    public async Task A_property_retyped_from_int_to_float_refuses_its_stored_values_instead_of_misreading_them()
    {
        SkipIfUnavailable();
        var options = fixture.CreateOptions<ReadingsContext>(e => e.UseProvider(fixture.Provider));
        await EnsureTablesAsync(new ReadingsContext(options));
        var id = Guid.NewGuid();
        await using (var db = new ReadingsContext(options))
        {
            db.Readings.Add(new Reading { Id = id, Value = 1_065_353_216 }); // the bits of 1.0f
            await db.SaveChangesAsync(Ct);
        }

        await using var retyped = new RetypedReadingsContext(fixture.CreateOptions<RetypedReadingsContext>(e => e.UseProvider(fixture.Provider)));
        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => retyped.Readings.AsNoTracking().SingleAsync(r => r.Id == id, Ct));
        Assert.Equal(nameof(Reading.Value), error.Property);
    }

    private TenantContext Tenants() => new(fixture.CreateOptions<TenantContext>(e => e
        .UseProvider(fixture.Provider)
        .UseMasterKeySelector(entity => entity is TenantNote { TenantId: "tenant-b" } ? "secondary" : null)));

    private async Task<(TenantNote Note, string KeyId)> ReadNoteAsync(Guid id)
    {
        await using var db = Tenants();
        var note = await db.Notes.AsNoTracking().SingleAsync(n => n.Id == id, Ct);
        var key = (await RawNoteAsync(id, "EfEnvelopeKey"))!;
        var keyIdLength = (key[19 + key[18]] << 8) | key[20 + key[18]];
        return (note, System.Text.Encoding.UTF8.GetString(key, 21 + key[18], keyIdLength));
    }

    private async Task<byte[]?> RawNoteAsync(Guid id, string column)
    {
        await using var db = Tenants();
        return await db.Database.SqlQueryRaw<byte[]?>($"SELECT \"{column}\" AS \"Value\" FROM \"TenantNotes\" WHERE \"Id\" = {{0}}", id).SingleAsync(Ct);
    }

    private async Task WriteNoteAsync(Guid id, string column, byte[]? value)
    {
        await using var db = Tenants();
        var changed = value is null
            ? await db.Database.ExecuteSqlRawAsync($"UPDATE \"TenantNotes\" SET \"{column}\" = NULL WHERE \"Id\" = {{0}}", [id], Ct)
            : await db.Database.ExecuteSqlRawAsync($"UPDATE \"TenantNotes\" SET \"{column}\" = {{0}} WHERE \"Id\" = {{1}}", [value, id], Ct);
        Assert.Equal(1, changed);
    }

    /// <summary>Creates the tables of a test-local model in the fixture's database, once.</summary>
    private static async Task EnsureTablesAsync(DbContext context)
    {
        await using (context)
        {
            await TablesCreated.WaitAsync(Ct);
            try
            {
                var script = context.Database.GenerateCreateScript().Replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", StringComparison.Ordinal);
                await context.Database.ExecuteSqlRawAsync(script, Ct);
            }
            finally
            {
                TablesCreated.Release();
            }
        }
    }
}

public sealed class SqliteRecordIntegrityTests(SqliteFixture fixture) : RecordIntegrityTests<SqliteFixture>(fixture);

public sealed class PostgresRecordIntegrityTests(PostgresFixture fixture) : RecordIntegrityTests<PostgresFixture>(fixture);

/// <summary>A record of one tenant: the tenant column is plain (queryable) and bound to the record's seal.</summary>
public class TenantNote
{
    public Guid Id { get; set; }

    public string TenantId { get; set; } = "";

    [Encrypted]
    public string Secret { get; set; } = "";

    [Encrypted]
    public int? Level { get; set; }
}

public class TenantContext(DbContextOptions<TenantContext> options) : DbContext(options)
{
    public DbSet<TenantNote> Notes => Set<TenantNote>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<TenantNote>().ToTable("TenantNotes").Property(n => n.TenantId).IsBoundToRecord();
}

public class LegacyAccount
{
    public Guid Id { get; set; }

    [Encrypted(LegacyPlaintextColumn = "Iban_Plaintext")]
    public string Iban { get; set; } = "";
}

public class LegacyAccountsContext(DbContextOptions<LegacyAccountsContext> options) : DbContext(options)
{
    public DbSet<LegacyAccount> Accounts => Set<LegacyAccount>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.Entity<LegacyAccount>().ToTable("LegacyAccounts");
}

public class Document
{
    public Guid Id { get; set; }

    public string Title { get; set; } = "";

    [Encrypted]
    public string? Remark { get; set; }
}

/// <summary>A derived type: its required encrypted property has a nullable column, shared with other documents.</summary>
public class SignedDocument : Document
{
    [Encrypted]
    public string Signature { get; set; } = "";
}

public class DocumentsContext(DbContextOptions<DocumentsContext> options) : DbContext(options)
{
    public DbSet<Document> Documents => Set<Document>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<Document>().ToTable("Documents");
        modelBuilder.Entity<SignedDocument>();
    }
}

public class Reading
{
    public Guid Id { get; set; }

    [Encrypted]
    public int Value { get; set; }
}

public class ReadingsContext(DbContextOptions<ReadingsContext> options) : DbContext(options)
{
    public DbSet<Reading> Readings => Set<Reading>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.Entity<Reading>().ToTable("Readings");
}

/// <summary>The same table after the property's type was changed to <see cref="float"/> (same size, other meaning).</summary>
public class RetypedReading
{
    public Guid Id { get; set; }

    [Encrypted]
    public float Value { get; set; }
}

public class RetypedReadingsContext(DbContextOptions<RetypedReadingsContext> options) : DbContext(options)
{
    public DbSet<RetypedReading> Readings => Set<RetypedReading>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<RetypedReading>().ToTable("Readings").HasEncryptionBindingName(typeof(Reading).FullName!);
}
