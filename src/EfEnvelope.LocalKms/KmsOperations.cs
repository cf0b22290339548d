using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text.Json;

namespace EfEnvelope.LocalKms;

/// <summary>The KMS operations the local KMS implements, each reading a request body and writing the reply's members.</summary>
/// <remarks>
/// Checks run in KMS's order (parameters, key, key state, ciphertext), and each error is the one KMS raises, so a
/// client's error handling is exercised as it would be against the service.
/// </remarks>
internal sealed class KmsOperations(KeyStore store)
{
    private delegate void Handler(KmsOperations operations, string region, RequestBody input, Utf8JsonWriter output);

    private static readonly Dictionary<string, (string[] Members, Handler Run)> Table = new(StringComparer.Ordinal)
    {
        ["CreateKey"] = (["Description", "KeyUsage", "KeySpec", "CustomerMasterKeySpec", "Origin", "MultiRegion"], (o, r, i, w) => o.CreateKey(r, i, w)),
        ["ReplicateKey"] = (["KeyId", "ReplicaRegion", "Description"], (o, r, i, w) => o.ReplicateKey(r, i, w)),
        ["DescribeKey"] = (["KeyId", "GrantTokens"], (o, r, i, w) => o.DescribeKey(r, i, w)),
        ["CreateAlias"] = (["AliasName", "TargetKeyId"], (o, r, i, _) => o._store.CreateAlias(r, i.RequiredString("AliasName"), i.RequiredString("TargetKeyId"))),
        ["UpdateAlias"] = (["AliasName", "TargetKeyId"], (o, r, i, _) => o._store.UpdateAlias(r, i.RequiredString("AliasName"), i.RequiredString("TargetKeyId"))),
        ["DeleteAlias"] = (["AliasName"], (o, r, i, _) => o._store.DeleteAlias(r, i.RequiredString("AliasName"))),
        ["ListAliases"] = (["KeyId", "Limit", "Marker"], (o, r, i, w) => o.ListAliases(r, i, w)),
        ["GenerateDataKey"] = (["KeyId", "KeySpec", "NumberOfBytes", "EncryptionContext", "GrantTokens", "DryRun"], (o, r, i, w) => o.GenerateDataKey(r, i, w, includePlaintext: true)),
        ["GenerateDataKeyWithoutPlaintext"] = (["KeyId", "KeySpec", "NumberOfBytes", "EncryptionContext", "GrantTokens", "DryRun"], (o, r, i, w) => o.GenerateDataKey(r, i, w, includePlaintext: false)),
        ["Encrypt"] = (["KeyId", "Plaintext", "EncryptionContext", "EncryptionAlgorithm", "GrantTokens", "DryRun"], (o, r, i, w) => o.Encrypt(r, i, w)),
        ["Decrypt"] = (["CiphertextBlob", "KeyId", "EncryptionContext", "EncryptionAlgorithm", "GrantTokens", "DryRun"], (o, r, i, w) => o.Decrypt(r, i, w)),
        ["ReEncrypt"] = (["CiphertextBlob", "SourceKeyId", "SourceEncryptionContext", "SourceEncryptionAlgorithm", "DestinationKeyId", "DestinationEncryptionContext", "DestinationEncryptionAlgorithm", "GrantTokens", "DryRun"], (o, r, i, w) => o.ReEncrypt(r, i, w)),
        ["EnableKey"] = (["KeyId"], (o, r, i, _) => o.SetEnabled(r, i, enabled: true)),
        ["DisableKey"] = (["KeyId"], (o, r, i, _) => o.SetEnabled(r, i, enabled: false)),
        ["ScheduleKeyDeletion"] = (["KeyId", "PendingWindowInDays"], (o, r, i, w) => o.ScheduleKeyDeletion(r, i, w)),
        ["CancelKeyDeletion"] = (["KeyId"], (o, r, i, w) => o.CancelKeyDeletion(r, i, w)),
    };

    private static readonly Dictionary<string, HashSet<string>> Accepted =
        Table.ToDictionary(e => e.Key, e => new HashSet<string>(e.Value.Members, StringComparer.Ordinal), StringComparer.Ordinal);

    private readonly KeyStore _store = store;

    /// <summary>Carries out <paramref name="operation"/> for a request signed for <paramref name="region"/>.</summary>
    public void Run(string operation, string region, JsonElement body, Utf8JsonWriter output)
    {
        if (!Table.TryGetValue(operation, out var entry))
        {
            throw KmsErrorException.Unsupported($"The local KMS does not support the {operation} operation.");
        }

        entry.Run(this, region, new RequestBody(body, operation, Accepted[operation]), output);
    }

    // KMS's DryRun checks the parameters, the key and its state, then answers 412 instead of doing the work.
    private static void EndIfDryRun(RequestBody input)
    {
        if (input.Bool("DryRun"))
        {
            throw new KmsErrorException("DryRunOperationException", "The request would have succeeded, but the DryRun option is set.", HttpStatusCode.PreconditionFailed);
        }
    }

    private void CreateKey(string region, RequestBody input, Utf8JsonWriter output)
    {
        if (input.String("KeyUsage") is { } usage && usage != "ENCRYPT_DECRYPT")
        {
            throw KmsErrorException.Unsupported("The local KMS only has symmetric ENCRYPT_DECRYPT keys.");
        }

        if ((input.String("KeySpec") ?? input.String("CustomerMasterKeySpec")) is { } spec && spec != "SYMMETRIC_DEFAULT")
        {
            throw KmsErrorException.Unsupported("The local KMS only has SYMMETRIC_DEFAULT keys.");
        }

        if (input.String("Origin") is { } origin && origin != "AWS_KMS")
        {
            throw KmsErrorException.Unsupported("The local KMS only creates key material itself (Origin AWS_KMS).");
        }

        WriteMetadata(output, _store.CreateKey(region, input.String("Description") ?? "", input.Bool("MultiRegion")));
    }

    private void ReplicateKey(string region, RequestBody input, Utf8JsonWriter output)
    {
        var replicaRegion = input.RequiredString("ReplicaRegion");
        if (!IsRegionName(replicaRegion))
        {
            throw KmsErrorException.Validation($"ReplicaRegion '{replicaRegion}' is not a Region name.");
        }

        var replica = _store.ReplicateKey(region, input.RequiredString("KeyId"), replicaRegion, input.String("Description"));
        WriteMetadata(output, replica, "ReplicaKeyMetadata");
        output.WriteString("ReplicaPolicy", "");
        output.WriteStartArray("ReplicaTags");
        output.WriteEndArray();
    }

    private void DescribeKey(string region, RequestBody input, Utf8JsonWriter output)
    {
        input.RequireNoGrantTokens();
        WriteMetadata(output, _store.Resolve(region, input.RequiredString("KeyId")));
    }

    private void ListAliases(string region, RequestBody input, Utf8JsonWriter output)
    {
        var limit = input.Int("Limit") ?? 50;
        if (limit is < 1 or > 100)
        {
            throw KmsErrorException.Validation("Limit must be between 1 and 100.");
        }

        var start = 0;
        if (input.String("Marker") is { } marker && !int.TryParse(marker, NumberStyles.None, CultureInfo.InvariantCulture, out start))
        {
            throw new KmsErrorException("InvalidMarkerException", "The marker is not one this service returned.");
        }

        var aliases = _store.ListAliases(region, input.String("KeyId"));
        output.WriteStartArray("Aliases");
        foreach (var alias in aliases.Skip(start).Take(limit))
        {
            output.WriteStartObject();
            output.WriteString("AliasName", alias.Name);
            output.WriteString("AliasArn", _store.Arn(region, alias.Name));
            output.WriteString("TargetKeyId", alias.TargetKeyId);
            output.WriteNumber("CreationDate", alias.Created.ToUnixTimeSeconds());
            output.WriteNumber("LastUpdatedDate", alias.LastUpdated.ToUnixTimeSeconds());
            output.WriteEndObject();
        }

        output.WriteEndArray();
        var truncated = start + limit < aliases.Count;
        output.WriteBoolean("Truncated", truncated);
        if (truncated)
        {
            output.WriteString("NextMarker", (start + limit).ToString(CultureInfo.InvariantCulture));
        }
    }

    private void GenerateDataKey(string region, RequestBody input, Utf8JsonWriter output, bool includePlaintext)
    {
        var key = _store.Resolve(region, input.RequiredString("KeyId"));
        var spec = input.String("KeySpec");
        var numberOfBytes = input.Int("NumberOfBytes");
        var size = (spec, numberOfBytes) switch
        {
            ("AES_256", null) => 32,
            ("AES_128", null) => 16,
            (null, >= 1 and <= 1024) => numberOfBytes.Value,
            (null, null) => throw KmsErrorException.Validation("Please specify either number of bytes or key spec."),
            (not null, not null) => throw KmsErrorException.Validation("Please specify either number of bytes or key spec, not both."),
            _ => throw KmsErrorException.Validation("KeySpec must be AES_256 or AES_128; NumberOfBytes between 1 and 1024."),
        };
        var context = input.Context("EncryptionContext");
        input.RequireNoGrantTokens();
        KeyStore.RequireUsable(key);
        EndIfDryRun(input);

        var plaintext = RandomNumberGenerator.GetBytes(size);
        output.WriteBase64String("CiphertextBlob", KeyCiphertext.Encrypt(key, plaintext, context));
        if (includePlaintext)
        {
            output.WriteBase64String("Plaintext", plaintext);
        }

        output.WriteString("KeyId", key.Arn);
    }

    private void Encrypt(string region, RequestBody input, Utf8JsonWriter output)
    {
        var key = _store.Resolve(region, input.RequiredString("KeyId"));
        var plaintext = input.RequiredBlob("Plaintext");
        if (plaintext.Length is < 1 or > 4096)
        {
            throw KmsErrorException.Validation("Plaintext must be between 1 and 4096 bytes.");
        }

        var context = input.Context("EncryptionContext");
        input.RequireSymmetricDefault("EncryptionAlgorithm");
        input.RequireNoGrantTokens();
        KeyStore.RequireUsable(key);
        EndIfDryRun(input);
        output.WriteBase64String("CiphertextBlob", KeyCiphertext.Encrypt(key, plaintext, context));
        output.WriteString("KeyId", key.Arn);
        output.WriteString("EncryptionAlgorithm", "SYMMETRIC_DEFAULT");
    }

    private void Decrypt(string region, RequestBody input, Utf8JsonWriter output)
    {
        input.RequireSymmetricDefault("EncryptionAlgorithm");
        input.RequireNoGrantTokens();
        var (key, plaintext) = Open(region, input.RequiredBlob("CiphertextBlob"), input.String("KeyId"), input.Context("EncryptionContext"), input);
        output.WriteString("KeyId", key.Arn);
        output.WriteBase64String("Plaintext", plaintext);
        output.WriteString("EncryptionAlgorithm", "SYMMETRIC_DEFAULT");
    }

    private void ReEncrypt(string region, RequestBody input, Utf8JsonWriter output)
    {
        input.RequireSymmetricDefault("SourceEncryptionAlgorithm");
        input.RequireSymmetricDefault("DestinationEncryptionAlgorithm");
        input.RequireNoGrantTokens();
        var destination = _store.Resolve(region, input.RequiredString("DestinationKeyId"));
        var destinationContext = input.Context("DestinationEncryptionContext");
        KeyStore.RequireUsable(destination);
        var (source, plaintext) = Open(region, input.RequiredBlob("CiphertextBlob"), input.String("SourceKeyId"), input.Context("SourceEncryptionContext"), input);
        output.WriteBase64String("CiphertextBlob", KeyCiphertext.Encrypt(destination, plaintext, destinationContext));
        output.WriteString("SourceKeyId", source.Arn);
        output.WriteString("KeyId", destination.Arn);
        output.WriteString("SourceEncryptionAlgorithm", "SYMMETRIC_DEFAULT");
        output.WriteString("DestinationEncryptionAlgorithm", "SYMMETRIC_DEFAULT");
    }

    // Decrypt's checks in KMS's order: a pinned key must exist, the blob must be well formed, name that key, be
    // usable, and (unless this is a dry run) authenticate under the exact encryption context.
    private (LocalKey Key, byte[] Plaintext) Open(string region, byte[] blob, string? pinnedKeyId, IReadOnlyDictionary<string, string> context, RequestBody input)
    {
        var pinned = pinnedKeyId is null ? null : _store.Resolve(region, pinnedKeyId);
        var blobKeyId = KeyCiphertext.KeyIdOf(blob);
        LocalKey key;
        if (pinned is not null)
        {
            key = pinned.Id == blobKeyId
                ? pinned
                : throw new KmsErrorException("IncorrectKeyException", "The key ID in the request does not identify a CMK that can perform this operation.");
        }
        else
        {
            key = _store.Resolve(region, blobKeyId);
        }

        KeyStore.RequireUsable(key);
        EndIfDryRun(input);
        return (key, KeyCiphertext.Decrypt(key, blob, context));
    }

    private void SetEnabled(string region, RequestBody input, bool enabled)
    {
        var key = _store.Resolve(region, input.RequiredString("KeyId"));
        if (key.State == LocalKeyState.PendingDeletion)
        {
            throw KmsErrorException.InvalidState($"{key.Arn} is pending deletion.");
        }

        _store.SetState(key, enabled ? LocalKeyState.Enabled : LocalKeyState.Disabled);
    }

    private void ScheduleKeyDeletion(string region, RequestBody input, Utf8JsonWriter output)
    {
        var key = _store.Resolve(region, input.RequiredString("KeyId"));
        var days = input.Int("PendingWindowInDays") ?? 30;
        if (days is < 7 or > 30)
        {
            throw KmsErrorException.Validation("PendingWindowInDays must be between 7 and 30.");
        }

        if (key.State == LocalKeyState.PendingDeletion)
        {
            throw KmsErrorException.InvalidState($"{key.Arn} is pending deletion.");
        }

        var deletion = DateTimeOffset.UtcNow.AddDays(days);
        _store.SetState(key, LocalKeyState.PendingDeletion, deletion);
        output.WriteString("KeyId", key.Arn);
        output.WriteNumber("DeletionDate", deletion.ToUnixTimeSeconds());
        output.WriteString("KeyState", "PendingDeletion");
        output.WriteNumber("PendingWindowInDays", days);
    }

    private void CancelKeyDeletion(string region, RequestBody input, Utf8JsonWriter output)
    {
        var key = _store.Resolve(region, input.RequiredString("KeyId"));
        if (key.State != LocalKeyState.PendingDeletion)
        {
            throw KmsErrorException.InvalidState($"{key.Arn} is not pending deletion.");
        }

        _store.SetState(key, LocalKeyState.Disabled);
        output.WriteString("KeyId", key.Arn);
    }

    private void WriteMetadata(Utf8JsonWriter output, LocalKey key, string member = "KeyMetadata")
    {
        output.WriteStartObject(member);
        output.WriteString("AWSAccountId", _store.AccountId);
        output.WriteString("KeyId", key.Id);
        output.WriteString("Arn", key.Arn);
        output.WriteNumber("CreationDate", key.Created.ToUnixTimeSeconds());
        output.WriteBoolean("Enabled", key.State == LocalKeyState.Enabled);
        output.WriteString("Description", key.Description);
        output.WriteString("KeyUsage", "ENCRYPT_DECRYPT");
        output.WriteString("KeyState", key.State.ToString());
        if (key.DeletionDate is { } deletion)
        {
            output.WriteNumber("DeletionDate", deletion.ToUnixTimeSeconds());
        }

        output.WriteString("Origin", "AWS_KMS");
        output.WriteString("KeyManager", "CUSTOMER");
        output.WriteString("KeySpec", "SYMMETRIC_DEFAULT");
        output.WriteString("CustomerMasterKeySpec", "SYMMETRIC_DEFAULT");
        output.WriteStartArray("EncryptionAlgorithms");
        output.WriteStringValue("SYMMETRIC_DEFAULT");
        output.WriteEndArray();
        output.WriteBoolean("MultiRegion", key.PrimaryRegion is not null);
        if (key.PrimaryRegion is not null)
        {
            var copies = _store.CopiesOf(key);
            output.WriteStartObject("MultiRegionConfiguration");
            output.WriteString("MultiRegionKeyType", key.Region == key.PrimaryRegion ? "PRIMARY" : "REPLICA");
            output.WritePropertyName("PrimaryKey");
            WriteRegionalKey(output, copies[0]);
            output.WriteStartArray("ReplicaKeys");
            foreach (var replica in copies.Skip(1))
            {
                WriteRegionalKey(output, replica);
            }

            output.WriteEndArray();
            output.WriteEndObject();
        }

        output.WriteEndObject();
    }

    private static void WriteRegionalKey(Utf8JsonWriter output, LocalKey key)
    {
        output.WriteStartObject();
        output.WriteString("Arn", key.Arn);
        output.WriteString("Region", key.Region);
        output.WriteEndObject();
    }

    // A Region name as KMS accepts it: lower-case words joined by hyphens, ending in a number (us-east-1, us-gov-west-1).
    internal static bool IsRegionName(string region) =>
        region.Length is > 3 and < 32
        && region.Split('-') is { Length: >= 3 } parts
        && parts.All(p => p.Length > 0 && p.All(c => c is >= 'a' and <= 'z' or >= '0' and <= '9'))
        && parts[^1].All(char.IsAsciiDigit);
}
