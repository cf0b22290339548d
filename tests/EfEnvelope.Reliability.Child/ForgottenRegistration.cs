using EfEnvelope.Specification.Tests.Differential;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

/// <summary>
/// The child of ForgottenRegistrationProcessTests: a process in which no EfEnvelope code has run saves an
/// [Encrypted] property through a context configured without UseEnvelopeEncryption. Prints "refused: message" and
/// the number of rows stored, or "stored".
/// </summary>
internal static class ForgottenRegistration
{
    public static async Task<int> RunAsync(string file)
    {
        var connectionString = $"Data Source={file};Pooling=False";
        try
        {
            // Nothing here calls EfEnvelope: the first EfEnvelope code that runs is EF creating the attribute while
            // it builds the model.
#pragma warning disable EFENV007 // The missing UseEnvelopeEncryption is the mistake this child makes on purpose.
            var options = new DbContextOptionsBuilder<ForgottenRegistrationContext>().UseSqlite(connectionString).Options;
#pragma warning restore EFENV007
            await using var db = new ForgottenRegistrationContext(options);
            await db.Database.EnsureCreatedAsync();
            db.Applicants.Add(new Applicant { Ssn = "123-45-6789" });
            await db.SaveChangesAsync();
            Console.WriteLine("stored");
            return 1;
        }
        catch (InvalidOperationException e)
        {
            Console.WriteLine("refused: " + e.Message.ReplaceLineEndings(" "));
        }

        await using var connection = new SqliteConnection(connectionString);
        await connection.OpenAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT COUNT(*) FROM sqlite_master WHERE name = 'Applicants'";
        if ((long)(await command.ExecuteScalarAsync())! == 1)
        {
            command.CommandText = "SELECT COUNT(*) FROM \"Applicants\"";
            Console.WriteLine($"rows {await command.ExecuteScalarAsync()}");
        }
        else
        {
            Console.WriteLine("rows 0 (no table)");
        }

        return 0;
    }
}
