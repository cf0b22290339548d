using System.Collections;
using System.Runtime.ExceptionServices;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Query;

/// <summary>Up to <see cref="ReadAhead.BatchSize"/> elements EF has materialized, with their records still to decrypt.</summary>
internal sealed class ReadAheadBatch<T>(DbContext context) : DeferredDecryptions(context)
{
    private readonly List<T> _elements = new(ReadAhead.BatchSize);
    private ExceptionDispatchInfo? _failure;
    private int _taken;
    private bool _exhausted;

    /// <summary>Whether EF may have elements after this batch: it neither ended nor failed.</summary>
    public bool HasMore => !_exhausted && _failure is null;

    /// <summary>Has EF materialize the next batch, deferring its decryption.</summary>
    public static ReadAheadBatch<T> Read(IEnumerator<T> rows, DbContext context)
    {
        var batch = new ReadAheadBatch<T>(context);
        var outer = Collecting.Value;
        Collecting.Value = batch;
        try
        {
            while (batch._elements.Count < ReadAhead.BatchSize && batch.HasMore)
            {
                if (rows.MoveNext())
                {
                    batch.Add(rows.Current);
                }
                else
                {
                    batch._exhausted = true;
                }
            }
        }
        catch (Exception error)
        {
            batch.Fail(error);
        }
        finally
        {
            batch.StopCollecting();
            Collecting.Value = outer;
        }

        return batch;
    }

    /// <summary>As <see cref="Read"/>, for an async query.</summary>
    public static async ValueTask<ReadAheadBatch<T>> ReadAsync(IAsyncEnumerator<T> rows, DbContext context)
    {
        var batch = new ReadAheadBatch<T>(context);

        // Set inside this async method: EF's continuations of the reads below see it, and the caller's flow gets its
        // own value back when the method returns.
        Collecting.Value = batch;
        try
        {
            while (batch._elements.Count < ReadAhead.BatchSize && batch.HasMore)
            {
                if (await rows.MoveNextAsync().ConfigureAwait(false))
                {
                    batch.Add(rows.Current);
                }
                else
                {
                    batch._exhausted = true;
                }
            }
        }
        catch (Exception error)
        {
            batch.Fail(error);
        }
        finally
        {
            batch.StopCollecting();
        }

        return batch;
    }

    /// <summary>
    /// The consumer's next element of this batch: true with it; false when EF has no more; null when the next batch is
    /// to be read. A record that failed to decrypt throws at its element, and the failure that ended the batch after
    /// its elements, where EF threw it, once: a consumer that goes on gets what follows, as EF's enumerator gives it.
    /// </summary>
    public bool? TryTake(out T element)
    {
        if (_taken < _elements.Count)
        {
            var index = _taken++;
            ThrowIfFailed(index);
            element = _elements[index];
            return true;
        }

        element = default!;
        var failure = _failure;
        _failure = null;
        failure?.Throw();
        return _exhausted ? false : null;
    }

    private void Add(T element)
    {
        _elements.Add(element);
        EndElement();
    }

    private void Fail(Exception error) => _failure = ExceptionDispatchInfo.Capture(DecryptUnfinishedElement() ?? error);
}

/// <summary>EF's result of a query without tracking, read ahead in batches decrypted on two threads (<see cref="ReadAhead"/>).</summary>
internal sealed class ReadAheadEnumerable<T>(IEnumerable<T> rows, DbContext context) : IEnumerable<T>
{
    public IEnumerator<T> GetEnumerator() => new Enumerator(rows.GetEnumerator(), context);

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    private sealed class Enumerator(IEnumerator<T> rows, DbContext context) : IEnumerator<T>
    {
        private ReadAheadBatch<T>? _batch;
        private ReadAheadBatch<T>? _next;

        public T Current { get; private set; } = default!;

        object? IEnumerator.Current => Current;

        public bool MoveNext()
        {
            while (true)
            {
                if (_batch is { } batch && batch.TryTake(out var element) is { } taken)
                {
                    Current = element;
                    return taken;
                }

                // The batch after this one is read while this one is decrypted; this one is finished before any of
                // its elements is returned, so nothing runs on after the consumer stops. After a failure nothing is
                // read ahead: whether to go on is the consumer's choice.
                var current = _next ?? ReadAheadBatch<T>.Read(rows, context);
                _next = null;
                current.Decrypt(current.HasMore ? () => _next = ReadAheadBatch<T>.Read(rows, context) : null);
                _batch = current;
            }
        }

        public void Reset() => throw new NotSupportedException();

        public void Dispose() => rows.Dispose();
    }
}

/// <summary>The async counterpart of <see cref="ReadAheadEnumerable{T}"/>.</summary>
internal sealed class ReadAheadAsyncEnumerable<T>(IAsyncEnumerable<T> rows, DbContext context) : IAsyncEnumerable<T>
{
    public IAsyncEnumerator<T> GetAsyncEnumerator(CancellationToken cancellationToken = default) =>
        new Enumerator(rows.GetAsyncEnumerator(cancellationToken), context, cancellationToken);

    private sealed class Enumerator(IAsyncEnumerator<T> rows, DbContext context, CancellationToken cancellationToken) : IAsyncEnumerator<T>
    {
        private ReadAheadBatch<T>? _batch;
        private ReadAheadBatch<T>? _next;

        public T Current { get; private set; } = default!;

        public async ValueTask<bool> MoveNextAsync()
        {
            while (true)
            {
                // EF's reader observes the token at each row; rows already read ahead must not outlive a cancellation.
                // A TaskCanceledException is what EF throws on SQLite, and a catch of OperationCanceledException
                // (what Npgsql throws) catches it too. EF is not asked for a row: one it returned would be lost to a consumer
                // that goes on.
                if (cancellationToken.IsCancellationRequested)
                {
                    throw new TaskCanceledException(null, null, cancellationToken);
                }

                if (_batch is { } batch && batch.TryTake(out var element) is { } taken)
                {
                    Current = element;
                    return taken;
                }

                var current = _next ?? await ReadAheadBatch<T>.ReadAsync(rows, context).ConfigureAwait(false);
                _next = null;
                await current.DecryptAsync(current.HasMore ? async () => _next = await ReadAheadBatch<T>.ReadAsync(rows, context).ConfigureAwait(false) : null).ConfigureAwait(false);
                _batch = current;
            }
        }

        public ValueTask DisposeAsync() => rows.DisposeAsync();
    }
}
