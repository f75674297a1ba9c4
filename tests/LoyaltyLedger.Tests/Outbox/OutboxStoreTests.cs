using System.Text.Json;
using Dapper;
using LoyaltyLedger.Outbox;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;
using OutboxStore = LoyaltyLedger.Outbox.Outbox;

namespace LoyaltyLedger.Tests.Outbox;

/// <summary>The outbox table itself: rows written in a transaction, numbered in commit order by the sequencer, read by position.</summary>
public abstract class OutboxStoreTests(DatabaseFixture db)
{
    private static readonly long At = new DateTimeOffset(2025, 3, 1, 12, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();

    private Task WriteAsync(long orgId, params (string Type, int N)[] rows) =>
        db.Database.WriteAsync(async (c, tx) =>
        {
            var batch = new StatementBatch(c, tx, db.Database.Dialect);
            foreach (var (type, n) in rows)
                OutboxStore.Add(batch, orgId, type, At, w => { w.WriteStartObject(); w.WriteNumber("n", n); w.WriteEndObject(); });
            await batch.RunAsync();
            return 0;
        }, CancellationToken.None);

    private Task<IReadOnlyList<OutboxEvent>> ReadAsync(long orgId, long after = 0, int limit = 100, IReadOnlyCollection<string>? types = null) =>
        db.Database.ReadAsync(c => OutboxStore.ReadAsync(c, orgId, after, limit, types, CancellationToken.None), CancellationToken.None);

    private static int N(OutboxEvent e) => JsonDocument.Parse(e.Payload).RootElement.GetProperty("data").GetProperty("n").GetInt32();

    [Fact]
    public async Task a_row_is_not_read_before_the_sequencer_numbers_it_and_then_its_envelope_names_its_own_id()
    {
        var t = await db.Host.NewTenantAsync();
        await WriteAsync(t.OrgId, (OutboxEventTypes.BalanceChanged, 1));
        (await db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>(
            "SELECT COUNT(*) FROM outbox_events WHERE org_id = @org AND position IS NULL", new { org = t.OrgId }), CancellationToken.None)).ShouldBe(1);

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
    public async Task a_run_that_skips_its_probe_numbers_what_waits_and_with_nothing_waiting_numbers_nothing()
    {
        var t = await db.Host.NewTenantAsync();
        await WriteAsync(t.OrgId, (OutboxEventTypes.BalanceChanged, 1), (OutboxEventTypes.BalanceChanged, 2));

        await OutboxSequencer.RunAllAsync(db.Database, CancellationToken.None, rowsWaiting: true);

        (await db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>(
            "SELECT COUNT(*) FROM outbox_events WHERE org_id = @org AND position IS NULL", new { org = t.OrgId }), CancellationToken.None)).ShouldBe(0);
        (await ReadAsync(t.OrgId)).Select(N).ShouldBe([1, 2]);
        // Every row numbered (this run or the server's own): a run told rows wait finds none and writes nothing.
        await OutboxSequencer.RunAllAsync(db.Database, CancellationToken.None);
        (await OutboxSequencer.RunAllAsync(db.Database, CancellationToken.None, rowsWaiting: true)).ShouldBe(0);
    }

    [Fact]
    public async Task rows_are_read_in_commit_order_by_position_page_after_page_and_only_the_organizations_own()
    {
        var t = await db.Host.NewTenantAsync();
        var other = await db.Host.NewTenantAsync();
        await WriteAsync(t.OrgId, (OutboxEventTypes.LedgerEventPosted, 1), (OutboxEventTypes.BalanceChanged, 2));
        await WriteAsync(other.OrgId, (OutboxEventTypes.LedgerEventPosted, 100));
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
        var all = await db.Database.ReadAsync(c => OutboxStore.ReadAllOrgsAsync(c, seen[0].Position - 1, 1000, CancellationToken.None), CancellationToken.None);
        all.Where(e => e.OrgId == t.OrgId || e.OrgId == other.OrgId).Select(N).ShouldBe([1, 2, 100, 3, 4, 5]);
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
        for (var i = 0; i < 20; i++) await WriteAsync(t.OrgId, (OutboxEventTypes.BalanceChanged, i));
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
