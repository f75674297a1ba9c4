using System.Net;
using Dapper;
using LoyaltyLedger.Tests.Infrastructure;
using Npgsql;

namespace LoyaltyLedger.Tests.Ledger;

/// <summary>
/// An event's numbers when its owner's counter row is held by another transaction, on PostgreSQL
/// (on SQLite writers are serialized by the file's one writer, so no posting ever waits for a row).
/// The posting's upsert of the counts waits, then updates the row as that transaction left it, and
/// so counts its event, while the statement's snapshot, taken before the wait, does not see that
/// event. A posting that numbered its event by that snapshot would give two events one number.
/// </summary>
public sealed class EventNumberRaceTestsOnPostgres(PostgresDatabase db) : IClassFixture<PostgresDatabase>
{
    [Fact]
    public async Task an_event_whose_count_waited_for_a_later_stamped_event_is_numbered_before_it()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var customer = await t.NewCustomerAsync();
        var start = new DateTimeOffset(2025, 6, 1, 10, 0, 0, TimeSpan.Zero);
        db.Host.Clock.Set(start);
        await t.AwardAsync(customer, "1");

        // Another transaction writes an event of the customer stamped two hours later and counts it,
        // holding the counter row until it commits.
        await using var other = new NpgsqlConnection(db.ConnectionString);
        await other.OpenAsync();
        await using var held = await other.BeginTransactionAsync();
        await other.ExecuteAsync(
            """
            WITH c AS (
                UPDATE owner_event_counts SET events = events + 1, points_events = points_events + 1, last_event_at = @later
                WHERE org_id = @org AND owner_type = 'CUSTOMER' AND owner_id = @customer
                RETURNING points_events
            )
            INSERT INTO events (org_id, owner_type, owner_id, customer_id, event_name, created_at, line_kinds, points_seq)
            SELECT @org, 'CUSTOMER', @customer, @customer, 'LaterEvent', @later, 1, c.points_events FROM c
            """,
            new { org = t.OrgId, customer, later = start.AddHours(2).ToUnixTimeMilliseconds() }, held);

        // A bill stamped an hour later than the award: its count waits for the row held above.
        db.Host.Clock.Set(start.AddHours(1));
        var bill = t.PostAsync("/v1/transactions", new
        {
            customerId = customer, billNumber = "RACE-1", amount = 10, storeCode = shop.StoreCode, tillCode = shop.TillCode, programId = shop.ProgramId,
            awards = new[] { new { points = "2" } },
        });
        await PostgresLocks.WaitForAsync("the bill to wait for the held count", async () => await PostgresLocks.UngrantedAsync(db.ConnectionString, "transactionid") > 0);
        await held.CommitAsync();
        using var answer = await bill.WaitAsync(TimeSpan.FromSeconds(60));
        answer.StatusCode.ShouldBe(HttpStatusCode.Created);

        // In page order (time, then id) the customer's events with points are numbered 1, 2, 3...
        // each once: those before the bill, the bill, and the later event last.
        var numbered = (await db.Database.ReadAsync(c => c.QueryAsync<(string Name, long Seq)>(
            """
            SELECT event_name, points_seq FROM events
            WHERE org_id = @org AND owner_type = 'CUSTOMER' AND owner_id = @customer AND points_seq IS NOT NULL
            ORDER BY created_at, event_id
            """, new { org = t.OrgId, customer }), CancellationToken.None)).ToList();
        numbered.Count.ShouldBeGreaterThanOrEqualTo(3);
        numbered.Select(e => e.Seq).ShouldBe(Enumerable.Range(1, numbered.Count).Select(n => (long)n));
        numbered[^1].Name.ShouldBe("LaterEvent");
        numbered[^2].Name.ShouldBe("TransactionAdd");
    }
}
