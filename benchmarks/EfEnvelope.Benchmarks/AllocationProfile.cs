using System.Diagnostics.Tracing;
using EfEnvelope.Benchmarks.Workload;
using EfEnvelope.KeyManagement;

namespace EfEnvelope.Benchmarks;

/// <summary>
/// Which types an operation allocates (<c>--allocations</c>): the runtime's own allocation sampling (one
/// GCAllocationTick event per ~100 KB allocated, naming the type), heard in-process with an EventListener, since
/// dotnet-trace is not available.
/// </summary>
public static class AllocationProfile
{
    private const int Runs = 20;
    private const int Edits = 1_000;

    public static void Print()
    {
        var provider = new InsecureInMemoryMasterKeyProvider("benchmark-key");
        foreach (var approach in new[] { Approach.PlainEf, Approach.EfEnvelope })
        {
            using var store = new Store(approach, provider);
            store.Insert(PatientData.Create());
            Profile($"{approach}: no-tracking read", () => store.Read(tracking: false));
            Profile($"{approach}: tracking read", () => store.Read(tracking: true));
            // Each run edits its own context, tracked before the listener starts: only the edit and its save count.
            var tracked = new Queue<Microsoft.EntityFrameworkCore.DbContext>(Enumerable.Range(0, Runs + 1).Select(_ => store.Track(Edits)));
            Profile($"{approach}: edit one property of {Edits:N0} tracked rows", () =>
            {
                using var context = tracked.Dequeue();
                Store.EditNotes(context, "x");
            }, Edits);
            Profile($"{approach}: insert", () =>
            {
                using var target = new Store(approach, provider);
                target.Insert(PatientData.Create());
            });
        }
    }

    private static void Profile(string name, Action run, int rows = PatientData.Rows)
    {
        run();
        using var listener = new AllocationListener();
        for (var i = 0; i < Runs; i++)
        {
            run();
        }

        var total = listener.Bytes.Values.Sum();
        Console.WriteLine($"## {name}: sampled allocations per row, by type (top 12 of {total / (double)Runs / rows:F0} bytes/row)");
        Console.WriteLine();
        Console.WriteLine("| Type | Bytes/row (sampled) | Share |");
        Console.WriteLine("|---|---:|---:|");
        foreach (var (type, bytes) in listener.Bytes.OrderByDescending(p => p.Value).Take(12))
        {
            Console.WriteLine($"| `{type}` | {bytes / (double)Runs / rows:F0} | {bytes / (double)total:P0} |");
        }

        Console.WriteLine();
    }

    private sealed class AllocationListener : EventListener
    {
        private const EventKeywords GcKeyword = (EventKeywords)0x1;

        public Dictionary<string, long> Bytes { get; } = [];

        protected override void OnEventSourceCreated(EventSource eventSource)
        {
            if (eventSource.Name == "Microsoft-Windows-DotNETRuntime")
            {
                EnableEvents(eventSource, EventLevel.Verbose, GcKeyword);
            }
        }

        protected override void OnEventWritten(EventWrittenEventArgs eventData)
        {
            // GCAllocationTick_V4: AllocationAmount (about 100 KB since the last tick), TypeName of the object that crossed it.
            if (eventData.EventName?.StartsWith("GCAllocationTick", StringComparison.Ordinal) != true || eventData.Payload is null)
            {
                return;
            }

            var type = eventData.PayloadNames!.IndexOf("TypeName") is var t and >= 0 ? eventData.Payload[t] as string ?? "?" : "?";
            var amount = eventData.PayloadNames.IndexOf("AllocationAmount64") is var a and >= 0
                ? Convert.ToInt64(eventData.Payload[a], System.Globalization.CultureInfo.InvariantCulture)
                : 0;
            lock (Bytes)
            {
                Bytes[type] = Bytes.GetValueOrDefault(type) + amount;
            }
        }
    }
}
