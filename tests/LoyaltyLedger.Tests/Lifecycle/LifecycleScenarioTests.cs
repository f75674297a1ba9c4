using System.Text.Json;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Lifecycle;

/// <summary>
/// The lifecycle scenario table, on a fixed clock: each row drives the HTTP API through one story
/// and asserts balances, lot remainders and the exact ledger lines written.
/// </summary>
public abstract class LifecycleScenarioTests(DatabaseFixture db)
{
    private static readonly DateTimeOffset Jan1 = new(2025, 1, 1, 10, 0, 0, TimeSpan.Zero);

    private TestClock Clock => db.Host.Clock;

    private void At(int month, int day) => Clock.Set(new DateTimeOffset(2025, month, day, 10, 0, 0, TimeSpan.Zero));

    private async Task<(Tenant T, Shop Shop, long Customer)> SetUpAsync(object? expiry = null, bool allowNegative = false, int? promisedDays = null)
    {
        Clock.Set(Jan1);
        var t = await db.Host.NewTenantAsync();
        var program = await t.PostOkAsync("/v1/programs", new { name = "Lifecycle", earnRate = "1", allowNegativeBalance = allowNegative, expiry, promisedDays });
        await t.PostOkAsync("/v1/stores", new { code = "store-1", name = "Store 1" });
        await t.PostOkAsync("/v1/tills", new { code = "till-1", storeCode = "store-1" });
        var customer = await t.NewCustomerAsync();
        return (t, new Shop(program.GetProperty("programId").GetInt64(), "store-1", "till-1"), customer);
    }

    private static Task<JsonElement> RedeemAsync(Tenant t, long customer, string points, string? reference = null) =>
        t.PostOkAsync("/v1/redemptions", new { customerId = customer, points, externalReference = reference });

    private static Task<JsonElement> ExpireAsync(Tenant t) => t.PostOkAsync("/v1/lifecycle/expire", new { });

    private static Task<JsonElement> ReturnAsync(Tenant t, string billNumber, decimal amount) =>
        t.PostOkAsync("/v1/returns", new { storeCode = "store-1", billNumber, amount });

    private Task<List<string>> LinesAsync(Tenant t, long customer) => LedgerProbe.LinesAsync(db.Database, t.OrgId, customer);

    private Task<List<string>> LotsAsync(Tenant t, long customer, string category = "REGULAR") => LedgerProbe.LotsAsync(db.Database, t.OrgId, customer, category);

    [Fact]
    public async Task points_earned_on_several_dates_are_redeemed_earliest_expiry_first_across_lots()
    {
        var (t, shop, c) = await SetUpAsync(new { kind = "DATE_EARNED", days = 30 });
        await t.AwardAsync(c, "100");
        At(1, 10);
        await t.AwardAsync(c, "50");
        At(1, 15);
        await RedeemAsync(t, c, "120");

        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(30_000);
        (await LotsAsync(t, c)).ShouldBe(["0.000/100.000 until 2025-01-31", "30.000/50.000 until 2025-02-09"]);
        (await LinesAsync(t, c)).ShouldBe([
            "GenericEvent CREDIT REGULAR 100.000 = 100.000",
            "GenericEvent CREDIT REGULAR 50.000 = 150.000",
            "PointsRedemption DEBIT REGULAR 120.000 = 30.000",
        ]);
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
    }

    [Fact]
    public async Task the_expiry_run_takes_exactly_the_due_lots_and_a_second_run_expires_nothing_more()
    {
        var (t, shop, c) = await SetUpAsync(new { kind = "DATE_EARNED", days = 30 });
        await t.AwardAsync(c, "100");
        At(1, 10);
        await t.AwardAsync(c, "50");
        At(1, 15);
        await RedeemAsync(t, c, "20");

        At(2, 1);
        var first = await ExpireAsync(t);
        first.GetProperty("expiries").GetInt32().ShouldBe(1);
        var second = await ExpireAsync(t);
        second.GetProperty("expiries").GetInt32().ShouldBe(0);

        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(50_000);
        (await LotsAsync(t, c)).ShouldBe(["0.000/100.000 until 2025-01-31", "50.000/50.000 until 2025-02-09"]);
        (await LinesAsync(t, c)).ShouldBe([
            "GenericEvent CREDIT REGULAR 100.000 = 100.000",
            "GenericEvent CREDIT REGULAR 50.000 = 150.000",
            "PointsRedemption DEBIT REGULAR 20.000 = 130.000",
            "PointsExpiry DEBIT REGULAR 80.000 = 50.000",
        ]);
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
    }

    [Fact]
    public async Task a_lot_past_its_date_is_expired_before_a_redemption_and_never_spent()
    {
        var (t, shop, c) = await SetUpAsync(new { kind = "DATE_EARNED", days = 30 });
        await t.AwardAsync(c, "100");
        At(2, 5);

        using var refused = await t.PostAsync("/v1/redemptions", new { customerId = c, points = "10" });
        await Tenant.ShouldFailAsync(refused, 422, "insufficient_balance");
        // The refusal rolled back its own transaction, expiry included; the next run expires the lot.
        (await ExpireAsync(t)).GetProperty("expiries").GetInt32().ShouldBe(1);

        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(0);
        (await LinesAsync(t, c)).ShouldBe([
            "GenericEvent CREDIT REGULAR 100.000 = 100.000",
            "PointsExpiry DEBIT REGULAR 100.000 = 0.000",
        ]);
    }

    private async Task<string?> LotsDueFromAsync(Tenant t, long customer)
    {
        var at = await db.Database.ReadAsync(c => Dapper.SqlMapper.ExecuteScalarAsync<long?>(c,
            "SELECT lots_due_from FROM wallets WHERE org_id = @org AND owner_type = 'CUSTOMER' AND owner_id = @customer AND category = 'REGULAR' AND currency_id = 0",
            new { org = t.OrgId, customer }), CancellationToken.None);
        return at switch
        {
            null => null,
            LoyaltyLedger.Ledger.Wallet.NoLotDue => "none",
            { } ms => DateTimeOffset.FromUnixTimeMilliseconds(ms).ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture),
        };
    }

    [Fact]
    public async Task a_posting_keeps_when_the_next_lot_is_due_and_expires_it_once_that_time_has_come()
    {
        var (t, shop, c) = await SetUpAsync(new { kind = "DATE_EARNED", days = 30 });
        await t.AwardAsync(c, "100");
        At(1, 10);
        await t.AwardAsync(c, "50");
        At(1, 15);
        await RedeemAsync(t, c, "10");
        // The redemption looked for due lots, found none, and kept the next date with the balance.
        (await LotsDueFromAsync(t, c)).ShouldBe("2025-01-31");

        At(2, 1);
        await RedeemAsync(t, c, "10");
        (await LotsDueFromAsync(t, c)).ShouldBe("2025-02-09");
        At(2, 10);
        (await ExpireAsync(t)).GetProperty("expiries").GetInt32().ShouldBe(1);
        (await LotsDueFromAsync(t, c)).ShouldBe("none");

        (await LinesAsync(t, c)).ShouldBe([
            "GenericEvent CREDIT REGULAR 100.000 = 100.000",
            "GenericEvent CREDIT REGULAR 50.000 = 150.000",
            "PointsRedemption DEBIT REGULAR 10.000 = 140.000",
            "PointsExpiry DEBIT REGULAR 90.000 = 50.000",
            "PointsRedemption DEBIT REGULAR 10.000 = 40.000",
            "PointsExpiry DEBIT REGULAR 40.000 = 0.000",
        ]);
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task a_lot_that_comes_in_dated_before_the_time_a_wallet_keeps_is_expired_when_due()
    {
        // The receiver's wallet keeps 19 February (its only lot's date); the transfer brings in a lot
        // of 31 January, which must bring the kept time forward, or the lot would be spent after its date.
        var (t, shop, a) = await SetUpAsync(new { kind = "DATE_EARNED", days = 30 });
        var b = await t.NewCustomerAsync();
        await t.AwardAsync(a, "100");
        At(1, 20);
        await t.AwardAsync(b, "100");
        At(1, 25);
        await RedeemAsync(t, b, "10");
        (await LotsDueFromAsync(t, b)).ShouldBe("2025-02-19");
        await t.PostOkAsync("/v1/transfers", new { from = new { customerId = a }, to = new { customerId = b }, points = "50" });
        (await LotsDueFromAsync(t, b)).ShouldBe("2025-01-31");

        At(2, 1);
        await RedeemAsync(t, b, "10");

        (await t.BalanceAsync(b, shop.ProgramId)).ShouldBe(80_000);
        (await LotsAsync(t, b)).ShouldBe(["80.000/100.000 until 2025-02-19", "0.000/50.000 until 2025-01-31"]);
        (await LinesAsync(t, b)).ShouldContain("PointsExpiry DEBIT REGULAR 50.000 = 90.000");
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task points_put_back_by_a_reversal_bring_when_lots_are_due_forward_and_expire_when_due()
    {
        var (t, shop, c) = await SetUpAsync(new { kind = "DATE_EARNED", days = 30 });
        await t.AwardAsync(c, "100");
        At(1, 20);
        await t.AwardAsync(c, "100");
        At(1, 25);
        await RedeemAsync(t, c, "150", reference: "order-9");
        At(2, 1);
        await RedeemAsync(t, c, "10");
        // The 31 January lot was empty when the redemption looked: the wallet keeps the next date.
        (await LotsDueFromAsync(t, c)).ShouldBe("2025-02-19");

        // History posted on a moved clock: the reversal refills the 31 January lot before its date,
        // and the wallet keeps that date again.
        At(1, 28);
        await t.PostOkAsync("/v1/redemptions/reversals", new { externalReference = "order-9" });
        (await LotsDueFromAsync(t, c)).ShouldBe("2025-01-31");

        At(2, 2);
        await RedeemAsync(t, c, "10");
        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(80_000);
        (await LinesAsync(t, c)).ShouldContain("PointsExpiry DEBIT REGULAR 100.000 = 90.000");
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task a_return_after_the_points_were_spent_takes_what_is_there_and_reports_the_shortfall()
    {
        var (t, shop, c) = await SetUpAsync();
        await t.BillAsync(shop, c, "B-1", 100m);
        await RedeemAsync(t, c, "80");
        var returned = await ReturnAsync(t, "B-1", 50m);

        var shortfall = returned.GetProperty("shortfalls")[0];
        shortfall.GetProperty("points").GetString().ShouldBe("30.000");
        returned.GetProperty("totalReturned").GetDecimal().ShouldBe(50m);
        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(0);
        (await LotsAsync(t, c)).ShouldBe(["0.000/100.000 until never"]);
        (await LinesAsync(t, c)).ShouldBe([
            "TransactionAdd CREDIT REGULAR 100.000 = 100.000",
            "PointsRedemption DEBIT REGULAR 80.000 = 20.000",
            "ReturnBill DEBIT REGULAR 20.000 = 0.000",
        ]);
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
    }

    [Fact]
    public async Task a_return_after_redeem_goes_negative_when_the_program_allows_it_and_never_exceeds_the_bill()
    {
        var (t, shop, c) = await SetUpAsync(allowNegative: true);
        await t.BillAsync(shop, c, "B-1", 100m);
        await RedeemAsync(t, c, "80");
        await ReturnAsync(t, "B-1", 50m);
        using var tooMuch = await t.PostAsync("/v1/returns", new { storeCode = "store-1", billNumber = "B-1", amount = 60m });
        await Tenant.ShouldFailAsync(tooMuch, 422, "return_exceeds_bill");
        await ReturnAsync(t, "B-1", 50m);
        using var more = await t.PostAsync("/v1/returns", new { storeCode = "store-1", billNumber = "B-1", amount = 0.001m });
        await Tenant.ShouldFailAsync(more, 422, "return_exceeds_bill");

        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(-80_000);
        (await LotsAsync(t, c)).ShouldBe(["0.000/100.000 until never", "debt -80.000"]);
        (await LinesAsync(t, c)).ShouldBe([
            "TransactionAdd CREDIT REGULAR 100.000 = 100.000",
            "PointsRedemption DEBIT REGULAR 80.000 = 20.000",
            "ReturnBill DEBIT REGULAR 50.000 = -30.000",
            "ReturnBill DEBIT REGULAR 50.000 = -80.000",
        ]);
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
    }

    [Fact]
    public async Task promised_points_are_cancelled_by_a_return_inside_the_window_then_convert_and_a_later_return_takes_from_main()
    {
        var (t, shop, c) = await SetUpAsync(new { kind = "DATE_EARNED", days = 30 }, promisedDays: 14);
        await t.BillAsync(shop, c, "B-1", 100m);
        var held = await t.GetOkAsync($"/v1/lifecycle/held-schedule?customerId={c}");
        held[0].GetProperty("convertsAt").GetDateTimeOffset().ShouldBe(Jan1.AddDays(14));
        held[0].GetProperty("category").GetString().ShouldBe("PROMISED");

        At(1, 5);
        await ReturnAsync(t, "B-1", 30m);
        At(1, 14);
        (await ExpireAsync(t)).GetProperty("conversions").GetInt32().ShouldBe(0);
        At(1, 16);
        (await ExpireAsync(t)).GetProperty("conversions").GetInt32().ShouldBe(1);
        (await ExpireAsync(t)).GetProperty("conversions").GetInt32().ShouldBe(0);
        await ReturnAsync(t, "B-1", 50m);

        (await t.BalanceAsync(c, shop.ProgramId, category: "PROMISED")).ShouldBe(0);
        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(20_000);
        (await LotsAsync(t, c, "PROMISED")).ShouldBe(["0.000/100.000 until 2025-01-15"]);
        (await LotsAsync(t, c)).ShouldBe(["20.000/70.000 until 2025-02-15"]);
        (await LinesAsync(t, c)).ShouldBe([
            "TransactionAdd CREDIT PROMISED 100.000 = 100.000",
            "ReturnBill DEBIT PROMISED 30.000 = 70.000",
            "DelayedAccrual DEBIT PROMISED 70.000 = 0.000",
            "DelayedAccrual CREDIT REGULAR 70.000 = 70.000",
            "ReturnBill DEBIT REGULAR 50.000 = 20.000",
        ]);
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
    }

    [Fact]
    public async Task reversing_a_redemption_after_expiry_returns_expired_points_expired_and_a_second_reversal_is_refused()
    {
        var (t, shop, c) = await SetUpAsync(new { kind = "DATE_EARNED", days = 30 });
        await t.AwardAsync(c, "100");
        At(1, 20);
        await t.AwardAsync(c, "100");
        At(1, 25);
        var redemption = await RedeemAsync(t, c, "150", reference: "order-7");
        At(2, 5);
        var reversal = await t.PostOkAsync("/v1/redemptions/reversals", new { externalReference = "order-7" });

        reversal.GetProperty("redemptionEventId").GetInt64().ShouldBe(redemption.GetProperty("eventId").GetInt64());
        reversal.GetProperty("cameBackAvailable").GetString().ShouldBe("50.000");
        reversal.GetProperty("cameBackExpired").GetString().ShouldBe("100.000");
        using var again = await t.PostAsync("/v1/redemptions/reversals", new { redemptionEventId = redemption.GetProperty("eventId").GetInt64() });
        await Tenant.ShouldFailAsync(again, 409, "redemption_already_reversed");

        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(100_000);
        (await LotsAsync(t, c)).ShouldBe(["0.000/100.000 until 2025-01-31", "100.000/100.000 until 2025-02-19"]);
        (await LinesAsync(t, c)).ShouldBe([
            "GenericEvent CREDIT REGULAR 100.000 = 100.000",
            "GenericEvent CREDIT REGULAR 100.000 = 200.000",
            "PointsRedemption DEBIT REGULAR 150.000 = 50.000",
            "RedemptionReversal CREDIT REGULAR 150.000 = 200.000",
            "PointsExpiry DEBIT REGULAR 100.000 = 100.000",
        ]);
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
    }

    [Fact]
    public async Task a_partial_reversal_puts_points_back_latest_expiry_first_and_more_than_was_redeemed_is_refused()
    {
        var (t, _, c) = await SetUpAsync(new { kind = "DATE_EARNED", days = 30 });
        await t.AwardAsync(c, "100");
        At(1, 20);
        await t.AwardAsync(c, "100");
        var redemption = await RedeemAsync(t, c, "150");
        var id = redemption.GetProperty("eventId").GetInt64();

        var partial = await t.PostOkAsync("/v1/redemptions/reversals", new { redemptionEventId = id, points = "30" });
        partial.GetProperty("cameBackAvailable").GetString().ShouldBe("30.000");
        using var tooMuch = await t.PostAsync("/v1/redemptions/reversals", new { redemptionEventId = id, points = "121" });
        await Tenant.ShouldFailAsync(tooMuch, 422, "reversal_exceeds_redemption");
        var rest = await t.PostOkAsync("/v1/redemptions/reversals", new { redemptionEventId = id });
        rest.GetProperty("reversed").GetString().ShouldBe("120.000");

        (await LotsAsync(t, c)).ShouldBe(["100.000/100.000 until 2025-01-31", "100.000/100.000 until 2025-02-19"]);
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
    }

    [Fact]
    public async Task a_qualifying_activity_moves_every_open_lot_of_a_rolling_wallet()
    {
        var (t, shop, c) = await SetUpAsync(new { kind = "ROLLING", days = 30 });
        await t.AwardAsync(c, "100");
        At(1, 20);
        await t.AwardAsync(c, "10");
        At(1, 25);
        await RedeemAsync(t, c, "5");
        (await LotsAsync(t, c)).ShouldBe(["95.000/100.000 until 2025-02-19", "10.000/10.000 until 2025-02-19"]);

        At(2, 10);
        (await ExpireAsync(t)).GetProperty("expiries").GetInt32().ShouldBe(0);
        At(2, 20);
        (await ExpireAsync(t)).GetProperty("expiries").GetInt32().ShouldBe(1);

        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(0);
        (await LinesAsync(t, c)).ShouldBe([
            "GenericEvent CREDIT REGULAR 100.000 = 100.000",
            "GenericEvent CREDIT REGULAR 10.000 = 110.000",
            "PointsRedemption DEBIT REGULAR 5.000 = 105.000",
            "PointsExpiry DEBIT REGULAR 105.000 = 0.000",
        ]);
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
    }

    [Fact]
    public async Task a_whole_balance_wallet_expires_entirely_a_period_after_its_last_activity()
    {
        var (t, shop, c) = await SetUpAsync(new { kind = "WHOLE_BALANCE", days = 30 });
        await t.AwardAsync(c, "100");
        At(1, 20);
        await t.AwardAsync(c, "50");
        At(2, 1);
        await RedeemAsync(t, c, "20");

        var schedule = await t.GetOkAsync($"/v1/lifecycle/expiry-schedule?customerId={c}");
        schedule.GetArrayLength().ShouldBe(1);
        schedule[0].GetProperty("points").GetString().ShouldBe("130.000");
        schedule[0].GetProperty("expiryType").GetString().ShouldBe("WHOLE_BALANCE");
        schedule[0].GetProperty("expiryDate").GetDateTimeOffset().ShouldBe(new DateTimeOffset(2025, 2, 19, 10, 0, 0, TimeSpan.Zero));

        At(2, 18);
        (await ExpireAsync(t)).GetProperty("expiries").GetInt32().ShouldBe(0);
        At(2, 20);
        (await ExpireAsync(t)).GetProperty("expiries").GetInt32().ShouldBe(1);
        (await ExpireAsync(t)).GetProperty("expiries").GetInt32().ShouldBe(0);

        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(0);
        (await LotsAsync(t, c)).ShouldBe(["0.000/100.000 until never", "0.000/50.000 until never"]);
        (await LinesAsync(t, c)).ShouldBe([
            "GenericEvent CREDIT REGULAR 100.000 = 100.000",
            "GenericEvent CREDIT REGULAR 50.000 = 150.000",
            "PointsRedemption DEBIT REGULAR 20.000 = 130.000",
            "PointsExpiry DEBIT REGULAR 130.000 = 0.000",
        ]);
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
    }

    [Fact]
    public async Task fixed_date_points_expire_after_the_yearly_date()
    {
        var (t, shop, c) = await SetUpAsync(new { kind = "FIXED_DATE", month = 3, day = 31 });
        await t.AwardAsync(c, "40");
        (await LotsAsync(t, c)).ShouldBe(["40.000/40.000 until 2025-03-31"]);
        At(3, 31);
        (await ExpireAsync(t)).GetProperty("expiries").GetInt32().ShouldBe(0);
        At(4, 1);
        (await ExpireAsync(t)).GetProperty("expiries").GetInt32().ShouldBe(1);
        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(0);
    }

    [Fact]
    public async Task the_expiry_schedule_lists_upcoming_expiries_soonest_first_and_earliest_only_keeps_one()
    {
        var (t, shop, c) = await SetUpAsync(new { kind = "DATE_EARNED", days = 30 });
        await t.AwardAsync(c, "100");
        At(1, 10);
        await t.AwardAsync(c, "50");

        var all = await t.GetOkAsync($"/v1/lifecycle/expiry-schedule?customerId={c}");
        all.GetArrayLength().ShouldBe(2);
        all[0].GetProperty("points").GetString().ShouldBe("100.000");
        all[0].GetProperty("programId").GetInt64().ShouldBe(shop.ProgramId);
        all[0].GetProperty("pointsType").GetString().ShouldBe("POINTS");
        all[0].GetProperty("expiryType").GetString().ShouldBe("DATE_EARNED");
        all[1].GetProperty("expiryDate").GetDateTimeOffset().ShouldBe(new DateTimeOffset(2025, 2, 9, 10, 0, 0, TimeSpan.Zero));
        var earliest = await t.GetOkAsync($"/v1/lifecycle/expiry-schedule?customerId={c}&earliestOnly=true");
        earliest.GetArrayLength().ShouldBe(1);
        earliest[0].GetProperty("expiryDate").GetDateTimeOffset().ShouldBe(new DateTimeOffset(2025, 1, 31, 10, 0, 0, TimeSpan.Zero));
    }

    [Fact]
    public async Task the_balance_as_of_a_past_date_comes_from_the_lines_written_by_then()
    {
        var (t, shop, c) = await SetUpAsync();
        await t.AwardAsync(c, "100");
        At(1, 10);
        await RedeemAsync(t, c, "30");
        At(1, 20);
        await t.AwardAsync(c, "5");

        var asOf = await t.GetOkAsync($"/v1/lifecycle/balances?customerId={c}&asOf=2025-01-15T00:00:00Z");
        var main = asOf.EnumerateArray().Single(b => b.GetProperty("programId").GetInt64() == shop.ProgramId && b.GetProperty("category").GetString() == "REGULAR");
        main.GetProperty("balance").GetString().ShouldBe("70.000");
        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(75_000);
    }

    [Fact]
    public async Task the_balance_as_of_now_is_the_wallets_balance_when_a_posting_applied_after_a_later_stamped_one()
    {
        // A posting takes its time before the wallet's lock: one stamped a moment earlier can apply
        // after one stamped later. The clock moved back stands in for that race.
        var (t, shop, c) = await SetUpAsync();
        At(1, 10);
        await t.AwardAsync(c, "100");
        At(1, 5);
        await t.AwardAsync(c, "7");
        At(1, 20);

        var asOf = await t.GetOkAsync($"/v1/lifecycle/balances?customerId={c}&asOf=2025-01-20T10:00:00Z");
        var main = asOf.EnumerateArray().Single(b => b.GetProperty("programId").GetInt64() == shop.ProgramId && b.GetProperty("category").GetString() == "REGULAR");
        main.GetProperty("balance").GetString().ShouldBe("107.000");
        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(107_000);
    }

    [Fact]
    public async Task trigger_based_points_wait_for_a_release_or_a_cancellation()
    {
        var (t, shop, c) = await SetUpAsync();
        await t.PostOkAsync("/v1/transactions", new { customerId = c, billNumber = "T-1", amount = 40m, storeCode = "store-1", holdForTrigger = true });
        await t.PostOkAsync("/v1/transactions", new { customerId = c, billNumber = "T-2", amount = 60m, storeCode = "store-1", holdForTrigger = true });
        (await t.BalanceAsync(c, shop.ProgramId, category: "TRIGGER_BASED")).ShouldBe(100_000);

        await t.PostOkAsync("/v1/lifecycle/triggers/release", new { storeCode = "store-1", billNumber = "T-1" });
        await t.PostOkAsync("/v1/lifecycle/triggers/cancel", new { storeCode = "store-1", billNumber = "T-2" });
        using var twice = await t.PostAsync("/v1/lifecycle/triggers/release", new { storeCode = "store-1", billNumber = "T-1" });
        await Tenant.ShouldFailAsync(twice, 409, "no_held_points");

        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(40_000);
        (await LinesAsync(t, c)).ShouldBe([
            "TransactionAdd CREDIT TRIGGER_BASED 40.000 = 40.000",
            "TransactionAdd CREDIT TRIGGER_BASED 60.000 = 100.000",
            "DelayedAccrual DEBIT TRIGGER_BASED 40.000 = 60.000",
            "DelayedAccrual CREDIT REGULAR 40.000 = 40.000",
            "TriggeredPointsCancellation DEBIT TRIGGER_BASED 60.000 = 0.000",
        ]);
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
    }

    [Fact]
    public async Task only_an_admin_key_may_run_the_expiry()
    {
        Clock.Set(Jan1);
        var t = await db.Host.NewTenantAsync(Organizations.KeyRole.Write);
        using var response = await t.PostAsync("/v1/lifecycle/expire", new { });
        await Tenant.ShouldFailAsync(response, 403, "forbidden");
    }

    [Fact]
    public async Task the_expiry_endpoint_runs_without_a_body_and_refuses_an_instant_in_the_future()
    {
        Clock.Set(Jan1);
        var t = await db.Host.NewTenantAsync();
        using (var bare = await t.Http.PostAsync("/v1/lifecycle/expire", null))
            ((int)bare.StatusCode).ShouldBe(200, await bare.Content.ReadAsStringAsync());
        using var future = await t.PostAsync("/v1/lifecycle/expire", new { asOf = Jan1.AddDays(1) });
        await Tenant.ShouldFailAsync(future, 400, "invalid_request");
    }

    [Fact]
    public async Task parallel_returns_of_one_bill_never_exceed_it_and_parallel_reversals_of_one_redemption_reverse_it_once()
    {
        var (t, shop, c) = await SetUpAsync();
        await t.BillAsync(shop, c, "B-1", 100m);
        var returns = await Task.WhenAll(Enumerable.Range(0, 10).Select(async _ =>
        {
            using var response = await t.PostAsync("/v1/returns", new { storeCode = "store-1", billNumber = "B-1", amount = 20m });
            return (int)response.StatusCode;
        }));
        returns.Count(s => s == 201).ShouldBe(5);
        returns.Count(s => s == 422).ShouldBe(5);
        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(0);

        await t.AwardAsync(c, "50");
        var redemption = await RedeemAsync(t, c, "40");
        var id = redemption.GetProperty("eventId").GetInt64();
        var reversals = await Task.WhenAll(Enumerable.Range(0, 8).Select(async _ =>
        {
            using var response = await t.PostAsync("/v1/redemptions/reversals", new { redemptionEventId = id });
            return (int)response.StatusCode;
        }));
        reversals.Count(s => s == 201).ShouldBe(1);
        reversals.Count(s => s == 409).ShouldBe(7);
        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(50_000);
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
    }

    [Fact]
    public async Task a_pooled_group_goes_negative_when_one_member_earns_another_spends_and_the_first_returns_the_goods()
    {
        var (t, shop, a) = await SetUpAsync(new { kind = "DATE_EARNED", days = 30 });
        var b = await t.NewCustomerAsync();
        var group = await t.PostOkAsync("/v1/groups", new { name = "Family", primaryCustomerId = a, members = new[] { new { customerId = b } } });
        var groupId = group.GetProperty("groupId").GetInt64();
        await t.BillAsync(shop, a, "G-1", 100m);
        await t.PostOkAsync("/v1/redemptions", new { customerId = b, groupId, points = "90" });
        var returned = await ReturnAsync(t, "G-1", 100m);
        returned.GetProperty("shortfalls").GetArrayLength().ShouldBe(0);

        var balances = await t.GetOkAsync($"/v1/lifecycle/balances?groupId={groupId}&asOf=2025-01-01T10:00:00Z");
        balances.EnumerateArray().Single(x => x.GetProperty("category").GetString() == "REGULAR").GetProperty("balance").GetString().ShouldBe("-90.000");
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
    }

    [Fact]
    public void partial_returns_round_down_cumulatively_so_they_add_up_to_the_full_return()
    {
        // A bill of 3.000 that earned 1.000 point, returned a third at a time.
        var shares = new[] { 1000L, 2000L, 3000L }.Select(r => LoyaltyLedger.Lifecycle.Returns.Share(1000, r, 3000).Thousandths).ToArray();
        shares.ShouldBe([333, 666, 1000]);
        (shares[0] + (shares[1] - shares[0]) + (shares[2] - shares[1])).ShouldBe(1000);
    }
}

public sealed class LifecycleScenarioTestsOnSqlite(SqliteDatabase db) : LifecycleScenarioTests(db), IClassFixture<SqliteDatabase>;

public sealed class LifecycleScenarioTestsOnPostgres(PostgresDatabase db) : LifecycleScenarioTests(db), IClassFixture<PostgresDatabase>;
