namespace EfEnvelope.AwsKms;

/// <summary>Accepts, for reads, any KMS key of the given accounts in one partition, without listing each key.</summary>
/// <remarks>
/// <para>
/// This is the AWS Encryption SDK's discovery filter: rows name the key ARN they were written under, and with a filter
/// any such ARN whose partition and account match is trusted and sent to KMS (which still enforces the key policy).
/// It lets alias rotations and multi-Region setups run without redeploying the key list, at the price of trusting
/// every key those accounts hold: keep the list to the accounts that own your keys.
/// </para>
/// <para>Multi-Region keys named in another Region are decrypted through the same key in the client's Region.</para>
/// </remarks>
public sealed class AwsKmsDiscoveryFilter
{
    /// <summary>Creates a filter for <paramref name="accountIds"/> in <paramref name="partition"/>.</summary>
    /// <param name="partition">The AWS partition: <c>aws</c>, <c>aws-cn</c>, <c>aws-us-gov</c>.</param>
    /// <param name="accountIds">The 12-digit ids of the accounts whose keys are trusted; at least one.</param>
    public AwsKmsDiscoveryFilter(string partition, params IEnumerable<string> accountIds)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(partition);
        ArgumentNullException.ThrowIfNull(accountIds);
        var accounts = accountIds.ToArray();
        if (accounts.Length == 0)
        {
            throw new ArgumentException("A discovery filter needs at least one account id: an empty one would trust every account.", nameof(accountIds));
        }

        foreach (var account in accounts)
        {
            if (account is not { Length: 12 } || !account.All(char.IsAsciiDigit))
            {
                throw new ArgumentException($"'{account}' is not an AWS account id (12 digits).", nameof(accountIds));
            }
        }

        Partition = partition;
        AccountIds = [.. accounts.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)];
    }

    /// <summary>The partition of trusted keys.</summary>
    public string Partition { get; }

    /// <summary>The trusted accounts, sorted.</summary>
    public IReadOnlyList<string> AccountIds { get; }

    internal bool Matches(KmsKeyArn arn) => arn.Partition == Partition && AccountIds.Contains(arn.Account);

    /// <inheritdoc />
    public override bool Equals(object? obj) =>
        obj is AwsKmsDiscoveryFilter other && other.Partition == Partition && other.AccountIds.SequenceEqual(AccountIds);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Partition, AccountIds.Count, AccountIds[0]);

    /// <inheritdoc />
    public override string ToString() => $"{Partition}:{string.Join(",", AccountIds)}";
}
