using System.Data.Common;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.DependencyInjection;

namespace EfEnvelope.Specification.Tests.Differential;

// Transactions and savepoints, concurrency tokens, retrying execution strategies, context pooling, DI lifetimes.
public static partial class Scenarios
{
    private static IEnumerable<Scenario> Transactions()
    {
        const string Area = "transaction";
        yield return new("transaction-commit", Area, async r =>
        {
            await using var db = r.NewContext();
            await using var tx = await db.Database.BeginTransactionAsync(r.Ct);
            db.Customers.Add(Shop.Customer(1));
            await r.SaveAsync(db);
            await tx.CommitAsync(r.Ct);
        });
        yield return new("transaction-rollback", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            await using var tx = await db.Database.BeginTransactionAsync(r.Ct);
            (await db.Customers.SingleAsync(r.Ct)).Ssn = "rolled back";
            await r.SaveAsync(db);
            await tx.RollbackAsync(r.Ct);
            r.Tracker(db);
        });
        yield return new("edit-again-after-transaction-rollback", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            await using (var first = await db.Database.BeginTransactionAsync(r.Ct))
            {
                c.Notes = "rolled back";
                await r.SaveAsync(db);
                await first.RollbackAsync(r.Ct);
            }

            await using var second = await db.Database.BeginTransactionAsync(r.Ct);
            c.Notes = "kept";
            await r.SaveAsync(db);
            await second.CommitAsync(r.Ct);
            r.Touch<Customer>();
        });
        yield return new("savepoint-rollback", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            await using var tx = await db.Database.BeginTransactionAsync(r.Ct);
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Notes = "kept";
            await r.SaveAsync(db, "first");
            await tx.CreateSavepointAsync("before-ssn", r.Ct);
            c.Ssn = "discarded";
            await r.SaveAsync(db, "second");
            await tx.RollbackToSavepointAsync("before-ssn", r.Ct);
            await tx.CommitAsync(r.Ct);
        });
        yield return new("shared-transaction-two-contexts", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var first = r.NewContext();
            await using var tx = await first.Database.BeginTransactionAsync(r.Ct);
            (await first.Customers.SingleAsync(r.Ct)).Notes = "first";
            await first.SaveChangesAsync(r.Ct);
            await using var second = r.NewContext();
            second.Database.SetDbConnection(first.Database.GetDbConnection(), contextOwnsConnection: false);
            await second.Database.UseTransactionAsync(tx.GetDbTransaction(), r.Ct);
            r.Observe("seen in transaction", await second.Customers.Select(c => c.Notes).SingleAsync(r.Ct));
            await tx.RollbackAsync(r.Ct);
        });
        yield return new("failed-save-in-transaction-then-retry", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            await using var tx = await db.Database.BeginTransactionAsync(r.Ct);
            var c = await db.Customers.SingleAsync(r.Ct);
            await db.Database.ExecuteSqlAsync($"UPDATE \"Customers\" SET \"Version\" = 7", r.Ct);
            c.Ssn = "conflicting";
            await r.ExpectAsync<DbUpdateConcurrencyException>("conflict", () => db.SaveChangesAsync(r.Ct));
            db.Entry(c).Property(x => x.Version).OriginalValue = 7;
            await r.SaveAsync(db, "retry");
            await tx.CommitAsync(r.Ct);
        });
        yield return new("execute-update-rolled-back", Area, async r =>
        {
            await Shop.CustomersAsync(r, 2);
            await using var db = r.NewContext();
            await using var tx = await db.Database.BeginTransactionAsync(r.Ct);
            await db.Customers.ExecuteUpdateAsync(s => s.SetProperty(c => c.Name, "gone"), r.Ct);
            await tx.RollbackAsync(r.Ct);
        });
    }

    // A customer read in one context, then edited (Notes, and its Version token unless told not to) in another.
    private static async Task<(ShopContext Db, Customer Customer)> StaleAsync(ScenarioRun r, bool bumpVersion = true)
    {
        await Shop.CustomersAsync(r, 1);
        var db = r.NewContext();
        var c = await db.Customers.SingleAsync(r.Ct);
        await using var other = r.NewContext();
        var o = await other.Customers.SingleAsync(r.Ct);
        o.Version += bumpVersion ? 1 : 0;
        o.Notes = "written by the other";
        await other.SaveChangesAsync(r.Ct);
        return (db, c);
    }

    private static IEnumerable<Scenario> Concurrency()
    {
        const string Area = "concurrency";
        yield return new("concurrency-conflict-on-encrypted-edit", Area, async r =>
        {
            var (db, c) = await StaleAsync(r);
            await using var _ = db;
            c.Ssn = "stale edit";
            await r.ExpectAsync<DbUpdateConcurrencyException>("save", () => db.SaveChangesAsync(r.Ct));
        });
        yield return new("concurrency-conflict-entries", Area, async r =>
        {
            var (db, c) = await StaleAsync(r);
            await using var _ = db;
            c.Notes = "stale edit";
            try
            {
                await db.SaveChangesAsync(r.Ct);
                r.Observe("saved", true);
            }
            catch (DbUpdateConcurrencyException e)
            {
                r.Observe("entries", e.Entries.Select(x => x.Metadata.DisplayName() + " " + x.State).ToList());
                r.Entry(e.Entries[0], "entry");
            }
        });
        yield return new("concurrency-resolve-database-wins", Area, async r =>
        {
            var (db, c) = await StaleAsync(r);
            await using var _ = db;
            c.Notes = "stale edit";
            await r.ExpectAsync<DbUpdateConcurrencyException>("save", () => db.SaveChangesAsync(r.Ct));
            await db.Entry(c).ReloadAsync(r.Ct);
            r.Observe("after reload", c.Notes);
            await r.SaveAsync(db, "after reload save");
        });
        yield return new("concurrency-resolve-client-wins", Area, async r =>
        {
            var (db, c) = await StaleAsync(r);
            await using var _ = db;
            c.Notes = "client wins";
            await r.ExpectAsync<DbUpdateConcurrencyException>("save", () => db.SaveChangesAsync(r.Ct));
            db.Entry(c).OriginalValues.SetValues((await db.Entry(c).GetDatabaseValuesAsync(r.Ct))!);
            await r.SaveAsync(db, "retry");
        });
        yield return new("concurrency-resolve-client-wins-then-edit", Area, async r =>
        {
            var (db, c) = await StaleAsync(r);
            await using var _ = db;
            c.Notes = "client wins";
            await r.ExpectAsync<DbUpdateConcurrencyException>("save", () => db.SaveChangesAsync(r.Ct));
            db.Entry(c).OriginalValues.SetValues((await db.Entry(c).GetDatabaseValuesAsync(r.Ct))!);
            c.Ssn = "edited after the conflict";
            await r.SaveAsync(db, "retry");
        });
        yield return new("concurrency-delete-conflict", Area, async r =>
        {
            var (db, c) = await StaleAsync(r);
            await using var _ = db;
            db.Remove(c);
            await r.ExpectAsync<DbUpdateConcurrencyException>("save", () => db.SaveChangesAsync(r.Ct));
        });
        yield return new("concurrency-token-bumped-with-edit", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext();
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "edited";
            c.Version++;
            await r.SaveAsync(db);
        });
    }

    private static IEnumerable<Scenario> ExecutionStrategies()
    {
        const string Area = "retrying";
        yield return new("retrying-save", Area, async r =>
        {
            await using var db = r.NewContext(o => r.Database.UseWithRetries(o));
            db.Customers.Add(Shop.Customer(1));
            await r.SaveAsync(db);
        });
        yield return new("retrying-query", Area, async r =>
        {
            await Shop.CustomersAsync(r, 2);
            await using var db = r.NewContext(o => r.Database.UseWithRetries(o));
            r.Observe("customers", await db.Customers.OrderBy(c => c.Id).ToListAsync(r.Ct));
        });
        yield return new("retrying-user-transaction", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext(o => r.Database.UseWithRetries(o));
            var strategy = db.Database.CreateExecutionStrategy();
            await strategy.ExecuteAsync(async () =>
            {
                await using var tx = await db.Database.BeginTransactionAsync(r.Ct);
                (await db.Customers.SingleAsync(r.Ct)).Ssn = "in strategy";
                await db.SaveChangesAsync(r.Ct);
                await tx.CommitAsync(r.Ct);
            });
        });
        yield return new("retrying-execute-in-transaction", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext(o => r.Database.UseWithRetries(o));
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Notes = "verified";
            await db.Database.CreateExecutionStrategy().ExecuteInTransactionAsync(
                ct => db.SaveChangesAsync(acceptAllChangesOnSuccess: false, ct),
                ct => db.Customers.AnyAsync(x => x.Notes == "verified", ct),
                r.Ct);
            db.ChangeTracker.AcceptAllChanges();
            r.Tracker(db);
        });
    }

    /// <summary>Fails the first command whose text contains <paramref name="marker"/>, once, with the database's transient error.</summary>
    private sealed class FailOnce(FreshDatabase database, string marker) : DbCommandInterceptor
    {
        private int _failed;

        public override ValueTask<InterceptionResult<DbDataReader>> ReaderExecutingAsync(DbCommand command, CommandEventData eventData, InterceptionResult<DbDataReader> result, CancellationToken cancellationToken = default) =>
            command.CommandText.Contains(marker, StringComparison.Ordinal) && Interlocked.Exchange(ref _failed, 1) == 0
                ? throw database.TransientFailure()
                : ValueTask.FromResult(result);

        public override ValueTask<InterceptionResult<int>> NonQueryExecutingAsync(DbCommand command, CommandEventData eventData, InterceptionResult<int> result, CancellationToken cancellationToken = default) =>
            command.CommandText.Contains(marker, StringComparison.Ordinal) && Interlocked.Exchange(ref _failed, 1) == 0
                ? throw database.TransientFailure()
                : ValueTask.FromResult(result);
    }

    private static IEnumerable<Scenario> TransientFailures()
    {
        const string Area = "retrying";
        yield return new("retrying-insert-after-transient-failure", Area, async r =>
        {
            await using var db = r.NewContext(o => r.Database.UseWithRetries(o.AddInterceptors(new FailOnce(r.Database, "INSERT"))));
            db.Customers.Add(Shop.Customer(1));
            await r.SaveAsync(db);
            r.Tracker(db);
        });
        yield return new("retrying-update-after-transient-failure", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext(o => r.Database.UseWithRetries(o.AddInterceptors(new FailOnce(r.Database, "UPDATE"))));
            var c = await db.Customers.SingleAsync(r.Ct);
            c.Ssn = "written on the second attempt";
            c.Home!.Street = "also on the second attempt";
            await r.SaveAsync(db);
        });
        yield return new("attach-stub-edit-failed-save-then-save", Area, async r =>
        {
            // No retrying strategy: the application sees the failure and saves again itself.
            await Shop.CustomersAsync(r, 1);
            await using var db = r.NewContext(o => o.AddInterceptors(new FailOnce(r.Database, "UPDATE")));
            var c = new Customer { Id = 1, Name = "Customer 1" };
            db.Attach(c);
            c.Notes = "stub edit";
            // DbUpdateException on SQLite; on PostgreSQL the provider's default strategy wraps the transient error.
            await r.ExpectAsync<Exception>("failing", () => db.SaveChangesAsync(r.Ct));
            await r.SaveAsync(db);
        });
        yield return new("retrying-query-after-transient-failure", Area, async r =>
        {
            await Shop.CustomersAsync(r, 2);
            await using var db = r.NewContext(o => r.Database.UseWithRetries(o.AddInterceptors(new FailOnce(r.Database, "SELECT"))));
            r.Observe("customers", await db.Customers.Include(c => c.Orders).OrderBy(c => c.Id).ToListAsync(r.Ct));
        });
    }

    /// <summary>An application's audit interceptor: stamps customers while the save starts, as interceptors commonly do.</summary>
    private sealed class StampCustomers : SaveChangesInterceptor
    {
        public override ValueTask<InterceptionResult<int>> SavingChangesAsync(DbContextEventData eventData, InterceptionResult<int> result, CancellationToken cancellationToken = default)
        {
            foreach (var entry in eventData.Context!.ChangeTracker.Entries<Customer>())
            {
                if (entry.State == EntityState.Added)
                {
                    entry.Entity.Notes = "stamped on insert";
                }
                else if (entry.State == EntityState.Modified)
                {
                    entry.Entity.Ssn = "stamped on update";
                    entry.Entity.Version++;
                }
            }

            return ValueTask.FromResult(result);
        }
    }

    private static IEnumerable<Scenario> ApplicationInterceptors()
    {
        // EF calls a library's interceptors before the application's: what the application's interceptor sets while
        // the save starts must still be what is written.
        const string Area = "application-interceptor";
        yield return new("interceptor-stamps-encrypted-value-on-insert", Area, async r =>
        {
            await using (var db = r.NewContext(o => o.AddInterceptors(new StampCustomers())))
            {
                db.Customers.Add(Shop.Customer(1));
                await r.SaveAsync(db);
            }

            await using var reader = r.NewContext();
            r.Observe("stored", await reader.Customers.Select(c => new { c.Notes, c.Ssn }).SingleAsync(r.Ct));
        });
        yield return new("interceptor-stamps-encrypted-value-on-update", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            await using (var db = r.NewContext(o => o.AddInterceptors(new StampCustomers())))
            {
                (await db.Customers.SingleAsync(r.Ct)).Score++;
                await r.SaveAsync(db);
            }

            await using var reader = r.NewContext();
            r.Observe("stored", await reader.Customers.Select(c => new { c.Ssn, c.Score, c.Version }).SingleAsync(r.Ct));
        });
        yield return new("saving-changes-event-stamps-encrypted-value", Area, async r =>
        {
            await using (var db = r.NewContext())
            {
                db.SavingChanges += (sender, _) =>
                {
                    foreach (var entry in ((DbContext)sender!).ChangeTracker.Entries<Customer>())
                    {
                        entry.Entity.Notes = "stamped by the event";
                    }
                };
                db.Customers.Add(Shop.Customer(1));
                await r.SaveAsync(db);
            }

            await using var reader = r.NewContext();
            r.Observe("stored", await reader.Customers.Select(c => c.Notes).SingleAsync(r.Ct));
        });
    }

    private static IEnumerable<Scenario> Pooling()
    {
        const string Area = "pooling";
        yield return new("pooled-factory", Area, async r =>
        {
            var builder = new DbContextOptionsBuilder<ShopContext>();
            r.Configure(builder);
            var factory = new PooledDbContextFactory<ShopContext>(builder.Options);
            await using (var db = r.Watch(await factory.CreateDbContextAsync(r.Ct)))
            {
                db.Customers.Add(Shop.Customer(1));
                await r.SaveAsync(db);
            }

            await using (var db = r.Watch(await factory.CreateDbContextAsync(r.Ct)))
            {
                r.Observe("tracked on rent", db.ChangeTracker.Entries().Count());
                r.Observe("read", await db.Customers.Select(c => c.Ssn).SingleAsync(r.Ct));
            }
        });
        yield return new("pooled-context-reset-after-edit", Area, async r =>
        {
            await Shop.CustomersAsync(r, 1);
            var builder = new DbContextOptionsBuilder<ShopContext>();
            r.Configure(builder);
            var factory = new PooledDbContextFactory<ShopContext>(builder.Options, poolSize: 1);
            await using (var db = r.Watch(await factory.CreateDbContextAsync(r.Ct)))
            {
                (await db.Customers.SingleAsync(r.Ct)).Ssn = "abandoned edit";
            }

            await using (var db = r.Watch(await factory.CreateDbContextAsync(r.Ct)))
            {
                var c = await db.Customers.SingleAsync(r.Ct);
                r.Observe("value", c.Ssn);
                await r.SaveAsync(db);
            }
        });
        yield return new("pooled-di", Area, async r =>
        {
            var services = new ServiceCollection().AddDbContextPool<ShopContext>(r.Configure).BuildServiceProvider();
            await using (services)
            {
                for (var i = 1; i <= 3; i++)
                {
                    await using var scope = services.CreateAsyncScope();
                    var db = r.Watch(scope.ServiceProvider.GetRequiredService<ShopContext>());
                    db.Customers.Add(Shop.Customer(i));
                    await r.SaveAsync(db, "scope " + i);
                }
            }
        });
    }

    private static IEnumerable<Scenario> DependencyInjection()
    {
        const string Area = "di";
        yield return new("di-scoped-context", Area, async r =>
        {
            await using var services = new ServiceCollection().AddDbContext<ShopContext>(r.Configure).BuildServiceProvider();
            await using (var scope = services.CreateAsyncScope())
            {
                var db = r.Watch(scope.ServiceProvider.GetRequiredService<ShopContext>());
                r.Observe("same in scope", ReferenceEquals(db, scope.ServiceProvider.GetRequiredService<ShopContext>()));
                db.Customers.Add(Shop.Customer(1));
                await r.SaveAsync(db);
            }

            await using (var scope = services.CreateAsyncScope())
            {
                r.Observe("read", await scope.ServiceProvider.GetRequiredService<ShopContext>().Customers.Select(c => c.Notes).SingleAsync(r.Ct));
            }
        });
        yield return new("di-context-factory", Area, async r =>
        {
            await using var services = new ServiceCollection().AddDbContextFactory<ShopContext>(r.Configure).BuildServiceProvider();
            var factory = services.GetRequiredService<IDbContextFactory<ShopContext>>();
            await using (var db = r.Watch(await factory.CreateDbContextAsync(r.Ct)))
            {
                db.Customers.Add(Shop.Customer(2));
                await r.SaveAsync(db);
            }

            await using (var db = await factory.CreateDbContextAsync(r.Ct))
            {
                r.Observe("read", await db.Customers.SingleAsync(r.Ct));
            }
        });
        yield return new("di-transient-context-singleton-options", Area, async r =>
        {
            await using var services = new ServiceCollection()
                .AddDbContext<ShopContext>(r.Configure, ServiceLifetime.Transient, ServiceLifetime.Singleton)
                .BuildServiceProvider();
            await using (var db = r.Watch(services.GetRequiredService<ShopContext>()))
            {
                db.Customers.Add(Shop.Customer(3));
                await r.SaveAsync(db);
            }

            await using (var db = services.GetRequiredService<ShopContext>())
            {
                r.Observe("read", await db.Customers.Select(c => new { c.Ssn, c.Email }).SingleAsync(r.Ct));
            }
        });
        yield return new("di-options-from-service-provider", Area, async r =>
        {
            await using var services = new ServiceCollection()
                .AddSingleton(r)
                .AddDbContext<ShopContext>((sp, o) => sp.GetRequiredService<ScenarioRun>().Configure(o))
                .BuildServiceProvider();
            await using var scope = services.CreateAsyncScope();
            var db = r.Watch(scope.ServiceProvider.GetRequiredService<ShopContext>());
            db.Customers.Add(Shop.Customer(1));
            await r.SaveAsync(db);
            r.Observe("read", await db.Customers.AsNoTracking().Select(c => c.Ssn).SingleAsync(r.Ct));
        });
    }
}
