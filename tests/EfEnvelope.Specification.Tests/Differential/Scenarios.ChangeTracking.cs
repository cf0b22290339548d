using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Specification.Tests.Differential;

// Change-tracker APIs: Entry, Property, CurrentValues, OriginalValues, GetDatabaseValues, SetValues, Reload.
public static partial class Scenarios
{
    private static IEnumerable<Scenario> ChangeTracking()
    {
        const string Area = "change-tracker";
        yield return new("tracker-add-then-save", Area, async r =>
        {
            await using var db = r.NewContext();
            db.Customers.Add(Shop.Customer(1));
            r.Tracker(db, "added");
            await r.SaveAsync(db);
            r.Tracker(db, "saved");
        });
        yield return new("tracker-after-query", Area, async r =>
        {
            await Shop.CustomersAsync(r, 2);
            await using var db = r.NewContext();
            await db.Customers.OrderBy(c => c.Id).ToListAsync(r.Ct);
            r.Tracker(db);
        });
        yield return new("tracker-edit-encrypted-detect-changes", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            db.ChangeTracker.DetectChanges();
            r.Observe("state", db.Entry(c).State);
            r.Tracker(db);
            await r.SaveAsync(db);
        });
        yield return new("entry-property-is-modified", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            db.ChangeTracker.DetectChanges();
            r.Observe("Ssn modified", db.Entry(c).Property(x => x.Ssn).IsModified);
            r.Observe("Notes modified", db.Entry(c).Property(x => x.Notes).IsModified);
        });
        yield return new("entry-property-original-value", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            r.Observe("original", db.Entry(c).Property(x => x.Ssn).OriginalValue);
            r.Observe("current", db.Entry(c).Property(x => x.Ssn).CurrentValue);
        });
        yield return new("entry-property-set-current-value", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            db.Entry(c).Property(x => x.Notes).CurrentValue = "set through the entry";
            r.Observe("entity", c.Notes);
            r.Observe("state", db.Entry(c).State);
            await r.SaveAsync(db);
        });
        yield return new("entry-property-is-modified-partial-update", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var stub = new Customer { Id = 1, Ssn = "111-11-1111", Name = "not written" };
            db.Attach(stub);
            db.Entry(stub).Property(x => x.Ssn).IsModified = true;
            r.Tracker(db);
            await r.SaveAsync(db);
        });
        // The usual "update one column" pattern, on a plain column: plain EF writes that column alone (found by a
        // user-style hunt: every encrypted value was rewritten from the stub's defaults).
        yield return new Scenario("attach-stub-mark-plain-property-modified", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var stub = new Customer { Id = 1, Name = "renamed" };
            db.Attach(stub);
            db.Entry(stub).Property(x => x.Name).IsModified = true;
            await r.SaveAsync(db);
        }).MustMatch();
        // Without automatic change detection, edits no DetectChanges found are not saved, whatever else is marked.
        yield return new Scenario("edits-undetected-then-plain-property-marked", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            db.ChangeTracker.AutoDetectChangesEnabled = false;
            var customer = await db.Customers.SingleAsync(r.Ct);
            customer.Ssn = "999-99-9999";
            customer.Version = 7;
            db.Entry(customer).Property(x => x.Name).IsModified = true;
            await r.SaveAsync(db);
        }).MustMatch();
        // State = Modified on an entity whose only saved properties besides its key are encrypted.
        yield return new Scenario("attach-then-state-modified-every-member-encrypted", Area, async r =>
        {
            await r.CreateTablesAsync<ReadingContext>();
            await using (var seed = r.NewContext<ReadingContext>())
            {
                seed.Readings.Add(new Reading { Id = 1, Value = 1.5, Approximate = 2.5f, Amount = 3.5m, Optional = 4.5 });
                await seed.SaveChangesAsync(r.Ct);
            }

            await using var db = r.NewContext<ReadingContext>();
            var reading = new Reading { Id = 1, Value = 10, Approximate = 20, Amount = 30, Optional = null };
            db.Attach(reading);
            db.Entry(reading).State = EntityState.Modified;
            await r.SaveAsync(db);
        }).MustMatch();
        yield return new("entry-property-by-name", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            r.Observe("Ssn", db.Entry(c).Property("Ssn").CurrentValue);
            r.Observe("BirthDate", db.Entry(c).Property(nameof(Customer.BirthDate)).OriginalValue);
        });
        yield return new("entry-property-is-modified-false", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            c.Name = "Renamed";
            db.ChangeTracker.DetectChanges();
            db.Entry(c).Property(x => x.Ssn).IsModified = false;
            r.Tracker(db);
            await r.SaveAsync(db);
        });
        yield return new("entry-modified-property-names", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            c.Score = 77;
            c.Name = "Renamed";
            db.ChangeTracker.DetectChanges();
            r.Observe("modified", db.Entry(c).Properties.Where(p => p.IsModified).Select(p => p.Metadata.Name).Order(StringComparer.Ordinal).ToList());
        });
        yield return new("current-values-indexer", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Notes = "edited";
            r.Observe("Notes", db.Entry(c).CurrentValues["Notes"]);
            r.Observe("Score", db.Entry(c).CurrentValues.GetValue<int>("Score"));
        });
        yield return new("original-values-indexer", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Notes = "edited";
            db.ChangeTracker.DetectChanges();
            r.Observe("Notes", db.Entry(c).OriginalValues["Notes"]);
            r.Observe("CreditLimit", db.Entry(c).OriginalValues[nameof(Customer.CreditLimit)]);
        });
        yield return new("current-values-to-object", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            r.Observe("copy", db.Entry(c).CurrentValues.ToObject());
        });
        yield return new("original-values-to-object", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            db.ChangeTracker.DetectChanges();
            r.Observe("copy", db.Entry(c).OriginalValues.ToObject());
        });
        yield return new("property-values-clone", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            var clone = db.Entry(c).CurrentValues.Clone();
            c.Ssn = "999-99-9999";
            r.Observe("clone", clone["Ssn"]);
            r.Observe("names", clone.Properties.Where(p => !p.IsShadowProperty()).Select(p => p.Name).Order(StringComparer.Ordinal).ToList());
        });
        yield return new("get-database-values-after-local-edit", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            var stored = await db.Entry(c).GetDatabaseValuesAsync(r.Ct);
            r.Observe("Ssn", stored!["Ssn"]);
            r.Observe("object", stored.ToObject());
        });
        yield return new("get-database-values-after-other-context", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            await using (var other = r.NewContext())
            {
                (await other.Customers.SingleAsync(r.Ct)).Notes = "changed elsewhere";
                await other.SaveChangesAsync(r.Ct);
            }

            r.Observe("stored", (await db.Entry(c).GetDatabaseValuesAsync(r.Ct))!["Notes"]);
            r.Observe("local", c.Notes);
        });
        yield return new("get-database-values-of-deleted-row", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.Include(x => x.Orders).SingleAsync(r.Ct);
            await db.Orders.ExecuteDeleteAsync(r.Ct);
            await db.Customers.ExecuteDeleteAsync(r.Ct);
            r.Observe("stored", await db.Entry(c).GetDatabaseValuesAsync(r.Ct));
        });
        yield return new("set-values-from-entity", Area, async r =>
        {
            await Shop.CustomersAsync(r, 2);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(x => x.Id == 1, r.Ct);
            var template = Shop.Customer(2);
            template.Id = 1;
            #pragma warning disable EFENV009 // The scenario compares this known difference (ValuesBypassed) with plain EF.
            db.Entry(c).CurrentValues.SetValues(template);
            #pragma warning restore EFENV009
            r.Tracker(db);
            await r.SaveAsync(db);
        });
        yield return new("set-values-from-dto", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            db.Entry(c).CurrentValues.SetValues(new CustomerPatch { Ssn = "222-22-2222", Notes = null, Score = 5 });
            r.Observe("entity", new { c.Ssn, c.Notes, c.Score });
            r.Tracker(db);
            await r.SaveAsync(db);
        });
        yield return new("set-values-from-dictionary", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            db.Entry(c).CurrentValues.SetValues(new Dictionary<string, object?> { ["Ssn"] = "333-33-3333", ["Vip"] = true });
            r.Observe("entity", new { c.Ssn, c.Vip });
            await r.SaveAsync(db);
        });
        yield return new("set-values-original-to-current-then-unchanged", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            db.ChangeTracker.DetectChanges();
            db.Entry(c).CurrentValues.SetValues(db.Entry(c).OriginalValues);
            db.Entry(c).State = EntityState.Unchanged;
            r.Observe("entity", c.Ssn);
            await r.SaveAsync(db);
        });
        yield return new("set-values-original-to-current", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            db.ChangeTracker.DetectChanges();
            db.Entry(c).CurrentValues.SetValues(db.Entry(c).OriginalValues);
            r.Observe("entity", c.Ssn);
            await r.SaveAsync(db);
        });
        yield return new("set-values-database-to-current", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            c.Score = 77;
            db.Entry(c).CurrentValues.SetValues((await db.Entry(c).GetDatabaseValuesAsync(r.Ct))!);
            r.Observe("entity", new { c.Ssn, c.Score });
            await r.SaveAsync(db);
        });
        yield return new("set-values-database-to-current-after-other-context", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            await using (var other = r.NewContext())
            {
                var o = await other.Customers.SingleAsync(r.Ct);
                o.Notes = "changed elsewhere";
                await other.SaveChangesAsync(r.Ct);
            }

            db.Entry(c).CurrentValues.SetValues((await db.Entry(c).GetDatabaseValuesAsync(r.Ct))!);
            r.Observe("entity", new { c.Ssn, c.Notes });
            await r.SaveAsync(db);
        });
        yield return new("set-values-original-to-current-edit-from-null", Area, async r =>
        {
            await Shop.CustomersAsync(r, 2);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(x => x.Id == 2, r.Ct);
            c.Notes = "was null";
            db.Entry(c).CurrentValues.SetValues(db.Entry(c).OriginalValues);
            r.Observe("entity", c.Notes);
            await r.SaveAsync(db);
        });
        yield return new("set-values-original-to-current-twice", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            db.Entry(c).CurrentValues.SetValues(db.Entry(c).OriginalValues);
            r.Observe("first", c.Ssn);
            c.Ssn = "888-88-8888";
            db.Entry(c).CurrentValues.SetValues(db.Entry(c).OriginalValues);
            r.Observe("second", c.Ssn);
            await r.SaveAsync(db);
        });
        yield return new("set-values-original-to-current-after-accept", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            db.ChangeTracker.DetectChanges();
            db.ChangeTracker.AcceptAllChanges();
            r.Observe("accepted", c.Ssn);
            c.Ssn = "888-88-8888";
            db.Entry(c).CurrentValues.SetValues(db.Entry(c).OriginalValues);
            r.Observe("entity", c.Ssn);
            await r.SaveAsync(db);
        });
        yield return new("set-values-current-clone-keeps-edit", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            var before = db.Entry(c).CurrentValues.Clone();
            c.Ssn = "999-99-9999";
            var after = db.Entry(c).CurrentValues.Clone();
            #pragma warning disable EFENV009 // Copies of this entry's own current values, which the analyzer cannot tell from another entry's; they work.
            db.Entry(c).CurrentValues.SetValues(after);
            r.Observe("after its own clone", c.Ssn);
            db.Entry(c).CurrentValues.SetValues(db.Entry(c).CurrentValues);
            r.Observe("after its own values", c.Ssn);
            db.Entry(c).CurrentValues.SetValues(before);
            #pragma warning restore EFENV009
            r.Observe("after the clone from before", c.Ssn);
            await r.SaveAsync(db);
        });
        yield return new("set-values-original-to-current-then-unchanged-then-plain-edit", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            db.ChangeTracker.DetectChanges();
            db.Entry(c).State = EntityState.Unchanged;
            c.Name = "renamed";
            await r.SaveAsync(db);
            r.Observe("entity", new { c.Name, c.Ssn });
        });
        yield return new("set-original-values-then-save", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            db.Entry(c).OriginalValues.SetValues(new Dictionary<string, object?> { ["Notes"] = "pretend stored" });
            db.ChangeTracker.DetectChanges();
            r.Tracker(db);
            await r.SaveAsync(db);
        });
        yield return new("reload-discards-local-edit", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "999-99-9999";
            await db.Entry(c).ReloadAsync(r.Ct);
            r.Tracker(db);
            await r.SaveAsync(db);
        });
        yield return new("reload-sees-other-context", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            await using (var other = r.NewContext())
            {
                var o = await other.Customers.SingleAsync(r.Ct);
                o.Notes = "changed elsewhere";
                o.Score = 1;
                await other.SaveChangesAsync(r.Ct);
            }

            await db.Entry(c).ReloadAsync(r.Ct);
            r.Observe("entity", new { c.Notes, c.Score });
            r.Tracker(db);
        });
        yield return new("reload-deleted-row-detaches", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            await db.Orders.ExecuteDeleteAsync(r.Ct);
            await db.Customers.ExecuteDeleteAsync(r.Ct);
            await db.Entry(c).ReloadAsync(r.Ct);
            r.Observe("state", db.Entry(c).State);
        });
    }

    /// <summary>A DTO with some of <see cref="Customer"/>'s property names, for SetValues.</summary>
    public sealed class CustomerPatch
    {
        public string Ssn { get; set; } = "";

        public string? Notes { get; set; }

        public int Score { get; set; }
    }
}
