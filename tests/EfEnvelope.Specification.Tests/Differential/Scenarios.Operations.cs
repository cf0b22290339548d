using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Specification.Tests.Differential;

// Compiled queries, FromSql and raw SQL, ExecuteUpdate/ExecuteDelete.
public static partial class Scenarios
{
    private static IEnumerable<Scenario> CompiledQueries()
    {
        // A compiled query serves one model, and the two runs have two: each run compiles its own, as an application would once.
        const string Area = "compiled";
        yield return Query("compiled-entity-by-key", Area, (db, _) =>
            EF.CompileAsyncQuery((ShopContext c, int id) => c.Customers.SingleOrDefault(x => x.Id == id))(db, 2));
        yield return Query("compiled-searchable-parameter", Area, async (db, _) =>
        {
            var count = EF.CompileAsyncQuery((ShopContext c, string email) => c.Customers.Count(x => x.Email == email));
            return new[] { await count(db, "c1@example.com"), await count(db, "none") };
        });
        yield return Query("compiled-encrypted-projection", Area, (db, ct) =>
            EF.CompileAsyncQuery((ShopContext c, int id) => c.Customers.Where(x => x.Id > id).OrderBy(x => x.Id).Select(x => x.Ssn))(db, 1).ToListAsync(ct).AsTask());
        yield return Query("compiled-sync-include", Area, (db, _) =>
        {
            var order = EF.CompileQuery((ShopContext c, int id) => c.Orders.Include(o => o.Customer).Single(o => o.Id == id))(db, 3);
            return Task.FromResult(new { order.Customer!.Notes, order.CardNumber });
        });
        yield return Query("compiled-by-searchable-entities", Area, (db, ct) =>
            EF.CompileAsyncQuery((ShopContext c, string email) => c.Customers.Where(x => x.Email == email))(db, "c2@example.com").ToListAsync(ct).AsTask());
        yield return new("compiled-reused-across-contexts", Area, async r =>
        {
            await Shop.CustomersAsync(r, 2);
            var byId = EF.CompileAsyncQuery((ShopContext c, int id) => c.Customers.SingleOrDefault(x => x.Id == id));
            foreach (var id in new[] { 1, 2, 1 })
            {
                await using var db = r.NewContext();
                r.Observe("customer " + id, (await byId(db, id))!.Ssn);
            }
        });
    }

    private static IEnumerable<Scenario> RawSql()
    {
        const string Area = "raw-sql";
        yield return Query("from-sql-all", Area, (db, ct) => db.Customers.FromSql($"SELECT * FROM \"Customers\"").OrderBy(c => c.Id).ToListAsync(ct));
        yield return Query("from-sql-parameter", Area, (db, ct) =>
        {
            var name = "Customer 3";
            return db.Customers.FromSql($"SELECT * FROM \"Customers\" WHERE \"Name\" = {name}").ToListAsync(ct);
        });
        yield return Query("from-sql-composed", Area, (db, ct) => db.Customers.FromSql($"SELECT * FROM \"Customers\"").Where(c => c.Id > 2).OrderBy(c => c.Id).Select(c => new { c.Name, c.Ssn }).ToListAsync(ct));
        yield return Query("from-sql-raw-no-tracking", Area, (db, ct) => db.Orders.FromSqlRaw("SELECT * FROM \"Orders\"").AsNoTracking().OrderBy(o => o.Id).Select(o => o.CardNumber).ToListAsync(ct));
        yield return Query("from-sql-column-list", Area, (db, ct) => db.Orders
            .FromSqlRaw("SELECT \"Id\", \"CustomerId\", \"CardNumber\", \"Note\", \"Total\", \"Quantity\", \"ShippedAt\" FROM \"Orders\"")
            .AsNoTracking().OrderBy(o => o.Id).ToListAsync(ct));
        yield return Query("from-sql-include", Area, (db, ct) => db.Customers.FromSql($"SELECT * FROM \"Customers\"").Include(c => c.Orders).OrderBy(c => c.Id).ToListAsync(ct));
        yield return Query("sql-query-plain-scalar", Area, (db, ct) => db.Database.SqlQuery<string>($"SELECT \"Name\" AS \"Value\" FROM \"Customers\" ORDER BY \"Id\"").ToListAsync(ct));
        yield return Query("sql-query-encrypted-scalar", Area, (db, ct) => db.Database.SqlQuery<string>($"SELECT \"Ssn\" AS \"Value\" FROM \"Customers\" ORDER BY \"Id\"").ToListAsync(ct));
        yield return new("execute-sql-plain-update", Area, async r =>
        {
            await Shop.CustomersAsync(r, 2);
            await using var db = r.NewContext();
            r.Observe("rows", await db.Database.ExecuteSqlAsync($"UPDATE \"Customers\" SET \"Name\" = 'renamed' WHERE \"Id\" = {1}", r.Ct));
        });
        yield return new("execute-sql-then-reload", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            await db.Database.ExecuteSqlAsync($"UPDATE \"Customers\" SET \"Version\" = 5", r.Ct);
            await db.Entry(c).ReloadAsync(r.Ct);
            r.Observe("customer", c);
        });
    }

    private static Scenario Bulk(string id, Func<ShopContext, CancellationToken, Task<int>> statement) =>
        new(id, "bulk", async r =>
        {
            await Shop.CustomersAsync(r, 4);
            await using var db = r.NewContext();
            var before = r.Sql.Commands.Count;
            r.Observe("affected", await statement(db, r.Ct));
            r.Observe("commands", r.Sql.Commands.Count - before);
            r.Touch<Order>();
        });

    private static IEnumerable<Scenario> BulkOperations()
    {
        yield return Bulk("execute-delete-all", async (db, ct) => await db.Orders.ExecuteDeleteAsync(ct));
        yield return Bulk("execute-delete-where-plain", (db, ct) => db.Orders.Where(o => o.Quantity > 4).ExecuteDeleteAsync(ct));
        yield return Bulk("execute-delete-where-searchable", (db, ct) => db.Orders.Where(o => o.Customer!.Email == "c2@example.com").ExecuteDeleteAsync(ct));
        yield return Bulk("execute-delete-where-encrypted", (db, ct) => db.Orders.Where(o => o.CardNumber == "4111-11").ExecuteDeleteAsync(ct));
        yield return Bulk("execute-update-plain", (db, ct) => db.Customers.Where(c => c.Id > 2).ExecuteUpdateAsync(s => s.SetProperty(c => c.Name, "bulk"), ct));
        yield return Bulk("execute-update-plain-from-column", (db, ct) => db.Orders.ExecuteUpdateAsync(s => s.SetProperty(o => o.Quantity, o => o.Quantity * 2), ct));
        yield return Bulk("execute-update-encrypted-constant", (db, ct) => db.Customers.Where(c => c.Id == 1).ExecuteUpdateAsync(s => s.SetProperty(c => c.Notes, "bulk note"), ct));
        yield return Bulk("execute-update-encrypted-null", (db, ct) => db.Customers.ExecuteUpdateAsync(s => s.SetProperty(c => c.Notes, (string?)null), ct));
        yield return Bulk("execute-update-encrypted-from-column", (db, ct) => db.Customers.ExecuteUpdateAsync(s => s.SetProperty(c => c.Notes, c => c.Name), ct));
        yield return Bulk("execute-update-where-searchable", (db, ct) => db.Customers.Where(c => c.Email == "c1@example.com").ExecuteUpdateAsync(s => s.SetProperty(c => c.Version, c => c.Version + 1), ct));
        yield return Bulk("execute-update-owned-encrypted", (db, ct) => db.Customers.ExecuteUpdateAsync(s => s.SetProperty(c => c.Home!.Street, "bulk street"), ct));
    }
}
