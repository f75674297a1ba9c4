using Dapper;
using LoyaltyLedger.Idempotency;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Storage;

/// <summary>
/// Group commit: the units of work waiting for a writer are committed together. On SQLite every
/// write goes through its one writer; on PostgreSQL the API's writes
/// (<see cref="LedgerDatabase.WriteAndLocateAsync{T}"/>) go through the write lanes, here one lane,
/// so that the units queued behind a blocker are one batch. A unit that fails leaves nothing and
/// its neighbours commit once. Each test has a writer of its own, which has seen no failure yet.
/// </summary>
/// <remarks>
/// A first unit holds the writer until all the others are queued, so they run as one batch.
/// </remarks>
public abstract class GroupCommitTests(DatabaseFixture db) : IAsyncDisposable
{
    /// <summary>The handle whose writes are batched: SQLite's own; on PostgreSQL a second handle with one write lane.</summary>
    protected LedgerDatabase Writer => _writer ??= OpenWriter(db);

    private LedgerDatabase? _writer;

    protected abstract LedgerDatabase OpenWriter(DatabaseFixture fixture);

    /// <summary>An error of this database that retrying the unit may get past (a deadlock, a busy file).</summary>
    protected abstract Exception TransientConflict();

    protected Task<T> WriteAsync<T>(Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<T>> unit, CancellationToken ct) =>
        Writer.WriteAndLocateAsync(unit, ct).ContinueWith(t => t.GetAwaiter().GetResult().Result, TaskScheduler.Default);

    public async ValueTask DisposeAsync()
    {
        if (_writer is not null && !ReferenceEquals(_writer, db.Database)) await _writer.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    /// <summary>The longest a test waits for an answer.</summary>
    protected static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    protected static long NewScope() => -Random.Shared.NextInt64(1, long.MaxValue / 2);

    protected Task<long> CountAsync(long scope) =>
        db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM id_counters WHERE org_id = @scope", new { scope }), CancellationToken.None);

    protected Task<List<string>> NamesAsync(long scope) =>
        db.Database.ReadAsync(async c => (await c.QueryAsync<string>("SELECT name FROM id_counters WHERE org_id = @scope ORDER BY name", new { scope })).ToList(),
            CancellationToken.None);

    protected static Task InsertAsync(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction tx, long scope, string name, long value = 1) =>
        c.ExecuteAsync("INSERT INTO id_counters (org_id, name, last_value) VALUES (@scope, @name, @value)", new { scope, name, value }, tx);

    /// <summary>Runs a unit that holds the writer until all of <paramref name="units"/> have been queued behind it, then lets them run.</summary>
    protected Task<Task<T>[]> RunBehindABlockerAsync<T>(long scope, IReadOnlyList<Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<T>>> units) =>
        RunBehindABlockerAsync(unit => WriteAsync(unit, CancellationToken.None), (c, tx) => InsertAsync(c, tx, scope, "blocker"), units);

    /// <summary>
    /// Runs a unit through <paramref name="write"/> that does <paramref name="blocking"/> and then holds
    /// the writer until all of <paramref name="units"/> have been queued behind it, then lets them run:
    /// with one writer, they share its next batch.
    /// </summary>
    internal static async Task<Task<T>[]> RunBehindABlockerAsync<T>(
        Func<Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<T>>, Task<T>> write,
        Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task> blocking,
        IReadOnlyList<Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<T>>> units)
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var blocker = write(async (c, tx) =>
        {
            await blocking(c, tx);
            started.TrySetResult();
            await release.Task;
            return default!;
        });
        // Bounded waits: a unit that is never answered fails the test instead of hanging the run.
        await Task.WhenAny(started.Task, blocker).WaitAsync(Bound);
        var tasks = units.Select(write).ToArray();
        release.SetResult();
        await blocker.WaitAsync(Bound);
        return tasks.Select(t => t.WaitAsync(Bound)).ToArray();
    }

    [Fact]
    public async Task a_unit_that_throws_after_writing_leaves_nothing_and_its_neighbours_commit()
    {
        var scope = NewScope();
        var units = Enumerable.Range(0, 30).Select(i => (Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<int>>)(async (c, tx) =>
        {
            await InsertAsync(c, tx, scope, $"unit-{i:D2}");
            if (i == 13) throw new InvalidOperationException("poison");
            return i;
        })).ToList();

        var tasks = await RunBehindABlockerAsync(scope, units);

        for (var i = 0; i < tasks.Length; i++)
        {
            if (i == 13) (await Should.ThrowAsync<InvalidOperationException>(tasks[i])).Message.ShouldBe("poison");
            else (await tasks[i]).ShouldBe(i);
        }
        var names = await NamesAsync(scope);
        names.Count.ShouldBe(30);
        names.ShouldNotContain("unit-13");
        names.ShouldContain("blocker");
    }

    [Fact]
    public async Task the_outbox_rows_of_a_batch_are_written_at_its_end_numbered_in_the_order_of_its_units_and_none_of_a_unit_that_failed()
    {
        var t = await db.Host.NewTenantAsync();
        var scope = NewScope();
        var units = Enumerable.Range(0, 12).Select(i => (Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<int>>)(async (c, tx) =>
        {
            var batch = new StatementBatch(c, tx, Writer.Dialect);
            LoyaltyLedger.Outbox.Outbox.Add(batch, t.OrgId, LoyaltyLedger.Outbox.OutboxEventTypes.BalanceChanged, 0, w => w.WriteNumberValue(i));
            await batch.RunAsync();
            if (i % 5 == 2) throw new InvalidOperationException("refused after its outbox row");
            return i;
        })).ToList();

        var tasks = await RunBehindABlockerAsync(scope, units);
        await Task.WhenAll(tasks.Select(task => task.ContinueWith(_ => { }, TaskScheduler.Default)));

        var rows = (await db.Database.ReadAsync(c => c.QueryAsync<(long Position, string Payload)>(
            "SELECT position, payload FROM outbox_events WHERE org_id = @org ORDER BY position", new { org = t.OrgId }), CancellationToken.None)).ToList();
        rows.Select(r => System.Text.Json.JsonDocument.Parse(r.Payload).RootElement.GetProperty("data").GetInt32())
            .ShouldBe(Enumerable.Range(0, 12).Where(i => i % 5 != 2));
        // Positions given together, in one statement at the batch's end: consecutive.
        rows.Select(r => r.Position - rows[0].Position).ShouldBe(Enumerable.Range(0, rows.Count).Select(i => (long)i));
    }

    [Fact]
    public async Task refusals_among_acceptances_write_nothing_and_later_units_see_the_earlier_ones_writes()
    {
        var scope = NewScope();
        await WriteAsync(async (c, tx) => { await InsertAsync(c, tx, scope, "balance", 100); return 0; }, CancellationToken.None);
        // Twenty debits of 10 against 100, each checking the balance it reads: exactly ten pass.
        var units = Enumerable.Range(0, 20).Select(i => (Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<long>>)(async (c, tx) =>
        {
            var balance = await c.ExecuteScalarAsync<long>(
                db.Database.Dialect.Expand("SELECT last_value FROM id_counters WHERE org_id = @scope AND name = 'balance'{forUpdate}"), new { scope }, tx);
            await InsertAsync(c, tx, scope, $"attempt-{i:D2}");
            if (balance < 10) throw new LedgerException(ErrorCodes.InsufficientBalance, "not enough", 422);
            await c.ExecuteAsync("UPDATE id_counters SET last_value = last_value - 10 WHERE org_id = @scope AND name = 'balance'", new { scope }, tx);
            return balance - 10;
        })).ToList();

        var tasks = await RunBehindABlockerAsync(scope, units);
        var outcomes = new List<long?>();
        foreach (var task in tasks)
        {
            try { outcomes.Add(await task); }
            catch (LedgerException refused) when (refused.Code == ErrorCodes.InsufficientBalance) { outcomes.Add(null); }
        }

        outcomes.Count(o => o is not null).ShouldBe(10);
        outcomes.Where(o => o is not null).Order().ShouldBe([0L, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
        (await db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>(
            "SELECT last_value FROM id_counters WHERE org_id = @scope AND name = 'balance'", new { scope }), CancellationToken.None)).ShouldBe(0);
        // Only the accepted units' rows: a refusal's insert went with it.
        (await CountAsync(scope)).ShouldBe(1 + 1 + 10);
    }

    [Fact]
    public async Task a_unit_whose_caller_gave_up_while_it_waited_is_not_run()
    {
        var scope = NewScope();
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        var ran = false;
        var task = WriteAsync(async (c, tx) =>
        {
            ran = true;
            await InsertAsync(c, tx, scope, "late");
            return 0;
        }, cancelled.Token);

        await Should.ThrowAsync<OperationCanceledException>(task);
        ran.ShouldBeFalse();
        (await CountAsync(scope)).ShouldBe(0);
    }

    [Fact]
    public async Task a_unit_meeting_a_transient_conflict_in_a_batch_is_rolled_back_and_run_again_and_commits_once()
    {
        var scope = NewScope();
        var attempts = 0;
        var units = Enumerable.Range(0, 5).Select(i => (Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<int>>)(async (c, tx) =>
        {
            await InsertAsync(c, tx, scope, $"unit-{i}");
            // The third unit's first attempt meets a conflict after it wrote: the attempt's row must go.
            if (i == 2 && Interlocked.Increment(ref attempts) == 1) throw TransientConflict();
            return i;
        })).ToList();

        var tasks = await RunBehindABlockerAsync(scope, units);

        for (var i = 0; i < tasks.Length; i++) (await tasks[i]).ShouldBe(i);
        attempts.ShouldBe(2);
        (await NamesAsync(scope)).ShouldBe(["blocker", "unit-0", "unit-1", "unit-2", "unit-3", "unit-4"]);
    }

    /// <summary>Units that insert a row each and count their runs; the one at <paramref name="refused"/> is refused after its insert.</summary>
    private static List<Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<int>>> CountedUnits(long scope, string prefix,
        int[] runs, int refused) =>
        [.. Enumerable.Range(0, runs.Length).Select(i => (Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<int>>)(async (c, tx) =>
        {
            Interlocked.Increment(ref runs[i]);
            await InsertAsync(c, tx, scope, $"{prefix}-{i}");
            if (i == refused) throw new LedgerException(ErrorCodes.InsufficientBalance, "refused", 422);
            return i;
        }))];

    [Fact]
    public async Task a_batch_runs_without_savepoints_and_a_refusal_in_it_runs_it_and_the_units_before_it_again_each_committing_once()
    {
        var scope = NewScope();
        var runs = new int[6];

        var tasks = await RunBehindABlockerAsync(scope, CountedUnits(scope, "unit", runs, refused: 3));

        for (var i = 0; i < tasks.Length; i++)
        {
            if (i == 3) (await Should.ThrowAsync<LedgerException>(tasks[i])).Code.ShouldBe(ErrorCodes.InsufficientBalance);
            else (await tasks[i]).ShouldBe(i);
        }
        // No savepoints: the refusal rolled the transaction back, so the units before it ran again,
        // and the refused one with them (it saw their writes, which were rolled back: it is decided
        // again on what commits), with the ones after it, which had not run.
        runs.ShouldBe([2, 2, 2, 2, 1, 1]);
        (await NamesAsync(scope)).ShouldBe(["blocker", "unit-0", "unit-1", "unit-2", "unit-4", "unit-5"]);
    }

    private Task<long> BalanceAsync(long scope) =>
        db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>("SELECT last_value FROM id_counters WHERE org_id = @scope AND name = 'balance'", new { scope }),
            CancellationToken.None);

    /// <summary>
    /// A balance of 100, and two units: one that spends it all on its first run (then runs
    /// <paramref name="spent"/>) and fails on its second (its caller gone, a conflict), and a debit of
    /// 10 behind it, refused on its first run behind the spender's uncommitted debit.
    /// </summary>
    private async Task<List<Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<long>>>> SpenderAndDebitAsync(long scope,
        Action<System.Data.Common.DbTransaction>? spent = null)
    {
        await WriteAsync(async (c, tx) => { await InsertAsync(c, tx, scope, "balance", 100); return 0; }, CancellationToken.None);
        var spenderRuns = 0;
        return
        [
            async (c, tx) =>
            {
                if (Interlocked.Increment(ref spenderRuns) > 1) throw new InvalidOperationException("not this time");
                await c.ExecuteAsync("UPDATE id_counters SET last_value = last_value - 100 WHERE org_id = @scope AND name = 'balance'", new { scope }, tx);
                spent?.Invoke(tx);
                return 0;
            },
            async (c, tx) =>
            {
                var balance = await c.ExecuteScalarAsync<long>("SELECT last_value FROM id_counters WHERE org_id = @scope AND name = 'balance'", new { scope }, tx);
                if (balance < 10) throw new LedgerException(ErrorCodes.InsufficientBalance, "not enough", 422);
                await c.ExecuteAsync("UPDATE id_counters SET last_value = last_value - 10 WHERE org_id = @scope AND name = 'balance'", new { scope }, tx);
                return balance - 10;
            },
        ];
    }

    [Fact]
    public async Task a_refusal_that_rested_on_a_unit_before_it_which_then_does_not_commit_is_decided_again_on_what_commits()
    {
        var scope = NewScope();
        var units = await SpenderAndDebitAsync(scope);

        var tasks = await RunBehindABlockerAsync(scope, units);

        (await Should.ThrowAsync<InvalidOperationException>(tasks[0])).Message.ShouldBe("not this time");
        // The debit it was refused behind never committed: it is not refused.
        (await tasks[1]).ShouldBe(90);
        (await BalanceAsync(scope)).ShouldBe(90);
    }

    [Fact]
    public async Task what_units_leave_for_after_their_commit_runs_once_for_each_unit_that_commits_and_never_for_a_refused_one()
    {
        var scope = NewScope();
        var published = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var runs = new int[4];
        var units = Enumerable.Range(0, 4).Select(i => (Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<int>>)(async (c, tx) =>
        {
            Interlocked.Increment(ref runs[i]);
            await InsertAsync(c, tx, scope, $"unit-{i}");
            // What a process-wide cache would keep of a row this transaction wrote.
            CommitHooks.AfterCommit(tx, () => published.Enqueue($"unit-{i}"));
            if (i == 2) throw new LedgerException(ErrorCodes.InsufficientBalance, "refused", 422);
            return i;
        })).ToList();

        var tasks = await RunBehindABlockerAsync(scope, units);
        foreach (var task in tasks) await task.ContinueWith(_ => { }, TaskScheduler.Default);

        // The units before the refusal ran twice (no savepoints), and published once, after the commit.
        runs.ShouldBe([2, 2, 2, 1]);
        published.Order().ShouldBe(["unit-0", "unit-1", "unit-3"]);
    }

    /// <summary>Forty refusals: a failure rate of about 15% (a moving average over 256 units), at which a batch of eight takes savepoints.</summary>
    protected async Task RaiseTheFailureRateAsync(long scope, int refusals = 40)
    {
        var refused = Enumerable.Range(0, refusals).Select(i => (Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<int>>)(async (c, tx) =>
        {
            await InsertAsync(c, tx, scope, $"refused-{i:D2}");
            throw new LedgerException(ErrorCodes.InsufficientBalance, "refused", 422);
        })).ToList();
        foreach (var task in await RunBehindABlockerAsync(NewScope(), refused)) await Should.ThrowAsync<LedgerException>(task);
    }

    /// <summary>
    /// How many times each of eight units runs when the fourth is refused, at a failure rate of one in
    /// 256: what a savepoint costs against running a unit again decides it (<see cref="SqlDialect.UnitCostInSavepoints"/>).
    /// </summary>
    protected abstract int[] RunsWhereRefusalsAreRare { get; }

    [Fact]
    public async Task where_refusals_are_rare_a_batch_takes_savepoints_only_where_they_cost_less_than_running_units_again()
    {
        var scope = NewScope();
        await RaiseTheFailureRateAsync(NewScope(), refusals: 1);
        var runs = new int[8];

        var tasks = await RunBehindABlockerAsync(scope, CountedUnits(scope, "unit", runs, refused: 3));

        for (var i = 0; i < tasks.Length; i++)
        {
            if (i == 3) await Should.ThrowAsync<LedgerException>(tasks[i]);
            else (await tasks[i]).ShouldBe(i);
        }
        runs.ShouldBe(RunsWhereRefusalsAreRare);
        (await NamesAsync(scope)).ShouldBe(["blocker", "unit-0", "unit-1", "unit-2", "unit-4", "unit-5", "unit-6", "unit-7"]);
    }

    [Fact]
    public async Task a_refusal_in_a_batch_with_savepoints_is_answered_once_the_batch_commits_and_decided_again_when_it_does_not()
    {
        var scope = NewScope();
        await RaiseTheFailureRateAsync(NewScope());
        // The batch's end meets a conflict once: nothing of it commits, and its units go again.
        var tail = new NamedRowsTail(scope, TransientConflict(), conflicts: 1);
        var units = await SpenderAndDebitAsync(scope, tx => CommitHooks.AtTail(tx, tail, "spent").ShouldBeTrue());
        units.AddRange(
        [
            // Two more: a batch of four at that failure rate takes savepoints from the start.
            async (c, tx) => { await InsertAsync(c, tx, scope, "after-1"); return 1; },
            async (c, tx) => { await InsertAsync(c, tx, scope, "after-2"); return 2; },
        ]);

        var tasks = await RunBehindABlockerAsync(scope, units);

        (await Should.ThrowAsync<InvalidOperationException>(tasks[0])).Message.ShouldBe("not this time");
        (await tasks[2]).ShouldBe(1);
        (await tasks[3]).ShouldBe(2);
        // Its refusal was not sent when the batch did not commit: decided again, it passes.
        (await tasks[1]).ShouldBe(90);
        (await BalanceAsync(scope)).ShouldBe(90);
    }

    [Fact]
    public async Task where_units_are_often_refused_a_batch_gives_each_unit_a_savepoint_and_a_refusal_runs_nothing_again()
    {
        var scope = NewScope();
        await RaiseTheFailureRateAsync(scope);
        var runs = new int[8];

        var tasks = await RunBehindABlockerAsync(scope, CountedUnits(scope, "unit", runs, refused: 3));

        for (var i = 0; i < tasks.Length; i++)
        {
            if (i == 3) await Should.ThrowAsync<LedgerException>(tasks[i]);
            else (await tasks[i]).ShouldBe(i);
        }
        // Eight units at that rate would lose more to running again than savepoints cost: each unit
        // had one, the refusal was rolled back to its own, and nobody ran twice.
        runs.ShouldBe([1, 1, 1, 1, 1, 1, 1, 1]);
        (await NamesAsync(scope)).ShouldBe(["blocker", "unit-0", "unit-1", "unit-2", "unit-4", "unit-5", "unit-6", "unit-7"]);
    }

    [Fact]
    public async Task the_audit_records_and_stored_answers_of_a_batch_are_written_at_its_end_and_none_of_a_refused_unit()
    {
        var scope = NewScope();
        var units = Enumerable.Range(0, 4).Select(i => (Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<(int Status, long Audited)>>)(async (c, tx) =>
        {
            var key = IdempotencyKey.Request(scope, $"key-{i}");
            var batch = new StatementBatch(c, tx, Writer.Dialect);
            (await IdempotencyStore.ClaimAsync(batch, key, "request", 1, CancellationToken.None)).ShouldBeTrue();
            LoyaltyLedger.Audit.WriteAudit.Add(batch, scope, "lk_test", "POST", "/v1/test", 201, $"key-{i}", 1);
            IdempotencyStore.AddAnswerAtEnd(batch, key, "request", 1, 201, $"answer-{i}");
            batch.Count.ShouldBe(0);
            if (i == 2) throw new LedgerException(ErrorCodes.InsufficientBalance, "refused after its answer", 422);
            // Inside the transaction both are still to come: the claim reads as pending.
            var stored = await IdempotencyStore.ReadAsync(batch, key, CancellationToken.None);
            var audited = await c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM write_audit WHERE org_id = @scope", new { scope }, tx);
            return (stored!.Value.StatusCode, audited);
        })).ToList();

        var tasks = await RunBehindABlockerAsync(scope, units);

        foreach (var i in (int[])[0, 1, 3]) (await tasks[i]).ShouldBe((0, 0L));
        await Should.ThrowAsync<LedgerException>(tasks[2]);
        var store = new IdempotencyStore(db.Database);
        foreach (var i in (int[])[0, 1, 3])
            (await store.ReadAsync(IdempotencyKey.Request(scope, $"key-{i}"), CancellationToken.None))!.Value.Body.ShouldBe($"answer-{i}");
        (await store.ReadAsync(IdempotencyKey.Request(scope, "key-2"), CancellationToken.None)).ShouldBeNull();
        (await db.Database.ReadAsync(async c => (await c.QueryAsync<string>(
            "SELECT idempotency_key FROM write_audit WHERE org_id = @scope ORDER BY idempotency_key", new { scope })).ToList(), CancellationToken.None))
            .ShouldBe(["key-0", "key-1", "key-3"]);
    }

    /// <summary>As many units as <paramref name="runs"/> has places: each counts its runs, writes its row and leaves one for <paramref name="tail"/>.</summary>
    protected static List<Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<int>>> TailUnits(long scope, ICommitTail tail, int[] runs) =>
        [.. Enumerable.Range(0, runs.Length).Select(i => (Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<int>>)(async (c, tx) =>
        {
            Interlocked.Increment(ref runs[i]);
            await InsertAsync(c, tx, scope, $"unit-{i}");
            CommitHooks.AtTail(tx, tail, $"tail-{i}").ShouldBeTrue();
            return i;
        }))];

    /// <summary>A tail that inserts its items as rows, after failing its first <paramref name="conflicts"/> writes with <paramref name="conflict"/>.</summary>
    private sealed class NamedRowsTail(long scope, Exception conflict, int conflicts) : ICommitTail
    {
        public int Writes;

        public void Add(StatementBatch batch, SqlDialect dialect, IReadOnlyList<object> items)
        {
            if (Interlocked.Increment(ref Writes) <= conflicts) throw conflict;
            foreach (var name in items.Cast<string>())
                batch.Execute("INSERT INTO id_counters (org_id, name, last_value) VALUES (@scope, @name, 1)", new { scope, name });
        }
    }

    [Fact]
    public async Task a_conflict_in_what_the_units_left_for_the_end_of_the_batch_runs_every_unit_again_and_each_commits_once()
    {
        var scope = NewScope();
        // Twice: a unit that ran alone after the first failure would get the second as its error.
        var tail = new NamedRowsTail(scope, TransientConflict(), conflicts: 2);
        var runs = new int[4];
        var units = TailUnits(scope, tail, runs);

        var tasks = await RunBehindABlockerAsync(scope, units);

        for (var i = 0; i < tasks.Length; i++) (await tasks[i]).ShouldBe(i);
        // The batch's end failed and rolled back, twice: each unit ran again and committed once.
        runs.ShouldAllBe(r => r >= 2);
        tail.Writes.ShouldBeGreaterThan(2);
        (await NamesAsync(scope)).ShouldBe(["blocker", "tail-0", "tail-1", "tail-2", "tail-3", "unit-0", "unit-1", "unit-2", "unit-3"]);
    }

    [Fact]
    public async Task two_writes_with_one_idempotency_key_in_one_batch_post_once_and_both_answer_the_first_answer()
    {
        var scope = NewScope();
        var key = IdempotencyKey.Request(scope, "same-key");
        var units = Enumerable.Range(0, 2).Select(i => (Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<string>>)(async (c, tx) =>
        {
            var batch = new StatementBatch(c, tx, Writer.Dialect);
            if (!await IdempotencyStore.ClaimAsync(batch, key, "request", 1, CancellationToken.None))
            {
                // Claimed by the unit before this one, in this same transaction: its answer is this one's.
                var stored = await IdempotencyStore.ReadAsync(batch, key, CancellationToken.None);
                return stored!.Value.Body!;
            }
            await InsertAsync(c, tx, scope, $"posting-{i}");
            IdempotencyStore.AddAnswer(batch, key, 201, $"answer-{i}");
            await batch.RunAsync();
            return $"answer-{i}";
        })).ToList();

        var tasks = await RunBehindABlockerAsync(scope, units);

        (await tasks[0]).ShouldBe("answer-0");
        (await tasks[1]).ShouldBe("answer-0");
        (await NamesAsync(scope)).ShouldBe(["blocker", "posting-0"]);
        (await new IdempotencyStore(db.Database).ReadAsync(key, CancellationToken.None))!.Value.Body.ShouldBe("answer-0");
    }

    private static readonly AsyncLocal<string?> CallerValue = new();

    [Fact]
    public async Task a_unit_runs_in_its_callers_context_and_the_commit_hooks_it_registers_write_in_its_transaction()
    {
        var scope = NewScope();
        CallerValue.Value = "the caller's";
        var units = new List<Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<string?>>>
        {
            async (c, tx) =>
            {
                CommitHooks.BeforeCommit(tx, _ => InsertAsync(c, tx, scope, "hook")).ShouldBeTrue();
                await InsertAsync(c, tx, scope, "unit");
                return CallerValue.Value;
            },
        };

        var tasks = await RunBehindABlockerAsync(scope, units);
        CallerValue.Value = null;

        // What the caller set (a trace's activity, say) is what its unit sees, not the lane's.
        (await tasks[0]).ShouldBe("the caller's");
        (await NamesAsync(scope)).ShouldBe(["blocker", "hook", "unit"]);
    }

    [Fact]
    public async Task a_unit_that_keeps_meeting_conflicts_is_failed_after_its_last_attempt_and_leaves_nothing()
    {
        var scope = NewScope();
        var attempts = 0;
        var conflict = TransientConflict();
        var task = WriteAsync<int>(async (c, tx) =>
        {
            Interlocked.Increment(ref attempts);
            await InsertAsync(c, tx, scope, "never");
            throw conflict;
        }, CancellationToken.None);

        (await Should.ThrowAsync<Exception>(task)).ShouldBeSameAs(conflict);
        attempts.ShouldBe(8);
        (await CountAsync(scope)).ShouldBe(0);
    }
}

public sealed class GroupCommitTestsOnSqlite(SqliteDatabase db) : GroupCommitTests(db), IClassFixture<SqliteDatabase>
{
    // A handle of its own per test, as on PostgreSQL: its writer has seen no failure yet.
    protected override LedgerDatabase OpenWriter(DatabaseFixture fixture) => fixture.OpenSecondInstance();

    protected override Exception TransientConflict() => new Microsoft.Data.Sqlite.SqliteException("database is locked", 5);

    // In process a savepoint costs microseconds and a unit about a millisecond: savepoints, nobody runs twice.
    protected override int[] RunsWhereRefusalsAreRare => [1, 1, 1, 1, 1, 1, 1, 1];

    // SqliteDialect.BeforeWriteAsync: a batch of postings journals the pages its savepoints and
    // multi-row statements change in memory, not in a temporary file; a batch with a write that may
    // change whole tables keeps the default, which holds its temporary tables and sorts in files.
    [Fact]
    public async Task a_batch_of_postings_keeps_its_journals_in_memory_and_a_write_of_whole_tables_keeps_the_default()
    {
        var bounded = await WriteAsync((c, tx) => c.ExecuteScalarAsync<long>("PRAGMA temp_store", transaction: tx), CancellationToken.None)
            .WaitAsync(Bound);
        bounded.ShouldBe(2); // MEMORY
        var unbounded = await Writer.WriteAsync((c, tx) => c.ExecuteScalarAsync<long>("PRAGMA temp_store", transaction: tx), CancellationToken.None)
            .WaitAsync(Bound);
        unbounded.ShouldBe(0); // DEFAULT
        (await WriteAsync((c, tx) => c.ExecuteScalarAsync<long>("PRAGMA temp_store", transaction: tx), CancellationToken.None).WaitAsync(Bound)).ShouldBe(2);
    }

    // LedgerDatabase.OpenWriterAsync: the writer's connections have a pool of their own. Here a unit
    // closes the writer's connection, which goes back to its pool set for postings, and the lane
    // opens another; every connection the other pool gives has the default.
    [Fact]
    public async Task a_connection_the_writer_gives_up_is_never_given_to_a_reader()
    {
        long closedWith = -1;
        await Should.ThrowAsync<Exception>(() => WriteAsync<int>(async (c, tx) =>
        {
            closedWith = await c.ExecuteScalarAsync<long>("PRAGMA temp_store", transaction: tx);
            await c.CloseAsync();
            return 0;
        }, CancellationToken.None).WaitAsync(Bound));
        closedWith.ShouldBe(2); // what it went back to its pool with
        var readers = new List<System.Data.Common.DbConnection>();
        try
        {
            for (var i = 0; i < 8; i++) readers.Add(await Writer.OpenAsync(CancellationToken.None));
            foreach (var reader in readers) (await reader.ExecuteScalarAsync<long>("PRAGMA temp_store")).ShouldBe(0);
        }
        finally
        {
            foreach (var reader in readers) await reader.DisposeAsync();
        }
        // The writer goes on, on a connection of its own pool.
        (await WriteAsync((c, tx) => c.ExecuteScalarAsync<long>("PRAGMA temp_store", transaction: tx), CancellationToken.None).WaitAsync(Bound)).ShouldBe(2);
    }
}

public sealed class GroupCommitTestsOnPostgres(PostgresDatabase db) : GroupCommitTests(db), IClassFixture<PostgresDatabase>
{
    protected override LedgerDatabase OpenWriter(DatabaseFixture fixture)
    {
        var writer = fixture.OpenSecondInstance();
        writer.UseWriteLanes(lanes: 1, maxBatch: 64);
        return writer;
    }

    protected override Exception TransientConflict() => new Npgsql.PostgresException("deadlock detected", "ERROR", "ERROR", "40P01");

    // A savepoint is a round trip: none, and the units before the refusal run again.
    protected override int[] RunsWhereRefusalsAreRare => [2, 2, 2, 2, 1, 1, 1, 1];

    [Fact]
    public async Task the_units_queued_behind_a_blocker_commit_in_one_transaction_and_each_answers_the_position_of_its_commit()
    {
        var scope = NewScope();
        var before = await db.Database.CurrentPositionAsync(CancellationToken.None);
        var units = Enumerable.Range(0, 10).Select(i => (Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<long>>)(async (c, tx) =>
        {
            await InsertAsync(c, tx, scope, $"unit-{i}");
            return await c.ExecuteScalarAsync<long>("SELECT pg_current_xact_id()::text::bigint", transaction: tx);
        })).ToList();

        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var blocker = Writer.WriteAndLocateAsync(async (c, tx) => { started.TrySetResult(); await release.Task; return 0L; }, CancellationToken.None);
        await started.Task.WaitAsync(Bound);
        var tasks = units.Select(u => Writer.WriteAndLocateAsync(u, CancellationToken.None).WaitAsync(Bound)).ToArray();
        release.SetResult();
        await blocker.WaitAsync(Bound);
        var answers = await Task.WhenAll(tasks);
        var after = await db.Database.CurrentPositionAsync(CancellationToken.None);

        answers.Select(a => a.Result).Distinct().Count().ShouldBe(1);
        (await CountAsync(scope)).ShouldBe(10);
        // One commit, so one position for all of them: past what was written before them, and not
        // past what has been written since.
        answers.Select(a => a.Position).Distinct().Count().ShouldBe(1);
        var position = answers[0].Position;
        position.ShouldNotBeNull();
        position.Value.CompareTo(before!.Value).ShouldBeGreaterThan(0);
        position.Value.CompareTo(after!.Value).ShouldBeLessThanOrEqualTo(0);
    }

    [Fact]
    public async Task a_unit_rolled_back_for_a_conflict_in_a_batch_that_then_fails_is_run_again_once_and_commits_once()
    {
        var scope = NewScope();
        var attempts = 0;
        // The conflict first in its batch: it saw only committed data, so it is queued for a retry
        // at once (one after others would be run again with them instead).
        var units = new List<Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<int>>>
        {
            async (c, tx) =>
            {
                await InsertAsync(c, tx, scope, "conflicted");
                if (Interlocked.Increment(ref attempts) == 1) throw TransientConflict();
                return 1;
            },
            async (c, tx) => { await InsertAsync(c, tx, scope, "before"); return 0; },
            // Ends its own session: the batch fails before its commit, and what is left of it runs alone.
            async (c, tx) => { await c.ExecuteAsync("SELECT pg_terminate_backend(pg_backend_pid())", transaction: tx); return 2; },
            async (c, tx) => { await InsertAsync(c, tx, scope, "after"); return 3; },
        };

        var tasks = await RunBehindABlockerAsync(scope, units);

        (await tasks[0]).ShouldBe(1);
        (await tasks[1]).ShouldBe(0);
        await Should.ThrowAsync<Exception>(tasks[2]);
        (await tasks[3]).ShouldBe(3);
        attempts.ShouldBe(2);
        (await NamesAsync(scope)).ShouldBe(["after", "before", "blocker", "conflicted"]);
    }

    /// <summary>The SQLSTATE of every database error <paramref name="work"/> meets, recorded, then thrown on.</summary>
    private static async Task<T> Recording<T>(System.Collections.Concurrent.ConcurrentBag<string> errors, Func<Task<T>> work)
    {
        try { return await work(); }
        catch (Npgsql.PostgresException ex)
        {
            errors.Add(ex.SqlState);
            throw;
        }
    }

    private Task<int> AddToAsync(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction tx, long scope, string name, int by) =>
        c.ExecuteAsync("UPDATE id_counters SET last_value = last_value + @by WHERE org_id = @scope AND name = @name", new { scope, name, by }, tx);

    private Task<List<long>> ValuesAsync(long scope, params string[] names) =>
        db.Database.ReadAsync(async c => (await c.QueryAsync<long>(
            "SELECT last_value FROM id_counters WHERE org_id = @scope AND name = ANY(@names) ORDER BY name", new { scope, names })).ToList(), CancellationToken.None);

    [Fact]
    public async Task two_lanes_whose_later_writes_want_each_others_rows_do_not_deadlock_and_every_write_commits_once()
    {
        await using var writer = db.OpenSecondInstance();
        writer.UseWriteLanes(lanes: 2, maxBatch: 2);
        var scope = NewScope();
        Task<T> Write<T>(Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<T>> unit) =>
            writer.WriteAndLocateAsync(unit, CancellationToken.None).ContinueWith(t => t.GetAwaiter().GetResult().Result, TaskScheduler.Default);
        await Write(async (c, tx) => { await InsertAsync(c, tx, scope, "x", 0); await InsertAsync(c, tx, scope, "y", 0); return 0; });

        // Both lanes held by a blocker each, so that the four writes queue and go two by two: [a, b]
        // to the first lane, [c, d] to the second. Each write takes one row, as a posting takes its
        // wallets in the global order; it is the batches that cross: a holds x and c holds y (each
        // waits until the other does), then b wants y and d wants x. Batches that waited for locks
        // behind their first write deadlocked here until PostgreSQL's detection failed one (1 s).
        var releases = new[] { new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously), new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously) };
        var blockers = new List<Task<int>>();
        foreach (var release in releases)
        {
            var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            blockers.Add(Write(async (c, tx) => { started.TrySetResult(); await release.Task; return 0; }));
            await started.Task.WaitAsync(Bound);
        }
        var aHasX = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var cHasY = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var errors = new System.Collections.Concurrent.ConcurrentBag<string>();
        var runs = new int[4];
        Task<int> Taking(int index, string row, int by, TaskCompletionSource? holds = null, TaskCompletionSource? thenWaitFor = null) =>
            Write((c, tx) => Recording(errors, async () =>
            {
                Interlocked.Increment(ref runs[index]);
                var added = await AddToAsync(c, tx, scope, row, by);
                holds?.TrySetResult();
                if (thenWaitFor is not null) await thenWaitFor.Task;
                return added;
            }));
        var a = Taking(0, "x", 1, aHasX, cHasY);
        var b = Taking(1, "y", 10);
        var c = Taking(2, "y", 100, cHasY, aHasX);
        var d = Taking(3, "x", 1000);
        try
        {
            releases[0].SetResult();
            await aHasX.Task.WaitAsync(Bound);
            releases[1].SetResult();
            // Bounded: a write that is never answered fails the test instead of hanging the run.
            await Task.WhenAll(blockers.Concat([a, b, c, d])).WaitAsync(Bound);
        }
        finally
        {
            // Whatever happened, nothing the lanes run is left waiting, so the writer can be disposed.
            foreach (var gate in releases.Append(aHasX).Append(cHasY)) gate.TrySetResult();
        }

        // Nobody deadlocked: a later write that met the other lane's row went first in a later batch
        // of its lane, where it waited; a and c ran again with their lanes' batches rolled back.
        errors.ShouldNotContain("40P01");
        errors.ShouldContain("55P03");
        (runs[1] + runs[3]).ShouldBeGreaterThan(2);
        (await ValuesAsync(scope, "x", "y")).ShouldBe([1001L, 110L]);
    }

    [Fact]
    public async Task a_write_that_would_wait_for_a_row_held_elsewhere_does_not_hold_up_the_writes_before_it_in_its_batch()
    {
        var scope = NewScope();
        await WriteAsync(async (c, tx) => { await InsertAsync(c, tx, scope, "busy", 0); return 0; }, CancellationToken.None);
        // Another transaction (another server, an operator's session) holds the row until released.
        await using var other = await db.Database.OpenAsync(CancellationToken.None);
        await using var holding = await other.BeginTransactionAsync();
        await other.ExecuteAsync("SELECT 1 FROM id_counters WHERE org_id = @scope AND name = 'busy' FOR UPDATE", new { scope }, holding);

        var errors = new System.Collections.Concurrent.ConcurrentBag<string>();
        var waiterRuns = 0;
        var units = new List<Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<int>>>
        {
            async (c, tx) => { await InsertAsync(c, tx, scope, "before"); return 0; },
            (c, tx) => Recording(errors, async () =>
            {
                Interlocked.Increment(ref waiterRuns);
                return await AddToAsync(c, tx, scope, "busy", 5);
            }),
            async (c, tx) => { await InsertAsync(c, tx, scope, "after"); return 2; },
        };
        var tasks = await RunBehindABlockerAsync(scope, units);

        // The writes around it commit while the row is still held: they do not wait for it.
        (await tasks[0]).ShouldBe(0);
        (await tasks[2]).ShouldBe(2);
        tasks[1].IsCompleted.ShouldBeFalse();
        errors.ShouldBe(["55P03"]);
        (await NamesAsync(scope)).ShouldBe(["after", "before", "blocker", "busy"]);

        // Once released, it commits, once: it went first in a later batch, where it could wait.
        await holding.CommitAsync();
        (await tasks[1]).ShouldBe(1);
        waiterRuns.ShouldBe(2);
        (await ValuesAsync(scope, "busy")).ShouldBe([5L]);
    }

    [Fact]
    public async Task in_a_batch_with_savepoints_a_deferred_write_is_rolled_back_to_its_own_and_the_writes_after_it_still_do_not_wait()
    {
        var scope = NewScope();
        await WriteAsync(async (c, tx) => { await InsertAsync(c, tx, scope, "busy", 0); return 0; }, CancellationToken.None);
        // At this failure rate a batch of four takes a savepoint for each write.
        await RaiseTheFailureRateAsync(NewScope());
        await using var other = await db.Database.OpenAsync(CancellationToken.None);
        await using var holding = await other.BeginTransactionAsync();
        await other.ExecuteAsync("SELECT 1 FROM id_counters WHERE org_id = @scope AND name = 'busy' FOR UPDATE", new { scope }, holding);

        var errors = new System.Collections.Concurrent.ConcurrentBag<string>();
        var runs = new int[2];
        Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<int>> Waiter(int index, int by) => (c, tx) => Recording(errors, async () =>
        {
            Interlocked.Increment(ref runs[index]);
            return await AddToAsync(c, tx, scope, "busy", by);
        });
        var units = new List<Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<int>>>
        {
            async (c, tx) => { await InsertAsync(c, tx, scope, "before"); return 0; },
            Waiter(0, 5),
            Waiter(1, 7),
            async (c, tx) => { await InsertAsync(c, tx, scope, "after"); return 3; },
        };
        var tasks = await RunBehindABlockerAsync(scope, units);

        (await tasks[0]).ShouldBe(0);
        (await tasks[3]).ShouldBe(3);
        // The second waiter was refused too: rolling the first back to its savepoint did not undo
        // the refusal of waits, which was set outside it.
        errors.ShouldBe(["55P03", "55P03"]);
        // The first may be waiting for the row already, opening the next batch; the second, behind it, is not.
        runs[1].ShouldBe(1);
        (await NamesAsync(scope)).ShouldBe(["after", "before", "blocker", "busy"]);

        // Released: both open the next batch, the first waiting for the row, and commit once each.
        await holding.CommitAsync();
        (await tasks[1]).ShouldBe(1);
        (await tasks[2]).ShouldBe(1);
        runs.ShouldBe([2, 2]);
        (await ValuesAsync(scope, "busy")).ShouldBe([12L]);
    }

    /// <summary>A tail that takes an advisory lock until the commit, as the outbox positions' does, then writes its items' rows.</summary>
    private sealed class LockingTail(long scope, long key) : ICommitTail
    {
        public bool HoldsLockUntilCommit => true;

        public void Add(StatementBatch batch, SqlDialect dialect, IReadOnlyList<object> items)
        {
            dialect.AddTransactionLock(batch, key);
            foreach (var name in items.Cast<string>())
                batch.Execute("INSERT INTO id_counters (org_id, name, last_value) VALUES (@scope, @name, 1)", new { scope, name });
        }
    }

    [Fact]
    public async Task a_write_whose_statement_is_cancelled_by_a_cancel_request_not_its_own_is_run_again_and_commits_once()
    {
        var scope = NewScope();
        var marker = $"cancel-me-{-scope}";
        var runs = 0;
        var write = WriteAsync(async (c, tx) =>
        {
            // The first run sleeps where the cancel can find it (a comment naming it in the SQL).
            if (Interlocked.Increment(ref runs) == 1) await c.ExecuteAsync($"SELECT pg_sleep(30) /* {marker} */", transaction: tx);
            await InsertAsync(c, tx, scope, "written");
            return 7;
        }, CancellationToken.None);

        // An operator's pg_cancel_backend, as a cancel request meant for an earlier command on the
        // same pooled connection would, cancels whatever the lane's backend is running.
        var cancelled = await CancelStatementAsync(marker);

        cancelled.ShouldBeTrue();
        (await write.WaitAsync(Bound)).ShouldBe(7);
        runs.ShouldBe(2);
        (await NamesAsync(scope)).ShouldBe(["written"]);
    }

    [Fact]
    public async Task a_write_outside_the_lanes_whose_statement_is_cancelled_fails_and_is_not_run_again()
    {
        // A long job (renumbering, a tier run) writes outside the lanes: an operator's cancel stops it.
        var scope = NewScope();
        var marker = $"cancel-me-{-scope}";
        var runs = 0;
        var write = Writer.WriteAsync(async (c, tx) =>
        {
            Interlocked.Increment(ref runs);
            await c.ExecuteAsync($"SELECT pg_sleep(30) /* {marker} */", transaction: tx);
            await InsertAsync(c, tx, scope, "written");
            return 7;
        }, CancellationToken.None);

        (await CancelStatementAsync(marker)).ShouldBeTrue();
        var error = await Should.ThrowAsync<Npgsql.PostgresException>(() => write.WaitAsync(Bound));
        error.SqlState.ShouldBe("57014");
        runs.ShouldBe(1);
        (await NamesAsync(scope)).ShouldBeEmpty();
    }

    /// <summary>Cancels, from another session, the statement whose SQL holds <paramref name="marker"/>, once it runs.</summary>
    private Task<bool> CancelStatementAsync(string marker) => SignalBackendRunningAsync(marker, "pg_cancel_backend");

    /// <summary>Ends, from another session, the backend running the statement whose SQL holds <paramref name="marker"/>, once it runs.</summary>
    private Task<bool> TerminateBackendRunningAsync(string marker) => SignalBackendRunningAsync(marker, "pg_terminate_backend");

    /// <summary>Calls <paramref name="function"/> (a cancel or a terminate) for the backend running the statement that holds <paramref name="marker"/>, once it runs.</summary>
    private async Task<bool> SignalBackendRunningAsync(string marker, string function)
    {
        for (var tries = 0; tries < 200; tries++)
        {
            // The marker goes as a parameter, so this query's own text does not match.
            if (await db.Database.ReadAsync(c => c.ExecuteScalarAsync<bool>(
                    $"SELECT COALESCE(bool_or({function}(pid)), false) FROM pg_stat_activity WHERE query LIKE @pattern AND pid <> pg_backend_pid()",
                    new { pattern = $"%{marker}%" }), CancellationToken.None))
                return true;
            await Task.Delay(50);
        }
        return false;
    }

    [Fact]
    public async Task a_commit_the_database_refuses_keeps_nothing_of_the_batch_and_its_units_run_again_alone()
    {
        // The commit goes in the round trip of the batch's end: a commit refused there (here by a
        // deferred constraint trigger) is told from the end's own statements and from the read of
        // the position after it, and nothing of the batch is taken for committed.
        await db.Database.WriteAsync(async (c, tx) => await c.ExecuteAsync(
            """
            CREATE TABLE IF NOT EXISTS test_refused_at_commit (org_id bigint NOT NULL);
            CREATE OR REPLACE FUNCTION test_refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS
                $$ BEGIN RAISE EXCEPTION 'refused at commit' USING ERRCODE = 'check_violation'; END $$;
            DROP TRIGGER IF EXISTS test_refuse_at_commit ON test_refused_at_commit;
            CREATE CONSTRAINT TRIGGER test_refuse_at_commit AFTER INSERT ON test_refused_at_commit
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_refuse_at_commit();
            """, transaction: tx), CancellationToken.None);
        var scope = NewScope();
        var runs = new int[3];
        var units = Enumerable.Range(0, runs.Length).Select(i => (Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<int>>)(async (c, tx) =>
        {
            Interlocked.Increment(ref runs[i]);
            await InsertAsync(c, tx, scope, $"unit-{i}");
            if (i == 1) await c.ExecuteAsync("INSERT INTO test_refused_at_commit (org_id) VALUES (@scope)", new { scope }, tx);
            return i;
        })).ToList();

        var tasks = await RunBehindABlockerAsync(scope, units);

        (await tasks[0]).ShouldBe(0);
        (await Should.ThrowAsync<Npgsql.PostgresException>(() => tasks[1])).SqlState.ShouldBe("23514");
        (await tasks[2]).ShouldBe(2);
        // Each ran in the batch, whose commit was refused, then alone: once more each.
        runs.ShouldBe([2, 2, 2]);
        (await NamesAsync(scope)).ShouldBe(["blocker", "unit-0", "unit-2"]);
    }

    [Fact]
    public async Task a_connection_the_server_ends_in_the_batchs_end_before_its_commit_runs_each_unit_again_alone_committing_once()
    {
        // The server names the statement it failed at, ahead of the commit in the same round trip:
        // the commit never ran, so each unit runs again, alone. (A connection that drops with no
        // word leaves the commit's outcome unknown instead: each unit is answered with the error and
        // none runs again.)
        var scope = NewScope();
        var marker = $"terminate-me-{-scope}";
        var runs = new int[2];
        var tasks = await RunBehindABlockerAsync(scope, TailUnits(scope, new SleepingTail(scope, marker), runs));

        (await TerminateBackendRunningAsync(marker)).ShouldBeTrue();

        for (var i = 0; i < tasks.Length; i++) (await tasks[i]).ShouldBe(i);
        runs.ShouldBe([2, 2]);
        (await NamesAsync(scope)).ShouldBe(["blocker", "tail-0", "tail-1", "unit-0", "unit-1"]);
    }

    /// <summary>
    /// A tail whose first write sleeps where <see cref="TerminateBackendRunningAsync"/> can find it;
    /// later ones insert their items as rows.
    /// </summary>
    private sealed class SleepingTail(long scope, string marker) : ICommitTail
    {
        private int _writes;

        public void Add(StatementBatch batch, SqlDialect dialect, IReadOnlyList<object> items)
        {
            if (Interlocked.Increment(ref _writes) == 1)
            {
                batch.Execute($"SELECT pg_sleep(30) /* {marker} */");
                return;
            }
            foreach (var name in items.Cast<string>())
                batch.Execute("INSERT INTO id_counters (org_id, name, last_value) VALUES (@scope, @name, 1)", new { scope, name });
        }
    }


    [Fact]
    public async Task the_end_of_a_batch_waits_for_a_lock_held_elsewhere_and_runs_nothing_again()
    {
        var scope = NewScope();
        var key = Random.Shared.NextInt64(1, int.MaxValue);
        await using var other = await db.Database.OpenAsync(CancellationToken.None);
        await using var holding = await other.BeginTransactionAsync();
        await other.ExecuteAsync("SELECT pg_advisory_xact_lock(@key)", new { key }, holding);

        var tail = new LockingTail(scope, key);
        var runs = new int[2];
        var units = TailUnits(scope, tail, runs);
        var tasks = await RunBehindABlockerAsync(scope, units);

        // The batch's end waits for the lock (the second write refused waits; its end allows them again).
        var waiting = false;
        for (var tries = 0; tries < 200 && !waiting; tries++)
        {
            waiting = await db.Database.ReadAsync(c => c.ExecuteScalarAsync<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid::bigint = @key)", new { key }),
                CancellationToken.None);
            if (!waiting) await Task.Delay(50);
        }
        await holding.CommitAsync();

        waiting.ShouldBeTrue();
        (await tasks[0]).ShouldBe(0);
        (await tasks[1]).ShouldBe(1);
        runs.ShouldBe([1, 1]);
        (await NamesAsync(scope)).ShouldBe(["blocker", "tail-0", "tail-1", "unit-0", "unit-1"]);
    }
}
