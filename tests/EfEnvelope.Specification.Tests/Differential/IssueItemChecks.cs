using System.Data.Common;
using EfEnvelope.KeyManagement;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Migrations;
using Microsoft.Extensions.DependencyInjection;

namespace EfEnvelope.Specification.Tests.Differential;

/// <summary>
/// One check per numbered item of issue 11 ("issue-01" .. "issue-12"). Each returns null when the item's promise holds
/// and else what was seen; items that are differential run their scenarios with refusals counted as differences where
/// the issue says a refusal is the defect.
/// </summary>
public sealed class IssueItemChecks(DifferentialFixture fixture, CancellationToken ct)
{
    public static IReadOnlyList<string> Ids { get; } = [.. Enumerable.Range(1, 12).Select(i => $"issue-{i:00}")];

    private readonly ScenarioRunner _runner = new(fixture);

    /// <summary>Item 1: [Encrypted] without UseEnvelopeEncryption must fail loudly, naming the property and the fix, and store nothing.</summary>
    public async Task<string?> ForgottenRegistrationAsync()
    {
        await using var database = await fixture.CreateEmptyAsync(ct);
        var builder = new DbContextOptionsBuilder<ForgottenRegistrationContext>().ManyConfigurationsPerProcess();
        database.Use(builder);
        await using var db = new ForgottenRegistrationContext(builder.Options);
        try
        {
            await db.Database.EnsureCreatedAsync(ct);
            db.Applicants.Add(new Applicant { Ssn = "123-45-6789" });
            await db.SaveChangesAsync(ct);
        }
        catch (InvalidOperationException e) when (Names(e, "Ssn") && e.Message.Contains("UseEnvelopeEncryption", StringComparison.Ordinal))
        {
            return null;
        }

        var stored = await ScalarAsync(db.Database.GetDbConnection(), "SELECT \"Ssn\" FROM \"Applicants\"");
        return $"saved without any error; the column holds {(stored is string s && s == "123-45-6789" ? "the plaintext" : Canonical.Format(stored))}";
    }

    /// <summary>
    /// Item 2: a compiled (runtime) model of the encrypted configuration, used by a context without the extension, must
    /// fail loudly or still encrypt: never drop a nullable value, store plaintext or end in a raw database error. (The
    /// <c>dbcontext optimize</c> code generation with a searchable property is not exercised here: it needs
    /// Microsoft.EntityFrameworkCore.Design.)
    /// </summary>
    public async Task<string?> CompiledModelWithoutExtensionAsync()
    {
        await using var database = await fixture.CreateShopAsync(encrypted: true, ct);
        IModel model;
        await using (var encrypted = new ShopContext(fixture.ShopOptions(database, encrypted: true).Options))
        {
            model = encrypted.Model;
        }

        var builder = new DbContextOptionsBuilder<ShopContext>().ManyConfigurationsPerProcess();
        database.Use(builder);
        builder.UseModel(model);
        try
        {
            await using var plain = new ShopContext(builder.Options);
            plain.Documents.Add(new Document { Title = "memo", Body = "nullable and encrypted" });
            await plain.SaveChangesAsync(ct);
        }
        catch (InvalidOperationException e) when (e.Message.Contains("UseEnvelopeEncryption", StringComparison.Ordinal))
        {
            return null;
        }
        catch (DbUpdateException e)
        {
            return $"SaveChanges fails with a raw database error: {e.InnerException?.Message ?? e.Message}";
        }

        try
        {
            await using var check = new ShopContext(fixture.ShopOptions(database, encrypted: true).Options);
            var body = await check.Documents.Select(d => d.Body).SingleAsync(ct);
            return body == "nullable and encrypted" ? null : $"saved without error, and read back with encryption as {Canonical.Format(body)}";
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return $"saved without error, and the row cannot be read with encryption: {e.GetType().Name}: {e.Message}";
        }
    }

    /// <summary>Runs scenarios of the differential suite; null when all match (or are refused, where <paramref name="refusalAllowed"/>).</summary>
    public async Task<string?> ScenariosAsync(bool refusalAllowed, params string[] ids)
    {
        var problems = new List<string>();
        foreach (var id in ids)
        {
            var scenario = Scenarios.All.Concat(Scenarios.IssueOnly).Single(s => s.Id == id);
            var result = await _runner.RunAsync(refusalAllowed ? scenario : scenario.MustMatch(), ct);
            if (result.Verdict is not (Verdict.Matched or Verdict.Refused))
            {
                problems.Add($"{id}: {result.Detail}");
            }
        }

        return problems.Count == 0 ? null : string.Join(Environment.NewLine, problems);
    }

    /// <summary>
    /// Item 10: adding a non-nullable encrypted property to a table with rows, through the migration EF generates, must
    /// leave rows that read back (or be refused when the migration is generated, saying what to do).
    /// </summary>
    public async Task<string?> MigrationAddingRequiredEncryptedColumnAsync()
    {
        await using var database = await fixture.CreateEmptyAsync(ct);
        await using var before = new LedgerContext(Options<LedgerContext>(database));
        await before.Database.EnsureCreatedAsync(ct);
        before.Entries.AddRange(new LedgerEntry { Name = "first" }, new LedgerEntry { Name = "second" });
        await before.SaveChangesAsync(ct);

        await using var after = new LedgerWithSecretContext(Options<LedgerWithSecretContext>(database));
        try
        {
            var operations = after.GetService<IMigrationsModelDiffer>().GetDifferences(
                before.GetService<IDesignTimeModel>().Model.GetRelationalModel(),
                after.GetService<IDesignTimeModel>().Model.GetRelationalModel());
            foreach (var command in after.GetService<IMigrationsSqlGenerator>().Generate(operations, after.GetService<IDesignTimeModel>().Model))
            {
                await after.Database.ExecuteSqlRawAsync(command.CommandText, ct);
            }
        }
        catch (InvalidOperationException e) when (Names(e, "Secret"))
        {
            return null;
        }

        try
        {
            var rows = await after.Entries.AsNoTracking().OrderBy(e => e.Id).ToListAsync(ct);
            return rows.Count == 2 ? null : $"{rows.Count} rows read back instead of 2";
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return $"the rows the generated migration left cannot be read: {e.GetType().Name}: {e.Message}";
        }
    }

    /// <summary>Item 11: refusals say the right thing, no raw database error, and a missing blind-index key is reported before any save.</summary>
    public async Task<string?> MessagesAsync()
    {
        var problems = new List<string>();
        var database = await fixture.CreateShopAsync(encrypted: true, ct);
        await using (database)
        {
            await using var db = new ShopContext(fixture.ShopOptions(database, encrypted: true).Options);
            foreach (var (what, query) in new (string, Func<Task>)[]
            {
                ("Sum", () => db.Customers.SumAsync(c => c.Score, ct)),
                ("string.IsNullOrEmpty", () => db.Customers.CountAsync(c => string.IsNullOrEmpty(c.Notes), ct)),
            })
            {
                try
                {
                    await query();
                }
                catch (InvalidOperationException e) when (e.Message.Contains("Searchable", StringComparison.Ordinal) || e.Message.Contains("equality", StringComparison.OrdinalIgnoreCase))
                {
                    problems.Add($"{what} is refused with the equality-search advice, which cannot help it: {e.Message}");
                }
                catch (InvalidOperationException)
                {
                    // A refusal with advice of its own is what the item asks for.
                }
            }

            var builder = new DbContextOptionsBuilder<ShopContext>().ManyConfigurationsPerProcess();
            database.Use(builder);
            builder.UseEnvelopeEncryption(e => e.UseProvider(fixture.Provider));
            await using var withoutIndexKey = new ShopContext(builder.Options);
            try
            {
                _ = withoutIndexKey.Model;
                withoutIndexKey.Customers.Add(Shop.Customer(1));
                try
                {
                    await withoutIndexKey.SaveChangesAsync(ct);
                    problems.Add("a searchable property without UseBlindIndexKey is not reported at all");
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    problems.Add($"a searchable property without UseBlindIndexKey is reported only at the first SaveChanges, as {e.GetType().Name}");
                }
            }
            catch (InvalidOperationException e) when (e.Message.Contains("UseBlindIndexKey", StringComparison.Ordinal))
            {
                // Reported as the context is first used, before anything is saved.
            }
        }

        if (await ScenariosAsync(refusalAllowed: true, "where-two-columns-compared") is { } compared)
        {
            problems.Add(compared);
        }

        return problems.Count == 0 ? null : string.Join(Environment.NewLine, problems);
    }

    /// <summary>
    /// Item 12: a new provider object per scope (over the same key) must not build a new EF service provider per scope
    /// and must not fail reads, or must be refused at once with the fix.
    /// </summary>
    public async Task<string?> ProviderPerScopeAsync()
    {
        var keyBytes = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();
        var indexKey = await BlindIndexKey.CreateAsync(new InsecureInMemoryMasterKeyProvider("primary", keyBytes), cancellationToken: ct);
        await using var database = await fixture.CreateShopAsync(encrypted: true, ct);
        await using var services = new ServiceCollection()
            .AddDbContext<ShopContext>(o =>
            {
                database.Use(o.ManyConfigurationsPerProcess());
                o.UseEnvelopeEncryption(e => e.UseProvider(new InsecureInMemoryMasterKeyProvider("primary", keyBytes)).UseBlindIndexKey(indexKey));
            })
            .BuildServiceProvider();
        var internalProviders = new HashSet<object>(ReferenceEqualityComparer.Instance);
        var failures = new List<string>();
        for (var scope = 0; scope < 25; scope++)
        {
            await using var serviceScope = services.CreateAsyncScope();
            var db = serviceScope.ServiceProvider.GetRequiredService<ShopContext>();
            try
            {
                internalProviders.Add(db.GetService<IModelSource>());
                if (scope == 0)
                {
                    db.Customers.Add(Shop.Customer(1));
                    await db.SaveChangesAsync(ct);
                }
                else if (await db.Customers.Select(c => c.Ssn).SingleAsync(ct) != Shop.Customer(1).Ssn)
                {
                    failures.Add($"scope {scope} read a different value");
                }
            }
            catch (InvalidOperationException e) when (scope == 0 && e.Message.Contains("provider", StringComparison.OrdinalIgnoreCase) && e.Message.Contains("singleton", StringComparison.OrdinalIgnoreCase))
            {
                return null;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                failures.Add($"scope {scope}: {e.GetType().Name}: {e.Message}");
            }
        }

        if (internalProviders.Count > 1)
        {
            failures.Insert(0, $"25 scopes built {internalProviders.Count} EF internal service providers");
        }

        return failures.Count == 0 ? null : string.Join(Environment.NewLine, failures.Take(5));
    }

    private DbContextOptions<TContext> Options<TContext>(FreshDatabase database)
        where TContext : DbContext
    {
        var builder = new DbContextOptionsBuilder<TContext>().ManyConfigurationsPerProcess();
        database.Use(builder);
        builder.UseEnvelopeEncryption(e => e.UseProvider(fixture.Provider));
        return builder.Options;
    }

    private static bool Names(Exception e, string property) => e.Message.Contains(property, StringComparison.Ordinal);

    private async Task<object?> ScalarAsync(DbConnection connection, string sql)
    {
        if (connection.State != System.Data.ConnectionState.Open)
        {
            await connection.OpenAsync(ct);
        }

        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        var value = await command.ExecuteScalarAsync(ct);
        return value is DBNull ? null : value;
    }
}
