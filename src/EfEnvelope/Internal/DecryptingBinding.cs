using System.Linq.Expressions;
using System.Reflection;
using EfEnvelope.Metadata;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Internal;

/// <summary>Makes EF decrypt while it constructs an entity with encrypted properties.</summary>
/// <remarks>
/// <para>
/// Decrypting in an <see cref="IMaterializationInterceptor"/> would be simpler, but when any such interceptor is
/// registered EF Core builds, for every row of every entity type, a dictionary of freshly created delegates so the
/// interceptor can read values: measured at 3.3× the cost of a plain read and ~1.5 KB per row before any decryption
/// (benchmarks/README.md). Wrapping the instantiation binding instead lets EF read the key and ciphertext columns
/// as ordinary constructor arguments and hand them to <see cref="RecordDecryptor.Decrypt"/> with no per-row machinery.
/// </para>
/// <para>
/// This covers tracking, no-tracking, identity-resolution, owned, JSON-owned and <c>FromSql</c> entity queries alike.
/// Tracked records get their change-tracking snapshot when EF starts tracking them (<see cref="EncryptionEntryNotifier"/>).
/// </para>
/// </remarks>
internal sealed class DecryptingBindingInterceptor(EnvelopeRuntime runtime) : IInstantiationBindingInterceptor
{
    public InstantiationBinding ModifyBinding(InstantiationBindingInterceptionData interceptionData, InstantiationBinding binding) =>
        interceptionData.TypeBase is IEntityType entityType && runtime.Find(entityType) is { } encrypted && binding is not DecryptingBinding
            ? new DecryptingBinding(binding, new RecordDecryptor(runtime, encrypted))
            : binding;
}

/// <summary>The entity's own binding, followed by decryption of the record read with it.</summary>
internal sealed class DecryptingBinding : InstantiationBinding
{
    private static readonly MethodInfo DecryptMethod = typeof(RecordDecryptor).GetMethod(nameof(RecordDecryptor.Decrypt))!;

    private readonly InstantiationBinding _inner;
    private readonly RecordDecryptor _decryptor;
    private readonly ObjectArrayParameterBinding _stored;

    public DecryptingBinding(InstantiationBinding inner, RecordDecryptor decryptor)
        : base([.. inner.ParameterBindings, .. StoredColumns(decryptor.Encrypted)])
    {
        _inner = inner;
        _decryptor = decryptor;
        _stored = new ObjectArrayParameterBinding(StoredColumns(decryptor.Encrypted));
    }

    public override Type RuntimeType => _inner.RuntimeType;

    // A block ending in the instance variable: EF's JSON materializer accepts an instance creation only in that shape
    // (or a bare constructor call), and it is all that remains of a JSON-owned type whose properties are all encrypted.
    public override Expression CreateConstructorExpression(ParameterBindingInfo bindingInfo)
    {
        var instance = Expression.Variable(RuntimeType, "instance");
        var decrypted = Expression.Convert(
            Expression.Call(
                Expression.Constant(_decryptor),
                DecryptMethod,
                Expression.Convert(_inner.CreateConstructorExpression(bindingInfo), typeof(object)),
                _stored.BindToParameter(bindingInfo)),
            RuntimeType);
        return Expression.Block([instance], Expression.Assign(instance, decrypted), instance);
    }

    public override InstantiationBinding With(IReadOnlyList<ParameterBinding> parameterBindings) =>
        new DecryptingBinding(_inner.With([.. parameterBindings.Take(_inner.ParameterBindings.Count)]), _decryptor);

    // The wrapped-key column first, then the ciphertext columns in EncryptedEntity.Properties order, then any legacy
    // plaintext columns (while a column is migrated to encryption), then the columns the seal binds:
    // EnvelopeRuntime.StoredProperties. The bound ones are ordinary properties EF must still assign itself.
    private static List<ParameterBinding> StoredColumns(EncryptedEntity encrypted) =>
        [.. EnvelopeRuntime.EncryptionColumns(encrypted).Select(p => new PropertyParameterBinding(p)),
         .. EnvelopeRuntime.BoundProperties(encrypted).Select(p => new ReadingPropertyBinding(p))];
}

/// <summary>Reads a property's stored value for the decryptor without taking it over.</summary>
/// <remarks>
/// EF does not assign a property that a binding consumes (it expects the constructor to). The record seal needs the
/// key and bound columns, which EF must still set on the instance as usual, so this binding consumes nothing.
/// </remarks>
internal sealed class ReadingPropertyBinding(IProperty property) : ParameterBinding(property.ClrType)
{
    public override Expression BindToParameter(ParameterBindingInfo bindingInfo) =>
        new PropertyParameterBinding(property).BindToParameter(bindingInfo);

    public override ParameterBinding With(IPropertyBase[] consumedProperties) => this;
}

/// <summary>Decrypts one entity type's records as EF constructs them.</summary>
internal sealed class RecordDecryptor(EnvelopeRuntime runtime, EncryptedEntity encrypted)
{
    public EncryptedEntity Encrypted => encrypted;

    /// <summary>Called by EF's compiled materializer with the new instance and the stored key and ciphertexts.</summary>
    public object Decrypt(object entity, object?[] stored)
    {
        runtime.Decrypt(encrypted, entity, stored, snapshot: false);
        return entity;
    }
}
