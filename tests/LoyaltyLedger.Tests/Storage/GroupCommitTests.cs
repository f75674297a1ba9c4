using Dapper;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Storage;

/// <summary>
/// The write path under concurrency: on SQLite the units of work waiting for the writer are committed
/// together (group commit, each in a savepoint of its own); on PostgreSQL each has its own
/// transaction. Either way a unit that fails leaves nothing and costs its neighbours nothing.
/// </summary>
/// <remarks>
/// A first unit holds the writer (on SQLite) until all the others are queued, so they run as one
/// batch there; on PostgreSQL it only holds its own transaction.
/// </remarks>
public abstract class GroupCommitTests(DatabaseFixture db)
{
    private static long NewScope() => -Random.Shared.NextInt64(1, long.MaxValue / 2);

    private Task<long> CountAsync(long scope) =>
        db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM id_counters WHERE org_id = @scope", new { scope }), CancellationToken.None);

    private Task<List<string>> NamesAsync(long scope) =>
        db.Database.ReadAsync(async c => (await c.QueryAsync<string>("SELECT name FROM id_counters WHERE org_id = @scope ORDER BY name", new { scope })).ToList(),
            CancellationToken.None);

    private static Task InsertAsync(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction tx, long scope, string name, long value = 1) =>
        c.ExecuteAsync("INSERT INTO id_counters (org_id, name, last_value) VALUES (@scope, @name, @value)", new { scope, name, value }, tx);

    /// <summary>Runs a unit that holds the writer until all of <paramref name="units"/> have been queued behind it, then lets them run.</summary>
    private async Task<Task<T>[]> RunBehindABlockerAsync<T>(long scope, IReadOnlyList<Func<System.Data.Common.DbConnection, System.Data.Common.DbTransaction, Task<T>>> units)
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var blocker = db.Database.WriteAsync(async (c, tx) =>
        {
            await InsertAsync(c, tx, scope, "blocker");
            started.TrySetResult();
            await release.Task;
            return 0;
        }, CancellationToken.None);
        await started.Task;
        var tasks = units.Select(u => db.Database.WriteAsync(u, CancellationToken.None)).ToArray();
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
        await db.Database.WriteAsync(async (c, tx) => { await InsertAsync(c, tx, scope, "balance", 100); return 0; }, CancellationToken.None);
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
        var task = db.Database.WriteAsync(async (c, tx) =>
        {
            ran = true;
            await InsertAsync(c, tx, scope, "late");
            return 0;
        }, cancelled.Token);

        await Should.ThrowAsync<OperationCanceledException>(task);
        ran.ShouldBeFalse();
        (await CountAsync(scope)).ShouldBe(0);
    }
}

public sealed class GroupCommitTestsOnSqlite(SqliteDatabase db) : GroupCommitTests(db), IClassFixture<SqliteDatabase>;

public sealed class GroupCommitTestsOnPostgres(PostgresDatabase db) : GroupCommitTests(db), IClassFixture<PostgresDatabase>;
