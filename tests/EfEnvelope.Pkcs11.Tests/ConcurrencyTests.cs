using System.Collections.Concurrent;
using EfEnvelope.KeyManagement;
using EfEnvelope.Pkcs11.Internal;

namespace EfEnvelope.Pkcs11.Tests;

public sealed class ConcurrencyTests
{
    public ConcurrencyTests() => SoftHsm.Require();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Sixteen_parallel_callers_on_four_sessions_never_share_a_session_mid_operation()
    {
        var label = await SoftHsm.CreateKeyAsync("concurrency");
        var options = SoftHsm.Options(label);
        options.MaxSessions = 4;
        using var provider = new Pkcs11MasterKeyProvider(options);
        // Holding each operation open a little makes callers pile up on the pool, so sharing would show.
        using var observer = new UseCounter(TimeSpan.FromMilliseconds(1));
        provider.SessionObserver = observer;

        var results = await Task.WhenAll(Enumerable.Range(0, 16).Select(caller => Task.Run(async () =>
        {
            var context = KeyContext.For("pkcs11-tests", $"Clinic.Entity{caller}");
            var ok = true;
            for (var round = 0; round < 10; round++)
            {
                using var key = await provider.GenerateDataKeyAsync(label, context, Ct);
                var unwrapped = await provider.DecryptDataKeyAsync(label, key.WrappedKey, context, Ct);
                ok &= key.Plaintext.AsSpan().SequenceEqual(unwrapped);
            }

            return ok;
        }, Ct)));

        Assert.All(results, Assert.True);
        Assert.Equal(16 * 10 * 2, observer.Operations);
        Assert.Equal(1, observer.MostOnOneSession);
        Assert.InRange(observer.SessionsSeen, 2, 4);
        Assert.InRange(observer.MostAtOnce, 2, 4);
    }

    [Fact]
    public async Task Caller_waiting_for_a_busy_pool_can_cancel()
    {
        var label = await SoftHsm.CreateKeyAsync("pool-wait");
        var options = SoftHsm.Options(label);
        options.MaxSessions = 1;
        using var provider = new Pkcs11MasterKeyProvider(options);
        var context = KeyContext.For("pkcs11-tests", "Clinic.Patient");
        using var gate = new Gate();
        provider.SessionObserver = gate;

        var holder = Task.Run(() => provider.GenerateDataKeyAsync(label, context, Ct), Ct);
        Assert.True(gate.Entered.Wait(TimeSpan.FromSeconds(10), Ct));
        using var waiting = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        var waiter = provider.GenerateDataKeyAsync(label, context, waiting.Token);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiter);
        gate.Release.Set();
        using var held = await holder;
        Assert.Equal(label, held.KeyId);
    }

    private sealed class UseCounter(TimeSpan hold) : ISessionObserver, IDisposable
    {
        private readonly ConcurrentDictionary<ulong, int> _inUse = new();
        private readonly ManualResetEventSlim _secondInside = new();
        private int _atOnce;
        private int _mostAtOnce;
        private int _mostOnOneSession;
        private int _operations;

        public int MostAtOnce => Volatile.Read(ref _mostAtOnce);

        public int MostOnOneSession => Volatile.Read(ref _mostOnOneSession);

        public int SessionsSeen => _inUse.Count;

        public int Operations => Volatile.Read(ref _operations);

        public void OperationStarting(ulong sessionId)
        {
            Interlocked.Increment(ref _operations);
            Raise(ref _mostOnOneSession, _inUse.AddOrUpdate(sessionId, 1, (_, n) => n + 1));
            var atOnce = Interlocked.Increment(ref _atOnce);
            Raise(ref _mostAtOnce, atOnce);
            if (atOnce >= 2)
            {
                _secondInside.Set();
            }

            // On a loaded machine the callers' tasks may start one after another; the first operations wait (a bounded
            // time) for a second caller, so that the pool is seen serving two at once whatever the scheduling.
            _secondInside.Wait(TimeSpan.FromSeconds(10));
            Thread.Sleep(hold);
        }

        public void OperationEnded(ulong sessionId)
        {
            Interlocked.Decrement(ref _atOnce);
            _inUse.AddOrUpdate(sessionId, 0, (_, n) => n - 1);
        }

        public void Dispose() => _secondInside.Dispose();

        private static void Raise(ref int most, int value)
        {
            int seen;
            while (value > (seen = Volatile.Read(ref most)) && Interlocked.CompareExchange(ref most, value, seen) != seen)
            {
            }
        }
    }

    private sealed class Gate : ISessionObserver, IDisposable
    {
        public ManualResetEventSlim Entered { get; } = new();

        public ManualResetEventSlim Release { get; } = new();

        public void OperationStarting(ulong sessionId)
        {
            Entered.Set();
            Release.Wait(TimeSpan.FromSeconds(10));
        }

        public void OperationEnded(ulong sessionId)
        {
        }

        public void Dispose()
        {
            Entered.Dispose();
            Release.Dispose();
        }
    }
}
