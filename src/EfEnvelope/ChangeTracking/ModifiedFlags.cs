using System.Linq.Expressions;
using System.Reflection;
using Microsoft.EntityFrameworkCore.ChangeTracking.Internal;

namespace EfEnvelope.ChangeTracking;

/// <summary>Reads the modified flag EF keeps for a property, including where EF hides it.</summary>
/// <remarks>
/// <see cref="InternalEntryBase.IsModified(Microsoft.EntityFrameworkCore.Metadata.IProperty)"/> answers false for a
/// property whose value EF does not know, as a shadow property of an attached instance: EfEnvelope's ciphertext and key
/// columns are such properties. State = Modified flags them all the same, and only the flag itself tells that apart
/// from IsModified = true on one property. EF keeps the flags in a private field; the accessor is compiled once and
/// its absence (another EF Core version) is an error at first use, never a silent guess.
/// </remarks>
internal static class ModifiedFlags
{
    private static readonly Func<InternalEntryBase, int, bool> Flagged = Compile();

    /// <summary>Whether EF flagged the property at <paramref name="index"/> (its <c>GetIndex()</c>) modified.</summary>
    public static bool IsFlagged(InternalEntryBase entry, int index) => Flagged(entry, index);

    private static Func<InternalEntryBase, int, bool> Compile()
    {
        var field = typeof(InternalEntryBase).GetField("_stateData", BindingFlags.NonPublic | BindingFlags.Instance);
        var flag = typeof(InternalEntryBase).GetNestedType("PropertyFlag", BindingFlags.NonPublic);
        var test = field?.FieldType.GetMethod("IsPropertyFlagged", [typeof(int), flag ?? typeof(void)]);
        if (field is null || flag is null || test is null || !Enum.IsDefined(flag, "Modified"))
        {
            throw new InvalidOperationException(
                "EfEnvelope cannot read EF Core's modified flags in this version of Microsoft.EntityFrameworkCore (InternalEntryBase._stateData). " +
                "Use the EF Core version EfEnvelope was built against.");
        }

        var entry = Expression.Parameter(typeof(InternalEntryBase), "entry");
        var index = Expression.Parameter(typeof(int), "index");
        return Expression.Lambda<Func<InternalEntryBase, int, bool>>(
            Expression.Call(Expression.Field(entry, field), test, index, Expression.Constant(Enum.Parse(flag, "Modified"), flag)),
            entry,
            index).Compile();
    }
}
