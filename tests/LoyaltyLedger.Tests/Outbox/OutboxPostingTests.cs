using System.Text.Json;
using Dapper;
using LoyaltyLedger.Tests.Infrastructure;
using LoyaltyLedger.Tests.Readme;

namespace LoyaltyLedger.Tests.Outbox;

/// <summary>
/// Every kind of posting writes its outbox events in its own transaction: what committed is
/// announced, exactly once, with the lines and balances the ledger holds; what was refused or
/// rolled back is not.
/// </summary>
public abstract class OutboxPostingTests(DatabaseFixture db)
{
    private static readonly DateTimeOffset Jan1 = new(2025, 1, 1, 10, 0, 0, TimeSpan.Zero);

    private TestClock Clock => db.Host.Clock;

    private Task<long> OutboxRowsAsync(Tenant t) => db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>(
        "SELECT COUNT(*) FROM outbox_events WHERE org_id = @org", new { org = t.OrgId }), CancellationToken.None);

    private static void ShouldMatch(JsonElement actual, string pattern) =>
        JsonPattern.Parse(pattern).Mismatch(actual, "data", new HashSet<string>()).ShouldBeNull();

    private async Task<List<JsonElement>> AuditedFeedAsync(Tenant t)
    {
        var feed = await t.FeedAsync(limit: 7);
        (await FeedReader.ViolationsAsync(db, t, feed)).ShouldBeEmpty();
        return feed;
    }

    [Fact]
    public async Task every_kind_of_posting_announces_each_event_once_with_its_lines_and_each_wallet_move_as_a_chain_of_balances()
    {
        Clock.Set(Jan1);
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(earnRate: "1", currencies: ["Stars"], expiry: new { kind = "DATE_EARNED", days = 30 });
        var promised = (await t.PostOkAsync("/v1/programs", new { name = "Promised", earnRate = "1", promisedDays = 7 })).GetProperty("programId").GetInt64();
        var ada = await t.NewCustomerAsync(accountNumber: "6001000000000001");
        var bob = await t.NewCustomerAsync();
        var cy = await t.NewCustomerAsync();
        var group = (await t.PostOkAsync("/v1/groups", new { name = "Family", primaryCustomerId = cy })).GetProperty("groupId").GetInt64();

        await t.BillAsync(shop, ada, "B-1", 100m);
        var redemption = await t.PostOkAsync("/v1/redemptions", new { customerId = ada, points = "30", programId = shop.ProgramId, externalReference = "order-1" });
        await t.PostOkAsync("/v1/allocations", new { programId = shop.ProgramId, reason = "Goodwill", allocations = new[] { new { customerId = ada, points = "5" }, new { customerId = bob, points = "5" } } });
        await t.AwardAsync(bob, "20", currency: "Stars", programId: shop.ProgramId);
        await t.PostOkAsync("/v1/transfers", new { from = new { customerId = ada }, to = new { customerId = bob }, points = "10", programId = shop.ProgramId });
        await t.PostOkAsync("/v1/transfers", new { from = new { customerId = bob }, to = new { groupId = group }, points = "5", programId = shop.ProgramId });
        await t.PostOkAsync("/v1/returns", new { storeCode = shop.StoreCode, billNumber = "B-1", amount = 50 });
        await t.PostOkAsync("/v1/redemptions/reversals", new { redemptionEventId = redemption.GetProperty("eventId").GetInt64(), points = "10" });
        await t.PostOkAsync("/v1/transactions", new { customerId = bob, billNumber = "T-1", amount = 10, storeCode = shop.StoreCode, programId = shop.ProgramId, holdForTrigger = true });
        await t.PostOkAsync("/v1/transactions", new { customerId = bob, billNumber = "T-2", amount = 10, storeCode = shop.StoreCode, programId = shop.ProgramId, holdForTrigger = true });
        await t.PostOkAsync("/v1/lifecycle/triggers/release", new { storeCode = shop.StoreCode, billNumber = "T-1" });
        await t.PostOkAsync("/v1/lifecycle/triggers/cancel", new { storeCode = shop.StoreCode, billNumber = "T-2" });
        await t.PostOkAsync("/v1/transactions", new { customerId = ada, billNumber = "P-1", amount = 40, storeCode = shop.StoreCode, programId = promised });
        await t.PostOkAsync("/api/v1.0/LoyaltyVault/Account/6001000000000001/Transaction", new
        {
            context = new { receiptNr = "R-1", shopId = shop.StoreCode, posId = shop.TillCode },
            loyaltyPrograms = new[] { new { loyaltyPointDefinitionId = shop.ProgramId, loads = new[] { new { value = 10 } }, redemptions = new[] { new { value = 5 } } } },
        });
        Clock.Set(Jan1.AddDays(8));
        await t.PostOkAsync("/v1/lifecycle/expire", new { });
        Clock.Set(Jan1.AddDays(40));
        var run = await t.PostOkAsync("/v1/lifecycle/expire", new { });
        run.GetProperty("expiries").GetInt32().ShouldBeGreaterThan(0);

        var feed = await AuditedFeedAsync(t);
        var types = feed.GroupBy(e => e.Type()).ToDictionary(g => g.Key, g => g.Count());
        types["customer.registered"].ShouldBe(3);
        types["return.posted"].ShouldBe(1);
        types["redemption.reversed"].ShouldBe(1);
        types["held_points.released"].ShouldBe(2, "the trigger release and the promised conversion");
        types["points.expired"].ShouldBeGreaterThanOrEqualTo(1);
        var names = feed.OfType("ledger.event.posted").Select(e => e.Data().GetProperty("eventName").GetString()).ToHashSet();
        names.ShouldBe(["CustomerRegistration", "TransactionAdd", "PointsRedemption", "BulkAllocatePoints", "GenericEvent", "PointsTransfer",
            "ReturnBill", "RedemptionReversal", "DelayedAccrual", "TriggeredPointsCancellation", "PointsExpiry"], ignoreOrder: true);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task tier_changes_are_announced_once_each_beside_the_upgrade_bonus_and_its_balance_move()
    {
        Clock.Set(Jan1);
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(earnRate: "1");
        await t.PutOkAsync($"/v1/programs/{shop.ProgramId}/tiers", new
        {
            metric = new { kind = "POINTS", window = "PERIOD" },
            period = new { kind = "ROLLING", months = 12 },
            tiers = new object[] { new { name = "Silver", threshold = "0" }, new { name = "Gold", threshold = "100", upgradeBonus = "10" } },
        });
        var ada = await t.NewCustomerAsync();
        await t.BillAsync(shop, ada, "B-1", 150m);
        await t.PostOkAsync($"/v1/customers/{ada}/tier/override", new { programId = shop.ProgramId, tier = "Silver", reason = "test" });
        Clock.Set(Jan1.AddYears(1).AddDays(1));
        await t.PostOkAsync("/v1/lifecycle/tiers/evaluate", new { });

        var feed = await AuditedFeedAsync(t);
        feed.OfType("tier.changed").Select(e => e.Data().GetProperty("cause").GetString()).ShouldBe(["UPGRADE", "OVERRIDE"]);
        feed.OfType("ledger.event.posted").Select(e => e.Data().GetProperty("eventName").GetString()).ShouldContain("TierUpgradeBonus");
    }

    [Fact]
    public async Task a_bill_is_announced_with_its_bill_store_till_currencies_and_the_balances_before_and_after()
    {
        Clock.Set(Jan1);
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(earnRate: "0.1", currencies: ["Stars"]);
        var ada = await t.NewCustomerAsync();
        await t.AwardAsync(ada, "7");
        var before = await t.FeedAsync();

        var bill = await t.PostOkAsync("/v1/transactions", new { customerId = ada, billNumber = "B-77", amount = 200m, storeCode = shop.StoreCode, tillCode = shop.TillCode, programId = shop.ProgramId, notes = "thanks",
            awards = new[] { new { points = "200", currency = "Stars" } } });

        var feed = (await AuditedFeedAsync(t)).Skip(before.Count).ToList();
        feed.Select(FeedReader.Type).ShouldBe(["ledger.event.posted", "balance.changed", "balance.changed"]);
        feed.ShouldAllBe(e => e.GetProperty("createdAt").GetString() == "2025-01-01T10:00:00.000Z" && e.GetProperty("orgId").GetInt64() == t.OrgId);
        ShouldMatch(feed[0].Data(), $$"""
            {"eventId":{{bill.GetProperty("eventId").GetInt64()}},"eventName":"TransactionAdd","ownerType":"CUSTOMER","ownerId":{{ada}},"customerId":{{ada}},
             "programId":{{shop.ProgramId}},"billNumber":"B-77","storeCode":"store-1","tillCode":"till-1","reason":"thanks",
             "lines":[{"programId":{{shop.ProgramId}},"category":"REGULAR","entryType":"CREDIT","points":"20.000","balanceAfter":"27.000"},
                      {"programId":{{shop.ProgramId}},"currency":"Stars","category":"REGULAR","entryType":"CREDIT","points":"200.000","balanceAfter":"200.000"}]}
            """);
        ShouldMatch(feed[1].Data(), $$"""
            {"ownerType":"CUSTOMER","ownerId":{{ada}},"programId":{{shop.ProgramId}},"category":"REGULAR","oldBalance":"7.000","newBalance":"27.000",
             "eventIds":[{{bill.GetProperty("eventId").GetInt64()}}]}
            """);
        feed[2].Data().GetProperty("currency").GetString().ShouldBe("Stars");
        feed[2].Data().GetProperty("oldBalance").GetString().ShouldBe("0.000");
    }

    [Fact]
    public async Task a_transfer_announces_both_sides_each_naming_the_other_and_a_redemption_its_external_reference()
    {
        Clock.Set(Jan1);
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var ada = await t.NewCustomerAsync();
        var bob = await t.NewCustomerAsync();
        await t.AwardAsync(ada, "100");

        var transfer = await t.PostOkAsync("/v1/transfers", new { from = new { customerId = ada }, to = new { customerId = bob }, points = "25", programId = shop.ProgramId, reason = "gift" });
        await t.PostOkAsync("/v1/redemptions", new { customerId = ada, points = "5", programId = shop.ProgramId, externalReference = "order-9" });

        var posted = (await AuditedFeedAsync(t)).OfType("ledger.event.posted").Select(e => e.Data()).ToList();
        var debit = posted.Single(d => d.GetProperty("eventId").GetInt64() == transfer.GetProperty("debitEventId").GetInt64());
        var credit = posted.Single(d => d.GetProperty("eventId").GetInt64() == transfer.GetProperty("creditEventId").GetInt64());
        debit.GetProperty("relatedEventId").GetInt64().ShouldBe(credit.GetProperty("eventId").GetInt64());
        credit.GetProperty("relatedEventId").GetInt64().ShouldBe(debit.GetProperty("eventId").GetInt64());
        debit.GetProperty("reason").GetString().ShouldBe("gift");
        debit.GetProperty("details").GetProperty("direction").GetString().ShouldBe("OUT");
        posted.Single(d => d.GetProperty("eventName").GetString() == "PointsRedemption").GetProperty("externalReference").GetString().ShouldBe("order-9");
    }

    [Fact]
    public async Task a_return_that_could_not_take_everything_back_is_announced_with_the_reason_it_ended_with()
    {
        Clock.Set(Jan1);
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(earnRate: "1");
        var ada = await t.NewCustomerAsync();
        await t.BillAsync(shop, ada, "B-1", 100m);
        await t.PostOkAsync("/v1/redemptions", new { customerId = ada, points = "80", programId = shop.ProgramId });

        var returned = await t.PostOkAsync("/v1/returns", new { storeCode = shop.StoreCode, billNumber = "B-1", amount = 50, notes = "damaged" });

        var announced = (await AuditedFeedAsync(t)).OfType("return.posted").ShouldHaveSingleItem().Data();
        announced.GetProperty("eventId").GetInt64().ShouldBe(returned.GetProperty("eventId").GetInt64());
        announced.GetProperty("billNumber").GetString().ShouldBe("B-1");
        announced.GetProperty("reason").GetString().ShouldBe("damaged Already spent, not taken back: points: 30.000");
    }

    [Fact]
    public async Task a_refused_posting_announces_nothing_not_even_the_expiry_it_wrote_before_it_was_refused()
    {
        Clock.Set(Jan1);
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(expiry: new { kind = "DATE_EARNED", days = 5 });
        var ada = await t.NewCustomerAsync();
        await t.AwardAsync(ada, "10");
        await t.FeedAsync();
        var rows = await OutboxRowsAsync(t);
        Clock.Set(Jan1.AddDays(10));

        // The redemption first expires the 10 due points (a PointsExpiry in its transaction), then is refused.
        using var refused = await t.PostAsync("/v1/redemptions", new { customerId = ada, points = "5", programId = shop.ProgramId });
        await Tenant.ShouldFailAsync(refused, 422, "insufficient_balance");
        using var unknown = await t.PostAsync("/v1/transactions", new { customerId = ada, billNumber = "X", amount = 10, storeCode = "nowhere" });
        await Tenant.ShouldFailAsync(unknown, 404, "store_not_found");

        (await OutboxRowsAsync(t)).ShouldBe(rows);
        await AuditedFeedAsync(t);
    }

    [Fact]
    public async Task a_replayed_request_announces_nothing_more()
    {
        Clock.Set(Jan1);
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var ada = await t.NewCustomerAsync();
        await t.PostOkAsync("/v1/events", new { customerId = ada, eventName = "E", awards = new[] { new { points = "1" } } }, idempotencyKey: "k-1");
        var rows = await OutboxRowsAsync(t);

        await t.PostOkAsync("/v1/events", new { customerId = ada, eventName = "E", awards = new[] { new { points = "1" } } }, idempotencyKey: "k-1");

        (await OutboxRowsAsync(t)).ShouldBe(rows);
        (await AuditedFeedAsync(t)).OfType("ledger.event.posted").Count(e => e.Data().GetProperty("eventName").GetString() == "GenericEvent").ShouldBe(1);
        shop.ProgramId.ShouldBePositive();
    }

    [Fact]
    public async Task a_registration_is_announced_with_its_opening_lines_and_no_balance_change()
    {
        Clock.Set(Jan1);
        var t = await db.Host.NewTenantAsync();
        await t.NewShopAsync(currencies: ["Stars", "Stamps"]);
        var ada = await t.NewCustomerAsync();

        var feed = await AuditedFeedAsync(t);
        feed.Select(FeedReader.Type).ShouldBe(["ledger.event.posted", "customer.registered"]);
        var data = feed[1].Data();
        data.GetProperty("ownerId").GetInt64().ShouldBe(ada);
        data.GetProperty("lines").EnumerateArray().Select(l => l.TryGetProperty("currency", out var c) ? c.GetString() : "points")
            .ShouldBe(["points", "Stars", "Stamps"]);
        data.GetProperty("lines").EnumerateArray().ShouldAllBe(l => l.GetProperty("entryType").GetString() == "OPENING_BALANCE" && l.GetProperty("points").GetString() == "0.000");
    }
}

public sealed class OutboxPostingTestsOnSqlite(SqliteDatabase db) : OutboxPostingTests(db), IClassFixture<SqliteDatabase>;

public sealed class OutboxPostingTestsOnPostgres(PostgresDatabase db) : OutboxPostingTests(db), IClassFixture<PostgresDatabase>;
