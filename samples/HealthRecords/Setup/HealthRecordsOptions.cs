namespace HealthRecords.Setup;

/// <summary>The sample's configuration switches: the <c>HealthRecords</c> section of appsettings.json or <c>HealthRecords__…</c> environment variables.</summary>
public sealed class HealthRecordsOptions
{
    public const string Section = "HealthRecords";

    /// <summary>Where the SQLite file and the development master key live; relative paths are relative to the project folder.</summary>
    public string DataDirectory { get; set; } = "data";

    /// <summary>Adds a few invented patients when the database has none.</summary>
    public bool SeedDemoData { get; set; } = true;

    public DatabaseOptions Database { get; set; } = new();

    public MasterKeyOptions MasterKey { get; set; } = new();
}

/// <summary>Which database holds the records.</summary>
public sealed class DatabaseOptions
{
    /// <summary><c>Sqlite</c> (the default), <c>PostgreSQL</c> or <c>SqlServer</c>.</summary>
    public string Provider { get; set; } = "Sqlite";

    /// <summary>Required for PostgreSQL and SQL Server; for SQLite the default is a file in <see cref="HealthRecordsOptions.DataDirectory"/>.</summary>
    public string? ConnectionString { get; set; }

    /// <summary>SQLite only: how often the write-ahead log is checkpointed and emptied (see <see cref="WalCheckpointer"/>); zero turns it off.</summary>
    public TimeSpan WalCheckpointInterval { get; set; } = TimeSpan.FromSeconds(30);
}

/// <summary>Where the master key lives and how data keys are wrapped.</summary>
public sealed class MasterKeyOptions
{
    /// <summary><c>Development</c> (the default: a key file beside the database), <c>AwsKms</c> or <c>Pkcs11</c>.</summary>
    public string Provider { get; set; } = "Development";

    /// <summary><c>CachedKeyEncryptionKey</c> (the default) or <c>Direct</c> (one provider call per record).</summary>
    public string Mode { get; set; } = "CachedKeyEncryptionKey";

    /// <summary>The wrapped blind index key (base64) for SSN search; when empty, a file beside the database is used (created on first start).</summary>
    public string? BlindIndexKey { get; set; }

    public AwsKmsSettings AwsKms { get; set; } = new();

    public Pkcs11Settings Pkcs11 { get; set; } = new();
}

/// <summary>AWS KMS: the key and, for a local or private endpoint, its URL.</summary>
public sealed class AwsKmsSettings
{
    /// <summary>Key id, key ARN or alias (<c>alias/patients</c>).</summary>
    public string? KeyId { get; set; }

    /// <summary>Optional endpoint, for example a local KMS emulator or a VPC endpoint.</summary>
    public string? ServiceUrl { get; set; }

    /// <summary>Optional Region (also the signing Region with <see cref="ServiceUrl"/>); the AWS SDK's usual lookup applies when empty.</summary>
    /// <remarks>Credentials always come from the SDK's usual chain: environment, shared profile, instance or task role.</remarks>
    public string? Region { get; set; }

    /// <summary>Keys accepted for reading only: after switching <see cref="KeyId"/> to a new key, the old one until <c>rotate</c> has run.</summary>
    public List<string> AdditionalKeyIds { get; set; } = [];
}

/// <summary>PKCS#11: the module, the token and the key on it.</summary>
public sealed class Pkcs11Settings
{
    /// <summary>Path of the PKCS#11 module, for example <c>/usr/lib/softhsm/libsofthsm2.so</c>.</summary>
    public string? LibraryPath { get; set; }

    public string? TokenLabel { get; set; }

    /// <summary>The user PIN; pass it through an environment variable or a secret store, not appsettings.json.</summary>
    public string? Pin { get; set; }

    /// <summary>Label of the AES-256 key on the token.</summary>
    public string? KeyLabel { get; set; }

    /// <summary>Creates the key on the token when it is missing (development tokens such as SoftHSM2); the provider itself never creates keys.</summary>
    public bool CreateKeyIfMissing { get; set; }
}
