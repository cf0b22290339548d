using System.Buffers.Binary;
using System.Data.Common;
using System.Globalization;
using System.Text;
using HealthRecords.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Storage;

namespace HealthRecords.Api;

/// <summary>One column of a row exactly as the database returned it to a plain SQL query.</summary>
/// <param name="Name">The column name.</param>
/// <param name="StoreType">The type the database reports.</param>
/// <param name="Kind"><c>plain</c>, <c>ciphertext</c>, <c>blind-index</c> (a keyed HMAC of a searchable property) or <c>wrapped-key</c>.</param>
/// <param name="Value">Text as stored, or hex for binary values; null for NULL.</param>
/// <param name="Length">Bytes stored, for binary values.</param>
public sealed record StoredColumn(string Name, string StoreType, string Kind, string? Value, int? Length);

/// <summary>What a record's wrapped-key column says about itself (its layout is documented in docs/FORMAT.md).</summary>
public sealed record WrappedKeyDescription(int Version, string Mode, string RecordId, string Provider, string MasterKeyId, string Entity, int ProviderWrappedLength);

/// <summary>One row as stored.</summary>
public sealed record StoredRow(IReadOnlyList<StoredColumn> Columns, WrappedKeyDescription? WrappedKey);

/// <summary>A patient's row and its visits' rows, with the SQL that read them.</summary>
public sealed record StoredRecord(IReadOnlyList<string> Sql, StoredRow Patient, IReadOnlyList<StoredRow> Visits);

/// <summary>
/// Reads rows with a plain SQL query (ADO.NET on the context's own connection, not an EF entity query), so what comes
/// back is what anyone with database access sees: no interceptor runs, nothing is decrypted.
/// </summary>
public static class StoredRows
{
    /// <summary>The wrapped data key's shadow column that EfEnvelope adds to every table with encrypted properties.</summary>
    public const string KeyColumn = "EfEnvelopeKey";

    /// <summary>Suffix of the shadow property that holds a property's ciphertext (its column keeps the property's name).</summary>
    private const string CiphertextSuffix = "_Ciphertext";

    /// <summary>Suffix of the shadow property that holds a searchable property's blind index (its column is <c>{column}_Index</c>).</summary>
    private const string IndexSuffix = "_Index";

    public static async Task<StoredRecord?> ReadAsync(ClinicDbContext db, int patientId, CancellationToken cancellationToken)
    {
        await db.Database.OpenConnectionAsync(cancellationToken);
        try
        {
            var (patientSql, patients) = await ReadRowsAsync(db, typeof(Patient), nameof(Patient.Id), patientId, cancellationToken);
            if (patients.Count == 0)
            {
                return null;
            }

            var (visitSql, visits) = await ReadRowsAsync(db, typeof(Visit), nameof(Visit.PatientId), patientId, cancellationToken);
            return new StoredRecord([patientSql, visitSql], patients[0], visits);
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    /// <summary>Describes a wrapped-key blob from its documented layout; null when it does not parse.</summary>
    public static WrappedKeyDescription? Describe(byte[] blob)
    {
        // version (1), mode (1), record id (16), then length-prefixed fields: provider name (1-byte length), master key
        // id, entity name and provider-wrapped key (2-byte big-endian lengths); mode 1 then carries the data key
        // wrapped under that KEK. Every length is checked against the bytes present.
        const int RecordIdSize = 16;
        var span = blob.AsSpan();
        if (span.Length < 2 + RecordIdSize + 1)
        {
            return null;
        }

        var position = 2 + RecordIdSize;
        int providerLength = span[position++];
        if (!TryTake(span, ref position, providerLength, out var provider)
            || !TryTakePrefixed(span, ref position, out var keyId)
            || !TryTakePrefixed(span, ref position, out var entity)
            || span.Length < position + 2)
        {
            return null;
        }

        int wrappedLength = BinaryPrimitives.ReadUInt16BigEndian(span[position..]);
        var mode = span[1] switch
        {
            1 => "data key wrapped under a cached key-encryption key (the KEK itself wrapped by the provider)",
            2 => "data key wrapped by the provider directly",
            _ => $"unknown ({span[1]})",
        };
        return new WrappedKeyDescription(
            span[0], mode, Convert.ToHexString(span.Slice(2, RecordIdSize)),
            Encoding.ASCII.GetString(provider), Encoding.UTF8.GetString(keyId), Encoding.UTF8.GetString(entity), wrappedLength);
    }

    private static bool TryTakePrefixed(ReadOnlySpan<byte> span, ref int position, out ReadOnlySpan<byte> field)
    {
        field = default;
        if (span.Length < position + 2)
        {
            return false;
        }

        int length = BinaryPrimitives.ReadUInt16BigEndian(span[position..]);
        position += 2;
        return TryTake(span, ref position, length, out field);
    }

    private static bool TryTake(ReadOnlySpan<byte> span, ref int position, int length, out ReadOnlySpan<byte> field)
    {
        field = default;
        if (span.Length < position + length)
        {
            return false;
        }

        field = span.Slice(position, length);
        position += length;
        return true;
    }

    // A column that is neither the key, nor a ciphertext, nor the index of an encrypted property is stored as given.
    private static string Kind(IEntityType entityType, IProperty property)
    {
        if (property.Name == KeyColumn)
        {
            return "wrapped-key";
        }

        if (!property.IsShadowProperty())
        {
            return "plain";
        }

        if (property.Name.EndsWith(CiphertextSuffix, StringComparison.Ordinal))
        {
            return "ciphertext";
        }

        return property.Name.EndsWith(IndexSuffix, StringComparison.Ordinal)
            && entityType.FindProperty(property.Name[..^IndexSuffix.Length] + CiphertextSuffix) is not null
            ? "blind-index"
            : "plain";
    }

    private static async Task<(string Sql, List<StoredRow> Rows)> ReadRowsAsync(
        ClinicDbContext db, Type clrType, string keyProperty, int key, CancellationToken cancellationToken)
    {
        var entityType = db.Model.FindEntityType(clrType)!;
        var table = StoreObjectIdentifier.Table(entityType.GetTableName()!, entityType.GetSchema());
        var sqlHelper = db.GetService<ISqlGenerationHelper>();
        var keyColumn = entityType.FindProperty(keyProperty)!.GetColumnName(table)!;
        var primaryKey = entityType.FindPrimaryKey()!.Properties[0].GetColumnName(table)!;
        var sql = $"SELECT * FROM {sqlHelper.DelimitIdentifier(table.Name, table.Schema)} "
            + $"WHERE {sqlHelper.DelimitIdentifier(keyColumn)} = @key ORDER BY {sqlHelper.DelimitIdentifier(primaryKey)}";

        var kinds = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var property in entityType.GetProperties())
        {
            if (property.GetColumnName(table) is { } column)
            {
                kinds[column] = Kind(entityType, property);
            }
        }

        // The context's own connection, opened by the caller: the same database and transaction scope EF uses.
        DbConnection connection = db.Database.GetDbConnection();
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        var parameter = command.CreateParameter();
        parameter.ParameterName = "@key";
        parameter.Value = key;
        command.Parameters.Add(parameter);

        var rows = new List<StoredRow>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var columns = new List<StoredColumn>(reader.FieldCount);
            WrappedKeyDescription? wrapped = null;
            for (var i = 0; i < reader.FieldCount; i++)
            {
                var name = reader.GetName(i);
                var kind = kinds.GetValueOrDefault(name, "plain");
                var value = await reader.IsDBNullAsync(i, cancellationToken) ? null : reader.GetValue(i);
                if (value is byte[] bytes)
                {
                    columns.Add(new StoredColumn(name, reader.GetDataTypeName(i), kind, Convert.ToHexString(bytes), bytes.Length));
                    if (kind == "wrapped-key")
                    {
                        wrapped = Describe(bytes);
                    }
                }
                else
                {
                    columns.Add(new StoredColumn(name, reader.GetDataTypeName(i), kind, value is null ? null : Convert.ToString(value, CultureInfo.InvariantCulture), null));
                }
            }

            rows.Add(new StoredRow(columns, wrapped));
        }

        return (sql, rows);
    }
}
