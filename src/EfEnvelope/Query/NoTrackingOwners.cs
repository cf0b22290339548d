using System.Collections;
using System.Runtime.CompilerServices;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;

namespace EfEnvelope.Query;

/// <summary>
/// The root owners that queries without tracking have materialized in one context, by entity hierarchy and primary
/// key, so that the master-key selector check can find the owner of an owned record EF has not linked to it yet.
/// </summary>
/// <remarks>
/// <para>
/// Why: the selector is asked about an owned record's root owner, and without tracking there is no entry to navigate
/// from the record to it; EF assigns the owned navigation only after it has materialized the record. It does
/// materialize the owner first: the owner's columns come before its owned records' in the row, and a split query reads
/// the owners before the commands that read their owned collections.
/// </para>
/// <para>
/// The table holds the owners of one query execution only: it is emptied each time EF creates a query context
/// (<see cref="OwnerScopedQueryContextFactory"/>), so an owner read by an earlier query (whose row may have changed
/// since) never answers for a record this query reads without its owner; that record is refused instead. Owners are
/// held weakly, so a streaming read keeps no more of them alive than the application does, and dead entries are pruned
/// as the table grows. A row read twice without identity resolution maps to its latest instance. A context is used by
/// one thread at a time (EF's rule), so the table needs no lock.
/// </para>
/// </remarks>
internal sealed class NoTrackingOwners
{
    private const int FirstPrune = 1024;

    private static readonly ConditionalWeakTable<DbContext, NoTrackingOwners> PerContext = new();

    private readonly Dictionary<OwnerKey, WeakReference<object>> _owners = [];
    private int _pruneAt = FirstPrune;

    /// <summary>The owners materialized in <paramref name="context"/>.</summary>
    public static NoTrackingOwners For(DbContext context) => PerContext.GetValue(context, _ => new NoTrackingOwners());

    /// <summary>Forgets the owners of <paramref name="context"/>'s earlier queries.</summary>
    public static void Reset(DbContext context)
    {
        if (PerContext.TryGetValue(context, out var owners))
        {
            owners._owners.Clear();
            owners._pruneAt = FirstPrune;
        }
    }

    /// <summary>Remembers <paramref name="owner"/> as the instance of the row with <paramref name="key"/> in <paramref name="hierarchy"/>.</summary>
    public void Remember(IEntityType hierarchy, object?[] key, object owner)
    {
        if (_owners.Count >= _pruneAt)
        {
            foreach (var dead in _owners.Where(pair => !pair.Value.TryGetTarget(out _)).Select(pair => pair.Key).ToList())
            {
                _owners.Remove(dead);
            }

            _pruneAt = Math.Max(FirstPrune, 2 * _owners.Count);
        }

        _owners[new OwnerKey(hierarchy, key)] = new WeakReference<object>(owner);
    }

    /// <summary>The instance last materialized for the row with <paramref name="key"/> in <paramref name="hierarchy"/>, if still alive.</summary>
    public object? Find(IEntityType hierarchy, object?[] key) =>
        _owners.TryGetValue(new OwnerKey(hierarchy, key), out var owner) && owner.TryGetTarget(out var instance) ? instance : null;

    private readonly struct OwnerKey(IEntityType hierarchy, object?[] values) : IEquatable<OwnerKey>
    {
        private IEntityType Hierarchy { get; } = hierarchy;

        private object?[] Values { get; } = values;

        // Structural, so that a byte[] key compares by its bytes.
        public bool Equals(OwnerKey other) =>
            ReferenceEquals(Hierarchy, other.Hierarchy) && StructuralComparisons.StructuralEqualityComparer.Equals(Values, other.Values);

        public override bool Equals(object? obj) => obj is OwnerKey other && Equals(other);

        public override int GetHashCode()
        {
            var hash = new HashCode();
            hash.Add(Hierarchy);
            foreach (var value in Values)
            {
                hash.Add(value is null ? 0 : StructuralComparisons.StructuralEqualityComparer.GetHashCode(value));
            }

            return hash.ToHashCode();
        }
    }
}
