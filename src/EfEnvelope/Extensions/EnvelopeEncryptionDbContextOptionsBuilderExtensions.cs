using EfEnvelope;
using EfEnvelope.Infrastructure;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

// Declared in EF's namespace so that no extra using is needed where the context is configured.
namespace Microsoft.EntityFrameworkCore;

/// <summary>Registers envelope encryption on a DbContext.</summary>
public static class EnvelopeEncryptionDbContextOptionsBuilderExtensions
{
    /// <summary>Encrypts every <see cref="EncryptedAttribute"/> / <c>IsEncrypted()</c> property with a data key per record.</summary>
    /// <param name="optionsBuilder">The options being built.</param>
    /// <param name="configure">Chooses the master-key provider (required) and tunes mode, cache and timeouts.</param>
    /// <remarks>
    /// Works with <c>AddDbContext</c>, <c>AddDbContextPool</c> and <c>AddDbContextFactory</c>. Contexts configured with the
    /// same provider instance and settings share one key cache. Calling it again refines the earlier configuration.
    /// Log events go to <see cref="EnvelopeEncryptionOptionsBuilder.UseLoggerFactory"/> if given, else to the logger
    /// factory set on these options with <c>UseLoggerFactory</c> before this call, else to the application's
    /// <see cref="ILoggerFactory"/> when the context comes from dependency injection.
    /// </remarks>
    public static DbContextOptionsBuilder UseEnvelopeEncryption(this DbContextOptionsBuilder optionsBuilder, Action<EnvelopeEncryptionOptionsBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(optionsBuilder);
        ArgumentNullException.ThrowIfNull(configure);

        var existing = optionsBuilder.Options.FindExtension<EnvelopeEncryptionOptionsExtension>();
        var builder = new EnvelopeEncryptionOptionsBuilder(existing?.Settings.Clone());
        configure(builder);
        var settings = builder.Settings.Clone();

        // EF's internal service provider cannot resolve the context's options when it builds its singletons, so the
        // logger factory is taken here, where the options are at hand: EF's own, else the host's.
        var core = optionsBuilder.Options.FindExtension<CoreOptionsExtension>();
        settings.HostLoggerFactory = core?.LoggerFactory ?? core?.ApplicationServiceProvider?.GetService<ILoggerFactory>();
        ((IDbContextOptionsBuilderInfrastructure)optionsBuilder).AddOrUpdateExtension(new EnvelopeEncryptionOptionsExtension(settings));
        UnregisteredEncryptionGuard.Install();
        return optionsBuilder;
    }

    /// <inheritdoc cref="UseEnvelopeEncryption(DbContextOptionsBuilder, Action{EnvelopeEncryptionOptionsBuilder})"/>
    public static DbContextOptionsBuilder<TContext> UseEnvelopeEncryption<TContext>(this DbContextOptionsBuilder<TContext> optionsBuilder, Action<EnvelopeEncryptionOptionsBuilder> configure)
        where TContext : DbContext =>
        (DbContextOptionsBuilder<TContext>)UseEnvelopeEncryption((DbContextOptionsBuilder)optionsBuilder, configure);
}
