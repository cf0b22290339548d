using System.Linq.Expressions;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Metadata.Internal;

namespace EfEnvelope.Metadata;

/// <summary>
/// Lets EF construct entities whose constructor takes encrypted values (positional records, classes with a
/// constructor per property), although the encrypted properties leave EF's model.
/// </summary>
/// <remarks>
/// <para>
/// EF binds constructor parameters to the model's properties; once <see cref="EncryptionConvention"/> has replaced an
/// encrypted property by its ciphertext shadow, EF finds no property for that parameter and the model fails to build.
/// So, while the encrypted properties are still in the model, EF's own binding factory chooses the constructor (the
/// same one plain EF would), and each parameter bound to an encrypted property is then passed its type's default
/// instead. The decrypting binding (Query/DecryptingBinding.cs) wraps this binding as any other: it constructs the
/// entity, then decrypts and assigns every encrypted property, through its setter or its backing field, before EF
/// hands the entity to the application or starts tracking it. The one difference from plain EF: the constructor
/// itself sees the default, not the value, so a constructor that validates or computes from an encrypted argument
/// (throws on null, derives another member) sees the default (README, "Known limitations").
/// </para>
/// <para>
/// The binding is stored with data-annotation precedence, so EF's constructor binding convention keeps it.
/// </para>
/// </remarks>
internal static class EncryptedConstructorBinding
{
    /// <summary>
    /// The bindings EF would use for <paramref name="entityType"/> with encrypted parameters given their defaults, or
    /// nulls when no chosen constructor takes an encrypted property (then EF binds as usual after the replacement).
    /// </summary>
    public static (InstantiationBinding? Constructor, InstantiationBinding? ServiceOnly) Create(
        IConstructorBindingFactory factory, IConventionEntityType entityType, IReadOnlyCollection<IConventionProperty> encrypted)
    {
        // A binding the application configured (EF's internal API is the only way to set one) is kept as it is.
        if (entityType.ClrType.IsAbstract || ((EntityType)entityType).GetConstructorBindingConfigurationSource() is not (null or ConfigurationSource.Convention))
        {
            return (null, null);
        }

        InstantiationBinding constructor;
        InstantiationBinding? serviceOnly;
        try
        {
            factory.GetBindings(entityType, out constructor, out serviceOnly);
        }
        catch (InvalidOperationException)
        {
            // No constructor EF can bind even with the encrypted properties: EF reports it, with its own message, when
            // its constructor binding convention runs.
            return (null, null);
        }

        var replaced = Replace(constructor, encrypted);
        return replaced is null ? (null, null) : (replaced, serviceOnly is null ? null : Replace(serviceOnly, encrypted) ?? serviceOnly);
    }

    /// <summary>Applies bindings from <see cref="Create"/> once the encrypted properties have left the model.</summary>
    public static void Apply(IConventionEntityType entityType, (InstantiationBinding? Constructor, InstantiationBinding? ServiceOnly) bindings)
    {
        if (bindings.Constructor is null)
        {
            return;
        }

        // Data-annotation precedence: EF's ConstructorBindingConvention only overrides convention-set bindings.
        var type = (EntityType)entityType;
        type.SetConstructorBinding(bindings.Constructor, ConfigurationSource.DataAnnotation);
        type.SetServiceOnlyConstructorBinding(bindings.ServiceOnly, ConfigurationSource.DataAnnotation);
    }

    private static InstantiationBinding? Replace(InstantiationBinding binding, IReadOnlyCollection<IConventionProperty> encrypted)
    {
        var changed = false;
        var parameters = binding.ParameterBindings.Select(parameter =>
        {
            if (parameter.ConsumedProperties.Any(p => p is IConventionProperty property && encrypted.Contains(property)))
            {
                changed = true;
                return new DecryptedLaterParameterBinding(parameter.ParameterType);
            }

            return parameter;
        }).ToList();
        return changed ? binding.With(parameters) : null;
    }

    /// <summary>A constructor argument for an encrypted property: the type's default; the property is assigned once decrypted.</summary>
    private sealed class DecryptedLaterParameterBinding(Type parameterType) : ParameterBinding(parameterType)
    {
        public override Expression BindToParameter(ParameterBindingInfo bindingInfo) => Expression.Default(ParameterType);

        public override ParameterBinding With(IPropertyBase[] consumedProperties) => new DecryptedLaterParameterBinding(ParameterType);
    }
}
