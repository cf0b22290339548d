using System.Linq.Expressions;
using System.Reflection;
using EfEnvelope.ChangeTracking;
using EfEnvelope.Infrastructure;
using EfEnvelope.Metadata;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Query;

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
    public InstantiationBinding ModifyBinding(InstantiationBindingInterceptionData interceptionData, InstantiationBinding binding)
    {
        if (interceptionData.TypeBase is not IEntityType entityType || binding is DecryptingBinding or KeylessTypeBinding
            || IsEmptyInstanceBinding(entityType, binding))
        {
            return binding;
        }

        if (runtime.Find(entityType) is { } encrypted)
        {
            RefuseProxies(entityType);
            return new DecryptingBinding(binding, new RecordDecryptor(runtime, encrypted));
        }

        // A type without encrypted properties in a hierarchy that has some: its rows never get a key column.
        return entityType.FindProperty(EncryptionAnnotations.KeyPropertyName) is { } key && key.IsShadowProperty() && !entityType.IsOwned()
            ? new KeylessTypeBinding(binding, key)
            : binding;
    }

    // EF creates some instances with no row behind them, through the entity type's service-only binding: the join
    // entity of a many-to-many relationship that it adds when the application adds to a skip navigation. There is
    // nothing to decrypt (every value is the CLR default, as in plain EF, and the save encrypts the new record), and
    // the stored-column arguments this binding adds would read a row that does not exist (NullReferenceException).
    // A model built at run time holds that binding as its own instance, distinct from the constructor binding queries
    // use (RuntimeModelConvention copies each). A compiled model (dbcontext optimize) computes both lazily and, for a
    // type whose constructor takes no property, shares one instance: there the two cannot be told apart, and adding
    // through the skip navigation still fails (add the join entity itself instead).
    private static bool IsEmptyInstanceBinding(IEntityType entityType, InstantiationBinding binding) =>
        ReferenceEquals(binding, entityType.ServiceOnlyConstructorBinding) && !ReferenceEquals(binding, entityType.ConstructorBinding);

    // EF's proxies (Microsoft.EntityFrameworkCore.Proxies) replace the binding with a factory that passes the binding's
    // arguments to the proxy's constructor: with the key and ciphertext arguments this binding adds, no constructor
    // matches, and every query of the type failed with Castle's "Can not instantiate proxy". Refused when the model is
    // built instead, with the alternatives. The annotations are the ones the proxies package sets on the model.
    private static void RefuseProxies(IEntityType entityType)
    {
        if (entityType.Model["Proxies:LazyLoading"] is true || entityType.Model["Proxies:ChangeTracking"] is true)
        {
            throw new InvalidOperationException(
                $"'{entityType.DisplayName()}' has encrypted properties, and this context uses EF's proxies (UseLazyLoadingProxies or UseChangeTrackingProxies), which EfEnvelope does not support. "
                + "Remove the proxies: for lazy loading, inject ILazyLoader into the entity (lazy loading without proxies), or load related data with Include or explicit loading.");
        }
    }
}

/// <summary>
/// The binding of an entity type with no encrypted properties in a hierarchy whose other types have some: it refuses a
/// row that holds a wrapped data key, which only a record of another type of the hierarchy was written with.
/// </summary>
/// <remarks>
/// The record seal binds a record to its concrete type, but a type without encrypted properties has no seal to check:
/// without this, a row written as <c>CardPayment</c> whose discriminator is changed to <c>CashPayment</c> (TPH), or whose
/// derived row is deleted or re-inserted in another derived table (TPT), would read as that other type unchecked.
/// </remarks>
internal sealed class KeylessTypeBinding : InstantiationBinding
{
    private static readonly MethodInfo RefuseMethod = typeof(KeylessTypeBinding).GetMethod(nameof(RefuseKey), BindingFlags.NonPublic | BindingFlags.Static)!;

    private readonly InstantiationBinding _inner;
    private readonly IProperty _key;

    public KeylessTypeBinding(InstantiationBinding inner, IProperty key)
        : base([.. inner.ParameterBindings, new ReadingPropertyBinding(key)])
    {
        _inner = inner;
        _key = key;
    }

    public override Type RuntimeType => _inner.RuntimeType;

    public override Expression CreateConstructorExpression(ParameterBindingInfo bindingInfo)
    {
        var instance = Expression.Variable(RuntimeType, "instance");
        return Expression.Block(
            [instance],
            Expression.Assign(instance, _inner.CreateConstructorExpression(bindingInfo)),
            Expression.Call(RefuseMethod, Expression.Convert(new ReadingPropertyBinding(_key).BindToParameter(bindingInfo), typeof(byte[])), Expression.Constant(RuntimeType.FullName ?? RuntimeType.Name)),
            instance);
    }

    public override InstantiationBinding With(IReadOnlyList<ParameterBinding> parameterBindings) =>
        new KeylessTypeBinding(_inner.With([.. parameterBindings.Take(_inner.ParameterBindings.Count)]), _key);

    private static void RefuseKey(byte[]? key, string type)
    {
        if (key is not null)
        {
            throw new EnvelopeDecryptionException(
                $"The row holds a wrapped data key, but it is read as '{type}', a type of its hierarchy without encrypted properties: the row was written as another type (its discriminator was changed, or its row in a derived type's table was removed or moved), and it is refused rather than read as this type.",
                type);
        }
    }
}

/// <summary>The entity's own binding, followed by decryption of the record read with it.</summary>
internal sealed class DecryptingBinding : InstantiationBinding
{
    private static readonly MethodInfo DecryptMethod = typeof(RecordDecryptor).GetMethod(nameof(RecordDecryptor.Decrypt))!;
    private static readonly MethodInfo DecryptItemMethod = typeof(RecordDecryptor).GetMethod(nameof(RecordDecryptor.DecryptItem))!;

    private readonly InstantiationBinding _inner;
    private readonly RecordDecryptor _decryptor;
    private readonly ObjectArrayParameterBinding _stored;
    private readonly ReadingPropertyBinding[] _itemPosition;

    public DecryptingBinding(InstantiationBinding inner, RecordDecryptor decryptor)
        : base([.. inner.ParameterBindings, .. StoredColumns(decryptor.Encrypted), .. ItemPosition(decryptor.Encrypted)])
    {
        _inner = inner;
        _decryptor = decryptor;
        _stored = new ObjectArrayParameterBinding(StoredColumns(decryptor.Encrypted));
        _itemPosition = ItemPosition(decryptor.Encrypted);
    }

    public override Type RuntimeType => _inner.RuntimeType;

    // A block ending in the instance variable: EF's JSON materializer accepts an instance creation only in that shape
    // (or a bare constructor call), and it is all that remains of a JSON-owned type whose properties are all encrypted.
    public override Expression CreateConstructorExpression(ParameterBindingInfo bindingInfo)
    {
        var instance = Expression.Variable(RuntimeType, "instance");
        Expression[] arguments =
        [
            Expression.Convert(_inner.CreateConstructorExpression(bindingInfo), typeof(object)),
            _stored.BindToParameter(bindingInfo),
            Expression.Property(bindingInfo.MaterializationContextExpression, nameof(MaterializationContext.Context)),
            .. _itemPosition.Length == 0 ? [] : new[] { Expression.NewArrayInit(typeof(int), _itemPosition.Select(p => Expression.Convert(p.BindToParameter(bindingInfo), typeof(int)))) },
        ];
        var decrypted = Expression.Convert(
            Expression.Call(Expression.Constant(_decryptor), _itemPosition.Length == 0 ? DecryptMethod : DecryptItemMethod, arguments),
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

    // An item of a JSON-mapped owned collection also reads its position in the document: the ordinals EF gives it
    // and each collection item it is nested in.
    private static ReadingPropertyBinding[] ItemPosition(EncryptedEntity encrypted) =>
        [.. JsonCollectionItems.PositionOf(encrypted.EntityType).Select(p => new ReadingPropertyBinding(p))];
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
    // Only for an item type of a JSON-mapped collection, per thread: EF materializes the items of one document one
    // after another on the thread that reads its row.
    private ThreadLocal<JsonCollectionItems>? _items;

    public EncryptedEntity Encrypted => encrypted;

    /// <summary>Called by EF's compiled materializer with the new instance, the stored key and ciphertexts, and the query's context.</summary>
    /// <remarks>In a query read ahead (<see cref="ReadAhead"/>), the record is decrypted with its batch, before EF's result returns it.</remarks>
    public object Decrypt(object entity, object?[] stored, DbContext context)
    {
        if (DeferredDecryptions.Collecting.Value is { } batch && batch.Collects(context))
        {
            batch.Defer(this, entity, stored);
        }
        else
        {
            DecryptNow(entity, stored);
        }

        return entity;
    }

    /// <summary>
    /// Called instead of <see cref="Decrypt"/> for an item of a JSON-mapped owned collection, with its position in the
    /// document: refuses an item that repeats an earlier item of the same document.
    /// </summary>
    public object DecryptItem(object entity, object?[] stored, DbContext context, int[] position)
    {
        // Compared as the blobs they encode: a key column stored as its text encoded once more would otherwise differ
        // from the item it repeats here, and decode to the same key in decryption.
        Storage.JsonBlobText.DecodeInPlace(stored, 1 + encrypted.Properties.Length);
        var items = LazyInitializer.EnsureInitialized(ref _items, () => new ThreadLocal<JsonCollectionItems>(() => new JsonCollectionItems()));
        items.Value!.Check(encrypted.Name, context.ContextId, position, (byte[]?)stored[0]);
        return Decrypt(entity, stored, context);
    }

    /// <summary>Decrypts the record into the instance.</summary>
    public void DecryptNow(object entity, object?[] stored) => runtime.Decrypt(encrypted, entity, stored, snapshot: false);
}
