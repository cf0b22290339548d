using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace EfEnvelope.LocalKms;

/// <summary>The keys and aliases of every Region, saved to one JSON file after each change so a restart keeps them.</summary>
/// <remarks>
/// Keys and aliases are regional as in KMS: a request signed for <c>eu-west-1</c> sees only that Region's keys. A
/// multi-Region key (id <c>mrk-…</c>) exists once per Region it was created or replicated in, each copy with its own
/// ARN and state but the same id and secret. The file holds the key secrets unprotected: this is a developer's KMS.
/// </remarks>
internal sealed class KeyStore
{
    private const string FileName = "keys.json";

    private readonly Lock _gate = new();
    private readonly Dictionary<(string Region, string Id), LocalKey> _keys = [];
    private readonly Dictionary<(string Region, string Name), LocalAlias> _aliases = [];
    private readonly string? _file;

    private KeyStore(string accountId, string? file)
    {
        AccountId = accountId;
        _file = file;
    }

    public string AccountId { get; }

    /// <summary>Opens the store kept in <paramref name="directory"/> (created if missing), or one in memory when null.</summary>
    public static KeyStore Open(string? directory, string accountId)
    {
        if (directory is null)
        {
            return new KeyStore(accountId, null);
        }

        Directory.CreateDirectory(directory);
        var store = new KeyStore(accountId, Path.Combine(directory, FileName));
        if (File.Exists(store._file))
        {
            var saved = JsonSerializer.Deserialize<SavedState>(File.ReadAllBytes(store._file), SavedJson)
                ?? throw new InvalidDataException($"{store._file} is empty.");
            if (saved.AccountId != accountId)
            {
                // Every ARN stored in an application's rows names the account; serving them under another would
                // make them all "not found", so a mismatch is refused at start rather than discovered row by row.
                throw new InvalidDataException($"{store._file} holds keys of account {saved.AccountId}, not {accountId}; start with --account-id {saved.AccountId} or another --data directory.");
            }

            foreach (var key in saved.Keys)
            {
                var local = new LocalKey(key.Id, key.Region, $"arn:aws:kms:{key.Region}:{accountId}:key/{key.Id}", Convert.FromBase64String(key.Secret), key.Description, key.Created, key.PrimaryRegion)
                {
                    State = key.State,
                    DeletionDate = key.DeletionDate,
                };
                store._keys.Add((key.Region, key.Id), local);
            }

            foreach (var alias in saved.Aliases)
            {
                store._aliases.Add((alias.Region, alias.Name), alias);
            }
        }

        return store;
    }

    public LocalKey CreateKey(string region, string description, bool multiRegion)
    {
        // KMS's multi-Region key ids are "mrk-" and 32 hex digits; single-Region ids are UUIDs.
        var id = multiRegion ? "mrk-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16)) : Guid.NewGuid().ToString();
        var key = new LocalKey(id, region, Arn(region, "key/" + id), RandomNumberGenerator.GetBytes(32), description, DateTimeOffset.UtcNow, multiRegion ? region : null);
        lock (_gate)
        {
            _keys.Add((region, id), key);
            Save();
        }

        return key;
    }

    public LocalKey ReplicateKey(string region, string keyId, string replicaRegion, string? description)
    {
        var primary = Resolve(region, keyId);
        lock (_gate)
        {
            if (primary.PrimaryRegion is null)
            {
                throw KmsErrorException.Unsupported($"{primary.Arn} is not a multi-Region key.");
            }

            if (primary.PrimaryRegion != region)
            {
                throw KmsErrorException.Unsupported($"{primary.Arn} is a replica key; replicate the primary key in {primary.PrimaryRegion}.");
            }

            if (replicaRegion == region)
            {
                throw KmsErrorException.Validation($"The replica Region {replicaRegion} is the primary key's own Region.");
            }

            if (primary.State == LocalKeyState.PendingDeletion)
            {
                throw KmsErrorException.InvalidState($"{primary.Arn} is pending deletion.");
            }

            if (_keys.ContainsKey((replicaRegion, primary.Id)))
            {
                throw new KmsErrorException("AlreadyExistsException", $"A replica of {primary.Arn} already exists in {replicaRegion}.");
            }

            var replica = new LocalKey(primary.Id, replicaRegion, Arn(replicaRegion, "key/" + primary.Id), primary.Secret, description ?? primary.Description, DateTimeOffset.UtcNow, region);
            _keys.Add((replicaRegion, primary.Id), replica);
            Save();
            return replica;
        }
    }

    /// <summary>Every Region's copy of a multi-Region key, the primary first; empty for a single-Region key.</summary>
    public IReadOnlyList<LocalKey> CopiesOf(LocalKey key)
    {
        if (key.PrimaryRegion is null)
        {
            return [];
        }

        lock (_gate)
        {
            return [.. _keys.Values.Where(k => k.Id == key.Id).OrderBy(k => k.Region == key.PrimaryRegion ? 0 : 1).ThenBy(k => k.Region, StringComparer.Ordinal)];
        }
    }

    /// <summary>Finds a key of <paramref name="region"/> by key id, key ARN, alias name or alias ARN, as KMS accepts in <c>KeyId</c>.</summary>
    public LocalKey Resolve(string region, string identifier)
    {
        var arnPrefix = Arn(region, "");
        var isArn = identifier.StartsWith("arn:", StringComparison.Ordinal);
        if (isArn && !identifier.StartsWith(arnPrefix, StringComparison.Ordinal))
        {
            // Another Region's or account's ARN: KMS only answers for keys of the Region the request is signed for.
            throw new KmsErrorException("NotFoundException", $"Invalid arn {identifier}: not a key of {region} in account {AccountId}.");
        }

        var name = isArn ? identifier[arnPrefix.Length..] : identifier;
        lock (_gate)
        {
            if (name.StartsWith("alias/", StringComparison.Ordinal))
            {
                return _aliases.TryGetValue((region, name), out var alias) && _keys.TryGetValue((region, alias.TargetKeyId), out var aliased)
                    ? aliased
                    : throw new KmsErrorException("NotFoundException", $"Alias {arnPrefix}{name} is not found.");
            }

            if (isArn)
            {
                name = name.StartsWith("key/", StringComparison.Ordinal) ? name["key/".Length..] : throw new KmsErrorException("NotFoundException", $"Invalid arn {identifier}");
            }

            return _keys.TryGetValue((region, name), out var key)
                ? key
                : throw new KmsErrorException("NotFoundException", $"Key '{arnPrefix}key/{name}' does not exist");
        }
    }

    public void CreateAlias(string region, string aliasName, string targetKeyId)
    {
        RequireValidAlias(aliasName);
        var key = ResolveAliasTarget(region, targetKeyId);
        lock (_gate)
        {
            var now = DateTimeOffset.UtcNow;
            if (!_aliases.TryAdd((region, aliasName), new LocalAlias(region, aliasName, key.Id, now, now)))
            {
                throw new KmsErrorException("AlreadyExistsException", $"An alias with the name {Arn(region, aliasName)} already exists");
            }

            Save();
        }
    }

    public void UpdateAlias(string region, string aliasName, string targetKeyId)
    {
        RequireValidAlias(aliasName);
        var key = ResolveAliasTarget(region, targetKeyId);
        lock (_gate)
        {
            if (!_aliases.TryGetValue((region, aliasName), out var alias))
            {
                throw new KmsErrorException("NotFoundException", $"Alias {Arn(region, aliasName)} is not found.");
            }

            _aliases[(region, aliasName)] = alias with { TargetKeyId = key.Id, LastUpdated = DateTimeOffset.UtcNow };
            Save();
        }
    }

    public void DeleteAlias(string region, string aliasName)
    {
        RequireValidAlias(aliasName);
        lock (_gate)
        {
            if (!_aliases.Remove((region, aliasName)))
            {
                throw new KmsErrorException("NotFoundException", $"Alias {Arn(region, aliasName)} is not found.");
            }

            Save();
        }
    }

    /// <summary>The aliases of <paramref name="region"/> in name order, only those of one key when <paramref name="keyId"/> is given.</summary>
    public IReadOnlyList<LocalAlias> ListAliases(string region, string? keyId)
    {
        var key = keyId is null ? null : Resolve(region, keyId);
        lock (_gate)
        {
            return [.. _aliases.Values
                .Where(a => a.Region == region && (key is null || a.TargetKeyId == key.Id))
                .OrderBy(a => a.Name, StringComparer.Ordinal)];
        }
    }

    public void SetState(LocalKey key, LocalKeyState state, DateTimeOffset? deletionDate = null)
    {
        lock (_gate)
        {
            key.State = state;
            key.DeletionDate = deletionDate;
            Save();
        }
    }

    public string Arn(string region, string resource) => $"arn:aws:kms:{region}:{AccountId}:{resource}";

    public static void RequireUsable(LocalKey key)
    {
        switch (key.State)
        {
            case LocalKeyState.Disabled:
                throw new KmsErrorException("DisabledException", $"{key.Arn} is disabled.");
            case LocalKeyState.PendingDeletion:
                throw KmsErrorException.InvalidState($"{key.Arn} is pending deletion.");
        }
    }

    private static void RequireValidAlias(string aliasName)
    {
        if (!aliasName.StartsWith("alias/", StringComparison.Ordinal) || aliasName.Length == "alias/".Length)
        {
            throw new KmsErrorException("InvalidAliasNameException", "Alias must start with the prefix \"alias/\".");
        }

        if (aliasName.StartsWith("alias/aws/", StringComparison.Ordinal))
        {
            throw new KmsErrorException("InvalidAliasNameException", "Alias names starting with alias/aws/ are reserved for AWS managed keys.");
        }
    }

    private LocalKey ResolveAliasTarget(string region, string targetKeyId)
    {
        if (targetKeyId.StartsWith("alias/", StringComparison.Ordinal) || targetKeyId.Contains(":alias/", StringComparison.Ordinal))
        {
            throw KmsErrorException.Validation("TargetKeyId must be a key id or key ARN, not an alias.");
        }

        var key = Resolve(region, targetKeyId);
        return key.State == LocalKeyState.PendingDeletion
            ? throw KmsErrorException.InvalidState($"{key.Arn} is pending deletion.")
            : key;
    }

    // Called under the lock. The whole state is written to a temporary file that then replaces the old one, so a
    // crash mid-write leaves the previous state intact instead of a truncated file that would lose every key.
    private void Save()
    {
        if (_file is null)
        {
            return;
        }

        var state = new SavedState(
            AccountId,
            [.. _keys.Values.Select(k => new SavedKey(k.Id, k.Region, Convert.ToBase64String(k.Secret), k.Description, k.Created, k.State, k.DeletionDate, k.PrimaryRegion))],
            [.. _aliases.Values]);
        var temporary = _file + ".tmp";
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            // The file holds key secrets: readable by the owner only.
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        using (var stream = new FileStream(temporary, options))
        {
            JsonSerializer.Serialize(stream, state, SavedJson);
            stream.Flush(flushToDisk: true);
        }

        File.Move(temporary, _file, overwrite: true);
    }

    private static readonly JsonSerializerOptions SavedJson = new() { WriteIndented = true, Converters = { new JsonStringEnumConverter() } };

    private sealed record SavedState(string AccountId, SavedKey[] Keys, LocalAlias[] Aliases);

    private sealed record SavedKey(string Id, string Region, string Secret, string Description, DateTimeOffset Created, LocalKeyState State, DateTimeOffset? DeletionDate, string? PrimaryRegion);
}

/// <summary>An alias of one Region, pointing at a key id of that Region.</summary>
internal sealed record LocalAlias(string Region, string Name, string TargetKeyId, DateTimeOffset Created, DateTimeOffset LastUpdated);

internal enum LocalKeyState
{
    Enabled,
    Disabled,
    PendingDeletion,
}

/// <summary>One Region's copy of a key; <see cref="PrimaryRegion"/> is set only for multi-Region keys.</summary>
internal sealed class LocalKey(string id, string region, string arn, byte[] secret, string description, DateTimeOffset created, string? primaryRegion)
{
    public string Id { get; } = id;

    public string Region { get; } = region;

    public string Arn { get; } = arn;

    public byte[] Secret { get; } = secret;

    public string Description { get; } = description;

    public DateTimeOffset Created { get; } = created;

    public string? PrimaryRegion { get; } = primaryRegion;

    public LocalKeyState State { get; set; } = LocalKeyState.Enabled;

    public DateTimeOffset? DeletionDate { get; set; }
}
