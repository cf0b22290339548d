using System.Globalization;
using EfEnvelope;
using HealthRecords.Setup;
using Microsoft.EntityFrameworkCore;

namespace HealthRecords.Api;

/// <summary>A record that cannot be decrypted, with the primary key that EfEnvelope's own exception does not carry.</summary>
public sealed class RecordUnreadableException(string entity, int key, Exception cause)
    : Exception($"{entity} {key} cannot be decrypted.", cause)
{
    public string Entity { get; } = entity;

    public int Key { get; } = key;
}

/// <summary>Records read by primary key, and the keys of those that could not be decrypted.</summary>
public sealed record RecordsRead<T>(IReadOnlyDictionary<int, T> Read, IReadOnlyList<int> Unreadable);

/// <summary>
/// Reads records so that one that cannot be decrypted costs only itself: the list around it is still served, and the
/// details (entity, property, master key, primary key) go to the server log, never to the client.
/// </summary>
/// <remarks>
/// EfEnvelope decrypts while EF materializes a row, so a bad row fails the whole query it is in. The pages are read
/// in one query; only when that fails is the page read again row by row, to find which record is at fault. The cost
/// of a bad record is therefore one query per row of its page (bounded by the page size), and nothing otherwise.
/// </remarks>
public sealed partial class RecordReader(SampleEnvironment environment, ILogger<RecordReader> logger)
{
    /// <summary>What a client is told about a record that cannot be decrypted.</summary>
    public const string CannotBeDecrypted = "cannot be decrypted";

    /// <summary>Reads the records with the given keys; each entity type here has its primary key in <c>Id</c>.</summary>
    public async Task<RecordsRead<T>> ReadAsync<T>(IQueryable<T> source, Func<T, int> keyOf, IReadOnlyCollection<int> keys, string correlationId, CancellationToken cancellationToken)
        where T : class
    {
        var read = new Dictionary<int, T>();
        var unreadable = new List<int>();
        if (keys.Count == 0)
        {
            return new RecordsRead<T>(read, unreadable);
        }

        int[] wanted = [.. keys];
        try
        {
            foreach (var record in await source.Where(r => wanted.Contains(EF.Property<int>(r, "Id"))).ToListAsync(cancellationToken))
            {
                read[keyOf(record)] = record;
            }

            return new RecordsRead<T>(read, unreadable);
        }
        catch (Exception error) when (IsUnreadableRecord(error))
        {
            // Some record of the page is at fault: read them one at a time to find which.
            read.Clear();
        }

        foreach (var key in wanted)
        {
            try
            {
                if (await source.Where(r => EF.Property<int>(r, "Id") == key).SingleOrDefaultAsync(cancellationToken) is { } record)
                {
                    read[key] = record;
                }
            }
            catch (Exception error) when (IsUnreadableRecord(error))
            {
                unreadable.Add(key);
                LogUnreadable(typeof(T).Name, key, error, correlationId);
            }
        }

        return new RecordsRead<T>(read, unreadable);
    }

    /// <summary>Reads one record; one that cannot be decrypted is thrown as <see cref="RecordUnreadableException"/>.</summary>
    public async Task<T?> ReadOneAsync<T>(IQueryable<T> source, int key, CancellationToken cancellationToken)
        where T : class
    {
        try
        {
            return await source.Where(r => EF.Property<int>(r, "Id") == key).SingleOrDefaultAsync(cancellationToken);
        }
        catch (Exception error) when (IsUnreadableRecord(error))
        {
            throw new RecordUnreadableException(typeof(T).Name, key, error);
        }
    }

    /// <summary>
    /// Whether the error is about the stored record itself, not about the key service: the data failed
    /// authentication, or it names a master key this configuration never had (written elsewhere, or its key id was
    /// rewritten). Retrying cannot help with either, unlike a provider that is unreachable or whose access was revoked.
    /// </summary>
    public bool IsUnreadableRecord(Exception error) => Cause(error) is not null;

    /// <summary>Writes the details of a record that cannot be decrypted to the server log, escaped.</summary>
    public void LogUnreadable(string entity, int? key, Exception error, string correlationId)
    {
        switch (Cause(error))
        {
            case EnvelopeDecryptionException decryption:
                LogDecryptionFailed(
                    logger, LogText.Escape(decryption.Entity ?? entity), key?.ToString(CultureInfo.InvariantCulture) ?? "(unknown)",
                    LogText.Escape(decryption.Property), LogText.Escape(decryption.KeyId), LogText.Escape(decryption.Reason), LogText.Escape(correlationId));
                break;
            case MasterKeyException masterKey:
                LogUnknownKey(
                    logger, LogText.Escape(masterKey.Entity ?? entity), key?.ToString(CultureInfo.InvariantCulture) ?? "(unknown)",
                    LogText.Escape(masterKey.KeyId), LogText.Escape(masterKey.Provider), LogText.Escape(correlationId));
                break;
        }
    }

    private Exception? Cause(Exception error)
    {
        for (var current = error; current is not null; current = current.InnerException)
        {
            switch (current)
            {
                case EnvelopeDecryptionException:
                    return current;
                case MasterKeyAccessRevokedException:
                    return null;
                case MasterKeyException { KeyId: { } keyId } when !environment.MasterKey.AcceptsKey(keyId):
                    return current;
            }
        }

        return null;
    }

    [LoggerMessage(EventId = 1001, Level = LogLevel.Error,
        Message = "{Entity} {PrimaryKey} cannot be decrypted: property {Property}, master key {KeyId}: {Reason} (correlation id {CorrelationId})")]
    private static partial void LogDecryptionFailed(ILogger logger, string entity, string primaryKey, string property, string keyId, string reason, string correlationId);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Error,
        Message = "{Entity} {PrimaryKey} cannot be decrypted: it names master key {KeyId}, which provider {Provider} is not configured to use (correlation id {CorrelationId})")]
    private static partial void LogUnknownKey(ILogger logger, string entity, string primaryKey, string keyId, string provider, string correlationId);
}
