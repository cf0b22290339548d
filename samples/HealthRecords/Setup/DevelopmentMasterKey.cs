using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using EfEnvelope.KeyManagement;

namespace HealthRecords.Setup;

/// <summary>
/// A master key kept in a file beside the database, so that a fresh clone runs with no set-up and still reads its
/// own records after a restart. FOR DEVELOPMENT ONLY: whoever can read the file can decrypt every record.
/// </summary>
/// <remarks>
/// The real providers (AWS KMS, PKCS#11) never release the master key; this file is the one thing they exist to avoid.
/// </remarks>
public static class DevelopmentMasterKey
{
    public const string FileName = "DEVELOPMENT-ONLY-master-key.json";

    private const string Warning =
        "DEVELOPMENT ONLY. This is the master key of the HealthRecords sample's local database: anyone who reads this file "
        + "can decrypt every record. Never put real patient data under it; configure HealthRecords:MasterKey:Provider = AwsKms or Pkcs11 instead. "
        + "Deleting this file makes the existing encrypted records unreadable (delete the database with it).";

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };

    /// <summary>Loads the key file in <paramref name="directory"/>, creating it with a fresh random key when absent.</summary>
    /// <returns>The provider, and whether the key was created now.</returns>
    public static (InsecureInMemoryMasterKeyProvider Provider, bool Created) LoadOrCreate(string directory)
    {
        var path = Path.Combine(directory, FileName);
        var created = false;
        if (!File.Exists(path))
        {
            created = TryCreate(path);
        }

        var file = JsonSerializer.Deserialize<KeyFile>(File.ReadAllText(path), JsonOptions)
            ?? throw new InvalidOperationException($"The development key file '{path}' is empty.");
        if (string.IsNullOrWhiteSpace(file.KeyId) || string.IsNullOrWhiteSpace(file.Key))
        {
            throw new InvalidOperationException($"The development key file '{path}' has no keyId or key.");
        }

        var key = Convert.FromBase64String(file.Key);
        try
        {
            // The provider copies the bytes; this copy is zeroed so that only one lives in memory.
            return (new InsecureInMemoryMasterKeyProvider(file.KeyId, key), created);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(key);
        }
    }

    private static bool TryCreate(string path)
    {
        var key = RandomNumberGenerator.GetBytes(32);
        var file = new KeyFile
        {
            Warning = Warning,
            KeyId = $"healthrecords-dev-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}",
            CreatedUtc = DateTimeOffset.UtcNow,
            Key = Convert.ToBase64String(key),
        };
        CryptographicOperations.ZeroMemory(key);

        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        try
        {
            // CreateNew: if two instances start at once, one creates the key and the other reads it.
            using var stream = new FileStream(path, options);
            JsonSerializer.Serialize(stream, file, JsonOptions);
            return true;
        }
        catch (IOException) when (File.Exists(path))
        {
            return false;
        }
    }

    private sealed class KeyFile
    {
        [JsonPropertyName("_warning")]
        public string? Warning { get; set; }

        [JsonPropertyName("keyId")]
        public string? KeyId { get; set; }

        [JsonPropertyName("createdUtc")]
        public DateTimeOffset CreatedUtc { get; set; }

        [JsonPropertyName("key")]
        public string? Key { get; set; }
    }
}
