using Dapper;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;
using LoyaltyLedger.Tests.PointsLedger;
using LoyaltyLedger.Tests.Vault;
using Npgsql;
using static LoyaltyLedger.Tests.Vault.VaultBuilders;

namespace LoyaltyLedger.Tests.Storage;

/// <summary>
/// PostgreSQL's read pipeline (<c>Ledger:Postgres:ReadPipelineLanes</c>): the reads waiting go to
/// the database together, one round trip for several; each gets its own rows, a read's error is
/// its own, a caller that gives up is not waited for, and both read APIs' pages answer through it
/// exactly as they answer without it. SQLite has none: its reads are calls into the process.
/// </summary>
public sealed class ReadPipelineTests(PostgresDatabase db) : IClassFixture<PostgresDatabase>, IAsyncDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);
    private readonly List<LedgerDatabase> _opened = [];

    /// <summary>A handle with a pipeline of one lane, so that what waits behind a read in flight goes in one batch.</summary>
    private LedgerDatabase OneLane()
    {
        var database = db.OpenSecondInstance();
        database.UseReadPipeline(lanes: 1, maxBatch: 16);
        _opened.Add(database);
        return database;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var database in _opened) await database.DisposeAsync();
    }

    /// <summary>A read that holds the one lane until <see cref="ReleaseAsync"/>: it waits for an advisory lock a session of the test holds.</summary>
    private sealed class LaneHold(NpgsqlConnection session, Task<List<DateTime>> holding) : IAsyncDisposable
    {
        public Task<List<DateTime>> Holding => holding;

        /// <summary>Ends the session, and with it its lock: the holding read goes on.</summary>
        public ValueTask ReleaseAsync() => session.DisposeAsync();

        public ValueTask DisposeAsync() => session.DisposeAsync();
    }

    private async Task<LaneHold> HoldTheLaneAsync(LedgerDatabase database)
    {
        var key = Random.Shared.NextInt64();
        // Not pooled: closed, the session ends, and its lock with it (a pooled one would keep it until reused).
        var session = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(db.ConnectionString) { Pooling = false }.ConnectionString);
        await session.OpenAsync();
        await session.ExecuteAsync("SELECT pg_advisory_lock(@key)", new { key });
        var sent = database.PipelinedReads;
        var holding = database.PipelinedQueryAsync<DateTime>("SELECT now() FROM pg_advisory_xact_lock_shared(@key)", new { key }, CancellationToken.None);
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (database.PipelinedReads == sent)
        {
            if (waited.Elapsed > Bound) throw new TimeoutException("The holding read was never sent.");
            await Task.Delay(5);
        }
        return new LaneHold(session, holding);
    }

    [Fact]
    public async Task the_reads_waiting_behind_one_in_flight_go_together_and_each_gets_its_own_rows()
    {
        var database = OneLane();
        await using var hold = await HoldTheLaneAsync(database);
        // now() is the start of the statement's transaction: the statements of one batch share one
        // implicit transaction, so one now() for all of them says they went in one round trip.
        var reads = Enumerable.Range(1, 10).Select(n => database.PipelinedQueryAsync<(long N, DateTime At)>(
            "SELECT @n + g, now() FROM generate_series(0, @n - 1) g", new { n = (long)n }, CancellationToken.None)).ToList();
        await hold.ReleaseAsync();
        var answers = await Task.WhenAll(reads).WaitAsync(Bound);

        for (var n = 1; n <= 10; n++)
            answers[n - 1].Select(r => r.N).ShouldBe(Enumerable.Range(n, n).Select(x => (long)x), $"read {n}");
        answers.Select(rows => rows[0].At).Distinct().Count().ShouldBe(1);
        answers[0][0].At.ShouldNotBe((await hold.Holding.WaitAsync(Bound))[0]);
        database.PipelinedReads.ShouldBe(11);
    }

    [Fact]
    public async Task a_read_that_fails_fails_alone_and_the_reads_beside_it_are_answered()
    {
        var database = OneLane();
        await using var hold = await HoldTheLaneAsync(database);
        Task<List<long>> Read(long n, long divisor) =>
            database.PipelinedQueryAsync<long>("SELECT @n / @divisor", new { n, divisor }, CancellationToken.None);
        var before = Read(6, 2);
        var failing = Read(1, 0);
        var after = new[] { Read(8, 2), Read(10, 5) };
        await hold.ReleaseAsync();

        (await before.WaitAsync(Bound)).ShouldBe([3L]);
        var error = await Should.ThrowAsync<PostgresException>(failing.WaitAsync(Bound));
        error.SqlState.ShouldBe(PostgresErrorCodes.DivisionByZero);
        (await Task.WhenAll(after).WaitAsync(Bound)).ShouldBe([[4L], [2L]]);
        // The holding read, the four together, and the two the database skipped after the error, again together.
        database.PipelinedReads.ShouldBe(1 + 4 + 2);
    }

    [Fact]
    public async Task a_caller_that_gives_up_while_its_read_waits_is_answered_at_once_and_the_others_still_are()
    {
        var database = OneLane();
        await using var hold = await HoldTheLaneAsync(database);
        using var giveUp = new CancellationTokenSource();
        var abandoned = database.PipelinedQueryAsync<long>("SELECT @n", new { n = 1L }, giveUp.Token);
        var kept = database.PipelinedQueryAsync<long>("SELECT @n", new { n = 2L }, CancellationToken.None);
        await giveUp.CancelAsync();

        // Answered while the read ahead of it still holds the lane.
        await Should.ThrowAsync<OperationCanceledException>(abandoned.WaitAsync(Bound));
        hold.Holding.IsCompleted.ShouldBeFalse();
        await hold.ReleaseAsync();
        (await kept.WaitAsync(Bound)).ShouldBe([2L]);
        // The holding read and the kept one: the abandoned statement was never sent.
        database.PipelinedReads.ShouldBe(2);
    }

    [Fact]
    public async Task a_statement_a_batch_cannot_bind_is_read_on_a_connection_of_its_own()
    {
        var database = OneLane();
        // A list is bound by Dapper (it rewrites the text), which a batch's positional statement cannot take.
        var rows = await database.PipelinedQueryAsync<long>("SELECT x FROM unnest(@xs) x ORDER BY x", new { xs = new[] { 3L, 1L, 2L } }, CancellationToken.None);

        rows.ShouldBe([1L, 2L, 3L]);
        database.PipelinedReads.ShouldBe(0);
    }

    [Fact]
    public async Task closing_the_database_answers_the_reads_still_waiting()
    {
        var database = db.OpenSecondInstance();
        database.UseReadPipeline(lanes: 1, maxBatch: 16);
        await using var hold = await HoldTheLaneAsync(database);
        var waiting = database.PipelinedQueryAsync<long>("SELECT @n", new { n = 1L }, CancellationToken.None);

        await database.DisposeAsync().AsTask().WaitAsync(Bound);

        // Each read ends, failed, while the lock it waits behind is still held; none is left waiting for ever.
        await Should.ThrowAsync<Exception>(hold.Holding.WaitAsync(Bound));
        await Should.ThrowAsync<ObjectDisposedException>(waiting.WaitAsync(Bound));
    }

    [Fact]
    public async Task both_read_apis_pages_answer_through_the_pipeline_as_they_answer_without_it()
    {
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync();
        for (var i = 0; i < 5; i++)
            await t.PostBasketAsync(v, Basket(v.ProgramId, loads: [new { value = 10 + i }], redemptions: i % 2 == 1 ? [new { value = 3 }] : null));
        await t.AwardAsync(v.CustomerId, "7", currency: "Stars", programId: v.ProgramId);
        var other = await t.NewCustomerAsync();
        db.Database.PipelinedReads.ShouldNotBeNull("the server's handle has the default pipeline");

        await using var plain = await TestServerHost.StartAsync(db.OpenSecondInstance(),
            new Dictionary<string, string?> { ["Ledger:Postgres:ReadPipelineLanes"] = "0" });
        plain.Database.PipelinedReads.ShouldBeNull();
        using var withoutPipeline = plain.Client(t.Key.KeyId, t.Key.Secret);

        string Ledger(long customer, string extra) => $"{LedgerApi.Path}?identifierName=id&identifierValue={customer}&source=INSTORE{extra}";
        string[] paths =
        [
            Ledger(v.CustomerId, "&limit=2&offset=0"),
            Ledger(v.CustomerId, "&limit=2&offset=2"),
            Ledger(v.CustomerId, "&limit=4&offset=1&sortOrder=asc"),
            Ledger(v.CustomerId, "&limit=2&offset=40"),
            Ledger(v.CustomerId, "&limit=5&offset=0&includeAlternateCurrencies=true&excludePointCategories=true"),
            Ledger(other, "&limit=2&offset=0"),
            Ledger(987654321, "&limit=2&offset=0"),
            v.HistoryPath + "?limit=3&offset=0",
            v.HistoryPath + "?limit=3&offset=3",
            v.HistoryPath + "?limit=3&offset=30",
            v.HistoryPath.Replace(v.Account, "NO-SUCH-CARD", StringComparison.Ordinal) + "?limit=3&offset=0",
            v.HistoryPath.Replace($"/{v.ProgramId}/", "/987654/", StringComparison.Ordinal) + "?limit=3&offset=0",
        ];
        // The program list in the cache, as a pipelined read needs it.
        await t.Http.GetAsync(paths[0]);
        var sent = db.Database.PipelinedReads!.Value;

        foreach (var path in paths)
        {
            using var piped = await t.Http.GetAsync(path);
            using var alone = await withoutPipeline.GetAsync(path);
            ((int)piped.StatusCode).ShouldBe((int)alone.StatusCode, path);
            (await piped.Content.ReadAsStringAsync()).ShouldBe(await alone.Content.ReadAsStringAsync(), path);
        }
        // The pages that exist came through the pipeline (those with no row are asked again the long way).
        (db.Database.PipelinedReads!.Value - sent).ShouldBeGreaterThanOrEqualTo(5);
    }
}
