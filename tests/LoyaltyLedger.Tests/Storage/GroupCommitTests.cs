using Dapper;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Storage;

/// <summary>
/// Group commit: the units of work waiting for a writer are committed together, each in a savepoint
/// of its own. On SQLite every write goes through its one writer; on PostgreSQL the API's writes
/// (<see cref="LedgerDatabase.WriteAndLocateAsync{T}"/>) go through the write lanes, here one lane,
/// so that the units queued behind a blocker are one batch. A unit that fails leaves nothing and
/// costs its neighbours nothing.
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

    private Task<T> WriteAsync<T>(Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<T>> unit, CancellationToken ct) =>
        Writer.WriteAndLocateAsync(unit, ct).ContinueWith(t => t.GetAwaiter().GetResult().Result, TaskScheduler.Default);

    public async ValueTask DisposeAsync()
    {
        if (_writer is not null && !ReferenceEquals(_writer, db.Database)) await _writer.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    protected static long NewScope() => -Random.Shared.NextInt64(1, long.MaxValue / 2);

    protected Task<long> CountAsync(long scope) =>
        db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM id_counters WHERE org_id = @scope", new { scope }), CancellationToken.None);

    private Task<List<string>> NamesAsync(long scope) =>
        db.Database.ReadAsync(async c => (await c.QueryAsync<string>("SELECT name FROM id_counters WHERE org_id = @scope ORDER BY name", new { scope })).ToList(),
            CancellationToken.None);

    protected static Task InsertAsync(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction tx, long scope, string name, long value = 1) =>
        c.ExecuteAsync("INSERT INTO id_counters (org_id, name, last_value) VALUES (@scope, @name, @value)", new { scope, name, value }, tx);

    /// <summary>Runs a unit that holds the writer until all of <paramref name="units"/> have been queued behind it, then lets them run.</summary>
    protected async Task<Task<T>[]> RunBehindABlockerAsync<T>(long scope, IReadOnlyList<Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<T>>> units)
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var blocker = WriteAsync(async (c, tx) =>
        {
            await InsertAsync(c, tx, scope, "blocker");
            started.TrySetResult();
            await release.Task;
            return 0;
        }, CancellationToken.None);
        await started.Task;
        var tasks = units.Select(u => WriteAsync(u, CancellationToken.None)).ToArray();
        release.SetResult();
        await blocker;
        return tasks;
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
    protected override LedgerDatabase OpenWriter(DatabaseFixture fixture) => fixture.Database;

    protected override Exception TransientConflict() => new Microsoft.Data.Sqlite.SqliteException("database is locked", 5);
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

    [Fact]
    public async Task the_units_queued_behind_a_blocker_commit_in_one_transaction_and_each_answers_a_position_at_or_past_it()
    {
        var scope = NewScope();
        var units = Enumerable.Range(0, 10).Select(i => (Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<long>>)(async (c, tx) =>
        {
            await InsertAsync(c, tx, scope, $"unit-{i}");
            return await c.ExecuteScalarAsync<long>("SELECT pg_current_xact_id()::text::bigint", transaction: tx);
        })).ToList();

        var tasks = await RunBehindABlockerAsync(scope, units);
        var transactions = new List<long>();
        foreach (var task in tasks) transactions.Add(await task);

        transactions.Distinct().Count().ShouldBe(1);
        (await CountAsync(scope)).ShouldBe(11);
        // The answer of a write in a batch carries the position of the batch's commit: past what was
        // written before it, and not past what has been written since.
        var before = await db.Database.CurrentPositionAsync(CancellationToken.None);
        var (_, position) = await Writer.WriteAndLocateAsync(async (c, tx) => { await InsertAsync(c, tx, scope, "located"); return 0; }, CancellationToken.None);
        var after = await db.Database.CurrentPositionAsync(CancellationToken.None);
        position.ShouldNotBeNull();
        position.Value.CompareTo(before!.Value).ShouldBeGreaterThan(0);
        position.Value.CompareTo(after!.Value).ShouldBeLessThanOrEqualTo(0);
    }
}
