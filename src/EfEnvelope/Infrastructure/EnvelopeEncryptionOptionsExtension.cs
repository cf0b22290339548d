using EfEnvelope.ChangeTracking;
using EfEnvelope.Metadata;
using EfEnvelope.Query;
using EfEnvelope.Storage;
using EfEnvelope.Update;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata.Conventions.Infrastructure;
using Microsoft.EntityFrameworkCore.Query.Internal;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.EntityFrameworkCore.Update;
using Microsoft.EntityFrameworkCore.Update.Internal;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace EfEnvelope.Infrastructure;

/// <summary>The DbContext options extension that installs envelope encryption; added by <c>UseEnvelopeEncryption</c>.</summary>
/// <remarks>
/// Immutable. Two extensions with equal settings tell EF to reuse one internal service provider, which is what makes
/// every context of one configuration share a key cache and one set of interceptors.
/// </remarks>
public sealed class EnvelopeEncryptionOptionsExtension : IDbContextOptionsExtension
{
    private ExtensionInfo? _info;

    internal EnvelopeEncryptionOptionsExtension(EnvelopeEncryptionSettings settings) => Settings = settings;

    internal EnvelopeEncryptionSettings Settings { get; }

    /// <inheritdoc />
    public DbContextOptionsExtensionInfo Info => _info ??= new ExtensionInfo(this);

    /// <inheritdoc />
    public void ApplyServices(IServiceCollection services)
    {
        var settings = Settings;
        new EntityFrameworkServicesBuilder(services)
            .TryAdd<IConventionSetPlugin, EncryptionConventionSetPlugin>()
            .TryAdd<ISingletonInterceptor, DecryptingBindingInterceptor>()
            .TryAdd<IInterceptor, EncryptingSaveChangesInterceptor>()
            .TryAdd<IInterceptor, EncryptedQueryGuard>()
            .TryAdd<IInterceptor, ReaderWrappingInterceptor>();
        if (settings.KeySelector is not null)
        {
            // Only with a selector: any materialization interceptor makes EF build per-row accessors for every query.
            new EntityFrameworkServicesBuilder(services).TryAdd<ISingletonInterceptor, SelectorKeyCheck>();

            // The relational providers all use EF's relational query context factory.
#pragma warning disable EF1001 // RelationalQueryContextFactory: wrapped, not changed
            services.Replace(ServiceDescriptor.Scoped<Microsoft.EntityFrameworkCore.Query.IQueryContextFactory>(provider => new OwnerScopedQueryContextFactory(
                ActivatorUtilities.CreateInstance<RelationalQueryContextFactory>(provider),
                provider.GetRequiredService<ICurrentDbContext>())));
#pragma warning restore EF1001
        }

        services.AddSingleton(_ => new EnvelopeRuntime(settings, LoggerFactoryFor(settings)));

        // Replace, not TryAdd: the database provider's services may already have registered EF's own detector.
        services.Replace(ServiceDescriptor.Scoped<IChangeDetector, EncryptionChangeDetector>());
        services.Replace(ServiceDescriptor.Scoped<IStateManager, EncryptingStateManager>());
        services.Replace(ServiceDescriptor.Scoped<IInternalEntityEntryNotifier, EncryptionEntryNotifier>());
        services.Replace(ServiceDescriptor.Scoped<IQueryCompiler, Search.SearchQueryCompiler>());

        // The batch preparer's dependencies, built with the provider's own modification command factory wrapped: they
        // are resolved after every extension has registered its services, whichever order the options named them in.
        services.Replace(ServiceDescriptor.Scoped(provider => new CommandBatchPreparerDependencies(
            provider.GetRequiredService<IModificationCommandBatchFactory>(),
            provider.GetRequiredService<IParameterNameGeneratorFactory>(),
            provider.GetRequiredService<IComparer<IReadOnlyModificationCommand>>(),
            new KeyConditionModificationCommandFactory(provider.GetRequiredService<IModificationCommandFactory>()),
            provider.GetRequiredService<ILoggingOptions>(),
            provider.GetRequiredService<IDiagnosticsLogger<DbLoggerCategory.Update>>(),
            provider.GetRequiredService<IDbContextOptions>())));
    }

    /// <inheritdoc />
    public void Validate(IDbContextOptions options)
    {
        if (Settings.Provider is null)
        {
            throw new InvalidOperationException(
                "UseEnvelopeEncryption needs a master-key provider: call UseProvider (or UseAwsKms, UsePkcs11, UseInsecureInMemoryMasterKey) in its configuration.");
        }
    }

    // Not IDbContextOptions from the internal provider: a singleton is built before any context's options can be
    // resolved there (and would see the first context's only); the settings carry the factory found at configuration.
    private static ILoggerFactory LoggerFactoryFor(EnvelopeEncryptionSettings settings) =>
        settings.LoggerFactory ?? settings.HostLoggerFactory ?? NullLoggerFactory.Instance;

    private sealed class ExtensionInfo(EnvelopeEncryptionOptionsExtension extension) : DbContextOptionsExtensionInfo(extension)
    {
        private new EnvelopeEncryptionOptionsExtension Extension => (EnvelopeEncryptionOptionsExtension)base.Extension;

        public override bool IsDatabaseProvider => false;

        public override string LogFragment => $"using envelope encryption ({Extension.Settings.Provider?.Name}, {Extension.Settings.Mode}) ";

        public override int GetServiceProviderHashCode() => Extension.Settings.GetHashCode();

        public override bool ShouldUseSameServiceProvider(DbContextOptionsExtensionInfo other) =>
            other is ExtensionInfo otherInfo && Extension.Settings.Equals(otherInfo.Extension.Settings);

        public override void PopulateDebugInfo(IDictionary<string, string> debugInfo)
        {
            debugInfo["EfEnvelope:Provider"] = Extension.Settings.Provider?.Name ?? "(none)";
            debugInfo["EfEnvelope:Mode"] = Extension.Settings.Mode.ToString();
            debugInfo["EfEnvelope:Settings"] = Extension.Settings.GetHashCode().ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
    }
}
