using System.Security.Cryptography;
using Amazon.KeyManagementService.Model;
using EfEnvelope.AwsKms;
using EfEnvelope.AwsKms.Tests.LocalKms;
using EfEnvelope.Benchmarks.Workload;
using EfEnvelope.KeyManagement;

namespace EfEnvelope.Benchmarks;

/// <summary>Counts master-key provider calls per 10,000 rows in each mode (<c>--provider-calls</c>); a count, not a timing.</summary>
/// <remarks>
/// In-memory: the provider's own counters. AWS KMS: the requests that reached the local KMS endpoint from the real SDK
/// client. A cold read uses a second provider instance (its own, empty key cache), as a restarted process would.
/// </remarks>
public static class ProviderCalls
{
    public static async Task PrintAsync()
    {
        Console.WriteLine($"Provider calls per {PatientData.Rows:N0} rows");
        Console.WriteLine();
        Console.WriteLine("| Provider | Mode | Insert: generate | Insert: decrypt | Warm read: decrypt | Cold read: decrypt |");
        Console.WriteLine("|---|---|---:|---:|---:|---:|");
        foreach (var approach in new[] { Approach.EfEnvelope, Approach.EfEnvelopeDirect })
        {
            var keyBytes = RandomNumberGenerator.GetBytes(32);
            var writer = new InsecureInMemoryMasterKeyProvider("benchmark-key", keyBytes);
            var reader = new InsecureInMemoryMasterKeyProvider("benchmark-key", keyBytes);
            var counts = Count(approach, writer, reader, () => (writer.GenerateDataKeyCalls, writer.DecryptDataKeyCalls + reader.DecryptDataKeyCalls));
            Print("in-memory", approach, counts);
        }

        await using var kms = LocalKmsServer.Start();
        kms.RecordRequests = false;
        using var writerClient = kms.CreateClient();
        using var readerClient = kms.CreateClient();
        var keyArn = (await writerClient.CreateKeyAsync(new CreateKeyRequest { Description = "provider calls" })).KeyMetadata.Arn;
        foreach (var approach in new[] { Approach.EfEnvelope, Approach.EfEnvelopeDirect })
        {
            kms.ResetCounters();

            // Two clients, so that the two providers are different configurations with a cache each.
            using var writer = new AwsKmsMasterKeyProvider(new AwsKmsOptions { Client = writerClient, KeyId = keyArn });
            using var reader = new AwsKmsMasterKeyProvider(new AwsKmsOptions { Client = readerClient, KeyId = keyArn });
            var counts = Count(approach, writer, reader, () => (kms.CallCount("GenerateDataKey"), kms.CallCount("Decrypt")));
            Print("aws-kms (local endpoint)", approach, counts);
        }
    }

    private static (long InsertGenerate, long InsertDecrypt, long WarmDecrypt, long ColdDecrypt) Count(
        Approach approach, IMasterKeyProvider writer, IMasterKeyProvider reader, Func<(long Generate, long Decrypt)> read)
    {
        using var store = new Store(approach, writer);
        store.Insert(PatientData.Create());
        var (insertGenerate, insertDecrypt) = read();

        _ = store.Read(tracking: true);
        var warmDecrypt = read().Decrypt - insertDecrypt;

        using var coldStore = new Store(approach, reader, store.Connection);
        var rows = coldStore.Read(tracking: true).Count;
        if (rows != PatientData.Rows)
        {
            throw new InvalidOperationException($"Read {rows} rows, expected {PatientData.Rows}.");
        }

        return (insertGenerate, insertDecrypt, warmDecrypt, read().Decrypt - insertDecrypt - warmDecrypt);
    }

    private static void Print(string provider, Approach approach, (long InsertGenerate, long InsertDecrypt, long WarmDecrypt, long ColdDecrypt) counts)
    {
        var mode = approach == Approach.EfEnvelope ? "default (cached KEK)" : "direct";
        Console.WriteLine($"| {provider} | {mode} | {counts.InsertGenerate:N0} | {counts.InsertDecrypt:N0} | {counts.WarmDecrypt:N0} | {counts.ColdDecrypt:N0} |");
    }
}
