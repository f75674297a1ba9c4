using Dapper;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.PointsLedger;

/// <summary>
/// Migration 12 corrects events written before the held-point events carried their bill's store and
/// till and before a pool's events named the customer who acted: an upgraded database reads as one
/// written since.
/// </summary>
public abstract class EventBackfillTests(DatabaseFixture db)
{
    [Fact]
    public async Task the_migration_gives_old_held_point_events_their_bills_till_and_old_pool_events_their_actor()
    {
        var t = await db.Host.NewTenantAsync();
        db.Host.Clock.Set(new DateTimeOffset(2024, 6, 1, 9, 0, 0, TimeSpan.Zero));
        var programId = (await t.PostOkAsync("/v1/programs", new
        {
            name = "Held program", earnRate = "1", promisedDays = 14, expiry = new { kind = "DATE_EARNED", days = 30 },
        })).GetProperty("programId").GetInt64();
        await t.PostOkAsync("/v1/stores", new { code = "store-1" });
        await t.PostOkAsync("/v1/tills", new { code = "till-1", storeCode = "store-1" });
        var shopper = await t.NewCustomerAsync(firstName: "Solo");
        var primary = await t.NewCustomerAsync(firstName: "Pat");
        var outsider = await t.NewCustomerAsync(firstName: "Olga");
        var groupId = (await t.PostOkAsync("/v1/groups", new { name = "Pool", primaryCustomerId = primary })).GetProperty("groupId").GetInt64();

        await t.PostOkAsync("/v1/transactions", new { customerId = shopper, billNumber = "S-1", amount = 30m, storeCode = "store-1", tillCode = "till-1", programId });
        await t.PostOkAsync("/v1/transactions", new { customerId = shopper, billNumber = "S-2", amount = 20m, storeCode = "store-1", tillCode = "till-1", programId, holdForTrigger = true });
        await t.PostOkAsync("/v1/transactions", new { customerId = primary, billNumber = "P-1", amount = 50m, storeCode = "store-1", tillCode = "till-1", programId });
        await t.AwardAsync(outsider, "10", programId: programId);
        await t.PostOkAsync("/v1/transfers", new { from = new { customerId = outsider }, to = new { groupId }, points = "6", programId });
        db.Host.Clock.Advance(TimeSpan.FromDays(15));
        await t.PostOkAsync("/v1/lifecycle/expire", new { });
        await t.PostOkAsync("/v1/lifecycle/triggers/cancel", new { storeCode = "store-1", billNumber = "S-2" });
        await t.PostOkAsync("/v1/transfers", new { from = new { groupId }, to = new { customerId = outsider }, points = "1", programId });
        db.Host.Clock.Advance(TimeSpan.FromDays(60));
        await t.PostOkAsync("/v1/lifecycle/expire", new { });

        var tillQuery = LedgerApi.Customer(shopper, "&tillId=till-1&sortOrder=ASC");
        var groupQuery = $"type=USERGROUP2&identifierName=groupId&identifierValue={groupId}&source=INSTORE&limit=100&sortOrder=ASC";
        var till = (await t.LedgerOkAsync(tillQuery)).GetRawText();
        var pool = (await t.LedgerOkAsync(groupQuery)).GetRawText();
        (await t.LedgerOkAsync(tillQuery)).EventNames().ShouldBe(["TransactionAdd", "TransactionAdd", "DelayedAccrual", "TriggeredPointsCancellation"]);
        (await t.LedgerOkAsync(groupQuery)).EventNames().ShouldBe(["TransactionAdd", "PointsTransfer", "DelayedAccrual", "PointsTransfer", "PointsExpiry"]);

        // The events as they were written before: no store or till on the held-point events, the
        // primary member named on the pool's transfers and expiry; the migration not recorded.
        await db.Database.WriteAsync(async (c, tx) =>
        {
            await c.ExecuteAsync(
                "UPDATE events SET store_id = NULL, till_id = NULL WHERE org_id = @org AND event_name IN ('DelayedAccrual', 'TriggeredPointsCancellation')",
                new { org = t.OrgId }, tx);
            await c.ExecuteAsync(
                "UPDATE events SET customer_id = @primary WHERE org_id = @org AND owner_type = 'GROUP' AND event_name IN ('PointsTransfer', 'PointsExpiry')",
                new { org = t.OrgId, primary }, tx);
            return await c.ExecuteAsync("DELETE FROM schema_migrations WHERE version = 12", transaction: tx);
        }, CancellationToken.None);
        (await t.LedgerOkAsync(groupQuery)).GetRawText().ShouldNotBe(pool);
        await t.LedgerFailsAsync(LedgerApi.Customer(shopper, "&tillId=till-1&ledgerEntryType=DEBIT"), 404, 11003);

        await Migrations.ApplyAsync(db.Database, CancellationToken.None);

        (await t.LedgerOkAsync(tillQuery)).GetRawText().ShouldBe(till);
        (await t.LedgerOkAsync(groupQuery)).GetRawText().ShouldBe(pool);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }
}

public sealed class EventBackfillTestsOnSqlite(SqliteDatabase db) : EventBackfillTests(db), IClassFixture<SqliteDatabase>;

public sealed class EventBackfillTestsOnPostgres(PostgresDatabase db) : EventBackfillTests(db), IClassFixture<PostgresDatabase>;
