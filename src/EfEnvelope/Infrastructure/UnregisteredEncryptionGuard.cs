using System.Diagnostics;
using System.Reflection;
using System.Runtime.CompilerServices;
using EfEnvelope.Infrastructure;
using EfEnvelope.Metadata;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Infrastructure;

/// <summary>Refuses a context whose model asks for encryption while its options never call <c>UseEnvelopeEncryption</c>.</summary>
/// <remarks>
/// <para>
/// Without the extension EF maps an <see cref="EncryptedAttribute"/> (or <c>IsEncrypted()</c>) property as an ordinary
/// column and would store plaintext; a model built with encryption and reused without it (a compiled model,
/// <c>UseModel</c>) would save NULL where the ciphertext belongs. Nothing of EfEnvelope is registered in such a
/// context, so the check listens to EF's diagnostic events, which every context raises through its own
/// <see cref="DiagnosticListener"/>: when a context is initialized and before each <c>SaveChanges</c>.
/// </para>
/// <para>
/// It is installed process-wide by the first EfEnvelope code that runs: <c>UseEnvelopeEncryption</c>,
/// <c>IsEncrypted()</c>, or the constructor of <see cref="EncryptedAttribute"/>, which EF itself calls while it builds a
/// model because the attribute derives from <see cref="System.ComponentModel.DataAnnotations.Schema.DatabaseGeneratedAttribute"/>.
/// A compiled model used in a process where none of these ran is not checked (docs/DESIGN.md, "Fail closed").
/// </para>
/// </remarks>
internal static class UnregisteredEncryptionGuard
{
    private static readonly ConditionalWeakTable<IModel, StrongBox<string?>> Findings = new();
    private static IDisposable? _subscription;

    /// <summary>Starts listening to every EF context in the process; later calls do nothing.</summary>
    public static void Install()
    {
        if (Volatile.Read(ref _subscription) is null)
        {
            var subscription = DiagnosticListener.AllListeners.Subscribe(new ListenerObserver());
            if (Interlocked.CompareExchange(ref _subscription, subscription, null) is not null)
            {
                subscription.Dispose();
            }
        }
    }

    /// <summary>Throws when <paramref name="context"/> has no envelope encryption and its model asks for it.</summary>
    internal static void Check(DbContext context, IDbContextOptions options)
    {
        if (options.FindExtension<EnvelopeEncryptionOptionsExtension>() is not null)
        {
            return;
        }

        // Per model, not per context: models are shared by every context of a type, and the scan walks all properties.
        var finding = Findings.GetValue(context.Model, model => new StrongBox<string?>(Find(model))).Value;
        if (finding is not null)
        {
            throw new InvalidOperationException(
                $"{finding} but the options of context '{context.GetType().Name}' do not call UseEnvelopeEncryption, so the value would be stored in plaintext (or lost). "
                + "Call UseEnvelopeEncryption(e => e.UseProvider(...)) wherever this context is configured: OnConfiguring, AddDbContext and its pooled and factory forms, and any IDesignTimeDbContextFactory.");
        }
    }

    private static string? Find(IModel model)
    {
        foreach (var entityType in model.GetEntityTypes())
        {
            if (entityType.FindAnnotation(EncryptionAnnotations.EncryptedProperties)?.Value is string[] { Length: > 0 } names)
            {
                return $"The model was built with envelope encryption (encrypted property '{entityType.DisplayName()}.{names[0]}'),";
            }

            if (FindMarked(entityType) is { } marked)
            {
                return marked;
            }
        }

        return null;
    }

    // A property marked encrypted on the type, or on a complex type it holds (ComplexProperty, ComplexCollection,
    // nested): EF maps those as columns or JSON of the owning table, and would store them in plaintext just the same.
    private static string? FindMarked(ITypeBase type)
    {
        foreach (var property in type.GetDeclaredProperties())
        {
            if (property.FindAnnotation(EncryptionAnnotations.Encrypted)?.Value is true
                || property.PropertyInfo?.GetCustomAttribute<EncryptedAttribute>(inherit: true) is not null)
            {
                return $"Property '{type.DisplayName()}.{property.Name}' is marked encrypted,";
            }
        }

        foreach (var complex in type.GetDeclaredComplexProperties())
        {
            if (FindMarked(complex.ComplexType) is { } marked)
            {
                return marked;
            }
        }

        return null;
    }

    private sealed class ListenerObserver : IObserver<DiagnosticListener>
    {
        public void OnNext(DiagnosticListener value)
        {
            if (value.Name == DbLoggerCategory.Name)
            {
                // The listener lives as long as its EF service provider; so does this subscription.
                _ = value.Subscribe(new EventObserver(), IsChecked);
            }
        }

        public void OnCompleted()
        {
        }

        public void OnError(Exception error)
        {
        }

        private static bool IsChecked(string name) =>
            name == CoreEventId.ContextInitialized.Name || name == CoreEventId.SaveChangesStarting.Name;
    }

    private sealed class EventObserver : IObserver<KeyValuePair<string, object?>>
    {
        // Thrown from here, the exception reaches the EF call that raised the event: the context's first use, or
        // SaveChanges before any command is sent.
        public void OnNext(KeyValuePair<string, object?> value)
        {
            switch (value.Value)
            {
                case ContextInitializedEventData initialized:
                    Check(initialized.Context, initialized.ContextOptions);
                    break;
                case DbContextEventData { Context: { } context }:
                    Check(context, context.GetService<IDbContextOptions>());
                    break;
            }
        }

        public void OnCompleted()
        {
        }

        public void OnError(Exception error)
        {
        }
    }
}
