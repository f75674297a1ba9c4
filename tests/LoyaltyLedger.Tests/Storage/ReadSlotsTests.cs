using Dapper;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Storage;

/// <summary>
/// PostgreSQL's read slots (<c>Ledger:Postgres:ReadSlots</c>): no more reads than the slots run on
/// the primary at once, the others wait their turn, and no read or write ever waits on itself for a
/// slot (a read inside a read, a write a read waits for). SQLite has none: its reads run in the process.
/// </summary>
public sealed class ReadSlotsTests(PostgresDatabase db) : IClassFixture<PostgresDatabase>, IAsyncDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);
    private readonly List<LedgerDatabase> _opened = [];

    private LedgerDatabase Open(int? slots, int lanes = 0)
    {
        var database = db.OpenSecondInstance();
        if (slots is { } n) database.UseReadSlots(n);
        if (lanes > 0) database.UseWriteLanes(lanes, maxBatch: 16);
        _opened.Add(database);
        return database;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var database in _opened) await database.DisposeAsync();
    }

    /// <summary>Runs <paramref name="reads"/> reads of 200 ms each at once (long enough that a slow first connection still overlaps); the most that were in the database together.</summary>
    private static async Task<int> MostAtOnceAsync(LedgerDatabase database, int reads)
    {
        int running = 0, most = 0;
        await Task.WhenAll(Enumerable.Range(0, reads).Select(_ => Task.Run(() => database.ReadAsync(async c =>
        {
            var now = Interlocked.Increment(ref running);
            InterlockedMax(ref most, now);
            await c.ExecuteAsync("SELECT pg_sleep(0.2)");
            Interlocked.Decrement(ref running);
            return 0;
        }, CancellationToken.None)))).WaitAsync(Bound);
        return most;
    }

    private static void InterlockedMax(ref int target, int value)
    {
        for (var seen = Volatile.Read(ref target); value > seen; seen = Volatile.Read(ref target))
            if (Interlocked.CompareExchange(ref target, value, seen) == seen) return;
    }

    [Fact]
    public async Task no_more_reads_than_the_slots_run_at_once_and_every_read_is_answered()
    {
        (await MostAtOnceAsync(Open(slots: 2), reads: 12)).ShouldBe(2);
    }

    [Fact]
    public async Task without_slots_the_same_reads_run_together()
    {
        (await MostAtOnceAsync(Open(slots: null), reads: 12)).ShouldBeGreaterThan(2);
    }

    [Fact]
    public async Task the_reads_waiting_for_a_slot_get_it_in_the_order_they_came()
    {
        var database = Open(slots: 1);
        var (release, blocker) = await ReadSlotsTests.HoldTheSlotAsync(database);

        var order = new System.Collections.Concurrent.ConcurrentQueue<int>();
        var waiting = new List<Task<int>>();
        for (var i = 0; i < 8; i++)
        {
            var n = i;
            waiting.Add(database.ReadAsync(c =>
            {
                order.Enqueue(n);
                return c.ExecuteScalarAsync<int>("SELECT @n", new { n });
            }, CancellationToken.None));
        }
        order.ShouldBeEmpty();
        release.SetResult();
        await blocker.WaitAsync(Bound);
        (await Task.WhenAll(waiting).WaitAsync(Bound)).ShouldBe([0, 1, 2, 3, 4, 5, 6, 7]);
        order.ShouldBe([0, 1, 2, 3, 4, 5, 6, 7]);
    }

    [Fact]
    public async Task a_probe_does_not_wait_for_a_slot()
    {
        var database = Open(slots: 1);
        var (release, blocker) = await ReadSlotsTests.HoldTheSlotAsync(database);
        (await database.ReadOutOfTurnAsync(c => c.ExecuteScalarAsync<int>("SELECT 5"), CancellationToken.None).WaitAsync(Bound)).ShouldBe(5);
        // And the probe's flow is not left exempt: the next read in it waits its turn again.
        await NextReadWaitsItsTurnAsync(database, release, blocker);
    }

    [Fact]
    public async Task a_read_inside_a_read_takes_no_second_slot()
    {
        var database = Open(slots: 1);
        var inner = await database.ReadAsync(c1 => database.ReadAsync(c2 => c2.ExecuteScalarAsync<int>("SELECT 7"), CancellationToken.None),
            CancellationToken.None).WaitAsync(Bound);
        inner.ShouldBe(7);
    }

    /// <summary>Holds the only slot of <paramref name="database"/> until the returned source is set.</summary>
    internal static async Task<(TaskCompletionSource Release, Task<int> Holder)> HoldTheSlotAsync(LedgerDatabase database)
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var holding = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var holder = database.ReadAsync(async _ =>
        {
            holding.SetResult();
            await release.Task;
            return 0;
        }, CancellationToken.None);
        await holding.Task.WaitAsync(Bound);
        return (release, holder);
    }

    /// <summary>
    /// A read started now, in the caller's flow, waits behind <paramref name="holder"/> (the flow was
    /// left with no exemption by what it awaited before), and is answered once the holder lets go.
    /// </summary>
    private static async Task NextReadWaitsItsTurnAsync(LedgerDatabase database, TaskCompletionSource release, Task<int> holder)
    {
        var after = database.ReadAsync(c => c.ExecuteScalarAsync<int>("SELECT 6"), CancellationToken.None);
        await Task.Delay(100);
        after.IsCompleted.ShouldBeFalse();
        release.SetResult();
        await holder.WaitAsync(Bound);
        (await after.WaitAsync(Bound)).ShouldBe(6);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public async Task a_write_that_reads_does_not_wait_for_the_slots_reads_hold(int lanes)
    {
        // A read holding a slot may wait for a write; were the write's own lookups to wait for a
        // slot, the two would wait for each other for ever. With a lane, the write runs there.
        var database = Open(slots: 1, lanes);
        var (release, holder) = await HoldTheSlotAsync(database);
        var (written, _) = await database.WriteAndLocateAsync((c, tx) =>
            database.ReadAsync(r => r.ExecuteScalarAsync<int>("SELECT 11"), CancellationToken.None), CancellationToken.None)
            .WaitAsync(TimeSpan.FromSeconds(20));
        written.ShouldBe(11);
        // The write's exemption ends with it: a read after it, in the same flow, waits its turn.
        await NextReadWaitsItsTurnAsync(database, release, holder);
    }

    [Fact]
    public async Task a_read_whose_work_fails_gives_its_slot_back()
    {
        var database = Open(slots: 1);
        await Should.ThrowAsync<Npgsql.PostgresException>(() =>
            database.ReadAsync(c => c.ExecuteScalarAsync<int>("SELECT 1 / 0"), CancellationToken.None).WaitAsync(Bound));
        (await database.ReadAsync(c => c.ExecuteScalarAsync<int>("SELECT 2"), CancellationToken.None).WaitAsync(Bound)).ShouldBe(2);
    }

    [Fact]
    public async Task a_read_cancelled_while_it_waits_for_a_slot_leaves_the_slot_to_the_others()
    {
        var database = Open(slots: 1);
        var (release, blocker) = await ReadSlotsTests.HoldTheSlotAsync(database);

        using var cancel = new CancellationTokenSource();
        var cancelled = database.ReadAsync(c => c.ExecuteScalarAsync<int>("SELECT 1"), cancel.Token);
        var next = database.ReadAsync(c => c.ExecuteScalarAsync<int>("SELECT 2"), CancellationToken.None);
        await cancel.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(() => cancelled.WaitAsync(Bound));
        release.SetResult();
        await blocker.WaitAsync(Bound);
        (await next.WaitAsync(Bound)).ShouldBe(2);
        (await database.ReadAsync(c => c.ExecuteScalarAsync<int>("SELECT 3"), CancellationToken.None).WaitAsync(Bound)).ShouldBe(3);
    }

    [Fact]
    public async Task sqlite_has_no_read_slots()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"readslots-{Guid.NewGuid():N}");
        try
        {
            await using var sqlite = LedgerDatabase.ForSqliteFile(Path.Combine(dir, "ledger.db"));
            Should.Throw<InvalidOperationException>(() => sqlite.UseReadSlots(4)).Message.ShouldContain("SQLite");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

/// <summary>The server takes its read slots from <c>Ledger:Postgres:ReadSlots</c>.</summary>
public sealed class ReadSlotsSettingTests(PostgresDatabase db) : IClassFixture<PostgresDatabase>
{
    [Theory]
    [InlineData(null, 8)]
    [InlineData("3", 3)]
    [InlineData("0", null)]
    public async Task the_server_takes_its_read_slots_from_its_settings(string? setting, int? slots)
    {
        var database = db.OpenSecondInstance();
        await using var host = await TestServerHost.StartAsync(database,
            setting is null ? null : new Dictionary<string, string?> { ["Ledger:Postgres:ReadSlots"] = setting });
        database.ReadSlotCount.ShouldBe(slots);
    }

    [Fact]
    public async Task the_readiness_probe_answers_while_reads_hold_every_slot()
    {
        var database = db.OpenSecondInstance();
        await using var host = await TestServerHost.StartAsync(database, new Dictionary<string, string?> { ["Ledger:Postgres:ReadSlots"] = "1" });
        var (release, blocker) = await ReadSlotsTests.HoldTheSlotAsync(database);
        // A read queues behind the one holding the slot; the probe does not.
        var queued = database.ReadAsync(c => c.ExecuteScalarAsync<int>("SELECT 1"), CancellationToken.None);
        using var ready = await host.Client().GetAsync("/health/ready").WaitAsync(TimeSpan.FromSeconds(60));
        ready.StatusCode.ShouldBe(System.Net.HttpStatusCode.OK);
        queued.IsCompleted.ShouldBeFalse();
        release.SetResult();
        await blocker.WaitAsync(TimeSpan.FromSeconds(60));
        (await queued.WaitAsync(TimeSpan.FromSeconds(60))).ShouldBe(1);
    }
}
