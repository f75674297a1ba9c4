using System.Data.Common;
using System.Diagnostics;
using System.Threading.Channels;
using LoyaltyLedger.Telemetry;
using Microsoft.Data.Sqlite;

namespace LoyaltyLedger.Storage;

/// <summary>
/// Group commit for SQLite: every write of this process goes through one writer, which takes what is
/// waiting (up to <see cref="MaxBatch"/>), runs each unit of work in turn in one IMMEDIATE
/// transaction, each inside a savepoint of its own, commits once, and only then answers the callers.
/// </summary>
/// <remarks>
/// <para>SQLite has one writer at a time. Without this, concurrent writers queue for the file lock
/// through the busy handler, which sleeps and polls (1, 2, 5, 10... up to 100 ms), and each commits
/// alone with its own fsync: that is where the write p99 of half a second came from. Here they wait
/// in a queue in arrival order, and a burst of N writes costs one transaction and one fsync.</para>
/// <para>Each unit sees the writes of the units before it in the batch (they run one after another in
/// the same transaction), so balance checks stay exact. A unit that throws (a refusal, a bug) is
/// rolled back to its savepoint and answered with its exception at once: it wrote nothing, and its
/// neighbours go on. The others are answered after the commit, so nothing is acknowledged before it
/// is durable (synchronous=FULL). If the commit itself fails, each unit of the batch is retried
/// alone, so one bad unit cannot sink the others. A unit's commit hooks (its outbox rows) run
/// inside its savepoint.</para>
/// <para>Writers in other processes (a CLI command on the same file) still take the file lock as
/// before; the writer's BEGIN IMMEDIATE waits for them through the busy timeout.</para>
/// </remarks>
internal sealed class SqliteGroupCommit : IAsyncDisposable
{
    /// <summary>The most units of work one transaction takes: bounds the latency a unit adds to the others.</summary>
    public const int MaxBatch = 64;

    private readonly LedgerDatabase _database;
    private readonly Channel<Unit> _queue = Channel.CreateUnbounded<Unit>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Task _writer;
    private readonly CancellationTokenSource _stopping = new();
    private SqliteConnection? _connection;

    public SqliteGroupCommit(LedgerDatabase database)
    {
        _database = database;
        _writer = Task.Run(RunAsync);
    }

    public Task<T> WriteAsync<T>(Func<DbConnection, DbTransaction, Task<T>> work, CancellationToken ct)
    {
        var unit = new Unit<T>(work, ct);
        if (!_queue.Writer.TryWrite(unit)) throw new ObjectDisposedException(nameof(LedgerDatabase), "The database is closed.");
        return unit.Answer;
    }

    private abstract class Unit(CancellationToken ct)
    {
        public CancellationToken Cancellation { get; } = ct;
        public abstract Task RunAsync(DbConnection connection, DbTransaction transaction);
        public abstract void Succeed();
        public abstract void Fail(Exception ex);
        public abstract bool IsAnswered { get; }
    }

    private sealed class Unit<T>(Func<DbConnection, DbTransaction, Task<T>> work, CancellationToken ct) : Unit(ct)
    {
        private readonly TaskCompletionSource<T> _answer = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private T? _result;

        public Task<T> Answer => _answer.Task;

        public override async Task RunAsync(DbConnection connection, DbTransaction transaction) => _result = await work(connection, transaction);

        public override void Succeed() => _answer.TrySetResult(_result!);

        public override void Fail(Exception ex) => _answer.TrySetException(ex);

        public override bool IsAnswered => _answer.Task.IsCompleted;
    }

    private async Task RunAsync()
    {
        var reader = _queue.Reader;
        var batch = new List<Unit>(MaxBatch);
        try
        {
            while (await reader.WaitToReadAsync(_stopping.Token))
            {
                while (batch.Count < MaxBatch && reader.TryRead(out var unit)) batch.Add(unit);
                try
                {
                    await RunBatchAsync(batch);
                }
                catch (Exception ex) when (ex is not OperationCanceledException || !_stopping.IsCancellationRequested)
                {
                    // The batch failed as a whole (the file, the disk): each unit not answered yet (a
                    // refused one was, and wrote nothing) alone, so a unit that can commit does, and
                    // each of the others gets its own error.
                    await ResetConnectionAsync();
                    foreach (var unit in batch.Where(u => !u.IsAnswered))
                    {
                        try { await RunBatchAsync([unit]); }
                        catch (Exception single) { await ResetConnectionAsync(); unit.Fail(single); }
                    }
                }
                batch.Clear();
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
        finally
        {
            var closed = new ObjectDisposedException(nameof(LedgerDatabase), "The database is closed.");
            foreach (var unit in batch) unit.Fail(closed);
            while (reader.TryRead(out var left)) left.Fail(closed);
            await ResetConnectionAsync();
        }
    }

    private async Task RunBatchAsync(IReadOnlyList<Unit> batch)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            await RunTransactionAsync(batch);
        }
        finally
        {
            LedgerTelemetry.SqliteWriterBusy.Add(Stopwatch.GetElapsedTime(started).TotalSeconds);
            LedgerTelemetry.SqliteWriterBatch.Record(batch.Count);
        }
    }

    private async Task RunTransactionAsync(IReadOnlyList<Unit> batch)
    {
        _connection ??= (SqliteConnection)await _database.OpenAsync(CancellationToken.None);
        await using var transaction = await _database.Dialect.BeginWriteAsync(_connection, CancellationToken.None);
        var done = new List<Unit>(batch.Count);
        foreach (var unit in batch)
        {
            if (unit.Cancellation.IsCancellationRequested)
            {
                unit.Fail(new OperationCanceledException(unit.Cancellation));
                continue;
            }
            await transaction.SaveAsync("unit");
            var hooks = CommitHooks.Open(transaction);
            try
            {
                await unit.RunAsync(_connection, transaction);
                await CommitHooks.RunAsync(hooks, unit.Cancellation);
                await transaction.ReleaseAsync("unit");
                done.Add(unit);
            }
            catch (Exception ex)
            {
                await transaction.RollbackAsync("unit");
                await transaction.ReleaseAsync("unit");
                unit.Fail(ex);
            }
        }
        await transaction.CommitAsync();
        _database.Commits.Pulse();
        foreach (var unit in done) unit.Succeed();
    }

    private async Task ResetConnectionAsync()
    {
        if (_connection is null) return;
        try { await _connection.DisposeAsync(); }
        catch (SqliteException) { /* a broken connection: nothing left to close */ }
        _connection = null;
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _writer.ConfigureAwait(false);
        _stopping.Dispose();
    }
}
