using System.Data.Common;
using EfEnvelope.Infrastructure;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace EfEnvelope.Storage;

/// <summary>Wraps the data readers of EF's commands: the key prefetch of async queries, then the ciphertext read guard.</summary>
/// <remarks>
/// One command interceptor rather than one per wrapper: EF creates interceptors for every context, and with more than
/// one of a kind it puts an aggregator between them and each command.
/// </remarks>
internal sealed class ReaderWrappingInterceptor(EnvelopeRuntime runtime) : DbCommandInterceptor
{
    public override DbDataReader ReaderExecuted(DbCommand command, CommandExecutedEventData eventData, DbDataReader result) =>
        CiphertextReadGuard.Wrap(runtime, command, eventData, result);

    public override ValueTask<DbDataReader> ReaderExecutedAsync(DbCommand command, CommandExecutedEventData eventData, DbDataReader result, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(CiphertextReadGuard.Wrap(runtime, command, eventData, KeyPrefetch.Wrap(runtime, command, eventData, result)));
}
