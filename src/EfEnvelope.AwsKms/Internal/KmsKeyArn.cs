namespace EfEnvelope.AwsKms;

/// <summary>A parsed KMS key ARN, <c>arn:partition:kms:region:account:key/id</c> (not an alias ARN).</summary>
internal sealed record KmsKeyArn(string Partition, string Region, string Account, string KeyId)
{
    /// <summary>A multi-Region key: the same key id exists in several Regions, all able to decrypt each other's data.</summary>
    public bool IsMultiRegion => KeyId.StartsWith("mrk-", StringComparison.Ordinal);

    public static KmsKeyArn? TryParse(string? text)
    {
        var parts = text?.Split(':');
        if (parts is not { Length: 6 } || parts[0] != "arn" || parts[2] != "kms" || !parts[5].StartsWith("key/", StringComparison.Ordinal))
        {
            return null;
        }

        var keyId = parts[5]["key/".Length..];
        return parts[1].Length == 0 || parts[3].Length == 0 || parts[4].Length == 0 || keyId.Length == 0
            ? null
            : new KmsKeyArn(parts[1], parts[3], parts[4], keyId);
    }

    /// <summary>Whether both name the same key: equal ARNs, or the same multi-Region key in any Regions.</summary>
    /// <remarks>The AWS Encryption SDK's "MRK match": partition, account and key id equal, Region free for <c>mrk-</c> keys.</remarks>
    public bool SameKeyAs(KmsKeyArn other) =>
        this == other
        || IsMultiRegion && Partition == other.Partition && Account == other.Account && KeyId == other.KeyId;

    /// <summary>This key's ARN in <paramref name="region"/>: the replica to ask there, for a multi-Region key; itself otherwise.</summary>
    public KmsKeyArn In(string? region) => IsMultiRegion && region is not null ? this with { Region = region } : this;

    public override string ToString() => $"arn:{Partition}:kms:{Region}:{Account}:key/{KeyId}";
}
