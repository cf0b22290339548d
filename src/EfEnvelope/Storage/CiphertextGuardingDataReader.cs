using System.Data.Common;

namespace EfEnvelope.Storage;

/// <summary>A reader that refuses to read an encrypted column's ciphertext as anything but bytes (<see cref="CiphertextReadGuard"/>).</summary>
internal sealed class CiphertextGuardingDataReader(DbDataReader inner, EncryptedColumns encrypted, ColumnOrigins origins) : DelegatingDataReader(inner)
{
    private static readonly Origin NotEncrypted = new("", "", "");

    // Per ordinal of the current result set, once looked up: the encrypted property its origin column holds, or
    // NotEncrypted.
    private Origin?[]? _origins;

    public override string GetString(int ordinal) => Read(ordinal, static (r, o) => r.GetString(o));

    public override char GetChar(int ordinal) => Read(ordinal, static (r, o) => r.GetChar(o));

    public override long GetChars(int ordinal, long dataOffset, char[]? buffer, int bufferOffset, int length)
    {
        Check(ordinal, typeof(char[]), error: null);
        try
        {
            return Inner.GetChars(ordinal, dataOffset, buffer, bufferOffset, length);
        }
        catch (InvalidCastException error) when (!origins.DecodesBinary)
        {
            Check(ordinal, typeof(char[]), error);
            throw;
        }
    }

    public override TextReader GetTextReader(int ordinal) => Read(ordinal, static (r, o) => r.GetTextReader(o));

    public override bool GetBoolean(int ordinal) => Read(ordinal, static (r, o) => r.GetBoolean(o));

    public override byte GetByte(int ordinal) => Read(ordinal, static (r, o) => r.GetByte(o));

    public override DateTime GetDateTime(int ordinal) => Read(ordinal, static (r, o) => r.GetDateTime(o));

    public override decimal GetDecimal(int ordinal) => Read(ordinal, static (r, o) => r.GetDecimal(o));

    public override double GetDouble(int ordinal) => Read(ordinal, static (r, o) => r.GetDouble(o));

    public override float GetFloat(int ordinal) => Read(ordinal, static (r, o) => r.GetFloat(o));

    public override Guid GetGuid(int ordinal) => Read(ordinal, static (r, o) => r.GetGuid(o));

    public override short GetInt16(int ordinal) => Read(ordinal, static (r, o) => r.GetInt16(o));

    public override int GetInt32(int ordinal) => Read(ordinal, static (r, o) => r.GetInt32(o));

    public override long GetInt64(int ordinal) => Read(ordinal, static (r, o) => r.GetInt64(o));

    public override T GetFieldValue<T>(int ordinal) =>
        IsBinary<T>() ? Inner.GetFieldValue<T>(ordinal) : Read(ordinal, static (r, o) => r.GetFieldValue<T>(o));

    public override Task<T> GetFieldValueAsync<T>(int ordinal, CancellationToken cancellationToken) =>
        IsBinary<T>() ? Inner.GetFieldValueAsync<T>(ordinal, cancellationToken) : ReadAsync<T>(ordinal, cancellationToken);

    public override bool NextResult()
    {
        _origins = null;
        return Inner.NextResult();
    }

    public override Task<bool> NextResultAsync(CancellationToken cancellationToken)
    {
        _origins = null;
        return Inner.NextResultAsync(cancellationToken);
    }

    // Reading bytes (or a Stream, or the value as object) gives the ciphertext as what it is.
    private static bool IsBinary<T>() => typeof(T) == typeof(byte[]) || typeof(T) == typeof(object) || typeof(T) == typeof(Stream);

    private T Read<T>(int ordinal, Func<DbDataReader, int, T> read)
    {
        Check(ordinal, typeof(T), error: null);
        try
        {
            return read(Inner, ordinal);
        }
        catch (InvalidCastException error) when (!origins.DecodesBinary)
        {
            Check(ordinal, typeof(T), error);
            throw;
        }
    }

    private async Task<T> ReadAsync<T>(int ordinal, CancellationToken cancellationToken)
    {
        Check(ordinal, typeof(T), error: null);
        try
        {
            return await Inner.GetFieldValueAsync<T>(ordinal, cancellationToken).ConfigureAwait(false);
        }
        catch (InvalidCastException error) when (!origins.DecodesBinary)
        {
            Check(ordinal, typeof(T), error);
            throw;
        }
    }

    /// <summary>
    /// Throws when column <paramref name="ordinal"/> holds an encrypted property: before the read where the provider
    /// would decode the ciphertext (<paramref name="error"/> null), or after the provider's refusal of the cast.
    /// </summary>
    private void Check(int ordinal, Type readAs, InvalidCastException? error)
    {
        if (origins.DecodesBinary != (error is null))
        {
            return;
        }

        var known = _origins ??= new Origin?[Inner.FieldCount];
        var origin = known[ordinal] ??= Find(ordinal);
        if (!ReferenceEquals(origin, NotEncrypted))
        {
            throw new InvalidOperationException(
                $"The query reads column '{origin.Column}' of table '{origin.Table}' as {readAs.Name}, but the column holds the ciphertext of encrypted property '{origin.Property}': "
                + "raw SQL and types mapped without encryption see only ciphertext, never the value. "
                + "Query the entity instead (LINQ over its DbSet, or its DbSet's FromSql returning the table's columns), or read the column as byte[] to get the ciphertext itself.",
                error);
        }
    }

    private Origin Find(int ordinal)
    {
        return origins.Find(Inner, ordinal) is { } found && encrypted.Find(found.Schema, found.DefaultSchema, found.Table, found.Column, origins.Names) is { } property
            ? new Origin(property, found.Table, found.Column)
            : NotEncrypted;
    }

    private sealed record Origin(string Property, string Table, string Column);
}
