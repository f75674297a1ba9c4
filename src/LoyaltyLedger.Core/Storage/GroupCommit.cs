using System.Data.Common;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Threading.Channels;

namespace LoyaltyLedger.Storage;

/// <summary>
/// Group commit: writes go through a few writers ("lanes"), each of which takes what is waiting (up
/// to <see cref="MaxBatch"/>), runs each unit of work in turn in one transaction, commits once, and
/// only then answers the callers.
/// </summary>
/// <remarks>
/// <para>SQLite has one writer at a time, so it has one lane, and every write of the process goes
/// through it. Without it, concurrent writers queue for the file lock through the busy handler, which
/// sleeps and polls (1, 2, 5, 10... up to 100 ms), and each commits alone with its own fsync: that is
/// where a write p99 of half a second came from. Here they wait in a queue in arrival order, and a
/// burst of N writes costs one transaction and one fsync.</para>
/// <para>PostgreSQL has a few lanes, for the API's writes (<see cref="LedgerDatabase.WriteAndLocateAsync{T}"/>)
/// and the lifecycle run's postings (<see cref="LedgerDatabase.WriteBatchedAsync{T}"/>):
/// a burst of postings costs one commit per lane instead of one each, and the database runs a few
/// sessions' statements instead of one session per client.</para>
/// <para>Each unit sees the writes of the units before it in the batch (they run one after another in
/// the same transaction), so balance checks stay exact. A unit that throws (a refusal, a bug) writes
/// nothing, and its neighbours go on: the transaction is rolled back and they run again in a new one,
/// where each unit has a savepoint of its own (and a unit that throws there is rolled back to it).
/// A unit that threw first in a batch without savepoints saw only committed data and is answered at
/// once; one that threw after others is run again with them, and one that throws in a batch with
/// savepoints is answered once that batch commits (if it does not, the unit is run again): a refusal
/// may rest on the writes before it. A batch runs without savepoints while failures
/// are rare, because on PostgreSQL each is a round trip per unit; when they are frequent enough that
/// running batches again would cost more, it sets them from the start (<see cref="Careful"/>). A unit
/// that meets a transient conflict (a serialization failure, a busy file) is rolled back
/// the same way (after others in a batch without savepoints, first run again with them), and queued
/// again once its batch is settled (never also run alone with a batch that
/// failed), after a short wait, up to <see cref="MaxAttempts"/> times. The others are answered after the commit, so nothing is
/// acknowledged before it is durable. If the batch fails before its commit (the connection, the
/// disk), each unit of it is run again alone, so one bad unit cannot sink the others; if the commit
/// itself fails with its outcome unknown (the connection lost while committing), every unit of the
/// batch gets that error, as a write of its own would, and none is run again. A unit's commit hooks run
/// with its work; what it leaves for the end of the transaction (its outbox rows, its audit record and
/// idempotent answer, <see cref="CommitHooks.AtTail"/>) is written once for the whole batch, after its
/// last unit and before the commit, and is dropped with a unit rolled back. On PostgreSQL that end,
/// the COMMIT and the read of the commit's position are one round trip
/// (<see cref="SqlDialect.CommitInBatch"/>): there a lost connection leaves the commit's outcome
/// unknown, and an error the server names says whether it came before, at or after the COMMIT.</para>
/// <para>Writers in other processes (a CLI command on the same file, another server on the same
/// PostgreSQL) still write as before: on SQLite the writer's BEGIN IMMEDIATE waits for them through
/// the busy timeout; on PostgreSQL row locks keep them apart, wallets locked in one global order
/// within each posting. Once a batch's first unit has run, the units after it do not wait for locks
/// (<see cref="SqlDialect.LockWaits"/>): one that would opens the lane's next batch, so a batch
/// waits holding another unit's locks only at its end, for the outbox positions' lock (whose holder
/// waits for nothing), and batches cannot deadlock over wallets.</para>
/// </remarks>
internal sealed class GroupCommit : IAsyncDisposable
{
    /// <summary>How many times a unit meeting transient conflicts is tried, as a write of its own is.</summary>
    public const int MaxAttempts = 8;

    private readonly LedgerDatabase _database;
    private readonly Channel<Unit> _queue;
    private readonly Task[] _lanes;
    private readonly Counter<double> _busy;
    private readonly Histogram<int> _batchSizes;
    private readonly Counter<long> _reruns;
    private readonly Counter<long>? _deferred;
    private readonly Func<DbConnection, Task>? _beforeBatch;

    /// <param name="database">The database the lanes write to.</param>
    /// <param name="lanes">Writers, each with a connection and a transaction of its own.</param>
    /// <param name="maxBatch">The most units one transaction takes: bounds the latency a unit adds to the others.</param>
    /// <param name="busy">Time the lanes spent in their transactions.</param>
    /// <param name="batchSizes">Units each transaction took.</param>
    /// <param name="reruns">Transactions without savepoints rolled back for a unit that failed in them, whose units then ran again with savepoints.</param>
    /// <param name="deferred">Units that would have waited for a lock behind others, run first in a later transaction (where the dialect has <see cref="SqlDialect.LockWaits"/>).</param>
    /// <param name="beforeBatch">Run on a lane's connection before each of its transactions, outside any (SQLite's checkpoint catch-up, <see cref="SqliteCheckpointer.CatchUpAsync"/>).</param>
    public GroupCommit(LedgerDatabase database, int lanes, int maxBatch, Counter<double> busy, Histogram<int> batchSizes, Counter<long> reruns,
        Counter<long>? deferred = null, Func<DbConnection, Task>? beforeBatch = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(lanes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        _database = database;
        MaxBatch = maxBatch;
        _busy = busy;
        _batchSizes = batchSizes;
        _reruns = reruns;
        _deferred = deferred;
        _beforeBatch = beforeBatch;
        _queue = Channel.CreateUnbounded<Unit>(new UnboundedChannelOptions { SingleReader = lanes == 1 });
        _lanes = Enumerable.Range(0, lanes).Select(_ => Task.Run(RunLaneAsync)).ToArray();
    }

    /// <summary>The most units of work one transaction takes.</summary>
    public int MaxBatch { get; }

    /// <summary>
    /// Where set (PostgreSQL), a batch of units that may run side by side (see <see cref="WriteAsync{T}"/>)
    /// first tries that (<see cref="LockStep"/>): its transactions by outcome, and its round trips.
    /// </summary>
    public (Counter<long> Tries, Counter<long> Rounds)? SideBySide { get; init; }

    /// <summary>
    /// Runs <paramref name="work"/> in a batch; with <paramref name="locate"/>, answers the WAL
    /// position after its commit too. <paramref name="bounded"/>: the work is a posting of a few
    /// owners (an API write, a lifecycle run's posting), which changes a bounded number of pages;
    /// else it may change a whole table (a tier run, renumbering), and its batch keeps the
    /// database's default temporary storage (<see cref="SqlDialect.BeforeWriteAsync"/>).
    /// </summary>
    /// <remarks><paramref name="sideBySide"/>: the work touches the database only through postings, and may run side by side with the other units of its batch (<see cref="SideBySide"/>).</remarks>
    public Task<(T Result, WalPosition? Position)> WriteAsync<T>(Func<DbConnection, DbTransaction, Task<T>> work, bool locate, CancellationToken ct,
        bool bounded = true, bool sideBySide = false)
    {
        var unit = new Unit<T>(work, locate, ct) { Bounded = bounded, SideBySide = sideBySide };
        if (!_queue.Writer.TryWrite(unit)) throw Closed();
        return unit.Answer;
    }

    private abstract class Unit(bool locate, CancellationToken ct)
    {
        /// <summary>
        /// The caller's execution context: the unit runs in it, so that what the caller set (the
        /// request's trace activity: the posting's span and its commands' spans stay under the
        /// request's) is what the unit sees, not the lane's.
        /// </summary>
        private readonly ExecutionContext? _context = ExecutionContext.Capture();

        public CancellationToken Cancellation { get; } = ct;
        public bool Locate { get; } = locate;

        /// <summary>A posting of a few owners, which changes a bounded number of pages (see <see cref="WriteAsync{T}"/>).</summary>
        public bool Bounded { get; init; } = true;

        /// <summary>The work touches the database only through postings: it may run side by side with others (<see cref="LockStep"/>).</summary>
        public bool SideBySide { get; init; }

        /// <summary>
        /// The unit once would have waited for a lock held elsewhere (<see cref="Lane.Firsts"/>): a try
        /// side by side, which refuses lock waits, would most likely break on it again.
        /// </summary>
        public bool WaitedForALock { get; set; }

        public int Attempt { get; set; } = 1;
        public abstract void Succeed(WalPosition? position);
        public abstract void Fail(Exception ex);
        public abstract bool IsAnswered { get; }

        /// <summary>What the unit's last successful run left for the end of its transaction (<see cref="CommitHooks.AtTail"/>).</summary>
        public IReadOnlyList<(ICommitTail Tail, object Item)> Tail { get; private set; } = [];

        /// <summary>What the unit's last successful run left for after its commit (<see cref="CommitHooks.AfterCommit"/>).</summary>
        public IReadOnlyList<Action> AfterCommit { get; private set; } = [];

        protected abstract Task WorkAsync(DbConnection connection, DbTransaction transaction);

        /// <summary>
        /// Runs the unit's work and then its commit hooks (its outbox rows), in the caller's context;
        /// with <paramref name="step"/>, as its write number <paramref name="seat"/>, side by side with the others.
        /// </summary>
        public Task RunAsync(DbConnection connection, DbTransaction transaction, LockStep? step = null, int seat = 0)
        {
            if (_context is null) return RunHereAsync(connection, transaction, step, seat);
            Task? running = null;
            ExecutionContext.Run(_context, _ => running = RunHereAsync(connection, transaction, step, seat), null);
            return running!;
        }

        private async Task RunHereAsync(DbConnection connection, DbTransaction transaction, LockStep? step, int seat)
        {
            LockStep.Sit(step, seat);
            // A write's lookups take no read slot (ReadSlots): the caller's context says so already;
            // this says it for a unit queued from a flow that did not carry it.
            ReadSlots.Exempt();
            Tail = [];
            AfterCommit = [];
            var hooks = CommitHooks.Open(transaction);
            await WorkAsync(connection, transaction);
            // Not the caller's token: the hooks run on the lane's shared connection, whose statements
            // a cancel would hit whoever's they are (the token stopped the unit before it started).
            await CommitHooks.RunAsync(hooks, CancellationToken.None);
            Tail = hooks.Tail;
            AfterCommit = hooks.AfterCommit;
        }
    }

    private sealed class Unit<T>(Func<DbConnection, DbTransaction, Task<T>> work, bool locate, CancellationToken ct) : Unit(locate, ct)
    {
        private readonly TaskCompletionSource<(T, WalPosition?)> _answer = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private T? _result;

        public Task<(T, WalPosition?)> Answer => _answer.Task;

        protected override async Task WorkAsync(DbConnection connection, DbTransaction transaction) => _result = await work(connection, transaction);

        public override void Succeed(WalPosition? position) => _answer.TrySetResult((_result!, position));

        public override void Fail(Exception ex) => _answer.TrySetException(ex);

        public override bool IsAnswered => _answer.Task.IsCompleted;
    }

    /// <summary>The commit failed and nobody knows whether it took effect: its units are not run again.</summary>
    private sealed class CommitOutcomeUnknown(Exception inner) : Exception(inner.Message, inner);

    private sealed class Lane
    {
        public DbConnection? Connection;

        /// <summary>
        /// Units of the batch under way rolled back for a transient conflict: queued again once the
        /// batch is settled, never run alone with the rest of a failed batch (each runs once).
        /// </summary>
        public readonly List<Unit> Retries = [];

        /// <summary>
        /// Units that would have waited for a lock behind the writes before them in a batch (see
        /// <see cref="SqlDialect.LockWaits"/>): they open the lane's next batch, the first of them
        /// first, where it may wait, holding no other write's locks; those after it wait for nothing
        /// again, and one whose lock is still held elsewhere is deferred once more. So each batch
        /// settles at least one of them, and all of them are tried in it. Not a failure: no attempt
        /// is counted.
        /// </summary>
        public readonly Queue<Unit> Firsts = new();

        /// <summary>True when <paramref name="unit"/> is left for a later batch (a retry or a first place).</summary>
        public bool Defers(Unit unit) => Retries.Contains(unit) || Firsts.Contains(unit);
    }

    private readonly Lock _failureRateLock = new();

    /// <summary>The share of units that failed (refused, conflicted) as they were answered, a moving average over the last few hundred, all lanes.</summary>
    private double _failureRate;

    /// <summary>Counts a unit's outcome in <see cref="_failureRate"/>.</summary>
    private void CountOutcome(bool failed)
    {
        lock (_failureRateLock) _failureRate += ((failed ? 1 : 0) - _failureRate) / 256;
    }

    /// <summary>
    /// Whether a batch of <paramref name="units"/> should set a savepoint for each unit from the
    /// start. Without them, a failure costs running again, on average, half the batch: a batch of n
    /// units with a failure rate r expects to run n·r·(n/2) units again, each costing c savepoints
    /// (<see cref="SqlDialect.UnitCostInSavepoints"/>), against n savepoints. On PostgreSQL a savepoint
    /// is a round trip and a unit about five (a bill's own): at the write benchmark's rate on a fresh
    /// seed (0.3%) every batch of up to 64 goes without them; at 4% (once its redemptions have drained
    /// balances), those of up to 10. On SQLite, in process, a unit costs a hundred or more: at 0.3%,
    /// batches of 7 or more set them, and at 4% every batch.
    /// </summary>
    private bool Careful(int units)
    {
        if (units <= 1) return false;
        double rate;
        lock (_failureRateLock) rate = _failureRate;
        return units * rate * _database.Dialect.UnitCostInSavepoints / 2 > 1;
    }

    private async Task RunLaneAsync()
    {
        var lane = new Lane();
        var reader = _queue.Reader;
        var batch = new List<Unit>(MaxBatch);
        try
        {
            // Ends when the queue is closed (the database disposed) and empty: what was queued is
            // written; a unit still waiting to be retried then fails as the database is closed.
            while (lane.Firsts.Count > 0 || await reader.WaitToReadAsync())
            {
                while (batch.Count < MaxBatch && lane.Firsts.TryDequeue(out var first)) batch.Add(first);
                while (batch.Count < MaxBatch && reader.TryRead(out var unit)) batch.Add(unit);
                if (batch.Count == 0) continue;
                try
                {
                    await RunBatchAsync(lane, batch);
                }
                catch (CommitOutcomeUnknown unknown)
                {
                    await ResetConnectionAsync(lane);
                    foreach (var unit in batch.Where(u => !lane.Defers(u))) unit.Fail(unknown.InnerException!);
                }
                catch (Exception)
                {
                    // The batch failed before its commit (the file, the disk, the connection): each
                    // unit not answered yet (a refused one was, and wrote nothing) alone, so a unit
                    // that can commit does, and each of the others gets its own error.
                    await ResetConnectionAsync(lane);
                    foreach (var unit in batch.Where(u => !u.IsAnswered && !lane.Defers(u)).ToList())
                    {
                        try { await RunBatchAsync(lane, [unit]); }
                        catch (Exception single)
                        {
                            await ResetConnectionAsync(lane);
                            unit.Fail(single is CommitOutcomeUnknown u ? u.InnerException! : single);
                        }
                    }
                }
                foreach (var unit in lane.Retries) Retry(unit);
                lane.Retries.Clear();
                batch.Clear();
            }
        }
        finally
        {
            var closed = Closed();
            foreach (var unit in batch) unit.Fail(closed);
            while (lane.Firsts.TryDequeue(out var first)) first.Fail(closed);
            while (reader.TryRead(out var left)) left.Fail(closed);
            await ResetConnectionAsync(lane);
        }
    }

    private async Task RunBatchAsync(Lane lane, IReadOnlyList<Unit> batch)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            var careful = Careful(batch.Count);
            if (!careful && TriesSideBySide(batch) && await RunSideBySideAsync(lane, batch)) return;
            var rest = await RunTransactionAsync(lane, batch, careful);
            if (rest is not { Count: > 0 }) return;
            // A unit failed in a batch run without savepoints: the units not answered go again, with them.
            _reruns.Add(1);
            await RunTransactionAsync(lane, rest, careful: true);
        }
        finally
        {
            _busy.Add(Stopwatch.GetElapsedTime(started).TotalSeconds);
            _batchSizes.Record(batch.Count);
        }
    }

    private readonly Lock _sideBySideLock = new();

    private long _sideBySideRan, _sideBySideBrokenTries, _sideBySideRounds;

    /// <summary>Side-by-side tries that ran and that broke, and their round trips, for tests to watch.</summary>
    internal (long Ran, long Broken, long Rounds) SideBySideCounts =>
        (Interlocked.Read(ref _sideBySideRan), Interlocked.Read(ref _sideBySideBrokenTries), Interlocked.Read(ref _sideBySideRounds));

    /// <summary>The share of side-by-side tries that broke, a moving average over the last few dozen, all lanes.</summary>
    private double _sideBySideBroken;

    /// <summary>Batches that did not try side by side since the last that did, while tries mostly broke.</summary>
    private int _sideBySideSkipped;

    /// <summary>
    /// Whether <paramref name="batch"/> tries its units side by side first: where the database takes
    /// it (<see cref="SideBySide"/>), for two units or more, each of which may (<see cref="WriteAsync{T}"/>)
    /// and none cancelled or ever deferred for a lock held elsewhere (it would break the try again). A broken try costs running the batch again, so while most tries break (the
    /// writes of the day touch the same rows, or send statements outside the rounds), only one batch
    /// in 16 tries, to notice when that changes.
    /// </summary>
    private bool TriesSideBySide(IReadOnlyList<Unit> batch)
    {
        if (SideBySide is null || batch.Count < 2 || batch.Any(u => !u.SideBySide || u.WaitedForALock || u.Cancellation.IsCancellationRequested)) return false;
        lock (_sideBySideLock)
        {
            if (_sideBySideBroken < 0.5) return true;
            return ++_sideBySideSkipped % 16 == 0;
        }
    }

    /// <summary>
    /// Runs <paramref name="batch"/> side by side in one transaction (<see cref="LockStep"/>) and, when
    /// every unit ran to its end, commits it as any batch (<see cref="EndAsync"/>): true. False when
    /// the try broke: the transaction is rolled back, nothing of it is kept or answered, and the batch
    /// runs again one unit after another.
    /// </summary>
    private async Task<bool> RunSideBySideAsync(Lane lane, IReadOnlyList<Unit> batch)
    {
        var dialect = _database.Dialect;
        var connection = lane.Connection ??= await _database.OpenWriterAsync(CancellationToken.None);
        if (_beforeBatch is not null) await _beforeBatch(connection);
        await dialect.BeforeWriteAsync(connection, bounded: true, CancellationToken.None);
        await using var transaction = await dialect.BeginWriteAsync(connection, CancellationToken.None);
        // The units' locks go in rounds, in no one global order across them, so none may wait: a lock
        // held elsewhere breaks the try, and the batch then runs one unit after another, where the
        // first may wait (see RunTransactionAsync).
        var lockWaits = dialect.LockWaits;
        var step = new LockStep(connection, transaction, dialect, first: lockWaits?.Refuse);
        var ran = await step.RunAsync([.. batch.Select((unit, seat) => (Func<Task>)(() => unit.RunAsync(connection, transaction, step, seat)))]);
        SideBySide!.Value.Rounds.Add(step.Rounds);
        Interlocked.Add(ref _sideBySideRounds, step.Rounds);
        if (ran) Interlocked.Increment(ref _sideBySideRan);
        else Interlocked.Increment(ref _sideBySideBrokenTries);
        lock (_sideBySideLock) _sideBySideBroken += ((ran ? 0 : 1) - _sideBySideBroken) / 32;
        SideBySide.Value.Tries.Add(1, new KeyValuePair<string, object?>("outcome", ran ? "ran" : "broken"));
        if (!ran)
        {
            // A connection that broke fails the batch before its commit (each unit then runs alone).
            await transaction.RollbackAsync(CancellationToken.None);
            return false;
        }
        await EndAsync(lane, connection, transaction, [.. batch], [], lockWaits?.Allow);
        return true;
    }

    /// <summary>
    /// Runs <paramref name="batch"/> in one transaction and commits it. Null when it is settled (each
    /// unit answered or left for a retry); otherwise a unit failed in a batch run without savepoints,
    /// the transaction was rolled back, and what is returned must run again. When the failed unit
    /// ran first, it saw only committed data: it is answered (or left for a retry), and the others
    /// are returned. When it ran after others, it saw their writes, which are rolled back: it may
    /// fail only because of them (a balance they spent, a bill one of them posted), and one of them
    /// may not commit when run again (its caller gone, a conflict). So it is returned with them, to
    /// be decided again where they are, each in a savepoint.
    /// </summary>
    /// <remarks>
    /// Savepoints let a failed unit be undone alone, but on PostgreSQL each costs a round trip of its
    /// own per unit, nearly all of them for nothing when refusals are rare. Then a batch runs without
    /// them (<paramref name="careful"/> false, see <see cref="Careful"/>), and pays for the rare refusal
    /// by running it and the units before it once more. A unit run again rebuilds its posting and reads its wallets again, as
    /// one retried after a conflict does; what it answered the first time was never sent.
    /// </remarks>
    private async Task<IReadOnlyList<Unit>?> RunTransactionAsync(Lane lane, IReadOnlyList<Unit> batch, bool careful)
    {
        var connection = lane.Connection ??= await _database.OpenWriterAsync(CancellationToken.None);
        if (_beforeBatch is not null) await _beforeBatch(connection);
        await _database.Dialect.BeforeWriteAsync(connection, bounded: batch.All(u => u.Bounded), CancellationToken.None);
        await using var transaction = await _database.Dialect.BeginWriteAsync(connection, CancellationToken.None);
        // A unit alone needs no savepoint: when it fails, the whole transaction rolls back. In a
        // careful batch a savepoint marks where each unit starts: set before the first, and moved past
        // each unit that succeeds (released and set again, in one round trip); a unit rolled back to
        // it leaves it where it was, which is where the next unit starts.
        var savepoints = careful && batch.Count > 1;
        var moveSavepoint = savepoints;
        // Once a unit has run, the units after it do not wait for locks (the dialect's LockWaits):
        // a unit that would is deferred to open the lane's next batch. So a batch waits holding
        // another unit's locks only at its end, for the outbox positions' lock, whose holder waits for
        // nothing once it has it, and two batches (of two lanes, two servers) cannot deadlock over
        // wallets: of the transactions waiting for one, each holds only the locks of the one write it
        // is running, taken in the global order. Without it, two lanes whose later writes wanted each other's wallets
        // waited until PostgreSQL's deadlock detection (deadlock_timeout, 1 s) failed one of them, and
        // a write stuck behind a busy row held up every write of its batch.
        var lockWaits = _database.Dialect.LockWaits;
        var waitsRefused = false;
        var done = new List<Unit>(batch.Count);
        // Units refused (or failed) in a careful batch, answered only once it commits: a refusal may
        // rest on the writes of the units before it, which a batch that then fails rolls back.
        var refused = new List<(Unit Unit, Exception Error)>();
        foreach (var unit in batch)
        {
            if (unit.Cancellation.IsCancellationRequested)
            {
                unit.Fail(new OperationCanceledException(unit.Cancellation));
                continue;
            }
            // Outside the savepoint, so that rolling back to it does not undo it; in its round trip when there is one.
            var refuseWaits = lockWaits is not null && done.Count > 0 && !waitsRefused ? lockWaits.Value.Refuse + "; " : "";
            waitsRefused |= refuseWaits.Length > 0;
            if (moveSavepoint)
            {
                await ExecuteAsync(connection, transaction, done.Count == 0 ? "SAVEPOINT unit" : $"RELEASE SAVEPOINT unit; {refuseWaits}SAVEPOINT unit");
                moveSavepoint = false;
            }
            else if (refuseWaits.Length > 0) await ExecuteAsync(connection, transaction, refuseWaits);
            try
            {
                await unit.RunAsync(connection, transaction);
                done.Add(unit);
                moveSavepoint = savepoints;
            }
            catch (Exception ex) when (savepoints || !IsBroken(connection))
            {
                if (savepoints) await ExecuteAsync(connection, transaction, "ROLLBACK TO SAVEPOINT unit");
                else await transaction.RollbackAsync(CancellationToken.None);
                if (waitsRefused && _database.Dialect.IsLockWaitRefused(ex))
                {
                    // It would have waited behind the units before it: it goes first in a later batch.
                    unit.WaitedForALock = true;
                    lane.Firsts.Enqueue(unit);
                    _deferred?.Add(1);
                    if (savepoints) continue;
                    return [.. batch.Where(u => u != unit && !u.IsAnswered)];
                }
                if (!savepoints && done.Count > 0) return [.. batch.Where(u => !u.IsAnswered)];
                if (unit.Attempt < MaxAttempts && IsRetried(ex)) lane.Retries.Add(unit);
                else if (savepoints) refused.Add((unit, ex));
                else
                {
                    CountOutcome(failed: true);
                    unit.Fail(ex);
                }
                if (!savepoints) return batch.Count == 1 ? null : [.. batch.Where(u => u != unit && !u.IsAnswered)];
            }
        }
        await EndAsync(lane, connection, transaction, done, refused, waitsRefused ? lockWaits!.Value.Allow : null);
        return null;
    }

    /// <summary>
    /// Ends a batch's transaction whose units have run: writes what they left for its end, commits,
    /// and answers them (<paramref name="done"/> with their success, <paramref name="refused"/> with
    /// their errors); <paramref name="allowWaits"/>, the statement that lets the end wait for locks
    /// again, when the units refused them.
    /// </summary>
    private async Task EndAsync(Lane lane, DbConnection connection, DbTransaction transaction, List<Unit> done, List<(Unit Unit, Exception Error)> refused,
        string? allowWaits)
    {
        // What the units left for the end of the transaction (their outbox rows), written together;
        // on PostgreSQL the commit and the read of its position go in the same round trip
        // (SqlDialect.CommitInBatch), where each would otherwise be a round trip of its own that every
        // unit of the batch waits for.
        var dialect = _database.Dialect;
        var locate = done.Any(u => u.Locate);
        var end = new StatementBatch(connection, transaction, dialect);
        int? commitAt = null, positionAt = null;
        BatchResults? ended = null;
        try
        {
            CommitHooks.AddTail(end, [.. done.SelectMany(u => u.Tail)], dialect, first: allowWaits);
            if (dialect.CommitInBatch is { } inBatch)
            {
                commitAt = end.Execute(inBatch.Commit);
                if (locate) positionAt = end.Query(inBatch.Position);
            }
            ended = await end.RunAsync(CancellationToken.None);
        }
        // With the commit in the round trip, the statement a database error names says how far it
        // got: the statements after it did not run. A database error that names none (the
        // connection lost, a backend ended after the last statement) leaves the commit's outcome
        // unknown. Anything else (a tail that could not be added or bound) was thrown before
        // anything was sent, and fails the batch before its commit.
        catch (DbException) when (end.FailedAt is { } failedAt && failedAt > commitAt)
        {
            // Committed: only the read of its position failed, and a write that committed is not
            // failed for want of it (it is answered without a position).
        }
        catch (DbException ex) when (commitAt is not null && end.FailedAt is null)
        {
            // Nobody knows whether the commit took effect, so no unit runs again.
            throw new CommitOutcomeUnknown(ex);
        }
        catch (Exception) when (end.FailedAt is { } failedAt && failedAt == commitAt)
        {
            // The commit itself was refused: the database has ended the transaction and kept
            // nothing of it (there is none left to roll back). The batch failed before its commit,
            // and its units run alone.
            throw;
        }
        catch (Exception ex) when (IsRetried(ex) && !IsBroken(connection))
        {
            // A conflict at the end, before the commit: nothing of the batch is committed, so every
            // unit that ran goes again, as one that meets a conflict in its own work does. Any
            // other failure fails the batch before its commit, and its units run alone.
            await transaction.RollbackAsync(CancellationToken.None);
            foreach (var unit in done)
            {
                if (unit.Attempt < MaxAttempts) lane.Retries.Add(unit);
                else unit.Fail(ex);
            }
            // A refusal behind them is decided again with them.
            foreach (var (unit, error) in refused)
            {
                if (unit.Attempt < MaxAttempts) lane.Retries.Add(unit);
                else unit.Fail(error);
            }
            return;
        }
        if (commitAt is null)
        {
            try
            {
                await transaction.CommitAsync(CancellationToken.None);
            }
            catch (DbException ex) when (dialect.IsCommitOutcomeUnknown(ex))
            {
                throw new CommitOutcomeUnknown(ex);
            }
        }
        // Committed: from here on nothing may throw, or the lane would take the batch for failed and
        // run its units again. A position that cannot be read is no position (the answer goes without it).
        foreach (var (unit, error) in refused)
        {
            CountOutcome(failed: true);
            unit.Fail(error);
        }
        if (done.Count == 0) return;
        WalPosition? position = null;
        if (positionAt is { } at)
        {
            if (ended is not null && ended.Rows(at) is [var row] && WalPosition.TryParse(row[0] as string, out var read)) position = read;
        }
        else if (locate && commitAt is null)
        {
            try { position = await _database.LocateAsync(connection); }
            catch (Exception) { position = null; }
        }
        foreach (var unit in done)
        {
            CountOutcome(failed: false);
            CommitHooks.RunAfterCommit(unit.AfterCommit);
            unit.Succeed(position);
        }
    }

    private static async Task ExecuteAsync(DbConnection connection, DbTransaction transaction, string sql)
    {
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        await command.ExecuteNonQueryAsync(CancellationToken.None);
    }

    /// <summary>What a unit gets when the database is disposed before the unit could run.</summary>
    private static ObjectDisposedException Closed() => new(nameof(LedgerDatabase), "The database is closed.");

    /// <summary>A unit that failed with this is rolled back and run again: a conflict, or a statement the database cancelled unasked.</summary>
    private bool IsRetried(Exception ex) => _database.Dialect.IsTransient(ex) || _database.Dialect.IsCancelledByServer(ex);

    private static bool IsBroken(DbConnection connection) => connection.State != System.Data.ConnectionState.Open;

    /// <summary>Queues a unit that met a transient conflict again, after a short wait that grows with its attempts.</summary>
    private void Retry(Unit unit)
    {
        unit.Attempt++;
        _ = Task.Delay(Random.Shared.Next(5, 20 * unit.Attempt)).ContinueWith(_ =>
        {
            if (!_queue.Writer.TryWrite(unit)) unit.Fail(Closed());
        }, TaskScheduler.Default);
    }

    private static async Task ResetConnectionAsync(Lane lane)
    {
        if (lane.Connection is null) return;
        // Whatever closing a broken connection throws, the lane must go on: a lane that died would
        // leave the writes queued behind it waiting for ever (SQLite has only the one).
        try { await lane.Connection.DisposeAsync(); }
        catch (Exception) { /* a broken connection: nothing left to close */ }
        lane.Connection = null;
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await Task.WhenAll(_lanes).ConfigureAwait(false);
    }
}
