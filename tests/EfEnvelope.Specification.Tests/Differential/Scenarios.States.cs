using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Specification.Tests.Differential;

// State transitions, attaching and detaching, AcceptAllChanges, Clear, tracking events, Find and Local, graphs.
public static partial class Scenarios
{
    private static IEnumerable<Scenario> StateTransitions()
    {
        const string Area = "states";
        yield return new("state-unchanged-discards-edit", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            db.ChangeTracker.DetectChanges();
            db.Entry(c).State = EntityState.Unchanged;
            r.Tracker(db);
            await r.SaveAsync(db);
        });
        yield return new("state-modified-writes-every-column", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            db.Entry(c).State = EntityState.Modified;
            r.Observe("modified", db.Entry(c).Properties.Where(p => p.IsModified && !p.Metadata.IsShadowProperty()).Select(p => p.Metadata.Name).Order(StringComparer.Ordinal).ToList());
            await r.SaveAsync(db);
        });
        yield return new("state-deleted", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.Include(x => x.Orders).SingleAsync(r.Ct);
            db.Entry(c).State = EntityState.Deleted;
            r.Tracker(db);
            await r.SaveAsync(db);
        });
        yield return new("state-detached-then-save", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            db.Entry(c).State = EntityState.Detached;
            await r.SaveAsync(db);
            r.Observe("entity", c.Ssn);
        });
        yield return new("state-added-then-detached", Area, async r =>
        {
            await using var db = r.NewContext();
            var c = Shop.Customer(1);
            db.Customers.Add(c);
            db.Entry(c).State = EntityState.Detached;
            r.Tracker(db);
            await r.SaveAsync(db);
            r.Touch<Customer>();
        });
        yield return new("state-unchanged-to-added-duplicate-key", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            db.Entry(c).State = EntityState.Added;
            await r.ExpectAsync<DbUpdateException>("save", () => db.SaveChangesAsync(r.Ct));
        });
        yield return new("state-added-to-modified-with-key", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = NewCustomerWithId(3, 1);
            db.Add(c);
            db.Entry(c).State = EntityState.Modified;
            await r.SaveAsync(db);
        });
        yield return new("update-detached-graph", Area, async r =>
        {
            var c = await OneDetachedCustomerAsync(r);
            c.Ssn = "555-55-5555";
            c.Notes = null;
            await using var db = r.NewContext();
            db.Update(c);
            r.Tracker(db);
            await r.SaveAsync(db);
        });
        yield return new("attach-then-edit", Area, async r =>
        {
            var c = await OneDetachedCustomerAsync(r);
            await using var db = r.NewContext();
            db.Attach(c);
            c.Notes = "edited after attach";
            db.ChangeTracker.DetectChanges();
            r.Tracker(db);
            await r.SaveAsync(db);
        });
        yield return new("attach-then-edit-twice", Area, async r =>
        {
            var c = await OneDetachedCustomerAsync(r);
            await using var db = r.NewContext();
            db.Attach(c);
            c.Notes = "edited after attach";
            await r.SaveAsync(db);
            c.Ssn = "123-45-6789";
            await r.SaveAsync(db);
        });
        yield return new("failed-insert-then-unchanged-then-edit", Area, async r =>
        {
            await using var db = r.NewContext();
            var c = await FailedInsertDeclaredStoredAsync(r, db);
            c.Ssn = "777-77-0000";
            await r.SaveAsync(db);
        });
        yield return new("failed-insert-then-unchanged-then-edit-owned", Area, async r =>
        {
            await using var db = r.NewContext();
            var c = await FailedInsertDeclaredStoredAsync(r, db);
            db.Entry(c.Home!).State = EntityState.Unchanged;
            c.Home!.Street = "edited after the failed insert";
            await r.ExpectAsync<InvalidOperationException>("edit", () => db.SaveChangesAsync(r.Ct));
        });
        yield return new("remove-stub", Area, async r =>
        {
            await using (var seed = r.NewContext())
            {
                seed.Customers.Add(new Customer { Name = "alone", Ssn = "1" });
                await seed.SaveChangesAsync(r.Ct);
            }

            await using var db = r.NewContext();
            db.Remove(new Customer { Id = 1 });
            await r.SaveAsync(db);
        });
        yield return new("accept-all-changes", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            db.ChangeTracker.DetectChanges();
            db.ChangeTracker.AcceptAllChanges();
            r.Tracker(db);
            await r.SaveAsync(db);
        });
        yield return new("save-without-accepting-then-save-again", Area, async r =>
        {
            // The entries stay Added, so the second save inserts them again with new generated keys.
            await using var db = r.NewContext();
            db.Customers.Add(Shop.Customer(1));
            r.Observe("first", await db.SaveChangesAsync(acceptAllChangesOnSuccess: false, r.Ct));
            r.Observe("second", await db.SaveChangesAsync(r.Ct));
            r.Touch<Customer>();
        });
        yield return new("save-without-accepting-then-accept", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            r.Observe("saved", await db.SaveChangesAsync(acceptAllChangesOnSuccess: false, r.Ct));
            r.Tracker(db, "before accept");
            db.ChangeTracker.AcceptAllChanges();
            r.Tracker(db, "after accept");
            await r.SaveAsync(db);
        });
        yield return new("change-tracker-clear", Area, async r =>
        {
            await Shop.CustomersAsync(r, 2);
            await using var db = r.NewContext();
            foreach (var c in await db.Customers.ToListAsync(r.Ct))
            {
                c.Ssn = "cleared";
            }

            db.ChangeTracker.Clear();
            r.Observe("entries", db.ChangeTracker.Entries().Count());
            await r.SaveAsync(db);
            r.Observe("reloaded", await db.Customers.OrderBy(c => c.Id).Select(c => c.Name).ToListAsync(r.Ct));
        });
        yield return new("detach-edit-attach", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            db.Entry(c).State = EntityState.Detached;
            c.Ssn = "edited while detached";
            db.Attach(c);
            r.Tracker(db);
            await r.SaveAsync(db);
        });
        // The disconnected update: an instance attached with new values, then marked Modified, writes every column.
        yield return new("attach-then-state-modified", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = Shop.Customer(1);
            c.Id = 1;
            c.Ssn = "attached value";
            c.Notes = null;
            db.Attach(c);
            db.Entry(c).State = EntityState.Modified;
            await r.SaveAsync(db);
            r.Touch<Customer>();
        });
        yield return new("attach-then-state-modified-with-owned", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = Shop.Customer(1);
            c.Id = 1;
            c.Home!.Street = "attached street";
            db.Attach(c);
            db.Entry(c).State = EntityState.Modified;
            db.Entry(c.Home).State = EntityState.Modified;
            await r.SaveAsync(db);
            r.Touch<Customer>();
        });
        yield return new("attach-then-edit-deleted-row", Area, async r =>
        {
            // The row is gone: the edit's update affects no row, a concurrency conflict.
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = Shop.Customer(1);
            c.Id = 1;
            c.Orders.Clear();
            db.Attach(c);
            await db.Orders.ExecuteDeleteAsync(r.Ct);
            await db.Customers.ExecuteDeleteAsync(r.Ct);
            c.Ssn = "edited after the delete";
            await r.ExpectAsync<DbUpdateConcurrencyException>("save", () => db.SaveChangesAsync(r.Ct));
        });
        yield return new("no-tracking-read-edit-attach-modified", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.AsNoTracking().SingleAsync(r.Ct);
            c.Ssn = "edited while untracked";
            db.Attach(c);
            db.Entry(c).State = EntityState.Modified;
            await r.SaveAsync(db);
            r.Touch<Customer>();
        });
        yield return new("tracked-edit-state-unchanged-then-modified", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Notes = "kept";
            db.Entry(c).State = EntityState.Unchanged;
            db.Entry(c).State = EntityState.Modified;
            await r.SaveAsync(db);
            r.Touch<Customer>();
        });
        yield return new("has-changes-after-encrypted-edit", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            r.Observe("before", db.ChangeTracker.HasChanges());
            c.BirthDate = new DateOnly(2000, 1, 1);
            r.Observe("after", db.ChangeTracker.HasChanges());
        });
        yield return new("assign-same-value", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = new string(c.Ssn.ToCharArray());
            r.Observe("changes", db.ChangeTracker.HasChanges());
            await r.SaveAsync(db);
        });
        yield return new("edit-and-revert", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            var original = c.Ssn;
            c.Ssn = "999-99-9999";
            db.ChangeTracker.DetectChanges();
            c.Ssn = original;
            db.ChangeTracker.DetectChanges();
            r.Tracker(db);
            await r.SaveAsync(db);
        });
        yield return new("state-changed-events", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var events = new List<string>();
            db.ChangeTracker.StateChanged += (_, e) => events.Add($"{e.Entry.Metadata.DisplayName()} {e.OldState}->{e.NewState}");
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Notes = "edited";
            db.ChangeTracker.DetectChanges();
            await db.SaveChangesAsync(r.Ct);
            r.Observe("events", events);
        });
        yield return new("auto-detect-changes-off", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            db.ChangeTracker.AutoDetectChangesEnabled = false;
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            await r.SaveAsync(db, "without detect");
            db.ChangeTracker.DetectChanges();
            await r.SaveAsync(db, "after detect");
        });
        yield return new("find-returns-tracked-edit", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "local";
            var found = await db.Customers.FindAsync([1], r.Ct);
            r.Observe("same", ReferenceEquals(c, found));
            r.Observe("value", found!.Ssn);
        });
        yield return new("find-from-database", Area, async r =>
        {
            await Shop.CustomersAsync(r, 2);
            await using var db = r.NewContext();
            r.Observe("found", await db.Customers.FindAsync([2], r.Ct));
            r.Observe("missing", await db.Customers.FindAsync([42], r.Ct));
        });
        yield return new("local-view", Area, async r =>
        {
            await Shop.CustomersAsync(r, 3);
            await using var db = r.NewContext();
            await db.Customers.Where(c => c.Id > 1).LoadAsync(r.Ct);
            r.Observe("local", db.Customers.Local.OrderBy(c => c.Id).Select(c => c.Ssn).ToList());
        });
        yield return new("query-keeps-local-edit", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "local edit";
            var again = await db.Customers.SingleAsync(r.Ct);
            r.Observe("same", ReferenceEquals(c, again));
            r.Observe("value", again.Ssn);
            r.Tracker(db);
        });
        yield return new("identity-resolution-no-tracking", Area, async r =>
        {
            await Shop.CustomersAsync(r, 2);
            await using var db = r.NewContext();
            var orders = await db.Orders.Include(o => o.Customer).AsNoTrackingWithIdentityResolution().OrderBy(o => o.Id).ToListAsync(r.Ct);
            r.Observe("shared", ReferenceEquals(orders[0].Customer, orders[1].Customer));
            r.Observe("ssn", orders.Select(o => o.Customer!.Ssn).ToList());
        });
        yield return new("track-graph", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            var c = Shop.Customer(5);
            c.Id = 1;
            c.Orders = [new Order { Id = 1, CustomerId = 1, CardNumber = "replaced", Quantity = 9 }, Shop.Order(5, 3)];
            await using var db = r.NewContext();
            db.ChangeTracker.TrackGraph(c, node => node.Entry.State = node.Entry.IsKeySet ? EntityState.Modified : EntityState.Added);
            r.Tracker(db);
            await r.SaveAsync(db);
        });
        yield return new("insert-then-edit-in-same-context", Area, async r =>
        {
            await using var db = r.NewContext();
            var c = Shop.Customer(1);
            db.Add(c);
            await r.SaveAsync(db, "insert");
            c.Ssn = "after insert";
            c.Home!.Street = "moved";
            await r.SaveAsync(db, "update");
            r.Tracker(db);
        });
        yield return new("original-values-after-save", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "new";
            await db.SaveChangesAsync(r.Ct);
            r.Observe("original", db.Entry(c).OriginalValues["Ssn"]);
            r.Observe("state", db.Entry(c).State);
        });
        yield return new("cascade-delete-loaded-orders", Area, async r =>
        {
            await Shop.CustomersAsync(r, 2);
            await using var db = r.NewContext();
            var c = await db.Customers.Include(x => x.Orders).SingleAsync(x => x.Id == 1, r.Ct);
            db.Remove(c);
            db.ChangeTracker.DetectChanges();
            r.Tracker(db);
            await r.SaveAsync(db);
            r.Touch<Order>();
        });
        yield return new("state-deleted-to-unchanged", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Notes = "edited before delete";
            db.Remove(c);
            db.Entry(c).State = EntityState.Unchanged;
            r.Tracker(db);
            await r.SaveAsync(db);
        });
        yield return new("state-deleted-to-modified", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            db.Remove(c);
            c.Ssn = "edited while deleted";
            db.Entry(c).State = EntityState.Modified;
            await r.SaveAsync(db);
        });
        yield return new("state-modified-to-deleted", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.Include(x => x.Orders).SingleAsync(r.Ct);
            c.Ssn = "edited then deleted";
            db.ChangeTracker.DetectChanges();
            db.Entry(c).State = EntityState.Deleted;
            await r.SaveAsync(db);
            r.Touch<Order>();
        });
        yield return new("state-added-to-unchanged", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = NewCustomerWithId(7, 1);
            db.Add(c);
            db.Entry(c).State = EntityState.Unchanged;
            r.Tracker(db);
            await r.SaveAsync(db);
        });
        yield return new("state-added-to-unchanged-then-edit", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = NewCustomerWithId(7, 1);
            db.Add(c);
            db.Entry(c).State = EntityState.Unchanged;
            c.Ssn = "777-77-0000";
            c.Notes = null;
            await r.SaveAsync(db);
        });
        yield return new("state-added-to-modified-missing-row", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = NewCustomerWithId(8, 42);
            db.Add(c);
            db.Entry(c).State = EntityState.Modified;
            await r.ExpectAsync<DbUpdateConcurrencyException>("save", () => db.SaveChangesAsync(r.Ct));
        });
        yield return new("edit-every-encrypted-type", Area, async r =>
        {
            await Shop.CustomersAsync(r, 2);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(x => x.Id == 1, r.Ct);
            c.BirthDate = new DateOnly(1999, 12, 31);
            c.Score = -1;
            c.CreditLimit = 0.01m;
            c.Vip = !c.Vip;
            c.Tier = Tier.Gold;
            c.LastSeen = new DateTimeOffset(2030, 6, 1, 0, 0, 0, TimeSpan.Zero);
            c.Email = "changed@example.com";
            await r.SaveAsync(db);
        });
        yield return new("null-to-value-and-back", Area, async r =>
        {
            await Shop.CustomersAsync(r, 2);
            await using var db = r.NewContext();
            var one = await db.Customers.SingleAsync(x => x.Id == 1, r.Ct);
            var two = await db.Customers.SingleAsync(x => x.Id == 2, r.Ct);
            one.Notes = null;
            one.LastSeen = null;
            two.Notes = "was null";
            two.LastSeen = DateTimeOffset.UnixEpoch;
            await r.SaveAsync(db);
        });
        yield return new("sync-save-and-query", Area, r =>
        {
            using var db = r.NewContext();
            db.Customers.Add(Shop.Customer(1));
            r.Observe("saved", db.SaveChanges());
            using var read = r.NewContext();
            r.Observe("read", read.Customers.Single().Ssn);
            r.Observe("find", read.Customers.Find(1)!.Notes);
            return Task.CompletedTask;
        });
    }

    /// <summary>A new instance of customer <paramref name="n"/>, without orders, that carries key <paramref name="id"/>.</summary>
    private static Customer NewCustomerWithId(int n, int id)
    {
        var customer = Shop.Customer(n);
        customer.Id = id;
        customer.Orders.Clear();
        return customer;
    }

    /// <summary>
    /// A new instance with the key of a stored customer: its insert fails (duplicate key), and the application then
    /// declares it the stored row (<c>State = Unchanged</c>).
    /// </summary>
    private static async Task<Customer> FailedInsertDeclaredStoredAsync(ScenarioRun r, ShopContext db)
    {
        await Shop.CustomersAsync(r, 1);
        var c = NewCustomerWithId(7, 1);
        db.Add(c);
        await r.ExpectAsync<DbUpdateException>("insert", () => db.SaveChangesAsync(r.Ct));
        db.Entry(c).State = EntityState.Unchanged;
        return c;
    }

    /// <summary>One stored customer, read without tracking: an instance to attach or update.</summary>
    private static async Task<Customer> OneDetachedCustomerAsync(ScenarioRun r)
    {
        await Shop.CustomersAsync(r, 1);
        await using var read = r.NewContext();
        return await read.Customers.AsNoTracking().SingleAsync(r.Ct);
    }
}
