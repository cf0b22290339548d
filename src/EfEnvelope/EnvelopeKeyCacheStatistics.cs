namespace EfEnvelope;

/// <summary>A snapshot of the key cache shared by every context of one encryption configuration.</summary>
/// <param name="Hits">Key look-ups served from the cache.</param>
/// <param name="Misses">Key look-ups that asked the master-key provider.</param>
/// <param name="SynchronousMisses">
/// Misses on a synchronous path (<c>SaveChanges</c>, <c>ToList</c>), each blocking a thread for one provider call;
/// async queries and saves never add to it. Warm the cache (<c>WarmUpEnvelopeKeysAsync</c>) to keep it at zero.
/// </param>
/// <param name="CachedKeys">Unwrapped keys held for reading now.</param>
public sealed record EnvelopeKeyCacheStatistics(long Hits, long Misses, long SynchronousMisses, int CachedKeys);
