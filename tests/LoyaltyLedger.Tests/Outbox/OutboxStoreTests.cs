using System.Text.Json;
using Dapper;
using LoyaltyLedger.Outbox;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;
using OutboxStore = LoyaltyLedger.Outbox.Outbox;

namespace LoyaltyLedger.Tests.Outbox;

/// <summary>
/// The outbox table itself: rows written in a transaction, numbered in commit order (at the commit of
/// a ledger write, or by the sequencer for rows written outside one), read by position.
/// </summary>
public abstract class OutboxStoreTests(DatabaseFixture db)
{
    private static readonly long At = new DateTimeOffset(2025, 3, 1, 12, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();

    private Task WriteAsync(long orgId, params (string Type, int N)[] rows) => WriteAsync(db.Database, orgId, rows);

    /// <summary>A write of the ledger: its rows take their positions at its commit.</summary>
    private static Task WriteAsync(LedgerDatabase database, long orgId, params (string Type, int N)[] rows) =>
        database.WriteAsync(async (c, tx) =>
        {
            var batch = new StatementBatch(c, tx, database.Dialect);
            foreach (var (type, n) in rows)
                OutboxStore.Add(batch, orgId, type, At, w => { w.WriteStartObject(); w.WriteNumber("n", n); w.WriteEndObject(); });
            await batch.RunAsync();
            return 0;
        }, CancellationToken.None);

    /// <summary>
    /// Rows written in a transaction of the caller's own, outside the ledger's writes (as a server of
    /// an earlier version wrote every row): they wait without a position for the sequencer.
    /// </summary>
    private async Task WriteUnnumberedAsync(long orgId, params (string Type, int N)[] rows)
    {
        await using var c = await db.Database.OpenAsync(CancellationToken.None);
        await using var tx = await c.BeginTransactionAsync();
        var batch = new StatementBatch(c, tx, db.Database.Dialect);
        foreach (var (type, n) in rows)
            OutboxStore.Add(batch, orgId, type, At, w => { w.WriteStartObject(); w.WriteNumber("n", n); w.WriteEndObject(); });
        await batch.RunAsync();
        await tx.CommitAsync();
    }

    private Task<long> UnnumberedAsync(long orgId) =>
        db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>(
            "SELECT COUNT(*) FROM outbox_events WHERE org_id = @org AND position IS NULL", new { org = orgId }), CancellationToken.None);

    private Task<IReadOnlyList<OutboxEvent>> ReadAsync(long orgId, long after = 0, int limit = 100, IReadOnlyCollection<string>? types = null) =>
        db.Database.ReadAsync(c => OutboxStore.ReadAsync(c, db.Database.Dialect, orgId, after, limit, types, CancellationToken.None), CancellationToken.None);

    private static int N(OutboxEvent e) => JsonDocument.Parse(e.Payload).RootElement.GetProperty("data").GetProperty("n").GetInt32();

    [Fact]
    public async Task a_row_written_outside_a_ledger_write_is_not_read_before_the_sequencer_numbers_it_and_then_its_envelope_names_its_own_id()
    {
        var t = await db.Host.NewTenantAsync();
        await WriteUnnumberedAsync(t.OrgId, (OutboxEventTypes.BalanceChanged, 1));
        (await UnnumberedAsync(t.OrgId)).ShouldBe(1);
        (await ReadAsync(t.OrgId)).ShouldBeEmpty();

        await OutboxSequencer.RunAllAsync(db.Database, CancellationToken.None);

        var read = (await ReadAsync(t.OrgId)).ShouldHaveSingleItem();
        read.Type.ShouldBe(OutboxEventTypes.BalanceChanged);
        read.CreatedAt.ShouldBe(At);
        var envelope = JsonDocument.Parse(read.Payload).RootElement;
        envelope.EnumerateObject().Select(p => p.Name).ShouldBe(["id", "type", "createdAt", "orgId", "data"]);
        envelope.GetProperty("id").GetString().ShouldBe($"evt_{read.EventId}");
        envelope.GetProperty("type").GetString().ShouldBe(OutboxEventTypes.BalanceChanged);
        envelope.GetProperty("createdAt").GetString().ShouldBe("2025-03-01T12:00:00.000Z");
        envelope.GetProperty("orgId").GetInt64().ShouldBe(t.OrgId);
        envelope.GetProperty("data").GetProperty("n").GetInt32().ShouldBe(1);
    }

    [Fact]
    public async Task rows_are_read_in_commit_order_by_position_page_after_page_and_only_the_organizations_own()
    {
        var t = await db.Host.NewTenantAsync();
        var other = await db.Host.NewTenantAsync();
        // Both ways of numbering in turn: at the commit of a ledger write, and by the sequencer.
        await WriteAsync(t.OrgId, (OutboxEventTypes.LedgerEventPosted, 1), (OutboxEventTypes.BalanceChanged, 2));
        await WriteUnnumberedAsync(other.OrgId, (OutboxEventTypes.LedgerEventPosted, 100));
        await OutboxSequencer.RunAllAsync(db.Database, CancellationToken.None);
        await WriteAsync(t.OrgId, (OutboxEventTypes.CustomerRegistered, 3), (OutboxEventTypes.LedgerEventPosted, 4), (OutboxEventTypes.BalanceChanged, 5));
        await OutboxSequencer.RunAllAsync(db.Database, CancellationToken.None);

        var seen = new List<OutboxEvent>();
        long after = 0;
        for (var page = 0; page < 10; page++)
        {
            var read = await ReadAsync(t.OrgId, after, limit: 2);
            if (read.Count == 0) break;
            seen.AddRange(read);
            after = read[^1].Position;
        }
        seen.Select(N).ShouldBe([1, 2, 3, 4, 5]);
        seen.Select(e => e.Position).ShouldBeInOrder(SortDirection.Ascending);
        seen.ShouldAllBe(e => e.OrgId == t.OrgId);

        (await ReadAsync(t.OrgId, types: [OutboxEventTypes.BalanceChanged, OutboxEventTypes.CustomerRegistered])).Select(N).ShouldBe([2, 3, 5]);
        var all = await db.Database.ReadAsync(c => OutboxStore.ReadAllOrgsAsync(c, db.Database.Dialect, seen[0].Position - 1, 1000, CancellationToken.None), CancellationToken.None);
        all.Where(e => e.OrgId == t.OrgId || e.OrgId == other.OrgId).Select(N).ShouldBe([1, 2, 100, 3, 4, 5]);
    }


    [Fact]
    public async Task a_ledger_writes_rows_take_consecutive_positions_at_its_commit_and_are_read_without_the_sequencer()
    {
        var t = await db.Host.NewTenantAsync();
        var before = await db.Database.ReadAsync(c => c.ExecuteScalarAsync<long?>("SELECT MAX(position) FROM outbox_events"), CancellationToken.None) ?? 0;
        await WriteAsync(t.OrgId, (OutboxEventTypes.LedgerEventPosted, 1), (OutboxEventTypes.BalanceChanged, 2), (OutboxEventTypes.BalanceChanged, 3));

        (await UnnumberedAsync(t.OrgId)).ShouldBe(0);
        var read = await ReadAsync(t.OrgId);
        read.Select(N).ShouldBe([1, 2, 3]);
        read.Select(e => e.Position - read[0].Position).ShouldBe([0, 1, 2]);
        JsonDocument.Parse(read[2].Payload).RootElement.GetProperty("id").GetString().ShouldBe($"evt_{read[2].EventId}");
        // Numbered on from every position given before it, whichever way it was given.
        read[0].Position.ShouldBeGreaterThan(before);
    }

    [Fact]
    public async Task a_reader_paging_while_two_processes_write_sees_every_row_once_in_position_order()
    {
        // A position that became visible after a higher one would be passed by a reader's cursor and
        // never read: the reader must end with every row, each once.
        var t = await db.Host.NewTenantAsync();
        await using var second = db.OpenSecondInstance();
        const int WritesEach = 40;
        var writers = new[] { db.Database, second }.Select((database, w) => Task.Run(async () =>
        {
            for (var i = 0; i < WritesEach; i++)
                await WriteAsync(database, t.OrgId, (OutboxEventTypes.LedgerEventPosted, w * 1000 + i * 2), (OutboxEventTypes.BalanceChanged, w * 1000 + i * 2 + 1));
        })).ToArray();
        var all = Task.WhenAll(writers);

        var seen = new List<OutboxEvent>();
        long cursor = 0;
        async Task PollAsync()
        {
            var page = await db.Database.ReadAsync(c => OutboxStore.ReadPageAsync(c, db.Database.Dialect, t.OrgId, cursor, 7, null, CancellationToken.None), CancellationToken.None);
            seen.AddRange(page.Events);
            cursor = page.NextPosition;
        }
        while (!all.IsCompleted) await PollAsync();
        await all.WaitAsync(TimeSpan.FromSeconds(60));
        for (var page = 0; page < 100 && seen.Count < 4 * WritesEach; page++) await PollAsync();

        seen.Select(N).Order().ShouldBe(Enumerable.Range(0, 2 * WritesEach).Concat(Enumerable.Range(1000, 2 * WritesEach)));
        seen.Select(e => e.Position).ShouldBeInOrder(SortDirection.Ascending);
        seen.Select(e => e.Position).Distinct().Count().ShouldBe(seen.Count);
        // A write's two rows are next to each other: its positions were given together.
        foreach (var posted in seen.Where(e => e.Type == OutboxEventTypes.LedgerEventPosted))
            seen.Single(e => N(e) == N(posted) + 1).Position.ShouldBe(posted.Position + 1);
    }
    [Fact]
    public async Task a_rolled_back_transaction_leaves_no_row()
    {
        var t = await db.Host.NewTenantAsync();
        await Should.ThrowAsync<InvalidOperationException>(() => db.Database.WriteAsync<int>(async (c, tx) =>
        {
            var batch = new StatementBatch(c, tx, db.Database.Dialect);
            OutboxStore.Add(batch, t.OrgId, OutboxEventTypes.LedgerEventPosted, At, w => w.WriteNullValue());
            await batch.RunAsync();
            throw new InvalidOperationException("refused after the write");
        }, CancellationToken.None));
        await OutboxSequencer.RunAllAsync(db.Database, CancellationToken.None);

        (await ReadAsync(t.OrgId)).ShouldBeEmpty();
        (await db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>(
            "SELECT COUNT(*) FROM outbox_events WHERE org_id = @org", new { org = t.OrgId }), CancellationToken.None)).ShouldBe(0);
    }

    [Fact]
    public async Task the_sequencer_numbers_every_waiting_row_once_however_many_runs_race()
    {
        var t = await db.Host.NewTenantAsync();
        for (var i = 0; i < 20; i++) await WriteUnnumberedAsync(t.OrgId, (OutboxEventTypes.BalanceChanged, i));
        await using var second = db.OpenSecondInstance();
        await Task.WhenAll(Enumerable.Range(0, 6).Select(i =>
            OutboxSequencer.RunAllAsync(i % 2 == 0 ? db.Database : second, CancellationToken.None)));

        var read = await ReadAsync(t.OrgId);
        read.Select(N).ShouldBe(Enumerable.Range(0, 20));
        read.Select(e => e.Position).Distinct().Count().ShouldBe(20);
    }
}

public sealed class OutboxStoreTestsOnSqlite(SqliteDatabase db) : OutboxStoreTests(db), IClassFixture<SqliteDatabase>;

public sealed class OutboxStoreTestsOnPostgres(PostgresDatabase db) : OutboxStoreTests(db), IClassFixture<PostgresDatabase>;
