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
/// A read in a batch is one statement outside any transaction: it sees one snapshot, as the same
/// statement sent alone does. A page statement sent alone costs PostgreSQL a round trip, its wake-up
/// and its sync; from 8 connections one at a time it ran 6,395 times a second where 2 connections
/// sending 8 at a time ran it 9,867 times (docs/performance.md). Without error barriers the batch is
/// one implicit transaction, and a statement's error skips those after it: the reads not yet
/// answered are then sent again one by one, so that a read fails for its own error only.
/// </remarks>
internal sealed class ReadPipeline : IAsyncDisposable
{
    private abstract class PendingRead
    {
        /// <summary>A command for one attempt: a command belongs to the batch it was sent in.</summary>
        public abstract NpgsqlBatchCommand Command();

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

        public Task<List<T>> Answer => _answer.Task;

        public override bool IsDone => _answer.Task.IsCompleted;

        public void Watch() => _cancelled = ct.Register(() => _answer.TrySetCanceled(ct));

        public override NpgsqlBatchCommand Command()
        {
            var command = new NpgsqlBatchCommand(statement.Sql);
            if (!statement.TryBind(values, () => new NpgsqlParameter(), command.Parameters))
                throw new InvalidOperationException("A pipelined read's values no longer bind to its statement.");
            return command;
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
        Lanes = lanes;
        _lanes = Enumerable.Range(0, lanes).Select(_ => Task.Run(LaneAsync)).ToArray();
    }

    public int Lanes { get; }

    private long _sent;

    /// <summary>Reads sent in the pipeline's batches so far (a read sent again alone after an error counts again), for tests to watch.</summary>
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
        // Bound once here, so that a text that does not bind is found before it waits.
        _ = read.Command();
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
                LedgerTelemetry.PostgresReadPipelineBatch.Record(batch.Count);
                try
                {
                    await SendAsync(batch);
                }
                catch (Exception) when (!_stopping.IsCancellationRequested)
                {
                    // One statement's error (or the connection's) ends the batch there: the reads
                    // still unanswered are sent again, each alone, and each answered with what it alone gives.
                    foreach (var read in batch.Where(r => !r.IsDone).ToList())
                    {
                        try { await SendAsync([read]); }
                        catch (Exception error) { read.Fail(error); }
                    }
                }
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

    private async Task SendAsync(IReadOnlyList<PendingRead> reads)
    {
        await using var connection = await _source.OpenConnectionAsync(_stopping.Token);
        await using var batch = new NpgsqlBatch(connection);
        foreach (var read in reads) batch.BatchCommands.Add(read.Command());
        Interlocked.Add(ref _sent, reads.Count);
        await using var reader = await batch.ExecuteReaderAsync(_stopping.Token);
        for (var i = 0; i < reads.Count; i++)
        {
            if (i > 0 && !await reader.NextResultAsync(_stopping.Token))
                throw new InvalidOperationException($"The batch gave {i} results for {reads.Count} statements.");
            await reads[i].AnswerAsync(reader, _stopping.Token);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _waiting.Writer.TryComplete();
        await _stopping.CancelAsync();
        await Task.WhenAll(_lanes);
        while (_waiting.Reader.TryRead(out var read)) read.Fail(new ObjectDisposedException(nameof(LedgerDatabase), "The database is closed."));
        _stopping.Dispose();
    }
}
