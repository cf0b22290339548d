using HealthRecords.Api;
using HealthRecords.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.Options;

namespace HealthRecords.Setup;

/// <summary>What was chosen at start-up: where the data lives, which database, which master key.</summary>
public sealed class SampleEnvironment(string dataDirectory, string database, MasterKeySetup masterKey) : IDisposable
{
    public string DataDirectory { get; } = dataDirectory;

    public string Database { get; } = database;

    public MasterKeySetup MasterKey { get; } = masterKey;

    public void Dispose() => MasterKey.Dispose();
}

/// <summary>Registers the clinic's DbContext with envelope encryption.</summary>
public static class ServiceSetup
{
    public static IServiceCollection AddHealthRecords(this IServiceCollection services)
    {
        services.AddOptions<HealthRecordsOptions>().BindConfiguration(HealthRecordsOptions.Section);

        // Built on first use (at start-up, by the database set-up), from configuration as it stands then: this is
        // also what lets the integration tests point each test at its own data directory.
        services.AddSingleton(provider =>
        {
            var options = provider.GetRequiredService<IOptions<HealthRecordsOptions>>().Value;
            var root = provider.GetRequiredService<IHostEnvironment>().ContentRootPath;
            var dataDirectory = Path.GetFullPath(Path.Combine(root, options.DataDirectory));
            Directory.CreateDirectory(dataDirectory);
            var database = DatabaseSetup.Validate(options.Database);
            return new SampleEnvironment(dataDirectory, database, MasterKeySetup.Create(options.MasterKey, dataDirectory));
        });

        services.AddSingleton<RecordReader>();
        services.AddSingleton<WalCheckpointer>();
        services.AddHostedService(provider => provider.GetRequiredService<WalCheckpointer>());

        services.AddDbContext<ClinicDbContext>((provider, builder) =>
        {
            var options = provider.GetRequiredService<IOptions<HealthRecordsOptions>>().Value;
            var environment = provider.GetRequiredService<SampleEnvironment>();
            DatabaseSetup.Configure(builder, options.Database, environment.DataDirectory);

            // The one line that turns encryption on. The provider instance is the same for every context, so they
            // share one key cache and EF builds its internal services once.
            builder.UseEnvelopeEncryption(environment.MasterKey.Configure);

            // EF logs a failed query's or save's exception message as it is. For a record that fails authentication
            // that message carries a master-key id read from the row, which whoever can write to the table chooses
            // (line breaks and terminal escapes included). RecordReader and ApiErrorHandler log those failures
            // escaped, with the row's primary key; other failures still reach the log through the exception handler.
            builder.ConfigureWarnings(warnings => warnings.Ignore(CoreEventId.QueryIterationFailed, CoreEventId.SaveChangesFailed));
        });
        return services;
    }
}
