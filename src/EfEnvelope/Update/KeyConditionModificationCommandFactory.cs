using System.Data.Common;
using EfEnvelope.ChangeTracking;
using EfEnvelope.Metadata;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.EntityFrameworkCore.Update;

namespace EfEnvelope.Update;

/// <summary>Makes the <c>UPDATE</c> that rewrites a record's key column conditional on the key column it read.</summary>
/// <remarks>
/// <para>
/// An edit writes only the columns that changed plus the key column, whose record seal commits to every encrypted
/// value of the record as this context knows them. If another context changed one of those values after this one read
/// the record, an unconditional <c>UPDATE</c> would leave a seal that matches neither save: the row would be refused
/// as tampered on every read from then on. Plain EF, without a seal, would merge the two partial updates.
/// </para>
/// <para>
/// So the update matches the row only while its key column is still the one this context read (or fetched for an
/// attached record), as with a concurrency token; otherwise EF raises <see cref="DbUpdateConcurrencyException"/>, and
/// <see cref="EncryptingStateManager"/> reads the record again and saves once more, merging as plain EF does (or
/// lets the exception through where the failed attempt cannot be undone). Only such partial rewrites are conditioned: a
/// record written whole (inserted, <c>Update()</c>d, or moved to a fresh data key) is consistent by itself, as plain
/// EF's full update is, and deletes stay unconditional (a concurrency token in the model would condition them too,
/// and a deleted stub has no key column to compare).
/// </para>
/// <para>
/// The provider's factory is wrapped, never replaced (SQLite and SQL Server create their own command types), and so
/// are its commands: only the key column's <see cref="IColumnModification.IsCondition"/> changes, once EF has generated
/// the command's column modifications and before it writes SQL from them.
/// </para>
/// </remarks>
internal sealed class KeyConditionModificationCommandFactory(IModificationCommandFactory inner) : IModificationCommandFactory
{
    public IModificationCommand CreateModificationCommand(in ModificationCommandParameters modificationCommandParameters) =>
        new KeyConditionModificationCommand(inner.CreateModificationCommand(modificationCommandParameters));

    public INonTrackedModificationCommand CreateNonTrackedModificationCommand(in NonTrackedModificationCommandParameters modificationCommandParameters) =>
        inner.CreateNonTrackedModificationCommand(modificationCommandParameters);
}

/// <summary>A provider's modification command whose key-column write of an update is also a condition.</summary>
internal sealed class KeyConditionModificationCommand(IModificationCommand inner) : IModificationCommand
{
    private IReadOnlyList<IColumnModification>? _columnModifications;

    public IReadOnlyList<IColumnModification> ColumnModifications => _columnModifications ??= WithKeyCondition(inner.ColumnModifications);

    public ITable? Table => inner.Table;

    public IStoreStoredProcedure? StoreStoredProcedure => inner.StoreStoredProcedure;

    public string TableName => inner.TableName;

    public string? Schema => inner.Schema;

    public IReadOnlyList<IUpdateEntry> Entries => inner.Entries;

    public EntityState EntityState => inner.EntityState;

    public IColumnBase? RowsAffectedColumn => inner.RowsAffectedColumn;

    public void AddEntry(IUpdateEntry entry, bool mainEntry) => inner.AddEntry(entry, mainEntry);

    public void PropagateResults(RelationalDataReader relationalReader) => inner.PropagateResults(relationalReader);

    public void PropagateOutputParameters(DbParameterCollection parameterCollection, int baseParameterIndex) =>
        inner.PropagateOutputParameters(parameterCollection, baseParameterIndex);

    public override string ToString() => inner.ToString() ?? base.ToString()!;

    private IReadOnlyList<IColumnModification> WithKeyCondition(IReadOnlyList<IColumnModification> columns)
    {
        if (inner.EntityState == EntityState.Modified)
        {
            foreach (var column in columns)
            {
                if (column is { IsWrite: true, IsCondition: false, Property: { } property, Entry: { EntityState: EntityState.Modified } entry }
                    && property.IsShadowProperty()
                    && property.Name == EncryptionAnnotations.KeyPropertyName
                    && entry.Context.GetService<IChangeDetector>() is EncryptionChangeDetector detector
                    && detector.RequiresStoredKey(entry))
                {
                    column.IsCondition = true;
                }
            }
        }

        return columns;
    }
}
