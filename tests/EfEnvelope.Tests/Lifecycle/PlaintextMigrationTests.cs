using System.Text;
using EfEnvelope.KeyManagement;
using EfEnvelope.Lifecycle;
using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Migrations;
using Microsoft.EntityFrameworkCore.Migrations.Operations;

namespace EfEnvelope.Tests.Lifecycle;

/// <summary>The patient of an application that stored the SSN in plaintext and then encrypts it.</summary>
public class ClinicPatient
{
    public int Id { get; set; }

    public string Name { get; set; } = "";

    public string? Ssn { get; set; }
}

/// <summary>Before: <c>Ssn</c> is a plaintext column.</summary>
public class PlaintextClinicContext(DbContextOptions options) : DbContext(options)
{
    public DbSet<ClinicPatient> Patients => Set<ClinicPatient>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.Entity<ClinicPatient>().ToTable("Patients");
}

/// <summary>During: <c>Ssn</c> is encrypted, and rows not converted yet still read their plaintext from <c>Ssn_Plaintext</c>.</summary>
public sealed class MigratingClinicContext(DbContextOptions<MigratingClinicContext> options) : PlaintextClinicContext(options)
{
    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        base.OnModelCreating(modelBuilder);
        modelBuilder.Entity<ClinicPatient>().Property(p => p.Ssn).IsEncrypted().HasLegacyPlaintextColumn("Ssn_Plaintext");
    }
}

/// <summary>After: <c>Ssn</c> is encrypted and the plaintext column is gone.</summary>
public sealed class EncryptedClinicContext(DbContextOptions<EncryptedClinicContext> options) : PlaintextClinicContext(options)
{
    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        base.OnModelCreating(modelBuilder);
        modelBuilder.Entity<ClinicPatient>().Property(p => p.Ssn).IsEncrypted();
    }
}

/// <summary>docs/KEY-MANAGEMENT.md, "Encrypting an existing column", end to end: two migrations and one job, with the application reading throughout.</summary>
public abstract class PlaintextMigrationTests<TFixture> : IAsyncLifetime
    where TFixture : DatabaseFixture, new()
{
    private const int Patients = 40;

    private readonly InsecureInMemoryMasterKeyProvider _provider = new();

    protected LifecycleDatabase<TFixture> Database { get; } = new();

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        await Database.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    private static string? Ssn(int i) => i % 10 == 9 ? null : $"PLAIN-{i:D3}-{(i * 31) % 1000:D3}";

    private MigratingClinicContext Migrating(params Microsoft.EntityFrameworkCore.Diagnostics.IInterceptor[] interceptors) =>
        new(Database.Options<MigratingClinicContext>(e => e.UseProvider(_provider), interceptors));

    private EncryptedClinicContext Encrypted() => new(Database.Options<EncryptedClinicContext>(e => e.UseProvider(_provider)));

    /// <summary>Runs migration operations through EF's SQL generator for this database, as <c>dotnet ef database update</c> would.</summary>
    private static async Task MigrateAsync(DbContext context, params MigrationOperation[] operations)
    {
        var commands = context.GetService<IMigrationsSqlGenerator>().Generate(operations, context.GetService<IDesignTimeModel>().Model);
        foreach (var command in commands)
        {
            await context.Database.ExecuteSqlRawAsync(command.CommandText, Ct);
        }
    }

    private async Task<List<(int Id, byte[]? Ssn, string? Plaintext, byte[]? Key)>> RawAsync()
    {
        await using var db = Migrating();
        var connection = db.Database.GetDbConnection();
        await connection.OpenAsync(Ct);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT \"Id\", \"Ssn\", \"Ssn_Plaintext\", \"EfEnvelopeKey\" FROM \"Patients\" ORDER BY \"Id\"";
        await using var reader = await command.ExecuteReaderAsync(Ct);
        var rows = new List<(int, byte[]?, string?, byte[]?)>();
        while (await reader.ReadAsync(Ct))
        {
            rows.Add((
                reader.GetInt32(0),
                reader.IsDBNull(1) ? null : reader.GetFieldValue<byte[]>(1),
                reader.IsDBNull(2) ? null : reader.GetString(2),
                reader.IsDBNull(3) ? null : reader.GetFieldValue<byte[]>(3)));
        }

        return rows;
    }

    [Fact]
    public async Task A_plaintext_column_becomes_ciphertext_only_while_the_application_keeps_reading_and_writing()
    {
        if (Database.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        // Before: the application stores SSNs in plaintext.
        var plainOptions = new DbContextOptionsBuilder<PlaintextClinicContext>();
        Database.Fixture.UseDatabase(plainOptions.ManyConfigurationsPerProcess());
        await using (var before = new PlaintextClinicContext(plainOptions.Options))
        {
            await before.Database.EnsureDeletedAsync(Ct);
            await before.Database.EnsureCreatedAsync(Ct);
            before.Patients.AddRange(Enumerable.Range(0, Patients).Select(i => new ClinicPatient { Name = "patient " + i, Ssn = Ssn(i) }));
            await before.SaveChangesAsync(Ct);
        }

        // Migration 1: keep the plaintext under another name, add the ciphertext and wrapped-key columns.
        await using (var db = Migrating())
        {
            await MigrateAsync(
                db,
                new RenameColumnOperation { Table = "Patients", Name = "Ssn", NewName = "Ssn_Plaintext" },
                new AddColumnOperation { Table = "Patients", Name = "Ssn", ClrType = typeof(byte[]), IsNullable = true },
                new AddColumnOperation { Table = "Patients", Name = "EfEnvelopeKey", ClrType = typeof(byte[]), IsNullable = true });
        }

        // The application, now with [Encrypted], reads unconverted rows from the plaintext column, sync and async.
        await using (var app = Migrating())
        {
            var all = await app.Patients.AsNoTracking().OrderBy(p => p.Id).ToListAsync(Ct);
            Assert.Equal(Enumerable.Range(0, Patients).Select(Ssn), all.Select(p => p.Ssn));
            Assert.Equal(Ssn(3), app.Patients.AsNoTracking().Single(p => p.Name == "patient 3").Ssn);
        }

        // Saving a row converts it; a row only read stays as it is until it is saved.
        var capture = new SqlCapture();
        await using (var app = Migrating(capture))
        {
            var first = await app.Patients.SingleAsync(p => p.Name == "patient 0", Ct);
            first.Name = "patient 0 (renamed)";
            await app.SaveChangesAsync(Ct);
            Assert.Single(capture.Updates);
            Assert.Equal(Ssn(0), first.Ssn);
        }

        // A row whose plaintext column was NULL can be given a value: it gets its first data key.
        await using (var app = Migrating())
        {
            var ninth = await app.Patients.SingleAsync(p => p.Name == "patient 9", Ct);
            Assert.Null(ninth.Ssn);
            ninth.Ssn = "NEW-9";
            await app.SaveChangesAsync(Ct);
        }

        var afterSave = await RawAsync();
        Assert.Null(afterSave[0].Plaintext);
        Assert.NotNull(afterSave[0].Ssn);
        Assert.NotNull(afterSave[0].Key);
        Assert.Equal(Ssn(1), afterSave[1].Plaintext);

        // The job converts the rest in batches, while the application edits a row the job has not reached yet
        // and one in the batch it is writing.
        var options = new LifecycleOptions { BatchSize = 8 };
        var hooked = false;
        options.AfterBatchRead = async token =>
        {
            if (hooked)
            {
                return;
            }

            hooked = true;
            await using var app = Migrating();
            foreach (var name in new[] { "patient 5", "patient 30" })
            {
                var patient = await app.Patients.SingleAsync(p => p.Name == name, token);
                patient.Ssn = "EDITED-" + name;
            }

            await app.SaveChangesAsync(token);
        };
        var progress = new ProgressLog();
        await using (var db = Migrating())
        {
            var result = await EnvelopeKeyLifecycle.EncryptLegacyPlaintextAsync(db, options, progress, Ct);
            Assert.True(result.Succeeded, string.Join("; ", result.Failures));
            Assert.Equal(Patients, result.RowsExamined);
            Assert.Equal(1, result.ConflictsRetried);

            // Converted: the renamed row, the two edited by the application, the four without an SSN are already done.
            Assert.Equal(Patients - 3 - 4, result.RecordsChanged);
            Assert.Equal(5, progress.Reports.Count);

            var again = await EnvelopeKeyLifecycle.EncryptLegacyPlaintextAsync(db, options, cancellationToken: Ct);
            Assert.Equal(0, again.RecordsChanged);
        }

        var raw = await RawAsync();
        Assert.All(raw, r => Assert.Null(r.Plaintext));
        for (var i = 0; i < Patients; i++)
        {
            Assert.Equal(Ssn(i) is null && i is not (5 or 9 or 30), raw[i].Ssn is null);
            if (raw[i].Ssn is { } ciphertext)
            {
                Assert.Equal(-1, Encoding.ASCII.GetString(ciphertext).IndexOf("PLAIN-", StringComparison.Ordinal));
            }
        }

        // Migration 2: drop the plaintext column; the application without the legacy setting reads everything.
        await using (var db = Encrypted())
        {
            await MigrateAsync(db, new DropColumnOperation { Table = "Patients", Name = "Ssn_Plaintext" });
            db.ClearEnvelopeKeyCache();
            var all = await db.Patients.AsNoTracking().OrderBy(p => p.Id).ToListAsync(Ct);
            var expected = Enumerable.Range(0, Patients).Select(i => i switch
            {
                5 or 30 => "EDITED-patient " + i,
                9 => "NEW-9",
                _ => Ssn(i),
            });
            Assert.Equal(expected, all.Select(p => p.Ssn));
        }
    }
}

public sealed class PlaintextMigrationSqliteTests : PlaintextMigrationTests<SqliteFixture>;

public sealed class PlaintextMigrationPostgresTests : PlaintextMigrationTests<PostgresFixture>;
