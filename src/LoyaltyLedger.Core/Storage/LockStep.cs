using System.Data.Common;

namespace LoyaltyLedger.Storage;

/// <summary>
/// The writes of a group-commit batch run side by side instead of one after another (PostgreSQL): in
/// each round, the statements every write is waiting to send go to the database together, as one
/// round trip. A batch of n postings of four round trips each then costs four round trips, not 4n,
/// and the lane's transaction (which holds its row locks) is open for as long as one posting takes,
/// not n.
/// </summary>
/// <remarks>
/// <para>This is an optimistic first try of a batch (<see cref="GroupCommit"/>), safe only for writes
/// that do not touch each other's rows: the writes share one transaction, and the statements of one
/// round run in an order nobody chose, so a write that read a row another changes could decide on
/// what it read before or after that change. So each write names
/// what it touches before its statements go (its wallets, its owners: <see cref="Claim"/>), and a
/// write that names what another write of the batch has named breaks the try. So does a statement
/// sent past the rounds (<see cref="Refuse"/>: Dapper's calls on the connection, whose rows nobody
/// named), any error of any write (a refusal, a statement's error: one error aborts a PostgreSQL
/// transaction), and any lock the batch would wait for (the transaction refuses lock waits from its
/// first statement: its writes' locks are taken in no one global order across the round). A broken
/// try is rolled back whole and the batch runs again one write after another, as it would have
/// without it, where every rule of the group commit holds as before; nothing of the try is kept.</para>
/// <para>Rounds follow each other: a round is sent once every write of the batch is either waiting
/// for its statements' results or done, and each write waiting gets its results before any write
/// sends its next statements.</para>
/// </remarks>
internal sealed class LockStep
{
    private static readonly AsyncLocal<Seat?> CurrentSeat = new();

    /// <summary>Which write of which try the current flow is.</summary>
    private sealed record Seat(LockStep Step, int Write);

    private readonly DbConnection _connection;
    private readonly DbTransaction _transaction;
    private readonly SqlDialect _dialect;
    private readonly Lock _gate = new();
    private readonly List<Request> _waiting = [];
    private readonly Dictionary<object, int> _claimed = [];
    private string? _first;
    private int _running;
    private TaskCompletionSource? _quiet;
    private Exception? _broken;
    private bool _ended;

    /// <param name="connection">The connection of <paramref name="transaction"/>.</param>
    /// <param name="transaction">The batch's transaction.</param>
    /// <param name="dialect">Binds the statements.</param>
    /// <param name="first">A statement that goes ahead of the first round's (the refusal of lock waits).</param>
    public LockStep(DbConnection connection, DbTransaction transaction, SqlDialect dialect, string? first)
    {
        _connection = connection;
        _transaction = transaction;
        _dialect = dialect;
        _first = first;
    }

    /// <summary>Round trips the try has made.</summary>
    public int Rounds { get; private set; }

    /// <summary>Why the try broke (the first reason), or null when every write ran to its end.</summary>
    public Exception? Broken
    {
        get { lock (_gate) return _broken; }
    }

    /// <summary>What a write gets when the try broke because of another write, or of itself (<see cref="Claim"/>, <see cref="Refuse"/>).</summary>
    internal sealed class BrokenException(string message, Exception? inner = null) : Exception(message, inner);

    private sealed class Request(List<(string Sql, object? Args, bool ReturnsRows)> statements, BatchResults results)
    {
        public List<(string Sql, object? Args, bool ReturnsRows)> Statements { get; } = statements;
        public BatchResults Results { get; } = results;
        /// <summary>
        /// Completed by the rounds' loop, which the write then continues on, to its next round or
        /// its end, before the loop answers the next write: the writes' work between rounds runs
        /// one after another on one thread, where a hand-over to the thread pool for each would
        /// cost more than it (measured: a batch of two writes ran slower side by side than one
        /// after another with the hand-overs, on two cores).
        /// </summary>
        public TaskCompletionSource Answer { get; } = new();
        public int? FailedAt { get; set; }
    }

    /// <summary>The try the current flow's write belongs to, when it runs in one on <paramref name="transaction"/>.</summary>
    private static Seat? SeatOn(DbTransaction transaction) =>
        CurrentSeat.Value is { } seat && ReferenceEquals(seat.Step._transaction, transaction) ? seat : null;

    /// <summary>
    /// Makes the current flow the write of index <paramref name="write"/> in <paramref name="step"/>
    /// (called first in that write's own context), or, with none, a write of no try: a write run
    /// again after a broken try must not find that try's seat (Npgsql reuses a connection's
    /// transaction object, so the seat's transaction could even look like the new one).
    /// </summary>
    public static void Sit(LockStep? step, int write) => CurrentSeat.Value = step is null ? null : new Seat(step, write);

    /// <summary>True when statements on <paramref name="transaction"/> from the current flow go through a try's rounds.</summary>
    internal static bool Runs(DbTransaction transaction) => SeatOn(transaction) is not null;

    /// <summary>
    /// Names a row (or a set of rows: a wallet and its lots, an owner and its events) the current
    /// write is about to read or change. Outside a try, nothing; in one, a name another write of it
    /// has named breaks the try, which then runs its writes one after another.
    /// </summary>
    public static void Claim(DbTransaction transaction, object name)
    {
        if (SeatOn(transaction) is not { } seat) return;
        var step = seat.Step;
        lock (step._gate)
        {
            if (step._claimed.TryGetValue(name, out var holder) && holder != seat.Write)
                throw step.BreakLocked(new BrokenException("Two writes of the batch touch the same rows."));
            step._claimed[name] = seat.Write;
        }
    }

    /// <summary>
    /// For a statement that cannot go through the rounds (one sent on the connection itself, whose
    /// rows no one named): in a try, it breaks the try; outside one, nothing.
    /// </summary>
    public static void Refuse(DbTransaction transaction)
    {
        if (SeatOn(transaction) is not { } seat) return;
        lock (seat.Step._gate) throw seat.Step.BreakLocked(new BrokenException("A write of the batch sent a statement outside its rounds."));
    }

    private BrokenException BreakLocked(Exception reason)
    {
        _broken ??= reason;
        return reason as BrokenException ?? new BrokenException("Another write of the batch failed.", reason);
    }

    /// <summary>
    /// Runs <paramref name="writes"/> side by side, each as the write of its index, and returns once
    /// every one has ended. True when each ran to its end; false when the try broke (see
    /// <see cref="Broken"/>), and the transaction must be rolled back.
    /// </summary>
    public async Task<bool> RunAsync(IReadOnlyList<Func<Task>> writes)
    {
        lock (_gate) _running = writes.Count;
        var running = new Task[writes.Count];
        for (var i = 0; i < writes.Count; i++) running[i] = RunWriteAsync(writes[i], i);
        while (true)
        {
            Task? quiet = null;
            List<Request>? round = null;
            lock (_gate)
            {
                if (_running > 0) quiet = (_quiet = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
                else if (_waiting.Count > 0)
                {
                    round = [.. _waiting];
                    _waiting.Clear();
                    // Counted as running before any is answered: an answered write runs on at once.
                    _running = round.Count;
                }
            }
            if (quiet is not null)
            {
                await quiet;
                continue;
            }
            if (round is null) break;
            await SendAsync(round);
        }
        await Task.WhenAll(running);
        lock (_gate)
        {
            _ended = true;
            return _broken is null;
        }
    }

    private async Task RunWriteAsync(Func<Task> write, int index)
    {
        try
        {
            // Started here, it runs to its first round; it takes its seat itself (Sit), in the
            // execution context it runs in.
            await write();
        }
        catch (Exception ex)
        {
            lock (_gate) BreakLocked(ex);
        }
        finally
        {
            lock (_gate) Idle();
        }
    }

    /// <summary>One write less is running (it waits for a round, or is done); the last wakes the rounds.</summary>
    private void Idle()
    {
        if (--_running > 0) return;
        _quiet?.TrySetResult();
        _quiet = null;
    }

    /// <summary>
    /// Sends <paramref name="statements"/> (the caller's, with those that lead them) in the next
    /// round, and fills <paramref name="results"/> once it is back; a database error is thrown to
    /// the write whose statement raised it, with that statement's index, and breaks the try.
    /// </summary>
    public static async Task SendAsync(DbTransaction transaction, List<(string Sql, object? Args, bool ReturnsRows)> statements, BatchResults results,
        Action<int> failedAt)
    {
        var step = SeatOn(transaction)!.Step;
        var request = new Request(statements, results);
        lock (step._gate)
        {
            if (step._ended) throw new InvalidOperationException("A write sent statements through a try that has ended.");
            if (step._broken is { } broken) throw step.BreakLocked(broken);
            step._waiting.Add(request);
            step.Idle();
        }
        try
        {
            await request.Answer.Task;
        }
        finally
        {
            if (request.FailedAt is { } at) failedAt(at);
        }
    }

    private async Task SendAsync(List<Request> round)
    {
        lock (_gate)
        {
            if (_broken is { } broken)
            {
                // Broken while these waited (a write named another's rows): the try will be rolled
                // back, so its statements are not sent, and take no locks for nothing.
                foreach (var request in round) request.Answer.TrySetException(BreakLocked(broken));
                return;
            }
        }
        Rounds++;
        // One batch of every waiting write's statements, after the statement that goes first; each
        // write's results are its slice of the batch's.
        var statements = new List<(string Sql, object? Args, bool ReturnsRows)>();
        if (_first is { } first) statements.Add((first, null, false));
        _first = null;
        var starts = new int[round.Count];
        for (var r = 0; r < round.Count; r++)
        {
            starts[r] = statements.Count;
            statements.AddRange(round[r].Statements);
        }
        var results = new BatchResults(statements.Count);
        int? failedAt = null;
        Exception? failure = null;
        try
        {
            await StatementBatch.SendAsBatchAsync(_connection, _transaction, _dialect, statements, results, at => failedAt = at, CancellationToken.None);
        }
        catch (Exception ex)
        {
            failure = ex;
        }
        for (var r = 0; r < round.Count; r++) round[r].Results.CopyFrom(results, starts[r]);
        if (failure is not null)
        {
            lock (_gate) BreakLocked(failure);
            for (var r = 0; r < round.Count; r++)
            {
                var request = round[r];
                if (failedAt is { } at && at >= starts[r] && at < starts[r] + request.Statements.Count)
                {
                    request.FailedAt = at - starts[r];
                    request.Answer.TrySetException(failure);
                }
                else request.Answer.TrySetException(new BrokenException("Another write of the batch failed.", failure));
            }
            return;
        }
        foreach (var request in round) request.Answer.TrySetResult();
    }
}
