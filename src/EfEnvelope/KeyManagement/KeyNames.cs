using System.Collections.Concurrent;
using EfEnvelope.KeyManagement;

namespace EfEnvelope.KeyManagement;

/// <summary>
/// Whether the key id a stored record names and a key id a master-key selector chose denote
/// one master key: asked of the provider (<see cref="IMasterKeyProvider.IsSameKeyAsync"/>) and remembered. Used by the
/// selector check on reads.
/// </summary>
/// <remarks>
/// Equal strings need no question. Otherwise the answer is remembered per pair for the key cache's time to live, so
/// an answer that depends on where an alias points follows the alias as cached keys do. The stored ids are keys the
/// provider trusts (the records decrypted) and the chosen ids are the application's, so the pairs are few; the bound
/// guards against a selector returning unboundedly many names.
/// </remarks>
internal sealed class KeyNames(ProviderGateway gateway, KeyCache cache, EnvelopeEncryptionSettings settings)
{
    private const int MaxRememberedPairs = 4096;

    private readonly ConcurrentDictionary<(string Stored, string Chosen), (bool Same, long At)> _answers = new();

    /// <summary>On EF's synchronous materialization path: a miss blocks this thread for one provider call, as a cold key cache does.</summary>
    public bool IsSame(string stored, string chosen, string entity) =>
        string.Equals(stored, chosen, StringComparison.Ordinal)
        || (Remembered(stored, chosen) ?? ProviderGateway.RunSynchronously(() => AskAsync(stored, chosen, entity, CancellationToken.None)));

    /// <summary>The asynchronous form of <see cref="IsSame"/>, for lifecycle jobs.</summary>
    public async ValueTask<bool> IsSameAsync(string stored, string chosen, string entity, CancellationToken cancellationToken) =>
        string.Equals(stored, chosen, StringComparison.Ordinal)
        || (Remembered(stored, chosen) ?? await AskAsync(stored, chosen, entity, cancellationToken).ConfigureAwait(false));

    private bool? Remembered(string stored, string chosen) =>
        _answers.TryGetValue((stored, chosen), out var known) && settings.TimeProvider.GetElapsedTime(known.At) < settings.Cache.TimeToLive
            ? known.Same
            : null;

    private async Task<bool> AskAsync(string stored, string chosen, string entity, CancellationToken cancellationToken)
    {
        var same = await gateway.IsSameKeyAsync(stored, chosen, cache.ContextFor(entity, default, direct: false), cancellationToken).ConfigureAwait(false);
        if (_answers.Count < MaxRememberedPairs || _answers.ContainsKey((stored, chosen)))
        {
            _answers[(stored, chosen)] = (same, settings.TimeProvider.GetTimestamp());
        }

        return same;
    }
}
