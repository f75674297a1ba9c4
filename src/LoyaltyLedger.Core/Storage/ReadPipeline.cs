using System.Threading.Channels;
using LoyaltyLedger.Telemetry;
using Npgsql;

namespace LoyaltyLedger.Storage;

/// <summary>
/// The page reads of both read APIs on PostgreSQL's primary, sent several to a round trip, as group
/// commit sends writes: a few lanes, each a pooled connection, each taking the statements waiting
/// (up to a bound) and sending them as one <see cref="NpgsqlBatch"/>. Each read is answered with its
/// own result as soon as it is read.
/// </summary>
/// <remarks>
/// A page statement sent alone costs PostgreSQL a round trip, its wake-up and its sync; from 8
/// connections one at a time it ran 6,395 times a second where 2 connections sending 8 at a time ran
/// it 9,867 times (docs/performance.md). The batch has no error barriers, so it is one implicit
/// transaction of read statements, each reading its own snapshot (read committed), as it would
/// alone, and one sync. A statement's error skips the statements after it: the read whose
/// statement failed gets the error, and the reads after it are sent again as a batch of their own.
/// An error of the connection fails the reads not yet answered, as it fails a read sent alone. A
/// read already sent runs to its end when its caller gives up (a page statement takes a fraction of
/// a millisecond); one still waiting is not sent.
/// </remarks>
internal sealed class ReadPipeline : IAsyncDisposable
{
    private abstract class PendingRead
    {
        /// <summary>A command for one attempt (a command belongs to the batch it was sent in); null when the values do not bind to the statement.</summary>
        public abstract NpgsqlBatchCommand? Command();

        /// <summary>Reads this read's result from the reader (positioned on it) and answers the caller.</summary>
        public abstract Task AnswerAsync(NpgsqlDataReader reader, CancellationToken ct);

        public abstract void Fail(Exception error);

        /// <summary>Answered, failed, or given up by its caller (cancelled while it waited).</summary>
        public abstract bool IsDone { get; }
    }

    private sealed class PendingRead<T>(PositionalSql statement, List<(string Name, object? Value, Type? Declared)> values, CancellationToken ct)
        : PendingRead
    {
        private readonly TaskCompletionSource<List<T>> _answer = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private CancellationTokenRegistration _cancelled;
        private NpgsqlBatchCommand? _bound;

        public Task<List<T>> Answer => _answer.Task;

        public override bool IsDone => _answer.Task.IsCompleted;

        public void Watch() => _cancelled = ct.Register(() => _answer.TrySetCanceled(ct));

        /// <summary>Binds the first attempt's command, so that values that do not bind are found before the read waits.</summary>
        public bool Binds() => (_bound = Command()) is not null;

        public override NpgsqlBatchCommand? Command()
        {
            if (_bound is { } first)
            {
                _bound = null;
                return first;
            }
            var command = new NpgsqlBatchCommand(statement.Sql);
            return statement.TryBind(values, () => new NpgsqlParameter(), command.Parameters) ? command : null;
        }

        public override async Task AnswerAsync(NpgsqlDataReader reader, CancellationToken ct)
        {
            // A caller that gave up is not read for: the reader passes its rows when it moves on.
            if (IsDone) return;
            var rows = await KeptReads.RowsAsync<T>(reader, ct);
            _cancelled.Dispose();
            _answer.TrySetResult(rows);
        }

        public override void Fail(Exception error)
        {
            _cancelled.Dispose();
            _answer.TrySetException(error);
        }
    }

    private readonly NpgsqlDataSource _source;
    private readonly int _maxBatch;
    private readonly Channel<PendingRead> _waiting = Channel.CreateUnbounded<PendingRead>();
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task[] _lanes;

    public ReadPipeline(NpgsqlDataSource source, int lanes, int maxBatch)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(lanes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        _source = source;
        _maxBatch = maxBatch;
        _lanes = Enumerable.Range(0, lanes).Select(_ => Task.Run(LaneAsync)).ToArray();
    }

    private long _sent;

    /// <summary>Reads sent in the pipeline's batches so far (a read sent again after an error counts again), for tests to watch.</summary>
    internal long ReadsSent => Interlocked.Read(ref _sent);

    /// <summary>
    /// The rows of <paramref name="sql"/> with <paramref name="args"/> (as <see cref="KeptReads"/>
    /// takes them), read in a lane's next batch; null when the text or the values do not bind by
    /// position (<see cref="KeptReads.Positional"/>), which a batch needs.
    /// </summary>
    public Task<List<T>>? TryQueryAsync<T>(string sql, object? args, CancellationToken ct)
    {
        if (KeptReads.Positional(sql, args) is not { } positional) return null;
        var read = new PendingRead<T>(positional.Statement, positional.Values, ct);
        if (!read.Binds()) return null;
        read.Watch();
        if (!_waiting.Writer.TryWrite(read)) read.Fail(new ObjectDisposedException(nameof(LedgerDatabase), "The database is closed."));
        return read.Answer;
    }

    private async Task LaneAsync()
    {
        var batch = new List<PendingRead>(_maxBatch);
        try
        {
            while (await _waiting.Reader.WaitToReadAsync(_stopping.Token))
            {
                batch.Clear();
                while (batch.Count < _maxBatch && _waiting.Reader.TryRead(out var read))
                    if (!read.IsDone) batch.Add(read);
                if (batch.Count == 0) continue;
                await AnswerAsync(batch);
            }
        }
        catch (Exception) when (_stopping.IsCancellationRequested)
        {
        }
        finally
        {
            foreach (var read in batch) read.Fail(new ObjectDisposedException(nameof(LedgerDatabase), "The database is closed."));
        }
    }

    /// <summary>
    /// Sends <paramref name="reads"/> and answers each. A read whose statement fails (or whose rows do
    /// not map) gets its error, and the reads after it, which the database skipped, go again as a
    /// batch of their own; any other error (the connection's) fails every read not yet answered.
    /// </summary>
    private async Task AnswerAsync(List<PendingRead> reads)
    {
        while (reads.Count > 0)
        {
            LedgerTelemetry.PostgresReadPipelineBatch.Record(reads.Count);
            var at = -1;
            var sent = new List<NpgsqlBatchCommand>(reads.Count);
            try
            {
                await using var connection = await _source.OpenConnectionAsync(_stopping.Token);
                await using var batch = new NpgsqlBatch(connection);
                foreach (var read in reads)
                    sent.Add(read.Command() ?? throw new InvalidOperationException("A pipelined read's values no longer bind to its statement."));
                foreach (var command in sent) batch.BatchCommands.Add(command);
                Interlocked.Add(ref _sent, reads.Count);
                at = 0;
                await using var reader = await batch.ExecuteReaderAsync(_stopping.Token);
                for (; at < reads.Count; at++)
                {
                    if (at > 0 && !await reader.NextResultAsync(_stopping.Token))
                        throw new InvalidOperationException($"The batch gave {at} results for {reads.Count} statements.");
                    await reads[at].AnswerAsync(reader, _stopping.Token);
                }
                return;
            }
            catch (Exception error) when (!_stopping.IsCancellationRequested)
            {
                // The statement the database refused, named on the error (IncludeFailedBatchedCommand,
                // LedgerDatabase), or the read being answered when the error came, unless it is the
                // connection's (an NpgsqlException that is not the database's answer to a statement).
                var failed = error switch
                {
                    PostgresException { BatchCommand: { } command } when sent.IndexOf(command) is var named and >= 0 => named,
                    PostgresException or not NpgsqlException when at >= 0 && at < reads.Count => at,
                    _ => -1,
                };
                if (failed < 0)
                {
                    foreach (var read in reads) read.Fail(error);
                    return;
                }
                reads[failed].Fail(error);
                reads = reads.Where(r => !r.IsDone).ToList();
            }
        }
    }

    private int _disposed;

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        _waiting.Writer.TryComplete();
        await _stopping.CancelAsync();
        await Task.WhenAll(_lanes);
        while (_waiting.Reader.TryRead(out var read)) read.Fail(new ObjectDisposedException(nameof(LedgerDatabase), "The database is closed."));
        _stopping.Dispose();
    }
}
