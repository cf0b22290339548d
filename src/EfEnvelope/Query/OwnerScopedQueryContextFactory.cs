using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Query;

namespace EfEnvelope.Query;

/// <summary>
/// EF's query context factory, which also empties the context's table of owners read without tracking
/// (<see cref="NoTrackingOwners"/>) as each query execution starts, compiled queries included.
/// </summary>
/// <remarks>Registered only with a master-key selector, the only configuration whose reads consult the table.</remarks>
internal sealed class OwnerScopedQueryContextFactory(IQueryContextFactory inner, ICurrentDbContext currentContext) : IQueryContextFactory
{
    public QueryContext Create()
    {
        NoTrackingOwners.Reset(currentContext.Context);
        return inner.Create();
    }
}
