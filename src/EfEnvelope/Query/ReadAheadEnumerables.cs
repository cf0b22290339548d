using System.Collections;
using System.Runtime.ExceptionServices;

namespace EfEnvelope.Query;

/// <summary>Up to <see cref="ReadAhead.BatchSize"/> elements EF has materialized, with their records still to decrypt.</summary>
internal sealed class ReadAheadBatch<T> : DeferredDecryptions
{
    private readonly List<T> _elements = new(ReadAhead.BatchSize);

    public int Count => _elements.Count;

    public T this[int index] => _elements[index];

    /// <summary>EF's exception, to throw after the elements read before it.</summary>
    public ExceptionDispatchInfo? Failure { get; private set; }

    /// <summary>Whether EF has no more elements after this batch (it ended, or failed).</summary>
    public bool Ended { get; private set; }

    /// <summary>Has EF materialize the next batch, deferring its decryption.</summary>
    public static ReadAheadBatch<T> Read(IEnumerator<T> rows)
    {
        var batch = new ReadAheadBatch<T>();
        var outer = Collecting.Value;
        Collecting.Value = batch;
        try
        {
            while (batch.Count < ReadAhead.BatchSize && !batch.Ended)
            {
                if (rows.MoveNext())
                {
                    batch.Add(rows.Current);
                }
                else
                {
                    batch.Ended = true;
                }
            }
        }
        catch (Exception error)
        {
            batch.Fail(error);
        }
        finally
        {
            Collecting.Value = outer;
        }

        return batch;
    }

    /// <summary>As <see cref="Read"/>, for an async query.</summary>
    public static async ValueTask<ReadAheadBatch<T>> ReadAsync(IAsyncEnumerator<T> rows)
    {
        var batch = new ReadAheadBatch<T>();

        // Set inside this async method: EF's continuations of the reads below see it, and the caller's flow gets its
        // own value back when the method returns.
        Collecting.Value = batch;
        try
        {
            while (batch.Count < ReadAhead.BatchSize && !batch.Ended)
            {
                if (await rows.MoveNextAsync().ConfigureAwait(false))
                {
                    batch.Add(rows.Current);
                }
                else
                {
                    batch.Ended = true;
                }
            }
        }
        catch (Exception error)
        {
            batch.Fail(error);
        }

        return batch;
    }

    private void Add(T element)
    {
        _elements.Add(element);
        EndElement();
    }

    private void Fail(Exception error)
    {
        DropUnfinishedElement();
        Failure = ExceptionDispatchInfo.Capture(error);
        Ended = true;
    }
}

/// <summary>EF's result of a query without tracking, read ahead in batches decrypted on two threads (<see cref="ReadAhead"/>).</summary>
internal sealed class ReadAheadEnumerable<T>(IEnumerable<T> rows) : IEnumerable<T>
{
    public IEnumerator<T> GetEnumerator() => new Enumerator(rows.GetEnumerator());

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    private sealed class Enumerator(IEnumerator<T> rows) : IEnumerator<T>
    {
        private ReadAheadBatch<T>? _batch;
        private ReadAheadBatch<T>? _next;
        private int _position;

        public T Current { get; private set; } = default!;

        object? IEnumerator.Current => Current;

        public bool MoveNext()
        {
            while (true)
            {
                if (_batch is { } batch)
                {
                    if (_position < batch.Count)
                    {
                        var element = _position++;
                        batch.ThrowIfFailed(element);
                        Current = batch[element];
                        return true;
                    }

                    batch.Failure?.Throw();
                    if (batch.Ended)
                    {
                        return false;
                    }
                }

                // The batch after this one is read while this one is decrypted; this one is finished before any of
                // its elements is returned, so nothing runs on after the consumer stops.
                var current = _next ?? ReadAheadBatch<T>.Read(rows);
                _next = null;
                current.Decrypt(current.Ended ? null : () => _next = ReadAheadBatch<T>.Read(rows));
                _batch = current;
                _position = 0;
            }
        }

        public void Reset() => throw new NotSupportedException();

        public void Dispose() => rows.Dispose();
    }
}

/// <summary>The async counterpart of <see cref="ReadAheadEnumerable{T}"/>.</summary>
internal sealed class ReadAheadAsyncEnumerable<T>(IAsyncEnumerable<T> rows) : IAsyncEnumerable<T>
{
    public IAsyncEnumerator<T> GetAsyncEnumerator(CancellationToken cancellationToken = default) =>
        new Enumerator(rows.GetAsyncEnumerator(cancellationToken), cancellationToken);

    private sealed class Enumerator(IAsyncEnumerator<T> rows, CancellationToken cancellationToken) : IAsyncEnumerator<T>
    {
        private ReadAheadBatch<T>? _batch;
        private ReadAheadBatch<T>? _next;
        private int _position;

        public T Current { get; private set; } = default!;

        public async ValueTask<bool> MoveNextAsync()
        {
            while (true)
            {
                // EF's reader observes the token at each row; rows already read ahead must not outlive a cancellation.
                cancellationToken.ThrowIfCancellationRequested();
                if (_batch is { } batch)
                {
                    if (_position < batch.Count)
                    {
                        var element = _position++;
                        batch.ThrowIfFailed(element);
                        Current = batch[element];
                        return true;
                    }

                    batch.Failure?.Throw();
                    if (batch.Ended)
                    {
                        return false;
                    }
                }

                var current = _next ?? await ReadAheadBatch<T>.ReadAsync(rows).ConfigureAwait(false);
                _next = null;
                await current.DecryptAsync(current.Ended ? null : async () => _next = await ReadAheadBatch<T>.ReadAsync(rows).ConfigureAwait(false)).ConfigureAwait(false);
                _batch = current;
                _position = 0;
            }
        }

        public ValueTask DisposeAsync() => rows.DisposeAsync();
    }
}
