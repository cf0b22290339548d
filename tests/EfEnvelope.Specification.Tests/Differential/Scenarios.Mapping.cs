using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Specification.Tests.Differential;

// Mapping: constructor binding, TPH/TPT/TPC inheritance, owned and JSON-owned types (nested), HasData, value types.
public static partial class Scenarios
{
    private static Scenario Library(string id, Func<ScenarioRun, LibraryContext, Task> body) =>
        new(id, "constructor", async r =>
        {
            await r.CreateTablesAsync<LibraryContext>();
            await using (var seed = r.NewContext<LibraryContext>())
            {
                seed.Books.AddRange(Shop.Book(1), Shop.Book(2));
                seed.Badges.Add(new Badge(1, "B-001") { Holder = "Ann" });
                await seed.SaveChangesAsync(r.Ct);
            }

            await using var db = r.NewContext<LibraryContext>();
            await body(r, db);
        });

    private static IEnumerable<Scenario> ConstructorBinding()
    {
        yield return Library("record-read-back", async (r, db) => r.Observe("books", await db.Books.OrderBy(b => b.Title).ToListAsync(r.Ct)));
        yield return Library("record-filter-plain", async (r, db) => r.Observe("book", await db.Books.SingleAsync(b => b.Title == "Title 2", r.Ct)));
        yield return Library("record-projection", async (r, db) => r.Observe("isbn", await db.Books.OrderBy(b => b.Title).Select(b => b.Isbn).ToListAsync(r.Ct)));
        yield return Library("record-update-through-entry", async (r, db) =>
        {
            var book = await db.Books.SingleAsync(b => b.Title == "Title 1", r.Ct);
            db.Entry(book).Property(b => b.Isbn).CurrentValue = "978-1-11-111111-1";
            await r.SaveAsync(db);
        });
        yield return Library("record-replace-with-with", async (r, db) =>
        {
            var book = await db.Books.AsNoTracking().SingleAsync(b => b.Title == "Title 1", r.Ct);
            db.Update(book with { Isbn = "978-2-22-222222-2", Summary = "changed" });
            await r.SaveAsync(db);
        });
        yield return Library("record-delete", async (r, db) =>
        {
            db.Books.Remove(await db.Books.SingleAsync(b => b.Title == "Title 2", r.Ct));
            await r.SaveAsync(db);
        });
        yield return Library("class-constructor-read-back", async (r, db) => r.Observe("badge", await db.Badges.SingleAsync(r.Ct)));
        yield return Library("class-constructor-no-tracking", async (r, db) => r.Observe("badge", await db.Badges.AsNoTracking().Select(b => new { b.Code, b.Holder }).SingleAsync(r.Ct)));
    }

    private static Scenario Hierarchy<T>(string id, string area, Func<ShopContext, CancellationToken, Task<T>> query) =>
        new(id, area, async r =>
        {
            await Shop.HierarchyAsync(r, RootOf(id));
            await using var db = r.NewContext();
            r.Observe("result", await query(db, r.Ct));
        });

    private static Type RootOf(string id) => id[..3] switch
    {
        "tph" => typeof(Payment),
        "tpt" => typeof(Document),
        _ => typeof(Vehicle),
    };

    private static Scenario HierarchyEdit(string id, string area, Func<ShopContext, CancellationToken, Task> edit) =>
        new(id, area, async r =>
        {
            await Shop.HierarchyAsync(r, RootOf(id));
            await using var db = r.NewContext();
            await edit(db, r.Ct);
            r.Tracker(db);
            await r.SaveAsync(db);
        });

    private static IEnumerable<Scenario> Inheritance()
    {
        const string Area = "inheritance";
        yield return Hierarchy("tph-read-all", Area, (db, ct) => db.Payments.OrderBy(p => p.Id).ToListAsync(ct));
        yield return Hierarchy("tph-of-type", Area, (db, ct) => db.Payments.OfType<BankPayment>().OrderBy(p => p.Id).Select(p => new { p.Reference, p.Iban }).ToListAsync(ct));
        yield return Hierarchy("tph-filter-plain", Area, (db, ct) => db.Payments.Where(p => p.Amount > 10m).OrderBy(p => p.Id).ToListAsync(ct));
        yield return Hierarchy("tph-type-test-projection", Area, (db, ct) => db.Payments.OrderBy(p => p.Id).Select(p => p is CardPayment ? ((CardPayment)p).Pan : p.Reference).ToListAsync(ct));
        yield return HierarchyEdit("tph-update-derived", Area, async (db, ct) => (await db.Payments.OfType<CardPayment>().SingleAsync(ct)).Pan = "4000-1111");
        yield return HierarchyEdit("tph-update-base-property", Area, async (db, ct) => (await db.Payments.OfType<BankPayment>().FirstAsync(ct)).Reference = "changed");
        yield return HierarchyEdit("tph-delete", Area, async (db, ct) => db.Remove(await db.Payments.OfType<CardPayment>().SingleAsync(ct)));
        yield return Hierarchy("tpt-read-all", Area, (db, ct) => db.Documents.OrderBy(d => d.Id).ToListAsync(ct));
        yield return Hierarchy("tpt-derived-set", Area, (db, ct) => db.Contracts.Select(c => new { c.Title, c.Party, c.Body }).ToListAsync(ct));
        yield return HierarchyEdit("tpt-update-both-tables", Area, async (db, ct) =>
        {
            var contract = await db.Contracts.SingleAsync(ct);
            contract.Party = "Globex";
            contract.Body = "now with a body";
        });
        yield return HierarchyEdit("tpt-delete", Area, async (db, ct) => db.Remove(await db.Contracts.SingleAsync(ct)));
        yield return Hierarchy("tpc-read-all", Area, (db, ct) => db.Vehicles.OrderBy(v => v.Id).ToListAsync(ct));
        yield return Hierarchy("tpc-of-type", Area, (db, ct) => db.Vehicles.OfType<Car>().Select(c => new { c.Plate, c.Vin, c.Seats }).ToListAsync(ct));
        yield return HierarchyEdit("tpc-update", Area, async (db, ct) =>
        {
            var car = await db.Vehicles.OfType<Car>().SingleAsync(ct);
            car.Vin = "VIN2";
            car.Plate = "CD-456";
        });
        yield return HierarchyEdit("tpc-insert", Area, (db, _) =>
        {
            db.Vehicles.Add(new Truck { Id = 3, Plate = "NEW-1", Payload = 10 });
            return Task.CompletedTask;
        });
        yield return HierarchyEdit("tpc-delete", Area, async (db, ct) => db.Remove(await db.Vehicles.SingleAsync(v => v.Id == 2, ct)));
    }

    private static Scenario Members<T>(string id, Func<ScenarioRun, ShopContext, Task<T>> body) =>
        new(id, "owned", async r =>
        {
            await r.SeedAsync(Shop.Member(1), Shop.Member(2));
            await using var db = r.NewContext();
            r.Observe("result", await body(r, db));
        });

    private static Scenario Baskets(string id, Func<ScenarioRun, BasketContext, Task> body) =>
        new(id, "owned", async r =>
        {
            await r.CreateTablesAsync<BasketContext>();
            await using (var seed = r.NewContext<BasketContext>())
            {
                seed.Baskets.AddRange(
                    new Basket { Id = 1, Label = "one", Lines = [new BasketLine { Id = 1, Code = "A-1", Quantity = 2 }, new BasketLine { Id = 2, Code = "A-2", Quantity = 1 }] },
                    new Basket { Id = 2, Label = "two", Lines = [new BasketLine { Id = 1, Code = "B-1", Quantity = 5 }] },
                    new Basket { Id = 3, Label = "empty" });
                await seed.SaveChangesAsync(r.Ct);
            }

            await using var db = r.NewContext<BasketContext>();
            await body(r, db);
        });

    private static IEnumerable<Scenario> Owned()
    {
        const string Area = "owned";
        yield return Baskets("owned-collection-member-projection-tracking", async (r, db) =>
        {
            r.Observe("codes", await db.Baskets.OrderBy(b => b.Id).Select(b => b.Lines.OrderBy(l => l.Id).Select(l => l.Code).ToList()).ToListAsync(r.Ct));
            r.Observe("tracked", db.ChangeTracker.Entries().Count());
        }).MustMatch();
        yield return Baskets("owned-collection-read-no-tracking", async (r, db) =>
            r.Observe("baskets", await db.Baskets.AsNoTracking().AsSplitQuery().OrderBy(b => b.Id).ToListAsync(r.Ct))).MustMatch();
        yield return Baskets("owned-collection-edit-add-remove", async (r, db) =>
        {
            var one = await db.Baskets.SingleAsync(b => b.Id == 1, r.Ct);
            one.Lines[0].Code = "A-1 edited";
            one.Lines.RemoveAt(1);
            one.Lines.Add(new BasketLine { Id = 3, Code = "A-3", Quantity = 7 });
            r.Observe("saved", await db.SaveChangesAsync(r.Ct));
            await using var reader = r.NewContext<BasketContext>();
            r.Observe("stored", await reader.Baskets.AsNoTracking().OrderBy(b => b.Id).ToListAsync(r.Ct));
        }).MustMatch();
        yield return Query("owned-read-back", Area, (db, ct) => db.Customers.AsNoTracking().OrderBy(c => c.Id).Select(c => new { c.Id, c.Home }).ToListAsync(ct));
        yield return new("owned-edit-encrypted-member", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            (await db.Customers.SingleAsync(r.Ct)).Home!.Street = "moved";
            r.Tracker(db);
            await r.SaveAsync(db);
        });
        yield return new("owned-replace", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            (await db.Customers.SingleAsync(r.Ct)).Home = new Address { City = "Capital City", Street = "1 New Road" };
            await r.SaveAsync(db);
        });
        yield return new("owned-set-null", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            (await db.Customers.SingleAsync(r.Ct)).Home = null;
            await r.SaveAsync(db);
        });
        yield return new("owned-add-to-null", Area, async r =>
        {
            await Shop.CustomersAsync(r, 4);
            await using var db = r.NewContext();
            (await db.Customers.SingleAsync(c => c.Id == 4, r.Ct)).Home = new Address { City = "Ogdenville", Street = "4 Elm" };
            await r.SaveAsync(db);
        });
        yield return new("owned-entry-reference", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Home!.Street = "moved";
            var home = db.Entry(c).Reference(x => x.Home).TargetEntry!;
            home.DetectChanges();
            r.Observe("state", home.State);
            r.Observe("street", home.Property("Street").OriginalValue);
        });
        yield return Members("json-read-back", (r, db) => db.Members.OrderBy(m => m.Id).ToListAsync(r.Ct));
        yield return Members("json-no-tracking", (r, db) => db.Members.AsNoTracking().OrderBy(m => m.Id).ToListAsync(r.Ct));
        yield return Members("json-project-member", (r, db) => db.Members.OrderBy(m => m.Id).Select(m => new { m.Name, m.Profile!.Nickname }).ToListAsync(r.Ct));
        yield return Members("json-project-nested", (r, db) => db.Members.AsNoTracking().OrderBy(m => m.Id).Select(m => m.Profile!.Social).ToListAsync(r.Ct));
        yield return Members("json-filter-plain-member", (r, db) => db.Members.Where(m => m.Profile!.Bio == "bio 2").Select(m => m.Id).ToListAsync(r.Ct));
        yield return Members("json-edit-nested", async (r, db) =>
        {
            var m = await db.Members.SingleAsync(x => x.Id == 1, r.Ct);
            m.Profile!.Social!.Handle = "@changed";
            m.Profile.Social.Followers++;
            return await r.SaveAsync(db);
        });
        yield return Members("json-replace-owned", async (r, db) =>
        {
            var m = await db.Members.SingleAsync(x => x.Id == 2, r.Ct);
            m.Profile = new Profile { Bio = "new", Nickname = "renamed", Social = new Social { Handle = "@new", Followers = 1 } };
            return await r.SaveAsync(db);
        });
        yield return Members("json-set-null", async (r, db) =>
        {
            (await db.Members.SingleAsync(x => x.Id == 1, r.Ct)).Profile = null;
            return await r.SaveAsync(db);
        });
        yield return new("json-only-encrypted-members", Area, async r =>
        {
            await r.SeedAsync(new Vault { Label = "a", Secret = new Secret { Pin = "1234" } }, new Vault { Label = "b" });
            await using var db = r.NewContext();
            r.Observe("vaults", await db.Vaults.OrderBy(v => v.Id).ToListAsync(r.Ct));
        });
        yield return new("json-only-encrypted-edit", Area, async r =>
        {
            await r.SeedAsync(new Vault { Label = "a", Secret = new Secret { Pin = "1234" } });
            await using var db = r.NewContext();
            (await db.Vaults.SingleAsync(r.Ct)).Secret!.Pin = "9999";
            await r.SaveAsync(db);
        });
    }

    private static IEnumerable<Scenario> SeedDataAndTypes()
    {
        const string Area = "has-data";
        yield return new("has-data-read", Area, async r =>
        {
            await r.CreateTablesAsync<CountryContext>();
            await using var db = r.NewContext<CountryContext>();
            r.Observe("countries", await db.Countries.OrderBy(c => c.Id).ToListAsync(r.Ct));
        });
        yield return new("has-data-update-seeded-row", Area, async r =>
        {
            await r.CreateTablesAsync<CountryContext>();
            await using var db = r.NewContext<CountryContext>();
            (await db.Countries.SingleAsync(c => c.Id == 2, r.Ct)).Motto = "now has a motto";
            await r.SaveAsync(db);
        });
        yield return new("has-data-project-encrypted", Area, async r =>
        {
            await r.CreateTablesAsync<CountryContext>();
            await using var db = r.NewContext<CountryContext>();
            r.Observe("mottos", await db.Countries.OrderBy(c => c.Id).Select(c => c.Motto).ToListAsync(r.Ct));
        });
        yield return new("date-time-utc-round-trip", "types", async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            (await db.Orders.FirstAsync(r.Ct)).ShippedAt = new DateTime(2024, 5, 6, 7, 8, 9, DateTimeKind.Utc);
            await r.SaveAsync(db);
            r.Touch<Order>();
        });
        yield return new("date-time-offset-offset-only-edit", "types", async r =>
        {
            // EF compares DateTimeOffset values by instant and offset: a new offset for the same instant is an edit.
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.LastSeen = c.LastSeen!.Value.ToOffset(TimeSpan.FromHours(5));
            r.Observe("has changes", db.ChangeTracker.HasChanges());
            r.Observe("state", db.Entry(c).State);
            if (db.Database.IsSqlite())
            {
                // PostgreSQL's timestamptz takes offset 0 only (Npgsql refuses the plain write), so the save runs on SQLite.
                await r.SaveAsync(db);
                r.Touch<Customer>();
            }
        });
        yield return new("select-distinct-date-time-offset", "types", async r =>
        {
            // One instant at three offsets: three values on SQLite, which keeps the offset; PostgreSQL's timestamptz
            // takes offset 0 only, so there all three are the same value.
            await using (var probe = r.NewContext())
            {
                var sqlite = probe.Database.IsSqlite();
                await r.SeedAsync([.. Enumerable.Range(1, 3).Select(n =>
                {
                    var c = Shop.Customer(n);
                    c.LastSeen = new DateTimeOffset(2024, 3, 1, 12, 0, 0, TimeSpan.Zero).ToOffset(TimeSpan.FromHours(sqlite ? n : 0));
                    return c;
                })]);
            }

            await using var db = r.NewContext();
            r.Observe("distinct", (await db.Customers.Select(c => c.LastSeen).Distinct().ToListAsync(r.Ct)).Select(v => v?.ToString("O", System.Globalization.CultureInfo.InvariantCulture)).Order(StringComparer.Ordinal).ToList());
            r.Observe("count", await db.Customers.Select(c => c.LastSeen).Distinct().CountAsync(r.Ct));
        });
        yield return new("decimal-scale-round-trip", "types", async r =>
        {
            var c = Shop.Customer(1);
            c.CreditLimit = 1.10m;
            await r.SeedAsync(c);
            await using var db = r.NewContext();
            var read = await db.Customers.SingleAsync(r.Ct);
            r.Observe("text", read.CreditLimit.ToString(System.Globalization.CultureInfo.InvariantCulture));
        });
        yield return new("extreme-values-round-trip", "types", async r =>
        {
            var c = Shop.Customer(1);
            c.Ssn = "";
            c.Notes = new string('x', 5000) + "🩺";
            c.Score = int.MinValue;
            c.CreditLimit = -9999999999999999.99m;
            c.BirthDate = DateOnly.MinValue;
            c.LastSeen = DateTimeOffset.UnixEpoch;
            await r.SeedAsync(c);
        });
    }
}
