using EfEnvelope;
using EfEnvelope.Infrastructure;
using Microsoft.EntityFrameworkCore.Infrastructure;

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
    /// </remarks>
    public static DbContextOptionsBuilder UseEnvelopeEncryption(this DbContextOptionsBuilder optionsBuilder, Action<EnvelopeEncryptionOptionsBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(optionsBuilder);
        ArgumentNullException.ThrowIfNull(configure);

        var existing = optionsBuilder.Options.FindExtension<EnvelopeEncryptionOptionsExtension>();
        var builder = new EnvelopeEncryptionOptionsBuilder(existing?.Settings.Clone());
        configure(builder);
        ((IDbContextOptionsBuilderInfrastructure)optionsBuilder).AddOrUpdateExtension(new EnvelopeEncryptionOptionsExtension(builder.Settings.Clone()));
        return optionsBuilder;
    }

    /// <inheritdoc cref="UseEnvelopeEncryption(DbContextOptionsBuilder, Action{EnvelopeEncryptionOptionsBuilder})"/>
    public static DbContextOptionsBuilder<TContext> UseEnvelopeEncryption<TContext>(this DbContextOptionsBuilder<TContext> optionsBuilder, Action<EnvelopeEncryptionOptionsBuilder> configure)
        where TContext : DbContext =>
        (DbContextOptionsBuilder<TContext>)UseEnvelopeEncryption((DbContextOptionsBuilder)optionsBuilder, configure);
}
