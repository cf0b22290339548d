using System.Text.Json;

namespace EfEnvelope.Cli.Tests;

/// <summary>
/// efenvelope end to end against the sample's database: the sample's own host provides the context, the development
/// master key and the blind index key; the tool runs as its own process with redirected output.
/// </summary>
/// <remarks>
/// Tests that leave the data as they found it share one database (the tests of a class run one after another);
/// interrupting a re-encryption and tampering with a row get databases of their own.
/// </remarks>
public sealed class CliTests(SharedSampleDatabase shared) : IClassFixture<SharedSampleDatabase>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Inventory_counts_rows_by_master_key_and_says_whether_a_key_can_be_retired()
    {
        var database = shared.Database;

        var (exitCode, stdout, stderr) = await Tool.RunAsync(database, Ct, "inventory", "-a", SampleDatabase.SampleAssembly, "--json");

        Assert.True(exitCode == 0, stderr);
        using var json = JsonDocument.Parse(stdout);
        var root = json.RootElement;
        var primary = root.GetProperty("primaryKeyId").GetString()!;
        Assert.Equal(primary, root.GetProperty("blindIndexMasterKeyId").GetString());
        var patients = root.GetProperty("entities").EnumerateArray().Single(e => e.GetProperty("entity").GetString() == "Patient");
        var rows = patients.GetProperty("rows").GetInt64();
        Assert.True(rows >= 3, $"expected the seeded patients and the two added ones, got {rows}");
        Assert.Equal(rows, patients.GetProperty("byMasterKey").GetProperty(primary).GetInt64());
        Assert.Equal(rows, patients.GetProperty("byWrappingMode").GetProperty("cached-kek").GetInt64());
        Assert.Equal(rows, patients.GetProperty("byFormatVersion").GetProperty("2").GetInt64());
        Assert.Equal(1, patients.GetProperty("distinctKeyEncryptionKeys").GetInt64());
        Assert.Equal(0, patients.GetProperty("legacyPlaintextRows").GetInt64());
        Assert.True(patients.GetProperty("hasBlindIndexes").GetBoolean());

        var stillUsed = await Tool.RunAsync(database, Ct, "inventory", "-a", SampleDatabase.SampleAssembly, "--retiring-key", primary);
        Assert.Equal(1, stillUsed.ExitCode);
        Assert.Contains($"Master key {primary} is still needed", stillUsed.Stdout, StringComparison.Ordinal);
        var unused = await Tool.RunAsync(database, Ct, "inventory", "-a", SampleDatabase.SampleAssembly, "--retiring-key", "some-retired-key");
        Assert.Equal(0, unused.ExitCode);
        Assert.Contains("Nothing stored needs master key some-retired-key", unused.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Reencryption_interrupted_with_ctrl_c_resumes_from_its_checkpoint_without_redoing_committed_rows()
    {
        await using var database = await SampleDatabase.CreateAsync(extraPatients: 120, Ct);
        var checkpoint = Path.Combine(database.DataDirectory, "reencrypt.checkpoint");
        string[] command = ["reencrypt", "-a", SampleDatabase.SampleAssembly, "--batch-size", "1", "--checkpoint", checkpoint, "--entity", "Patient"];

        int firstExit;
        string firstOutput;
        using (var first = Tool.Start(database, command))
        {
            await first.FirstProgress.WaitAsync(TimeSpan.FromMinutes(3), Ct);
            first.Interrupt();
            firstExit = await first.WaitAsync(Ct);
            firstOutput = first.Stdout;
            Assert.True(firstExit == 130, $"exit {firstExit}\n{first.Stdout}\n{first.Stderr}");
            Assert.Contains("run the same command again to resume", first.Stderr, StringComparison.Ordinal);
        }

        // Redirected output: one plain line per batch, no bar redrawn with carriage returns.
        Assert.DoesNotContain('\r', firstOutput);
        Assert.Contains("reencrypt Patient: 1/", firstOutput, StringComparison.Ordinal);
        Assert.True(File.Exists(checkpoint));
        var committedBefore = firstOutput.Split('\n').Count(l => l.StartsWith("reencrypt Patient: ", StringComparison.Ordinal));

        var second = await Tool.RunAsync(database, Ct, [.. command, "--json"]);

        Assert.True(second.ExitCode == 0, second.Stderr);
        Assert.Contains($"Resuming reencrypt from {checkpoint}", second.Stderr, StringComparison.Ordinal);
        using var json = JsonDocument.Parse(second.Stdout);
        Assert.True(json.RootElement.GetProperty("resumed").GetBoolean());
        var changed = json.RootElement.GetProperty("recordsChanged").GetInt64();
        var examined = json.RootElement.GetProperty("rowsExamined").GetInt64();
        Assert.True(changed <= examined - committedBefore, $"the resumed run re-encrypted {changed} of {examined} rows although {committedBefore} batches had committed");
        Assert.False(File.Exists(checkpoint), "the checkpoint of a finished job is deleted");

        var verify = await Tool.RunAsync(database, Ct, "verify", "-a", SampleDatabase.SampleAssembly);
        Assert.True(verify.ExitCode == 0, verify.Stdout + verify.Stderr);
    }

    [Fact]
    public async Task Three_worker_processes_share_one_reencryption_and_each_record_is_reencrypted_once()
    {
        await using var database = await SampleDatabase.CreateAsync(extraPatients: 60, Ct);
        var workers = Enumerable.Range(1, 3)
            .Select(i => Tool.RunAsync(database, Ct, "reencrypt", "-a", SampleDatabase.SampleAssembly, "--json", "--entity", "Patient", "--batch-size", "5", "--job-name", "cli-reencrypt", "--partitions", "6", "--worker-id", "worker-" + i))
            .ToList();
        var results = await Task.WhenAll(workers);

        long changed = 0, examined = 0;
        foreach (var (exitCode, stdout, stderr) in results)
        {
            Assert.True(exitCode == 0, $"exit {exitCode}\n{stdout}\n{stderr}");
            Assert.Contains("of job cli-reencrypt", stderr, StringComparison.Ordinal);
            using var json = JsonDocument.Parse(stdout);
            changed += json.RootElement.GetProperty("recordsChanged").GetInt64();
            examined += json.RootElement.GetProperty("rowsExamined").GetInt64();
        }

        var inventory = await Tool.RunAsync(database, Ct, "inventory", "-a", SampleDatabase.SampleAssembly, "--json");
        using (var json = JsonDocument.Parse(inventory.Stdout))
        {
            var patients = json.RootElement.GetProperty("entities").EnumerateArray().Single(e => e.GetProperty("entity").GetString() == "Patient").GetProperty("rows").GetInt64();
            // Re-encryption cannot tell a finished record from another: a record done twice would be counted twice.
            Assert.Equal(patients, examined);
            Assert.Equal(patients, changed);
        }

        var verify = await Tool.RunAsync(database, Ct, "verify", "-a", SampleDatabase.SampleAssembly);
        Assert.True(verify.ExitCode == 0, verify.Stdout + verify.Stderr);
        var refused = await Tool.RunAsync(database, Ct, "rotate", "-a", SampleDatabase.SampleAssembly, "--job-name", "x", "--verify");
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("verification belongs after every worker has finished", refused.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Every_job_verb_runs_against_the_sample_and_reports_what_it_did()
    {
        var database = shared.Database;
        string[] app = ["-a", SampleDatabase.SampleAssembly, "--json"];

        var rotate = await Tool.RunAsync(database, Ct, ["rotate", .. app, "--verify"]);
        Assert.True(rotate.ExitCode == 0, rotate.Stderr);
        using (var json = JsonDocument.Parse(rotate.Stdout))
        {
            // Everything is already under the primary key: rotation is idempotent and changes nothing.
            Assert.Equal(0, json.RootElement.GetProperty("recordsChanged").GetInt64());
            Assert.True(json.RootElement.GetProperty("recordsAlreadyDone").GetInt64() > 0);
            Assert.True(json.RootElement.GetProperty("verification").GetProperty("succeeded").GetBoolean());
        }

        var legacy = await Tool.RunAsync(database, Ct, ["encrypt-legacy", .. app]);
        Assert.True(legacy.ExitCode == 0, legacy.Stderr);
        using (var json = JsonDocument.Parse(legacy.Stdout))
        {
            Assert.Equal(0, json.RootElement.GetProperty("recordsChanged").GetInt64());
        }

        var rebuild = await Tool.RunAsync(database, Ct, ["rebuild-indexes", .. app]);
        Assert.True(rebuild.ExitCode == 0, rebuild.Stderr);
        using (var json = JsonDocument.Parse(rebuild.Stdout))
        {
            var patients = Assert.Single(json.RootElement.GetProperty("entities").EnumerateArray());
            Assert.Equal("Patient", patients.GetProperty("entity").GetString());
            Assert.True(patients.GetProperty("records").GetInt32() > 0);
        }

        var verify = await Tool.RunAsync(database, Ct, ["verify", .. app]);
        Assert.True(verify.ExitCode == 0, verify.Stderr);
        using (var json = JsonDocument.Parse(verify.Stdout))
        {
            Assert.True(json.RootElement.GetProperty("succeeded").GetBoolean());
            Assert.Empty(json.RootElement.GetProperty("failures").EnumerateArray());
        }
    }

    [Fact]
    public async Task On_a_terminal_progress_is_a_bar_redrawn_in_place()
    {
        var database = shared.Database;

        // script(1) gives the tool a pseudo-terminal, as an operator's shell would.
        var command = $"dotnet '{Build.Tool}' verify -a '{SampleDatabase.SampleAssembly}' --batch-size 1";
        var (exitCode, stdout, stderr) = await Tool.RunProgramAsync(database, "script", Ct, "-q", "-e", "-c", command, "/dev/null");

        // The bar (drawn only on a terminal), never the plain per-batch lines of redirected output.
        Assert.True(exitCode == 0, stdout + stderr);
        Assert.Matches(@"verify Patient\s+\[#+\.*\]\s+\d+%\s+\d+/\d+ rows", stdout);
        Assert.DoesNotContain(" rows (", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_row_that_no_longer_decrypts_is_listed_and_fails_verification_with_exit_code_1()
    {
        await using var database = await SampleDatabase.CreateAsync(extraPatients: 0, Ct);
        TamperFirstPatient(database);

        var (exitCode, stdout, stderr) = await Tool.RunAsync(database, Ct, "verify", "-a", SampleDatabase.SampleAssembly);

        Assert.True(exitCode == 1, stdout + stderr);
        Assert.Contains("failed: Patient", stdout, StringComparison.Ordinal);
        Assert.Contains("EnvelopeDecryptionException", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Usage_and_configuration_errors_exit_with_2_and_say_what_is_wrong()
    {
        var database = shared.Database;

        var missing = await Tool.RunAsync(database, Ct, "verify", "-a", "no-such-app.dll");
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("does not exist", missing.Stderr, StringComparison.Ordinal);

        var wrongContext = await Tool.RunAsync(database, Ct, "verify", "-a", SampleDatabase.SampleAssembly, "--context", "NoSuchContext");
        Assert.Equal(2, wrongContext.ExitCode);
        Assert.Contains("NoSuchContext", wrongContext.Stderr, StringComparison.Ordinal);

        var wrongEntity = await Tool.RunAsync(database, Ct, "rotate", "-a", SampleDatabase.SampleAssembly, "--entity", "Invoice");
        Assert.Equal(2, wrongEntity.ExitCode);
        Assert.Contains("Patient", wrongEntity.Stderr, StringComparison.Ordinal);

        var noAssembly = await Tool.RunAsync(database, Ct, "verify");
        Assert.NotEqual(0, noAssembly.ExitCode);
        Assert.Contains("--assembly", noAssembly.Stdout + noAssembly.Stderr, StringComparison.Ordinal);
    }

    /// <summary>Flips one bit of the first patient's SSN ciphertext with plain SQL (an attacker, or a broken restore).</summary>
    private static void TamperFirstPatient(SampleDatabase database)
    {
        using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(database.DataDirectory, "healthrecords.db")};Pooling=False");
        connection.Open();
        using var read = connection.CreateCommand();
        read.CommandText = "SELECT Id, Ssn FROM Patients ORDER BY Id LIMIT 1";
        long id;
        byte[] ciphertext;
        using (var reader = read.ExecuteReader())
        {
            Assert.True(reader.Read());
            id = reader.GetInt64(0);
            ciphertext = (byte[])reader.GetValue(1);
        }

        ciphertext[^1] ^= 0x01;
        using var write = connection.CreateCommand();
        write.CommandText = "UPDATE Patients SET Ssn = $ssn WHERE Id = $id";
        write.Parameters.AddWithValue("$ssn", ciphertext);
        write.Parameters.AddWithValue("$id", id);
        Assert.Equal(1, write.ExecuteNonQuery());
    }
}

/// <summary>The sample's database with two patients beside the seeded ones, for the tests that change nothing in it.</summary>
public sealed class SharedSampleDatabase : IAsyncLifetime
{
    public SampleDatabase Database { get; private set; } = null!;

    public async ValueTask InitializeAsync() => Database = await SampleDatabase.CreateAsync(extraPatients: 2, TestContext.Current.CancellationToken);

    public ValueTask DisposeAsync() => Database.DisposeAsync();
}
