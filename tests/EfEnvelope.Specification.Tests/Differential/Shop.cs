namespace EfEnvelope.Specification.Tests.Differential;

/// <summary>Deterministic data for the scenarios: the same calls give equal entities in both runs.</summary>
public static class Shop
{
    public static Customer Customer(int n) => new()
    {
        Name = $"Customer {n}",
        Email = n == 3 ? null : $"c{n}@example.com",
        Ssn = $"000-00-{n:0000}",
        // Odd customers share one note and even ones have none, so that Distinct has duplicates and a null to fold.
        Notes = n % 2 == 1 ? "same note" : null,
        BirthDate = new DateOnly(1970 + n, 1 + (n % 12), 1 + (n % 28)),
        Score = n * 10,
        CreditLimit = 1000.25m + n,
        Vip = n % 2 == 0,
        Tier = (Tier)(n % 3),
        LastSeen = n % 2 == 1 ? new DateTimeOffset(2024, 1, n, 8, 30, 0, TimeSpan.Zero) : null,
        Home = n == 4 ? null : new Address { City = n % 2 == 0 ? "Springfield" : "Shelbyville", Street = $"{n} Evergreen Terrace" },
        Orders = [Order(n, 1), Order(n, 2)],
    };

    public static Order Order(int n, int k) => new()
    {
        CardNumber = $"4111-{n}{k}",
        Note = k == 1 ? $"gift {n}" : null,
        Total = (n * 10) + k + 0.5m,
        Quantity = n + k,
    };

    /// <summary>Customers 1..count, two orders each (ids follow insertion order in both runs).</summary>
    public static Task CustomersAsync(ScenarioRun run, int count = 4)
    {
        ArgumentNullException.ThrowIfNull(run);
        return run.SeedAsync([.. Enumerable.Range(1, count).Select(Customer)]);
    }

    public static Member Member(int n) => new()
    {
        Name = $"Member {n}",
        Profile = new Profile { Bio = $"bio {n}", Nickname = $"nick{n}", Social = n == 2 ? null : new Social { Followers = n * 100, Handle = $"@m{n}" } },
    };

    public static Book Book(int n) => new(new Guid($"00000000-0000-0000-0000-{n:000000000000}"), $"Title {n}", $"978-0-00-00000{n}-0") { Summary = n % 2 == 0 ? null : $"summary {n}" };

    /// <summary>Rows of one hierarchy: payments (TPH), documents (TPT) or vehicles (TPC).</summary>
    public static Task HierarchyAsync(ScenarioRun run, Type root)
    {
        ArgumentNullException.ThrowIfNull(run);
        object[] rows = root == typeof(Payment)
            ? [new CardPayment { Amount = 12.5m, Reference = "ref-1", Pan = "5500-0000" }, new BankPayment { Amount = 99m, Reference = "ref-2", Iban = "DE89 3704" }, new BankPayment { Amount = 7m, Reference = "ref-3", Iban = null }]
            : root == typeof(Document)
                ? [new Document { Title = "Memo", Body = "body of memo" }, new Contract { Title = "Lease", Body = null, Party = "ACME" }]
                : [new Car { Id = 1, Plate = "AB-123", Seats = 5, Vin = "VIN1" }, new Truck { Id = 2, Plate = "TR-999", Payload = 4000 }];
        return run.SeedAsync(rows);
    }
}
