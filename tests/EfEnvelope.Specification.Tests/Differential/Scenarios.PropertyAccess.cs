using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Specification.Tests.Differential;

// How EF reaches a property and guards its updates: concurrency tokens, two contexts editing one row, backing fields,
// byte arrays edited in place.
public static partial class Scenarios
{
    // The ticket every Tickets scenario starts from, as stored; also what an attached stub of it holds.
    private static Ticket SeededTicket() => new() { Id = 1, Title = "first", Stamp = "1", Memo = "memo", Secret = "secret", Photo = [1, 2, 3] };

    private static Scenario Tickets(string id, Func<ScenarioRun, Task> body) =>
        new(id, "property-access", async r =>
        {
            await r.CreateTablesAsync<TicketContext>();
            await using (var seed = r.NewContext<TicketContext>())
            {
                seed.Tickets.Add(SeededTicket());
                await seed.SaveChangesAsync(r.Ct);
            }

            await body(r);
        });

    // The ticket read in a first context, then its concurrency token (Stamp) changed and saved by a second one.
    private static async Task<(TicketContext Stale, Ticket Ticket)> StaleTicketAsync(ScenarioRun r)
    {
        var stale = r.NewContext<TicketContext>();
        var ticket = await stale.Tickets.SingleAsync(r.Ct);
        await ChangeStampElsewhereAsync(r);
        return (stale, ticket);
    }

    private static async Task ChangeStampElsewhereAsync(ScenarioRun r)
    {
        await using var other = r.NewContext<TicketContext>();
        (await other.Tickets.SingleAsync(r.Ct)).Stamp = "2";
        await other.SaveChangesAsync(r.Ct);
    }

    // The seeded ticket attached as a stub (Stamp "1"), edited, and saved: a conflict or not, as EF decides.
    private static async Task SaveAttachedTicketAsync(ScenarioRun r, Action<Ticket> edit)
    {
        await using var db = r.NewContext<TicketContext>();
        var ticket = SeededTicket();
        db.Attach(ticket);
        edit(ticket);
        await r.ExpectAsync<DbUpdateConcurrencyException>("save", () => db.SaveChangesAsync(r.Ct));
    }

    private static async Task ObserveSecretAsync(ScenarioRun r)
    {
        await using var fresh = r.NewContext<TicketContext>();
        r.Observe("secret", (await fresh.Tickets.AsNoTracking().SingleAsync(r.Ct)).Secret);
    }

    private static IEnumerable<Scenario> PropertyAccess()
    {
        const string Area = "property-access";
        yield return new("two-contexts-edit-different-encrypted-properties", Area, async r =>
        {
            var (first, stale) = await StaleAsync(r, bumpVersion: false);
            await using var _ = first;
            stale.Ssn = "from the first context";
            await r.SaveAsync(first);
        });
        yield return new("two-contexts-edit-different-encrypted-properties-in-transaction", Area, async r =>
        {
            var (first, stale) = await StaleAsync(r, bumpVersion: false);
            await using var _ = first;
            stale.Ssn = "from the first context";
            await using var transaction = await first.Database.BeginTransactionAsync(r.Ct);
            await r.SaveAsync(first);
            await transaction.CommitAsync(r.Ct);
        });
        yield return new("two-contexts-edit-and-delete", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var first = r.NewContext();
            var stale = await first.Customers.SingleAsync(r.Ct);
            await using (var second = r.NewContext())
            {
                await second.Orders.Where(o => o.CustomerId == stale.Id).ExecuteDeleteAsync(r.Ct);
                await second.Customers.Where(c => c.Id == stale.Id).ExecuteDeleteAsync(r.Ct);
            }

            stale.Ssn = "edited after the delete";
            await r.ExpectAsync<DbUpdateConcurrencyException>("save", () => first.SaveChangesAsync(r.Ct));
        });
        yield return new("two-contexts-edit-different-encrypted-properties-retry", Area, async r =>
        {
            // What an application does on a concurrency conflict: reload, apply its edit again, save. The row must
            // end up holding both edits and read back, whether or not the first save conflicted.
            var (first, stale) = await StaleAsync(r, bumpVersion: false);
            await using var _ = first;
            stale.Ssn = "from the first context";
            try
            {
                await first.SaveChangesAsync(r.Ct);
            }
            catch (DbUpdateConcurrencyException)
            {
                await first.Entry(stale).ReloadAsync(r.Ct);
                stale.Ssn = "from the first context";
                await first.SaveChangesAsync(r.Ct);
            }

            await using var fresh = r.NewContext();
            r.Observe("row", await fresh.Customers.AsNoTracking().SingleAsync(r.Ct));
        });
        yield return Tickets("select-unmapped-member-beside-encrypted-tracking", async r =>
        {
            await using var db = r.NewContext<TicketContext>();
            r.Observe("result", await db.Tickets.Select(t => new { t.Secret, t.SetterCalls }).ToListAsync(r.Ct));
            r.Observe("tracked", db.ChangeTracker.Entries().Count());
        });
        yield return Tickets("encrypted-concurrency-token-stale-edit-of-plain-column", async r =>
        {
            var (stale, ticket) = await StaleTicketAsync(r);
            await using var _ = stale;
            ticket.Title = "stale edit";
            await r.ExpectAsync<DbUpdateConcurrencyException>("save", () => stale.SaveChangesAsync(r.Ct));
            await using var fresh = r.NewContext<TicketContext>();
            r.Observe("row", await fresh.Tickets.AsNoTracking().Select(t => new { t.Title, t.Stamp }).SingleAsync(r.Ct));
        });
        yield return Tickets("encrypted-concurrency-token-stale-edit-of-token", async r =>
        {
            var (stale, ticket) = await StaleTicketAsync(r);
            await using var _ = stale;
            ticket.Stamp = "3";
            await r.ExpectAsync<DbUpdateConcurrencyException>("save", () => stale.SaveChangesAsync(r.Ct));
        });
        yield return Tickets("encrypted-concurrency-token-attached-edit-current", async r =>
        {
            await SaveAttachedTicketAsync(r, t => t.Secret = "edited after attach");
            await ObserveSecretAsync(r);
        });
        yield return Tickets("encrypted-concurrency-token-attached-edit-stale", async r =>
        {
            await ChangeStampElsewhereAsync(r);
            await SaveAttachedTicketAsync(r, t => t.Secret = "edited after attach");
            await ObserveSecretAsync(r);
        });
        yield return Tickets("encrypted-concurrency-token-attached-plain-edit", r => SaveAttachedTicketAsync(r, t => t.Title = "edited after attach"));
        yield return Tickets("encrypted-concurrency-token-current-edit", async r =>
        {
            await using var db = r.NewContext<TicketContext>();
            var ticket = await db.Tickets.SingleAsync(r.Ct);
            ticket.Stamp = "2";
            ticket.Title = "edited";
            await r.SaveAsync(db);
            await using var fresh = r.NewContext<TicketContext>();
            r.Observe("row", await fresh.Tickets.AsNoTracking().Select(t => new { t.Title, t.Stamp }).SingleAsync(r.Ct));
        });
        yield return Tickets("backing-field-written-on-materialization", async r =>
        {
            await using var db = r.NewContext<TicketContext>();
            var ticket = await db.Tickets.SingleAsync(r.Ct);
            r.Observe("setter calls", ticket.SetterCalls);
            r.Observe("values", new { ticket.Secret, ticket.Memo });
        });
        yield return Tickets("backing-field-read-on-save", async r =>
        {
            await using (var db = r.NewContext<TicketContext>())
            {
                db.Tickets.Add(new Ticket { Id = 2, Title = "no memo", Stamp = "1", Secret = "s" });
                await r.SaveAsync(db);
            }

            await using var fresh = r.NewContext<TicketContext>();
            r.Observe("memo null", await fresh.Tickets.CountAsync(t => t.Id == 2 && t.Memo == null, r.Ct));
            r.Observe("memo", (await fresh.Tickets.SingleAsync(t => t.Id == 2, r.Ct)).Memo);
        });
        yield return Tickets("byte-array-edited-in-place", async r =>
        {
            await using (var db = r.NewContext<TicketContext>())
            {
                var ticket = await db.Tickets.SingleAsync(r.Ct);
                ticket.Photo![0] = 99;
                db.ChangeTracker.DetectChanges();
                r.Observe("state", db.Entry(ticket).State);
                await r.SaveAsync(db);
            }

            await using var fresh = r.NewContext<TicketContext>();
            r.Observe("photo", (await fresh.Tickets.AsNoTracking().SingleAsync(r.Ct)).Photo);
        });
        yield return Tickets("byte-array-replaced", async r =>
        {
            await using (var db = r.NewContext<TicketContext>())
            {
                var ticket = await db.Tickets.SingleAsync(r.Ct);
                ticket.Photo = [9, 8, 7];
                await r.SaveAsync(db);
            }

            await using var fresh = r.NewContext<TicketContext>();
            r.Observe("photo", (await fresh.Tickets.AsNoTracking().SingleAsync(r.Ct)).Photo);
        });
    }
}
