using System.Text.Json;
using LoyaltyLedger.Outbox;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;
using OutboxStore = LoyaltyLedger.Outbox.Outbox;

namespace LoyaltyLedger.Tests.Outbox;

/// <summary>
/// Transactions that commit out of the order their ids were taken in: the case a reader paging by
/// id gets wrong. Only PostgreSQL has it (SQLite serializes writers, so ids are taken in commit
/// order there).
/// </summary>
public sealed class CommitOrderTestsOnPostgres(PostgresDatabase db) : IClassFixture<PostgresDatabase>
{
    private static readonly long At = new DateTimeOffset(2025, 3, 1, 12, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();

    private async Task AddAsync(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction tx, long orgId, string name)
    {
        var batch = new StatementBatch(c, tx, db.Database.Dialect);
        OutboxStore.Add(batch, orgId, OutboxEventTypes.LedgerEventPosted, At, w => { w.WriteStartObject(); w.WriteString("name", name); w.WriteEndObject(); });
        await batch.RunAsync();
    }

    private static string Name(OutboxEvent e) => JsonDocument.Parse(e.Payload).RootElement.GetProperty("data").GetProperty("name").GetString()!;

    [Fact]
    public async Task a_consumer_that_stores_its_cursor_sees_both_events_once_when_the_later_numbered_transaction_commits_first()
    {
        var t = await db.Host.NewTenantAsync();
        var seen = new List<OutboxEvent>();
        long cursor = 0;
        async Task PollAsync()
        {
            await OutboxSequencer.RunAllAsync(db.Database, CancellationToken.None);
            var page = await db.Database.ReadAsync(c => OutboxStore.ReadPageAsync(c, db.Database.Dialect, t.OrgId, cursor, 100, null, CancellationToken.None), CancellationToken.None);
            seen.AddRange(page.Events);
            cursor = page.NextPosition;
        }

        await using var connectionA = await db.Database.OpenAsync(CancellationToken.None);
        await using var connectionB = await db.Database.OpenAsync(CancellationToken.None);
        await using var a = await connectionA.BeginTransactionAsync();
        await using var b = await connectionB.BeginTransactionAsync();
        await AddAsync(connectionA, a, t.OrgId, "A");
        await AddAsync(connectionB, b, t.OrgId, "B");
        await b.CommitAsync();

        await PollAsync();
        // B may be read before A commits, but then A must still come after it.
        seen.Select(Name).ShouldBe(["B"]);

        await a.CommitAsync();
        await PollAsync();
        await PollAsync();

        seen.Select(Name).ShouldBe(["B", "A"]);
        seen[1].EventId.ShouldBeLessThan(seen[0].EventId, "A took the lower id");
        seen[1].Position.ShouldBeGreaterThan(seen[0].Position, "A committed last, so it comes last");
    }

    [Fact]
    public async Task a_reader_paging_by_event_id_would_have_lost_the_event_that_committed_last()
    {
        // The failure the positions exist for, shown on the table: after B commits, a reader that
        // pages by id takes B's id as its cursor and never comes back for A's lower one.
        var t = await db.Host.NewTenantAsync();
        await using var connectionA = await db.Database.OpenAsync(CancellationToken.None);
        await using var connectionB = await db.Database.OpenAsync(CancellationToken.None);
        await using var a = await connectionA.BeginTransactionAsync();
        await using var b = await connectionB.BeginTransactionAsync();
        await AddAsync(connectionA, a, t.OrgId, "A");
        await AddAsync(connectionB, b, t.OrgId, "B");
        await b.CommitAsync();
        var byIdCursor = await db.Database.ReadAsync(c => Dapper.SqlMapper.ExecuteScalarAsync<long>(c,
            "SELECT MAX(event_id) FROM outbox_events WHERE org_id = @org", new { org = t.OrgId }), CancellationToken.None);
        await a.CommitAsync();

        var afterIdCursor = await db.Database.ReadAsync(c => Dapper.SqlMapper.ExecuteScalarAsync<long>(c,
            "SELECT COUNT(*) FROM outbox_events WHERE org_id = @org AND event_id > @byIdCursor", new { org = t.OrgId, byIdCursor }), CancellationToken.None);
        afterIdCursor.ShouldBe(0, "by id, A is behind the cursor already");

        await OutboxSequencer.RunAllAsync(db.Database, CancellationToken.None);
        var first = await db.Database.ReadAsync(c => OutboxStore.ReadAsync(c, db.Database.Dialect, t.OrgId, 0, 1, null, CancellationToken.None), CancellationToken.None);
        var rest = await db.Database.ReadAsync(c => OutboxStore.ReadAsync(c, db.Database.Dialect, t.OrgId, first[0].Position, 100, null, CancellationToken.None), CancellationToken.None);
        first.Concat(rest).Select(Name).Order().ShouldBe(["A", "B"]);
    }
}
