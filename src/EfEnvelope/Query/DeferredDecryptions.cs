using System.Runtime.ExceptionServices;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Query;

/// <summary>
/// The records of a read-ahead batch (<see cref="ReadAheadBatch{T}"/>) whose decryption EF's materializer left for
/// later, decrypted by two threads at once.
/// </summary>
/// <remarks>
/// <para>
/// Why: decryption is most of a read's cost (per record a data-key unwrap, a cipher and one AES-GCM open per
/// value), and EF materializes on one thread. While <see cref="Collecting"/> names a batch, <see cref="RecordDecryptor"/>
/// records the entity and its stored columns here instead of decrypting; the batch is then decrypted by a thread-pool
/// worker and the consumer's thread together, while the consumer's thread has EF read the next batch in between.
/// </para>
/// <para>
/// Only the batch's own query defers: <see cref="Collecting"/> flows into whatever EF calls while it reads (an
/// interceptor, a task it starts), so a record is deferred only when it is materialized for this batch's context while
/// the batch is being read (<see cref="Collects"/>); any other query decrypts as it materializes.
/// </para>
/// <para>
/// Concurrency: each record is claimed once through <see cref="_claimed"/> (an interlocked counter), so the two
/// threads never touch the same entity, and each writes only its own records' properties and error slots. The last
/// record finished completes <see cref="_finished"/>, whose completion publishes every write to the thread that
/// waits on it. A worker the thread pool starts late finds nothing left to claim, so the consumer never waits for a
/// thread to be scheduled, only for a record already being decrypted. The worker runs in the consumer's execution
/// context (captured when the batch is handed over, after <see cref="Collecting"/> was reset), so that a provider
/// call it makes on a key-cache miss sees the caller's ambient state (trace activity, logging scopes).
/// </para>
/// </remarks>
internal class DeferredDecryptions(DbContext context)
{
    /// <summary>The batch being read: set only while EF materializes it, on the consumer's logical flow.</summary>
    internal static readonly AsyncLocal<DeferredDecryptions?> Collecting = new();

    private readonly List<(RecordDecryptor Decryptor, object Entity, object?[] Stored)> _records = new(ReadAhead.BatchSize);
    private readonly List<int> _recordEnds = new(ReadAhead.BatchSize);
    private Exception?[] _errors = [];
    private TaskCompletionSource? _finished;
    private int _claimed;
    private int _done;
    private volatile bool _reading = true;

    /// <summary>The elements read so far (each one's records were collected while EF produced it).</summary>
    public int ElementCount => _recordEnds.Count;

    /// <summary>Whether a record materialized for <paramref name="materializing"/> now belongs to this batch.</summary>
    public bool Collects(DbContext materializing) => _reading && ReferenceEquals(materializing, context);

    /// <summary>Called by the materializer, instead of decrypting, while this batch <see cref="Collects"/> its records.</summary>
    public void Defer(RecordDecryptor decryptor, object entity, object?[] stored) => _records.Add((decryptor, entity, stored));

    /// <summary>Ends the reading of the batch: from now on nothing defers to it, whoever still sees it as <see cref="Collecting"/>.</summary>
    protected void StopCollecting() => _reading = false;

    /// <summary>Closes an element: the records deferred since the previous one belong to it.</summary>
    protected void EndElement() => _recordEnds.Add(_records.Count);

    /// <summary>
    /// Decrypts, in order, the records of an element EF failed to finish, and forgets them: the element is never
    /// returned. EF decrypts a record as it constructs it, before it reads the rest of the row, so a record that fails
    /// to decrypt there is the failure the consumer would have seen: it is returned to be thrown instead of EF's.
    /// </summary>
    protected Exception? DecryptUnfinishedElement()
    {
        var from = _recordEnds.Count == 0 ? 0 : _recordEnds[^1];
        Exception? failure = null;
        for (var i = from; i < _records.Count && failure is null; i++)
        {
            var (decryptor, entity, stored) = _records[i];
            try
            {
                decryptor.DecryptNow(entity, stored);
            }
            catch (Exception error)
            {
                failure = error;
            }
        }

        _records.RemoveRange(from, _records.Count - from);
        return failure;
    }

    /// <summary>Decrypts every record, with a thread-pool worker sharing the work, and waits until all are done.</summary>
    public void Decrypt(Action? meanwhile = null)
    {
        if (Start())
        {
            meanwhile?.Invoke();
            Share();
            _finished!.Task.Wait();
        }
        else
        {
            meanwhile?.Invoke();
        }
    }

    /// <summary>As <see cref="Decrypt"/>, awaiting the work done in between and the records the worker still holds.</summary>
    public async ValueTask DecryptAsync(Func<ValueTask>? meanwhile = null)
    {
        var started = Start();
        if (meanwhile is not null)
        {
            await meanwhile().ConfigureAwait(false);
        }

        if (started)
        {
            Share();
            await _finished!.Task.ConfigureAwait(false);
        }
    }

    /// <summary>Throws the first failure among the records of element <paramref name="element"/>, as EF would have while materializing it.</summary>
    protected void ThrowIfFailed(int element)
    {
        var from = element == 0 ? 0 : _recordEnds[element - 1];
        for (var i = from; i < _recordEnds[element]; i++)
        {
            if (_errors[i] is { } error)
            {
                ExceptionDispatchInfo.Throw(error);
            }
        }
    }

    private bool Start()
    {
        if (_records.Count == 0)
        {
            return false;
        }

        _errors = new Exception?[_records.Count];
        _finished = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        // Flows the consumer's execution context (see the remarks); the worker decrypts directly, never deferring.
        ThreadPool.QueueUserWorkItem(static batch => batch.Share(), this, preferLocal: false);
        return true;
    }

    private void Share()
    {
        int index;
        while ((index = Interlocked.Increment(ref _claimed) - 1) < _records.Count)
        {
            var (decryptor, entity, stored) = _records[index];
            try
            {
                decryptor.DecryptNow(entity, stored);
            }
            catch (Exception error)
            {
                // Kept for the consumer, which throws it when it reaches the element, where EF would have thrown it.
                _errors[index] = error;
            }

            if (Interlocked.Increment(ref _done) == _records.Count)
            {
                _finished!.SetResult();
            }
        }
    }
}
