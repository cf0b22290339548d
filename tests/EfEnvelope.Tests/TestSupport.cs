using EfEnvelope.Specification.Tests;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests;

/// <summary>A deterministic "random" source for known-answer tests: byte i of the stream is (seed + i) mod 256.</summary>
internal sealed class CountingRandomSource(byte seed) : IRandomSource
{
    private byte _next = seed;

    public void Fill(Span<byte> buffer)
    {
        for (var i = 0; i < buffer.Length; i++)
        {
            buffer[i] = _next++;
        }
    }
}

/// <summary>An in-memory SQLite database kept open for the life of the test, with contexts over one provider.</summary>
internal sealed class InMemoryClinic : IDisposable
{
    private readonly SqliteConnection _connection = new("Data Source=:memory:");

    public InMemoryClinic(IMasterKeyProvider? provider = null, Action<EnvelopeEncryptionOptionsBuilder>? configure = null)
    {
        Provider = provider ?? new InsecureInMemoryMasterKeyProvider("primary");
        Configure = configure ?? (e => e.UseProvider(Provider));
        _connection.Open();
        using var db = CreateContext();
        db.Database.EnsureCreated();
    }

    public IMasterKeyProvider Provider { get; }

    public Action<EnvelopeEncryptionOptionsBuilder> Configure { get; }

    public SqliteConnection Connection => _connection;

    public ClinicContext CreateContext(Action<EnvelopeEncryptionOptionsBuilder>? configure = null) =>
        new(new DbContextOptionsBuilder<ClinicContext>().UseSqlite(_connection).ManyConfigurationsPerProcess().UseEnvelopeEncryption(configure ?? Configure).Options);

    public byte[] ReadRaw(string sql)
    {
        using var command = _connection.CreateCommand();
        command.CommandText = sql;
        return (byte[])command.ExecuteScalar()!;
    }

    public void Dispose() => _connection.Dispose();
}

/// <summary>
/// An in-memory SQLite database kept open for one test, for a scenario run once with plain EF and once with encryption
/// (with two context types: EF builds one model per context type).
/// </summary>
public abstract class PlainAndEncryptedSqlite : IDisposable
{
    protected PlainAndEncryptedSqlite() => Connection.Open();

    /// <summary>The theory data of a scenario run without and with encryption.</summary>
    public static TheoryData<bool> Encryption => [false, true];

    protected SqliteConnection Connection { get; } = new("Data Source=:memory:");

    protected InsecureInMemoryMasterKeyProvider Provider { get; } = new("primary");

    /// <summary>Options on this database; with encryption (by default with <see cref="Provider"/>) when <paramref name="encrypted"/>.</summary>
    protected DbContextOptions Options(bool encrypted, Action<EnvelopeEncryptionOptionsBuilder>? configure = null)
    {
        var options = new DbContextOptionsBuilder().UseSqlite(Connection).ManyConfigurationsPerProcess();
        if (encrypted)
        {
            options.UseEnvelopeEncryption(configure ?? (e => e.UseProvider(Provider)));
        }

        return options.Options;
    }

    public void Dispose()
    {
        Connection.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>A real provider seen through a wrapper that changes one aspect of it (its name, its keys, its unwrapping).</summary>
internal class DelegatingProvider(IMasterKeyProvider inner) : IMasterKeyProvider
{
    public virtual string Name => inner.Name;

    public virtual string PrimaryKeyId => inner.PrimaryKeyId;

    public virtual bool IsKeyConfigured(string keyId) => inner.IsKeyConfigured(keyId);

    public virtual Task<GeneratedDataKey> GenerateDataKeyAsync(string keyId, KeyContext context, CancellationToken cancellationToken) =>
        inner.GenerateDataKeyAsync(keyId, context, cancellationToken);

    public virtual Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, KeyContext context, CancellationToken cancellationToken) =>
        inner.DecryptDataKeyAsync(keyId, wrappedKey, context, cancellationToken);
}
