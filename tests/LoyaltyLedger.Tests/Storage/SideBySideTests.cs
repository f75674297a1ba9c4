using System.Data.Common;
using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Postings;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Storage;

/// <summary>
/// PostgreSQL's write lanes run the writes of a batch that touch the database only through postings
/// side by side (<see cref="LockStep"/>): each round, the statements of every write waiting go in one
/// round trip. Writes that name the same rows, one that fails, one that sends a statement outside the
/// rounds, or one that would wait for a lock break the try: it is rolled back whole and the batch runs
/// one write after another, each committing once. SQLite has one writer in the process and no round
/// trips to save; its batches run one write after another (<see cref="GroupCommitTests"/>).
/// </summary>
public sealed class SideBySideTests(PostgresDatabase db) : IClassFixture<PostgresDatabase>, IAsyncDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    /// <summary>A handle with one write lane: the writes queued behind a blocker are its next batch.</summary>
    private LedgerDatabase Writer => _writer ??= OneLane();

    private LedgerDatabase? _writer;

    private LedgerDatabase OneLane()
    {
        var writer = db.OpenSecondInstance();
        writer.UseWriteLanes(lanes: 1, maxBatch: 64);
        return writer;
    }

    public async ValueTask DisposeAsync()
    {
        if (_writer is not null) await _writer.DisposeAsync();
    }

    private static long NewScope() => -Random.Shared.NextInt64(1, long.MaxValue / 2);

    private Task<T> WriteAsync<T>(Func<DbConnection, DbTransaction, Task<T>> unit) =>
        Writer.WriteAndLocateAsync(unit, CancellationToken.None, postingsOnly: true).ContinueWith(t => t.GetAwaiter().GetResult().Result, TaskScheduler.Default);

    private Task<Task<T>[]> RunBehindABlockerAsync<T>(long scope, IReadOnlyList<Func<DbConnection, DbTransaction, Task<T>>> units) =>
        GroupCommitTests.RunBehindABlockerAsync(WriteAsync, (c, tx) =>
            c.ExecuteAsync("INSERT INTO id_counters (org_id, name, last_value) VALUES (@scope, 'blocker', 1)", new { scope }, tx), units);

    private (long Ran, long Broken, long Rounds) Counts => Writer.SideBySide!.Value;

    private Task<List<string>> NamesAsync(long scope) =>
        db.Database.ReadAsync(async c => (await c.QueryAsync<string>("SELECT name FROM id_counters WHERE org_id = @scope ORDER BY name", new { scope })).ToList(),
            CancellationToken.None);

    /// <summary>
    /// A write of two round trips: it inserts its row, then counts the scope's rows it sees (run one
    /// after another, the rows of the writes before it; side by side, every write's first round).
    /// <paramref name="between"/> runs in it between the two.
    /// </summary>
    private Func<DbConnection, DbTransaction, Task<long>> InsertThenCount(long scope, string name, Func<DbConnection, DbTransaction, Task>? between = null) =>
        async (c, tx) =>
        {
            var batch = new StatementBatch(c, tx, Writer.Dialect);
            batch.Execute("INSERT INTO id_counters (org_id, name, last_value) VALUES (@scope, @name, 1)", new { scope, name });
            await batch.RunAsync();
            if (between is not null) await between(c, tx);
            var count = batch.Query("SELECT COUNT(*) FROM id_counters WHERE org_id = @scope", new { scope });
            return (await batch.RunAsync()).SingleLong(count);
        };

    [Fact]
    public async Task writes_of_rows_of_their_own_run_side_by_side_their_statements_sent_together_round_by_round()
    {
        var scope = NewScope();
        var before = Counts;
        var units = Enumerable.Range(0, 10).Select(i => InsertThenCount(scope, $"unit-{i}")).ToList();

        var counts = await Task.WhenAll(await RunBehindABlockerAsync(scope, units));

        // Each saw every write's insert: the inserts went in the first round, the counts in the second.
        counts.ShouldAllBe(n => n == 11);
        (Counts.Ran - before.Ran).ShouldBe(1);
        (Counts.Broken - before.Broken).ShouldBe(0);
        (Counts.Rounds - before.Rounds).ShouldBe(2);
        (await NamesAsync(scope)).Count.ShouldBe(11);
    }

    [Fact]
    public async Task two_writes_that_name_the_same_rows_break_the_try_and_the_batch_runs_one_write_after_another_each_committing_once()
    {
        var scope = NewScope();
        var before = Counts;
        var units = Enumerable.Range(0, 5).Select(i => InsertThenCount(scope, $"unit-{i}", (_, tx) =>
        {
            LockStep.Claim(tx, i is 1 or 3 ? "the same wallet" : $"wallet-{i}");
            return Task.CompletedTask;
        })).ToList();

        var counts = await Task.WhenAll(await RunBehindABlockerAsync(scope, units));

        // One after another: each saw the blocker, the writes before it and itself, nothing of the broken try.
        counts.ShouldBe([2L, 3L, 4L, 5L, 6L]);
        (Counts.Broken - before.Broken).ShouldBe(1);
        (Counts.Ran - before.Ran).ShouldBe(0);
        (await NamesAsync(scope)).ShouldBe(["blocker", "unit-0", "unit-1", "unit-2", "unit-3", "unit-4"]);
    }

    [Fact]
    public async Task a_write_refused_in_a_try_writes_nothing_and_the_others_commit_once_one_after_another()
    {
        var scope = NewScope();
        var before = Counts;
        var refusal = new LedgerException("INSUFFICIENT_POINTS", "refused", 422);
        var units = Enumerable.Range(0, 4).Select(i => InsertThenCount(scope, $"unit-{i}", (_, _) =>
            i == 2 ? Task.FromException(refusal) : Task.CompletedTask)).ToList();

        var tasks = await RunBehindABlockerAsync(scope, units);

        (await Should.ThrowAsync<LedgerException>(tasks[2])).ShouldBeSameAs(refusal);
        (await tasks[0]).ShouldBe(2L);
        (await tasks[1]).ShouldBe(3L);
        (await tasks[3]).ShouldBe(4L);
        (Counts.Broken - before.Broken).ShouldBe(1);
        (await NamesAsync(scope)).ShouldBe(["blocker", "unit-0", "unit-1", "unit-3"]);
    }

    [Fact]
    public async Task a_posting_statement_sent_outside_the_rounds_breaks_the_try_and_runs_in_the_batch_run_one_after_another()
    {
        var scope = NewScope();
        var before = Counts;
        var units = Enumerable.Range(0, 3).Select(i => InsertThenCount(scope, $"unit-{i}", async (c, tx) =>
        {
            if (i != 1) return;
            var posting = new Posting(c, tx, Writer.Dialect, scope, DateTimeOffset.UtcNow, null);
            await posting.ExecuteAsync("INSERT INTO id_counters (org_id, name, last_value) VALUES (@scope, 'direct', 1)", new { scope });
        })).ToList();

        var counts = await Task.WhenAll(await RunBehindABlockerAsync(scope, units));

        counts.ShouldBe([2L, 4L, 5L]);
        (Counts.Broken - before.Broken).ShouldBe(1);
        (await NamesAsync(scope)).ShouldBe(["blocker", "direct", "unit-0", "unit-1", "unit-2"]);
    }

    [Fact]
    public async Task a_try_that_meets_a_row_held_elsewhere_breaks_at_once_instead_of_waiting_and_the_batch_then_commits_once()
    {
        var scope = NewScope();
        await db.Database.WriteAsync((c, tx) => c.ExecuteAsync(
            "INSERT INTO id_counters (org_id, name, last_value) VALUES (@scope, 'busy', 0)", new { scope }, tx), CancellationToken.None);
        // Another transaction (another lane, another server) holds the row until released.
        await using var other = await db.Database.OpenAsync(CancellationToken.None);
        await using var holding = await other.BeginTransactionAsync();
        await other.ExecuteAsync("SELECT 1 FROM id_counters WHERE org_id = @scope AND name = 'busy' FOR UPDATE", new { scope }, holding);
        var before = Counts;
        var units = Enumerable.Range(0, 3).Select(i => InsertThenCount(scope, $"unit-{i}", async (c, tx) =>
        {
            if (i != 0) return;
            var batch = new StatementBatch(c, tx, Writer.Dialect);
            batch.Execute("UPDATE id_counters SET last_value = last_value + 5 WHERE org_id = @scope AND name = 'busy'", new { scope });
            await batch.RunAsync();
        })).ToList();

        var tasks = await RunBehindABlockerAsync(scope, units);
        // The try does not wait for the row: it breaks while the row is still held (its writes'
        // locks go in rounds, in no one global order, so a wait there could close a cycle).
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (Counts.Broken == before.Broken)
        {
            if (waited.Elapsed > Bound) throw new TimeoutException("The try waited for the row held elsewhere.");
            await Task.Delay(10);
        }
        // At once: a try that waited would break only when its statement timed out (Npgsql's 30 s).
        waited.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(10));
        await holding.CommitAsync();

        // One after another: the first waited for the row (a batch's first write may), the others behind it.
        (await Task.WhenAll(tasks)).ShouldBe([3L, 4L, 5L]);
        (Counts.Ran - before.Ran).ShouldBe(0);
        (await db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>(
            "SELECT last_value FROM id_counters WHERE org_id = @scope AND name = 'busy'", new { scope }), CancellationToken.None)).ShouldBe(5L);
        (await NamesAsync(scope)).ShouldBe(["blocker", "busy", "unit-0", "unit-1", "unit-2"]);
    }

    [Fact]
    public async Task two_redemptions_of_one_customer_in_one_batch_break_the_try_and_never_overspend()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var customer = await t.NewCustomerAsync();
        await t.AwardAsync(customer, "100");
        // A redemption as the API posts one: through a posting alone, the catalog from the cache.
        Func<DbConnection, DbTransaction, Task<long>> Redeem(long points) => async (c, tx) =>
        {
            var posting = new Posting(c, tx, Writer.Dialect, t.OrgId, DateTimeOffset.UtcNow, null) { Catalog = Writer.Catalog };
            return (await PointsPostings.RedeemAsync(posting, new NewRedemption(new Points(points), CustomerId: customer, ProgramId: shop.ProgramId))).EventId;
        };
        // One alone first, which fills the cache with the tenant's programs: a program read past the
        // cache is a statement outside the rounds, and would break the try for its own reason.
        await WriteAsync(Redeem(10_000));
        var before = Counts;

        var tasks = await RunBehindABlockerAsync(NewScope(), [Redeem(50_000), Redeem(50_000)]);
        var outcomes = await Task.WhenAll(tasks.Select(async task =>
        {
            try { await task; return "posted"; }
            catch (LedgerException) { return "refused"; }
        }));

        // Side by side both would have read a balance of 90 and spent 50 of it: the wallet they
        // both name breaks the try, and one after another the second sees the first's debit.
        outcomes.Order().ShouldBe(["posted", "refused"]);
        (Counts.Broken - before.Broken).ShouldBe(1);
        (await t.BalanceAsync(customer, shop.ProgramId)).ShouldBe(40_000);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task redemptions_of_several_customers_go_side_by_side_in_three_rounds_each_debit_moving_lots_under_its_own_line()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var customers = new List<long>();
        for (var i = 0; i < 4; i++)
        {
            var customer = await t.NewCustomerAsync();
            // Two lots each: a redemption of 150 takes the first whole and half of the second.
            await t.AwardAsync(customer, "100");
            await t.AwardAsync(customer, "100");
            customers.Add(customer);
        }
        Func<DbConnection, DbTransaction, Task<long>> Redeem(long customer) => async (c, tx) =>
        {
            var posting = new Posting(c, tx, Writer.Dialect, t.OrgId, DateTimeOffset.UtcNow, null) { Catalog = Writer.Catalog };
            return (await PointsPostings.RedeemAsync(posting, new NewRedemption(new Points(150_000), CustomerId: customer, ProgramId: shop.ProgramId))).EventId;
        };
        // One alone first, which fills the cache with the tenant's programs (a read past the cache
        // would break the try for its own reason).
        var warm = await t.NewCustomerAsync();
        await t.AwardAsync(warm, "200");
        await WriteAsync(Redeem(warm));
        var before = Counts;

        var events = await Task.WhenAll(await RunBehindABlockerAsync(NewScope(), customers.Select(Redeem).ToList()));

        // The wallet's lock; the event with the wallet's first open lots; the line with the lots it takes.
        (Counts.Ran - before.Ran).ShouldBe(1);
        (Counts.Rounds - before.Rounds).ShouldBe(3);
        for (var i = 0; i < customers.Count; i++)
        {
            (await t.BalanceAsync(customers[i], shop.ProgramId)).ShouldBe(50_000);
            // The movements name the debit's own line, which names the redemption's event.
            var moved = await db.Database.ReadAsync(c => c.QueryAsync<(long Points, long Line)>(
                """
                SELECT m.points, le.entry_id FROM lot_movements m JOIN ledger_entries le ON le.org_id = m.org_id AND le.entry_id = m.entry_id
                WHERE m.org_id = @org AND le.event_id = @eventId AND le.entry_type = 'DEBIT' ORDER BY m.movement_id
                """, new { org = t.OrgId, eventId = events[i] }), CancellationToken.None);
            moved.Select(m => m.Points).ShouldBe([100_000L, 50_000L]);
            moved.Select(m => m.Line).Distinct().Count().ShouldBe(1);
        }
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task bills_of_several_customers_go_side_by_side_in_three_rounds_their_lines_written_with_their_events()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(earnRate: "0.1");
        var customers = new List<long>();
        for (var i = 0; i < 4; i++) customers.Add(await t.NewCustomerAsync());
        // Points by the earn rule and Stars by an award: two lines, in two wallets, of one event.
        Func<DbConnection, DbTransaction, Task<long>> Bill(long customer, string number) => async (c, tx) =>
        {
            var posting = new Posting(c, tx, Writer.Dialect, t.OrgId, DateTimeOffset.UtcNow, null) { Catalog = Writer.Catalog };
            return (await PointsPostings.AddTransactionAsync(posting, new NewBill(customer, number, 100m, shop.StoreCode, shop.TillCode,
                ProgramId: shop.ProgramId, Awards: [new Award(new Points(5_000), "Stars")]))).EventId;
        };
        // One alone first, which fills the cache with the tenant's program and store.
        await WriteAsync(Bill(await t.NewCustomerAsync(), "warm"));
        var before = Counts;

        var events = await Task.WhenAll(await RunBehindABlockerAsync(NewScope(), customers.Select((customer, i) => Bill(customer, $"bill-{i}")).ToList()));

        // The customer (and its pooling group, if any); the wallets' lock with the bill's row; the
        // event with the bill's link to it and its lines, lots and balances.
        (Counts.Ran - before.Ran).ShouldBe(1);
        (Counts.Rounds - before.Rounds).ShouldBe(3);
        for (var i = 0; i < customers.Count; i++)
        {
            (await t.BalanceAsync(customers[i], shop.ProgramId)).ShouldBe(10_000);
            (await t.BalanceAsync(customers[i], shop.ProgramId, "Stars")).ShouldBe(5_000);
            var (lines, linked) = await db.Database.ReadAsync(async c => (
                await c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM ledger_entries WHERE org_id = @org AND event_id = @eventId AND owner_id = @customer",
                    new { org = t.OrgId, eventId = events[i], customer = customers[i] }),
                await c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM bills WHERE org_id = @org AND event_id = @eventId AND bill_number = @number",
                    new { org = t.OrgId, eventId = events[i], number = $"bill-{i}" })), CancellationToken.None);
            lines.ShouldBe(2);
            linked.ShouldBe(1);
        }
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }
}
