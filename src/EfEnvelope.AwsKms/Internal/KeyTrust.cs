using System.Collections.Concurrent;

namespace EfEnvelope.AwsKms;

/// <summary>Which keys a provider may read with, and what its configured aliases currently point at.</summary>
/// <remarks>
/// <para>
/// Rows name the key ARN KMS answered <c>GenerateDataKey</c> with. Such an ARN is trusted when it is configured, when
/// a configured alias or key id resolves to it (through <c>DescribeKey</c>, cached), or when the discovery filter
/// admits its account; for multi-Region keys the Region does not count. Rows written before key ARNs were stored name
/// the configured string itself (an alias), which is trusted as configured and resolved to a key ARN to pin.
/// </para>
/// <para>
/// Resolutions are refreshed only when a row names a key ARN nothing trusts yet: after an <c>UpdateAlias</c> the
/// first row under the new key refreshes them. A refreshed alias no longer vouches for its previous key, so data under
/// that key reads only if its ARN is configured or the discovery filter admits it; this is deliberate: which keys
/// may decrypt is configuration, not whatever an alias pointed at once.
/// </para>
/// </remarks>
internal sealed class KeyTrust
{
    private readonly HashSet<string> _configured;
    private readonly KmsKeyArn[] _configuredArns;
    private readonly string[] _names;
    private readonly AwsKmsDiscoveryFilter? _discovery;
    private readonly ConcurrentDictionary<string, KmsKeyArn> _resolved = new(StringComparer.Ordinal);

    public KeyTrust(IReadOnlyCollection<string> keyIds, AwsKmsDiscoveryFilter? discovery)
    {
        _configured = new HashSet<string>(keyIds, StringComparer.Ordinal);
        _configuredArns = [.. keyIds.Select(KmsKeyArn.TryParse).OfType<KmsKeyArn>()];
        _names = [.. keyIds.Where(id => KmsKeyArn.TryParse(id) is null)];
        _discovery = discovery;
    }

    /// <summary>The synchronous check the library makes before a read: true if the key may be trusted.</summary>
    /// <remarks>
    /// A key ARN no configured alias has been seen to resolve to yet is admitted here while aliases or key ids remain
    /// to resolve; <see cref="TrustsAsync"/> then decides, before anything is sent to KMS.
    /// </remarks>
    public bool MayTrust(string keyId) =>
        _configured.Contains(keyId)
        || KmsKeyArn.TryParse(keyId) is { } arn && (TrustedAsConfigured(arn) || _names.Length > 0);

    /// <summary>Whether <paramref name="keyId"/> is one of the configured strings, verbatim.</summary>
    public bool IsConfiguredVerbatim(string keyId) => _configured.Contains(keyId);

    /// <summary>Records the key ARN KMS answered for a configured alias or key id.</summary>
    public void Learn(string name, KmsKeyArn arn)
    {
        if (_names.Contains(name))
        {
            _resolved[name] = arn;
        }
    }

    /// <summary>The key ARN a configured alias or key id resolves to, from the cache or <c>DescribeKey</c>.</summary>
    public async Task<KmsKeyArn> ResolveAsync(string name, Func<string, Task<KmsKeyArn>> describe)
    {
        if (_resolved.TryGetValue(name, out var arn))
        {
            return arn;
        }

        arn = await describe(name).ConfigureAwait(false);
        _resolved[name] = arn;
        return arn;
    }

    /// <summary>Whether data under <paramref name="arn"/> may be read, refreshing the alias resolutions once if needed.</summary>
    public async Task<bool> TrustsAsync(KmsKeyArn arn, Func<string, Task<KmsKeyArn>> describe)
    {
        if (TrustedAsConfigured(arn) || _resolved.Values.Any(r => r.SameKeyAs(arn)))
        {
            return true;
        }

        if (_names.Length == 0)
        {
            return false;
        }

        var fresh = await Task.WhenAll(_names.Select(describe)).ConfigureAwait(false);
        for (var i = 0; i < _names.Length; i++)
        {
            _resolved[_names[i]] = fresh[i];
        }

        return fresh.Any(r => r.SameKeyAs(arn));
    }

    /// <summary>What the configured aliases resolve to now, for error messages (<c>alias/x → arn</c>).</summary>
    public string DescribeResolutions() =>
        string.Join(", ", _resolved.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} -> {p.Value}"));

    private bool TrustedAsConfigured(KmsKeyArn arn) =>
        _configuredArns.Any(c => c.SameKeyAs(arn)) || _discovery?.Matches(arn) == true;
}
