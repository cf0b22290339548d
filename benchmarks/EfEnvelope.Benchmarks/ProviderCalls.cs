using System.Security.Cryptography;
using EfEnvelope.Benchmarks.Workload;
using EfEnvelope.KeyManagement;

namespace EfEnvelope.Benchmarks;

/// <summary>Counts master-key provider calls per 10,000 rows in each mode (<c>--provider-calls</c>); a count, not a timing.</summary>
public static class ProviderCalls
{
    public static void Print()
    {
        Console.WriteLine($"Provider calls per {PatientData.Rows:N0} rows (InsecureInMemoryMasterKeyProvider counters)");
        Console.WriteLine();
        Console.WriteLine("| Mode | Insert: generate | Insert: decrypt | Warm read: decrypt | Cold read (new process/cache): decrypt |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        foreach (var approach in new[] { Approach.EfEnvelope, Approach.EfEnvelopeDirect })
        {
            var keyBytes = RandomNumberGenerator.GetBytes(32);
            var writer = new InsecureInMemoryMasterKeyProvider("benchmark-key", keyBytes);
            using var store = new Store(approach, writer);
            store.Insert(PatientData.Create());
            var (insertGenerate, insertDecrypt) = (writer.GenerateDataKeyCalls, writer.DecryptDataKeyCalls);

            _ = store.Read(tracking: true);
            var warmDecrypt = writer.DecryptDataKeyCalls - insertDecrypt;

            // Another provider instance with the same key: its own, empty key cache, as after a restart.
            var reader = new InsecureInMemoryMasterKeyProvider("benchmark-key", keyBytes);
            using var coldStore = new Store(approach, reader, store.Connection);
            var rows = coldStore.Read(tracking: true).Count;
            if (rows != PatientData.Rows)
            {
                throw new InvalidOperationException($"Read {rows} rows, expected {PatientData.Rows}.");
            }

            var name = approach == Approach.EfEnvelope ? "default (cached KEK)" : "direct";
            Console.WriteLine($"| {name} | {insertGenerate:N0} | {insertDecrypt:N0} | {warmDecrypt:N0} | {reader.DecryptDataKeyCalls:N0} |");
        }
    }
}
