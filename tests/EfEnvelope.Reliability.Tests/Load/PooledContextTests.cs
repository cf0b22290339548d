using System.Collections.Concurrent;
using System.Data.Common;
using EfEnvelope.KeyManagement;
using EfEnvelope.Specification.Tests;
using EfEnvelope.Specification.Tests.EntityFramework;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.DependencyInjection;

namespace EfEnvelope.Reliability.Tests.Load;

/// <summary>
/// Pooled contexts reused across many "requests", some of which leave unsaved edits, failed saves, abandoned
/// transactions or half-read queries behind: no request sees another's state.
/// </summary>
public sealed class PooledContextTests : IDisposable
{
    private static readonly AsyncLocal<List<string>?> RequestCommands = new();

    /// <summary>Invoices whose card number starts with FAIL are encrypted under a master key the provider refuses.</summary>
    private static readonly MasterKeySelector FailingKeyForMarkedInvoices = entity => entity is Invoice { CardNumber: ['F', 'A', 'I', 'L', ..] } ? "refused" : null;

    private readonly string _path = Path.Combine(Path.GetTempPath(), $"efenvelope-pool-{Guid.NewGuid():N}.db");

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        foreach (var suffix in new[] { "", "-wal", "-shm" })
        {
            File.Delete(_path + suffix);
        }
    }

    /// <summary>Records the commands of the current request only (the interceptor is shared by every pooled context).</summary>
    private sealed class RequestSql : DbCommandInterceptor
    {
        public override InterceptionResult<DbDataReader> ReaderExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<DbDataReader> result)
        {
            RequestCommands.Value?.Add(command.CommandText);
            return result;
        }

        public override ValueTask<InterceptionResult<DbDataReader>> ReaderExecutingAsync(DbCommand command, CommandEventData eventData, InterceptionResult<DbDataReader> result, CancellationToken cancellationToken = default)
        {
            RequestCommands.Value?.Add(command.CommandText);
            return ValueTask.FromResult(result);
        }
    }

    /// <summary>Has a master key "refused" that exists but always fails, like a key the caller is denied.</summary>
    private sealed class RefusingKeyProvider(IMasterKeyProvider inner) : IMasterKeyProvider
    {
        public string Name => inner.Name;

        public string PrimaryKeyId => inner.PrimaryKeyId;

        public bool IsKeyConfigured(string keyId) => keyId == "refused" || inner.IsKeyConfigured(keyId);

        public Task<GeneratedDataKey> GenerateDataKeyAsync(string keyId, KeyContext context, CancellationToken cancellationToken) =>
            keyId == "refused" ? throw new MasterKeyException("Injected failure.", Name, keyId) : inner.GenerateDataKeyAsync(keyId, context, cancellationToken);

        public Task<byte[]> DecryptDataKeyAsync(string keyId, ReadOnlyMemory<byte> wrappedKey, KeyContext context, CancellationToken cancellationToken) =>
            inner.DecryptDataKeyAsync(keyId, wrappedKey, context, cancellationToken);
    }

    [Fact]
    public async Task Pooled_contexts_reused_across_hundreds_of_requests_leak_no_state()
    {
        var provider = new RefusingKeyProvider(new InsecureInMemoryMasterKeyProvider("pool"));
        var interceptor = new RequestSql();
        var services = new ServiceCollection()
            .AddDbContextPool<ClinicContext>(
                o => o.UseSqlite($"Data Source={_path}").ManyConfigurationsPerProcess().UseEnvelopeEncryption(e => e.UseProvider(provider).UseMasterKeySelector(FailingKeyForMarkedInvoices)).AddInterceptors(interceptor),
                poolSize: 3)
            .BuildServiceProvider();
        await using (services.ConfigureAwait(false))
        {
            // Each worker owns its rows, so what it expects to read is not raced by another worker's writes.
            var committed = Enumerable.Range(0, 4).Select(_ => new ConcurrentDictionary<Guid, string>()).ToArray();
            await using (var scope = services.CreateAsyncScope())
            {
                var db = scope.ServiceProvider.GetRequiredService<ClinicContext>();
                await db.Database.EnsureCreatedAsync(Ct);
                await db.Database.ExecuteSqlRawAsync("PRAGMA journal_mode=WAL", Ct);
                for (var i = 0; i < 20; i++)
                {
                    var patient = new Patient { Id = Guid.NewGuid(), Ssn = $"POOL-{i}", DateOfBirth = new DateOnly(2000, 1, 1) };
                    db.Patients.Add(patient);
                    committed[i % 4][patient.Id] = patient.Ssn;
                }

                await db.SaveChangesAsync(Ct);
            }

            var seed = Seeds.For(nameof(Pooled_contexts_reused_across_hundreds_of_requests_leak_no_state));
            TestContext.Current.TestOutputHelper?.WriteLine($"seed {seed}");
            var leases = new ConcurrentDictionary<ClinicContext, int>(ReferenceEqualityComparer.Instance);
            var workers = Enumerable.Range(0, 4).Select(worker => Task.Run(async () =>
            {
                var random = new Random(seed + worker);
                for (var request = 0; request < 60; request++)
                {
                    await RequestAsync(services, committed[worker], leases, random, $"worker {worker} request {request} (seed {seed + worker})");
                }
            }, Ct)).ToList();
            await Task.WhenAll(workers);

            // The pool really was reused: 240 requests over at most a handful of instances.
            Assert.InRange(leases.Count, 1, 8);
            Assert.True(leases.Values.Max() > 20);
        }
    }

    private static async Task RequestAsync(IServiceProvider services, ConcurrentDictionary<Guid, string> committed, ConcurrentDictionary<ClinicContext, int> leases, Random random, string what)
    {
        await using var scope = services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ClinicContext>();
        leases.AddOrUpdate(db, 1, (_, n) => n + 1);
        RequestCommands.Value = [];

        // What a fresh request must find: nothing tracked, no transaction, nothing to save.
        Assert.True(!db.ChangeTracker.Entries().Any(), $"{what}: tracked entities leaked in");
        Assert.True(db.Database.CurrentTransaction is null, $"{what}: a transaction leaked in");
        Assert.True(await db.SaveChangesAsync(Ct) == 0 && RequestCommands.Value.Count == 0, $"{what}: a save with no edits sent SQL");

        var ids = committed.Keys.OrderBy(_ => random.Next()).Take(5).ToList();
        var loaded = await db.Patients.Where(p => ids.Contains(p.Id)).ToListAsync(Ct);
        foreach (var patient in loaded)
        {
            Assert.True(committed[patient.Id] == patient.Ssn, $"{what}: read '{patient.Ssn}' for a row committed as '{committed[patient.Id]}'");
        }

        var target = loaded[0];
        switch (random.Next(5))
        {
            case 0:
                // Edit and walk away: the next user of this context must not see or save the edit.
                target.Ssn = "UNSAVED-" + random.Next();
                break;
            case 1:
                // A save that fails at the provider, leaving pending state behind.
                target.Ssn = "FAILED-" + random.Next();
                db.Patients.Add(new Patient { Id = Guid.NewGuid(), Ssn = "FAILED-NEW", DateOfBirth = new DateOnly(2000, 1, 1) });
                db.Invoices.Add(new Invoice { CardNumber = "FAIL-" + random.Next() });
                await Assert.ThrowsAsync<MasterKeyException>(() => db.SaveChangesAsync(Ct));
                break;
            case 2:
                // A transaction never committed (rolled back when the context goes back to the pool).
                await db.Database.BeginTransactionAsync(Ct);
                target.Ssn = "UNCOMMITTED-" + random.Next();
                await db.SaveChangesAsync(Ct);
                break;
            case 3:
                var ssn = $"SAVED-{random.Next()}";
                target.Ssn = ssn;
                await db.SaveChangesAsync(Ct);
                committed[target.Id] = ssn;
                break;
            default:
                var added = new Patient { Id = Guid.NewGuid(), Ssn = $"ADDED-{random.Next()}", DateOfBirth = new DateOnly(2000, 1, 1) };
                db.Patients.Add(added);
                await db.SaveChangesAsync(Ct);
                committed[added.Id] = added.Ssn;
                break;
        }

        RequestCommands.Value = null;
    }
}
