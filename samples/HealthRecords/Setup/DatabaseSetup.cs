using Microsoft.EntityFrameworkCore;

namespace HealthRecords.Setup;

/// <summary>Points EF Core at the configured database; encryption is the same on all three.</summary>
public static class DatabaseSetup
{
    public const string SqliteFileName = "healthrecords.db";

    /// <summary>The database provider name to show, normalised; throws for an unknown or incomplete setting.</summary>
    public static string Validate(DatabaseOptions options)
    {
        var provider = options.Provider.ToUpperInvariant() switch
        {
            "SQLITE" => "Sqlite",
            "POSTGRESQL" or "POSTGRES" or "NPGSQL" => "PostgreSQL",
            "SQLSERVER" => "SqlServer",
            _ => throw new InvalidOperationException(
                $"HealthRecords:Database:Provider is '{options.Provider}'; use 'Sqlite' (the default), 'PostgreSQL' or 'SqlServer'."),
        };
        if (provider != "Sqlite" && string.IsNullOrWhiteSpace(options.ConnectionString))
        {
            throw new InvalidOperationException($"HealthRecords:Database:Provider is '{provider}': set HealthRecords:Database:ConnectionString as well.");
        }

        return provider;
    }

    public static void Configure(DbContextOptionsBuilder builder, DatabaseOptions options, string dataDirectory)
    {
        switch (Validate(options))
        {
            case "Sqlite":
                builder.UseSqlite(string.IsNullOrWhiteSpace(options.ConnectionString)
                    ? $"Data Source={Path.Combine(dataDirectory, SqliteFileName)}"
                    : options.ConnectionString);
                break;
            case "PostgreSQL":
                builder.UseNpgsql(options.ConnectionString);
                break;
            default:
                builder.UseSqlServer(options.ConnectionString);
                break;
        }
    }
}
