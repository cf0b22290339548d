using System.Diagnostics;
using System.Security.Cryptography;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Reliability.Tests.Faults;

/// <summary>A process writing encrypted rows is killed (SIGKILL) at a random point: every row is its old or new state, and decrypts.</summary>
public sealed class ProcessKillTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("efenvelope-kill-").FullName;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Theory]
    [InlineData("delete")]
    [InlineData("wal")]
    public async Task A_writer_killed_mid_save_leaves_every_row_whole_and_decryptable(string journalMode)
    {
        await Seeds.RunAsync($"{nameof(A_writer_killed_mid_save_leaves_every_row_whole_and_decryptable)}-{journalMode}", async random =>
        {
            var masterKey = RandomNumberGenerator.GetBytes(32);
            var path = Path.Combine(_directory, $"kill-{journalMode}.db");
            var options = new DbContextOptionsBuilder<ClinicContext>()
                .UseSqlite($"Data Source={path};Pooling=False")
                .ManyConfigurationsPerProcess()
                .UseEnvelopeEncryption(e => e.UseProvider(new InsecureInMemoryMasterKeyProvider("kill-test", masterKey)))
                .Options;
            await using (var db = new ClinicContext(options))
            {
                await db.Database.EnsureCreatedAsync(Ct);
                await db.Database.ExecuteSqlRawAsync(journalMode == "wal" ? "PRAGMA journal_mode=WAL" : "PRAGMA journal_mode=DELETE", Ct);
                for (var i = 0; i < 50; i++)
                {
                    db.Patients.Add(new Patient { Id = Guid.NewGuid(), Name = "seed", Ssn = "seed", Diagnosis = "seed", HomeAddress = new Address { City = "K", Street = "seed" } });
                }

                await db.SaveChangesAsync(Ct);
            }

            for (var round = 0; round < 2; round++)
            {
                var savesBeforeKill = random.Next(1, 4);
                var extraDelay = TimeSpan.FromMilliseconds(random.Next(0, 40));
                await RunAndKillChildAsync(path, masterKey, random.Next(), savesBeforeKill, extraDelay);
                await VerifyAsync(options, $"round {round} (killed after save {savesBeforeKill} + {extraDelay.TotalMilliseconds} ms)");
            }
        });
    }

    private static async Task RunAndKillChildAsync(string path, byte[] masterKey, int seed, int savesBeforeKill, TimeSpan extraDelay)
    {
        var child = Path.Combine(AppContext.BaseDirectory, "EfEnvelope.Reliability.Child.dll");
        Assert.True(File.Exists(child), $"child process not built next to the tests: {child}");
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet")
        {
            ArgumentList = { "exec", child, path, seed.ToString(System.Globalization.CultureInfo.InvariantCulture) },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.Environment["EFENVELOPE_CHILD_MASTER_KEY"] = Convert.ToBase64String(masterKey);
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync(Ct);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(60));
            while (true)
            {
                var line = await process.StandardOutput.ReadLineAsync(timeout.Token)
                    ?? throw new InvalidOperationException($"child exited early (code {(process.WaitForExit(5000) ? process.ExitCode : -1)}): {await stderr}");
                if (line == $"saved {savesBeforeKill}")
                {
                    break;
                }
            }

            await Task.Delay(extraDelay, Ct);
        }
        finally
        {
            // Process.Kill sends SIGKILL on Unix: no finalizers, no rollback by the child, no flush.
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync(Ct);
        }
    }

    private static async Task VerifyAsync(DbContextOptions<ClinicContext> options, string what)
    {
        await using var db = new ClinicContext(options);
        var rows = await db.Patients.AsNoTracking().ToListAsync(Ct);
        Assert.True(rows.Count >= 50, $"{what}: rows were lost ({rows.Count})");
        foreach (var row in rows)
        {
            // A whole state: the three encrypted values carry the same tag, written by one save.
            Assert.True(row.Ssn == row.Diagnosis && row.Ssn == row.HomeAddress!.Street, $"{what}: row {row.Id} mixes states: {row.Ssn} / {row.Diagnosis} / {row.HomeAddress?.Street}");
            Assert.True(row.Ssn == "seed" || row.Ssn.StartsWith("gen-", StringComparison.Ordinal), $"{what}: row {row.Id} has unexpected value {row.Ssn}");
        }

        var connection = db.Database.GetDbConnection();
        await connection.OpenAsync(Ct);
        await using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA integrity_check";
        Assert.Equal("ok", await command.ExecuteScalarAsync(Ct));
    }
}
