namespace EfEnvelope;

/// <summary>Stores this property encrypted: the database only ever sees AES-256-GCM ciphertext under the record's own data key.</summary>
/// <remarks>
/// <para>
/// Supported types: <see cref="string"/>, <see cref="byte"/>[], <see cref="bool"/>, <see cref="byte"/>, <see cref="short"/>,
/// <see cref="int"/>, <see cref="long"/>, <see cref="float"/>, <see cref="double"/>, <see cref="decimal"/>, <see cref="Guid"/>,
/// <see cref="DateTime"/>, <see cref="DateTimeOffset"/>, <see cref="DateOnly"/>, <see cref="TimeOnly"/>, <see cref="TimeSpan"/>,
/// enums, and their nullable forms. A null value is stored as NULL, so whether a value is present is visible in the
/// database; the ciphertext length reveals the plaintext length.
/// </para>
/// <para>
/// Encrypted properties cannot be keys, foreign keys or indexed, cannot live in complex types, and cannot be
/// compared, ordered or searched in a query (the database holds random-looking bytes). Use the fluent
/// <c>IsEncrypted()</c> to configure the same in <c>OnModelCreating</c>.
/// </para>
/// </remarks>
[AttributeUsage(AttributeTargets.Property, AllowMultiple = false, Inherited = true)]
public sealed class EncryptedAttribute : Attribute;
