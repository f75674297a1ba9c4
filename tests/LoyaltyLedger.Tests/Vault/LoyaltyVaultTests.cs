using System.Net;
using System.Text.Json;
using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Tests.Infrastructure;
using static LoyaltyLedger.Tests.Vault.VaultBuilders;

namespace LoyaltyLedger.Tests.Vault;

/// <summary>The loyalty-vault API end to end over HTTP: baskets, history, account, transfers, vouchers.</summary>
public abstract class LoyaltyVaultTests(DatabaseFixture db)
{
    private static readonly object DateEarned30Days = new { kind = "DATE_EARNED", days = 30 };

    private static string Iso(DateTimeOffset at) =>
        at.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task a_load_and_a_redemption_appear_in_the_history_with_amounts_running_balance_and_context()
    {
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync();

        var now = Iso(t.Host.Clock.GetUtcNow());
        var result = await t.PostBasketAsync(v, Basket(v.ProgramId, "R-1", loads: [new { value = 100.5m }], redemptions: [new { value = 30 }]));

        var program = result.GetProperty("loyaltyPrograms")[0];
        program.Number("balance").ShouldBe(70.5m);
        program.GetProperty("movements").GetArrayLength().ShouldBe(2);

        var history = await t.HistoryAsync(v);
        history.Length.ShouldBe(2);
        history[0].GetProperty("transactionType").GetString().ShouldBe("Load");
        history[0].Number("amount").ShouldBe(100.5m);
        history[0].Number("balance").ShouldBe(100.5m);
        history[1].GetProperty("transactionType").GetString().ShouldBe("Redeem");
        history[1].Number("amount").ShouldBe(-30m);
        history[1].Number("balance").ShouldBe(70.5m);
        foreach (var movement in history)
        {
            movement.GetProperty("dateTime").GetString().ShouldBe(now);
            movement.GetProperty("receiptNr").GetString().ShouldBe("R-1");
            movement.GetProperty("shopId").GetString().ShouldBe("store-1");
            movement.GetProperty("posId").GetString().ShouldBe("till-1");
            movement.GetProperty("operatorId").GetString().ShouldBe("op-7");
            movement.GetProperty("comment").GetString().ShouldBe("basket");
            movement.GetProperty("properties").EnumerateObject().ShouldBeEmpty();
        }
    }

    [Fact]
    public async Task buying_a_voucher_converts_points_and_its_serial_can_be_redeemed_once_and_voided()
    {
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync();
        var definition = await t.NewVoucherAsync(v.ProgramId, "40", validDays: 30);
        var voucherId = definition.GetProperty("voucherId").GetInt64();
        await t.PostBasketAsync(v, Basket(v.ProgramId, loads: [new { value = 100 }]));
        var expiration = Iso(t.Host.Clock.GetUtcNow().AddDays(30));

        var bought = await t.PostBasketAsync(v, Basket(v.ProgramId, voucherPurchases: [new { voucherId }]));
        var voucher = bought.GetProperty("loyaltyPrograms")[0].GetProperty("vouchersPurchased")[0];
        var serial = voucher.GetProperty("serialId").GetString()!;
        voucher.GetProperty("expiresAt").GetString().ShouldBe(expiration);
        voucher.GetProperty("usesLeft").GetInt32().ShouldBe(1);

        var account = await t.GetOkAsync(v.AccountPath);
        var program = account.GetProperty("loyaltyPrograms")[0];
        program.Number("balance").ShouldBe(60m);
        program.GetProperty("vouchers")[0].GetProperty("serialId").GetString().ShouldBe(serial);
        program.GetProperty("purchasableVouchers")[0].GetProperty("voucherId").GetInt64().ShouldBe(voucherId);

        await t.PostBasketAsync(v, Basket(v.ProgramId, voucherRedemptions: [new { serialId = serial }]));
        using (var again = await t.PostAsync($"{v.AccountPath}/Transaction", Basket(v.ProgramId, voucherRedemptions: [new { serialId = serial }])))
            await Tenant.ShouldFailAsync(again, 422, "voucher_used");

        var held = (await t.GetOkAsync(v.AccountPath)).GetProperty("loyaltyPrograms")[0].GetProperty("vouchers");
        held.GetArrayLength().ShouldBe(0);
        var all = (await t.GetOkAsync(v.AccountPath + "?includeInactive=true")).GetProperty("loyaltyPrograms")[0].GetProperty("vouchers");
        all[0].GetProperty("status").GetString().ShouldBe("USED");

        await t.PostBasketAsync(v, Basket(v.ProgramId, voucherRedemptions: [new { serialId = serial, @void = true }]));
        (await t.GetOkAsync(v.AccountPath)).GetProperty("loyaltyPrograms")[0].GetProperty("vouchers")[0]
            .GetProperty("usesLeft").GetInt32().ShouldBe(1);

        var history = await t.HistoryAsync(v);
        history.Select(h => h.GetProperty("transactionType").GetString()).ShouldBe(["Load", "Convert", "RedeemVoucher", "RedeemVoucher"]);
        var convert = history[1];
        convert.Number("amount").ShouldBe(-40m);
        convert.Number("balance").ShouldBe(60m);
        convert.GetProperty("properties").GetProperty("serialId").GetString().ShouldBe(serial);
        convert.GetProperty("properties").GetProperty("voucherId").GetString().ShouldBe(voucherId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        convert.GetProperty("properties").GetProperty("expiration").GetString().ShouldBe(expiration);
        history[2].Number("amount").ShouldBe(0m);
        history[2].Number("balance").ShouldBe(60m);
        history[2].GetProperty("properties").GetProperty("serialId").GetString().ShouldBe(serial);
        history[3].GetProperty("properties").GetProperty("void").GetString().ShouldBe("true");
    }

    [Fact]
    public async Task a_basket_that_fails_half_way_leaves_nothing_behind()
    {
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync();
        var voucherId = (await t.NewVoucherAsync(v.ProgramId, "500")).GetProperty("voucherId").GetInt64();
        await t.PostBasketAsync(v, Basket(v.ProgramId, loads: [new { value = 100 }]));
        var entries = await t.CountAsync("ledger_entries");
        var events = await t.CountAsync("events");

        // The load and the redemption succeed inside the transaction; the voucher is beyond the balance.
        var basket = Basket(v.ProgramId, "R-FAIL", loads: [new { value = 50 }], redemptions: [new { value = 20 }], voucherPurchases: [new { voucherId }]);
        using (var response = await t.PostAsync($"{v.AccountPath}/Transaction", basket))
            await Tenant.ShouldFailAsync(response, 422, "insufficient_balance");

        (await t.BalanceAsync(v.CustomerId, v.ProgramId)).ShouldBe(100_000);
        (await t.CountAsync("ledger_entries")).ShouldBe(entries);
        (await t.CountAsync("events")).ShouldBe(events);
        (await t.CountAsync("voucher_instances")).ShouldBe(0);
        (await t.CountAsync("vault_receipts")).ShouldBe(0);
        (await t.HistoryAsync(v)).Length.ShouldBe(1);

        // The refused receipt was not claimed: the till can post it again once corrected.
        await t.PostBasketAsync(v, Basket(v.ProgramId, "R-FAIL", loads: [new { value = 50 }], redemptions: [new { value = 20 }]));
        (await t.BalanceAsync(v.CustomerId, v.ProgramId)).ShouldBe(130_000);
    }

    [Fact]
    public async Task redeeming_an_unknown_foreign_expired_or_early_voucher_is_refused_and_the_whole_basket_is_rolled_back()
    {
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync();
        var other = await t.NewCustomerAsync(accountNumber: "OTHER-" + Guid.NewGuid().ToString("N")[..8]);
        var otherAccount = (await t.GetOkAsync($"/v1/customers/{other}")).GetProperty("accountNumbers")[0].GetString()!;
        var otherVault = v with { CustomerId = other, Account = otherAccount };
        var voucherId = (await t.NewVoucherAsync(v.ProgramId, "10", validDays: 1)).GetProperty("voucherId").GetInt64();
        await t.PostBasketAsync(otherVault, Basket(v.ProgramId, loads: [new { value = 50 }], voucherPurchases: [new { voucherId }]));
        var foreignSerial = (await t.GetOkAsync(otherVault.AccountPath)).GetProperty("loyaltyPrograms")[0].GetProperty("vouchers")[0].GetProperty("serialId").GetString();

        var now = t.Host.Clock.GetUtcNow();
        var mine = await t.PostBasketAsync(v, Basket(v.ProgramId, loads: [new { value = 100 }], voucherPurchases:
        [
            new { voucherId, validFrom = (DateTimeOffset?)null, expiresAt = (DateTimeOffset?)now.AddHours(1) },
            new { voucherId, validFrom = (DateTimeOffset?)now.AddDays(5), expiresAt = (DateTimeOffset?)now.AddDays(9) },
        ]));
        var purchased = mine.GetProperty("loyaltyPrograms")[0].GetProperty("vouchersPurchased");
        var soonExpired = purchased[0].GetProperty("serialId").GetString();
        var early = purchased[1].GetProperty("serialId").GetString();
        purchased[1].GetProperty("status").GetString().ShouldBe("NOT_YET_VALID");
        var balance = await t.BalanceAsync(v.CustomerId, v.ProgramId);

        async Task RefusedAsync(string? serial, string code)
        {
            var basket = Basket(v.ProgramId, loads: [new { value = 5 }], voucherRedemptions: [new { serialId = serial }]);
            using var response = await t.PostAsync($"{v.AccountPath}/Transaction", basket);
            await Tenant.ShouldFailAsync(response, 422, code);
        }

        await RefusedAsync("NO-SUCH-SERIAL", "voucher_serial_unknown");
        await RefusedAsync(foreignSerial, "voucher_serial_foreign");
        await RefusedAsync(early, "voucher_not_yet_valid");
        t.Host.Clock.Advance(TimeSpan.FromHours(2));
        try
        {
            await RefusedAsync(soonExpired, "voucher_expired");
        }
        finally
        {
            t.Host.Clock.Advance(TimeSpan.FromHours(-2));
        }
        using (var voidUnused = await t.PostAsync($"{v.AccountPath}/Transaction", Basket(v.ProgramId, voucherRedemptions: [new { serialId = early, @void = true }])))
            await Tenant.ShouldFailAsync(voidUnused, 422, "voucher_not_redeemed");

        (await t.BalanceAsync(v.CustomerId, v.ProgramId)).ShouldBe(balance);
        (await t.HistoryAsync(v)).Length.ShouldBe(3);
    }

    [Fact]
    public async Task a_replayed_receipt_or_idempotency_key_returns_the_first_result_and_writes_nothing()
    {
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync();
        var basket = Basket(v.ProgramId, "R-42", loads: [new { value = 25 }]);

        using var first = await t.PostAsync($"{v.AccountPath}/Transaction", basket);
        first.StatusCode.ShouldBe(HttpStatusCode.OK);
        var firstBody = await first.Content.ReadAsStringAsync();
        var entries = await t.CountAsync("ledger_entries");

        t.Host.Clock.Advance(TimeSpan.FromMinutes(5));
        using var replay = await t.PostAsync($"{v.AccountPath}/Transaction", basket);
        replay.StatusCode.ShouldBe(HttpStatusCode.OK);
        replay.Headers.GetValues("Idempotent-Replayed").ShouldContain("true");
        JsonDocument.Parse(await replay.Content.ReadAsStringAsync()).RootElement.GetProperty("dateTime").GetString()
            .ShouldBe(JsonDocument.Parse(firstBody).RootElement.GetProperty("dateTime").GetString());
        (await replay.Content.ReadAsStringAsync()).ShouldBe(firstBody);
        (await t.CountAsync("ledger_entries")).ShouldBe(entries);
        (await t.BalanceAsync(v.CustomerId, v.ProgramId)).ShouldBe(25_000);

        // The same receipt number from another till is another receipt.
        await t.PostBasketAsync(v, Basket(v.ProgramId, "R-42", loads: [new { value = 25 }], posId: "till-2"));
        (await t.BalanceAsync(v.CustomerId, v.ProgramId)).ShouldBe(50_000);

        // The same receipt with another basket is a client error, not a silent replay.
        using (var changed = await t.PostAsync($"{v.AccountPath}/Transaction", Basket(v.ProgramId, "R-42", loads: [new { value = 99 }])))
            await Tenant.ShouldFailAsync(changed, 409, "receipt_reused");

        // Without a receipt number, the Idempotency-Key header de-duplicates.
        var noReceipt = Basket(v.ProgramId, loads: [new { value = 10 }]);
        var once = await t.PostBasketAsync(v, noReceipt, "key-1");
        var twice = await t.PostBasketAsync(v, noReceipt, "key-1");
        twice.GetRawText().ShouldBe(once.GetRawText());
        (await t.BalanceAsync(v.CustomerId, v.ProgramId)).ShouldBe(60_000);
        t.Host.Clock.Advance(TimeSpan.FromMinutes(-5));
    }

    [Fact]
    public async Task parallel_replays_of_one_receipt_post_once_and_parallel_uses_of_a_single_use_voucher_succeed_once()
    {
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync();
        var basket = Basket(v.ProgramId, "R-PAR", loads: [new { value = 7 }]);
        var bodies = await Task.WhenAll(Enumerable.Range(0, 12).Select(async _ =>
        {
            using var response = await t.PostAsync($"{v.AccountPath}/Transaction", basket);
            response.StatusCode.ShouldBe(HttpStatusCode.OK);
            return await response.Content.ReadAsStringAsync();
        }));
        bodies.Distinct().Count().ShouldBe(1);
        (await t.BalanceAsync(v.CustomerId, v.ProgramId)).ShouldBe(7_000);

        var voucherId = (await t.NewVoucherAsync(v.ProgramId, "5")).GetProperty("voucherId").GetInt64();
        var serial = (await t.PostBasketAsync(v, Basket(v.ProgramId, voucherPurchases: [new { voucherId }])))
            .GetProperty("loyaltyPrograms")[0].GetProperty("vouchersPurchased")[0].GetProperty("serialId").GetString();
        var statuses = await Task.WhenAll(Enumerable.Range(0, 8).Select(async _ =>
        {
            using var response = await t.PostAsync($"{v.AccountPath}/Transaction", Basket(v.ProgramId, voucherRedemptions: [new { serialId = serial }]));
            return response.StatusCode;
        }));
        statuses.Count(s => s == HttpStatusCode.OK).ShouldBe(1);
        statuses.Count(s => s == HttpStatusCode.UnprocessableEntity).ShouldBe(7);
    }

    [Fact]
    public async Task a_date_earned_program_shows_when_each_load_expires()
    {
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync(expiry: DateEarned30Days);
        var now = t.Host.Clock.GetUtcNow();
        var explicitExpiry = now.AddDays(7);

        await t.PostBasketAsync(v, Basket(v.ProgramId, loads: [new { value = 10, balanceExpiresAt = (DateTimeOffset?)null }, new { value = 5, balanceExpiresAt = (DateTimeOffset?)explicitExpiry }]));
        await t.PostBasketAsync(v, Basket(v.ProgramId, redemptions: [new { value = 3 }]));

        var history = await t.HistoryAsync(v);
        history[0].GetProperty("expiresAt").GetString().ShouldBe(Iso(now.AddDays(30)));
        history[1].GetProperty("expiresAt").GetString().ShouldBe(Iso(explicitExpiry));
        history[2].TryGetProperty("expiresAt", out _).ShouldBeFalse();
    }

    [Fact]
    public async Task a_whole_balance_program_omits_expires_at_from_every_movement()
    {
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync(expiry: new { kind = "WHOLE_BALANCE", months = 12 });

        var result = await t.PostBasketAsync(v, Basket(v.ProgramId, loads: [new { value = 10 }]));
        result.GetProperty("loyaltyPrograms")[0].GetProperty("movements")[0].TryGetProperty("expiresAt", out _).ShouldBeFalse();
        await t.AwardAsync(v.CustomerId, "4", programId: v.ProgramId);
        var redemption = await t.PostOkAsync("/v1/redemptions", new { customerId = v.CustomerId, points = "6", programId = v.ProgramId });
        await t.PostOkAsync("/v1/redemptions/reversals", new { redemptionEventId = redemption.GetProperty("eventId").GetInt64() });

        var history = await t.HistoryAsync(v);
        history.Select(h => h.GetProperty("transactionType").GetString()).ShouldBe(["Load", "Load", "Redeem", "Load"]);
        history.Count(h => h.TryGetProperty("expiresAt", out _)).ShouldBe(0);
        var raw = (await t.GetOkAsync(v.HistoryPath)).GetRawText();
        raw.ShouldNotContain("expiresAt");
        (await t.GetOkAsync(v.AccountPath)).GetProperty("loyaltyPrograms")[0].GetProperty("expiryType").GetString().ShouldBe("WHOLE_BALANCE");
    }

    [Fact]
    public async Task a_redemption_reversal_load_shows_the_earliest_expiry_among_the_lots_it_restored()
    {
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync(expiry: DateEarned30Days);
        var day0 = t.Host.Clock.GetUtcNow();
        await t.AwardAsync(v.CustomerId, "100", programId: v.ProgramId);
        t.Host.Clock.Advance(TimeSpan.FromDays(20));
        await t.AwardAsync(v.CustomerId, "100", programId: v.ProgramId);
        t.Host.Clock.Advance(TimeSpan.FromDays(5));
        var redemption = await t.PostOkAsync("/v1/redemptions", new { customerId = v.CustomerId, points = "150", programId = v.ProgramId });
        var redemptionId = redemption.GetProperty("eventId").GetInt64();

        // 30 back go to the latest-expiring lot the redemption took (earned on day 20, due day 50).
        await t.PostOkAsync("/v1/redemptions/reversals", new { redemptionEventId = redemptionId, points = "30" });
        var partial = (await t.HistoryAsync(v))[^1];
        partial.GetProperty("transactionType").GetString().ShouldBe("Load");
        partial.Number("amount").ShouldBe(30m);
        partial.GetProperty("expiresAt").GetString().ShouldBe(Iso(day0.AddDays(50)));

        // The rest go to both lots; the day-0 lot (due day 30) is past its date and expires at once.
        t.Host.Clock.Advance(TimeSpan.FromDays(10));
        await t.PostOkAsync("/v1/redemptions/reversals", new { redemptionEventId = redemptionId });
        var history = await t.HistoryAsync(v);
        var rest = history[^2];
        rest.GetProperty("transactionType").GetString().ShouldBe("Load");
        rest.Number("amount").ShouldBe(120m);
        rest.GetProperty("expiresAt").GetString().ShouldBe(Iso(day0.AddDays(30)));
        var expired = history[^1];
        expired.GetProperty("transactionType").GetString().ShouldBe("Expire");
        expired.Number("amount").ShouldBe(-100m);
        expired.GetProperty("comment").GetString().ShouldBe("Points reached their expiry date.");
        expired.TryGetProperty("expiresAt", out _).ShouldBeFalse();
        history.Select(h => h.Number("balance")).ShouldBe([100m, 200m, 50m, 80m, 200m, 100m]);
    }

    [Fact]
    public async Task a_vault_load_is_named_LoyaltyVaultLoad_in_the_points_ledger_event_details()
    {
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync();
        await t.PostBasketAsync(v, Basket(v.ProgramId, "R-9", loads: [new { value = 12 }]));

        var ledger = await t.GetOkAsync($"/v2/pointsLedger/getCustomerLedgerInfo?identifierName=id&identifierValue={v.CustomerId}&source=INSTORE");
        var load = ledger.GetProperty("ledgerEntries").EnumerateArray().Single(e => e.GetProperty("eventName").GetString() == "GenericEvent");
        var details = load.GetProperty("eventDetails");
        details.GetProperty("eventDisplayName").GetString().ShouldBe("LoyaltyVaultLoad");
        details.GetProperty("displayName").GetString().ShouldBe("LoyaltyVaultLoad");
        details.GetProperty("receiptNr").GetString().ShouldBe("R-9");
        details.GetProperty("accountNumber").GetString().ShouldBe(v.Account);
        (await t.HistoryAsync(v)).ShouldHaveSingleItem().GetProperty("comment").GetString().ShouldBe("basket");
    }

    [Fact]
    public async Task a_vault_load_shows_in_the_native_balances_and_ledger_and_a_native_award_shows_in_the_vault_history()
    {
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync();

        await t.PostBasketAsync(v, Basket(v.ProgramId, "R-7", loads: [new { value = 12 }]));
        (await t.BalanceAsync(v.CustomerId, v.ProgramId)).ShouldBe(12_000);
        var row = await t.Host.Database.ReadAsync(c => c.QuerySingleAsync<(string EventName, string EntryType, long Points, long BalanceAfter)>(
            """
            SELECT e.event_name, le.entry_type, le.points, le.balance_after FROM ledger_entries le JOIN events e ON e.event_id = le.event_id
            WHERE le.org_id = @org AND le.owner_id = @customer AND le.entry_type = 'CREDIT'
            """, new { org = t.OrgId, customer = v.CustomerId }), CancellationToken.None);
        row.ShouldBe((EventNames.GenericEvent, "CREDIT", 12_000L, 12_000L));

        await t.AwardAsync(v.CustomerId, "8", programId: v.ProgramId);
        await t.BillAsync(v.Shop, v.CustomerId, "BILL-1", 20m);
        await t.PostOkAsync("/v1/redemptions", new { customerId = v.CustomerId, points = "5", programId = v.ProgramId, transactionNumber = "T-1" });

        var history = await t.HistoryAsync(v);
        history.Select(h => (h.GetProperty("transactionType").GetString(), h.Number("amount"), h.Number("balance")))
            .ShouldBe([("Load", 12m, 12m), ("Load", 8m, 20m), ("Load", 20m, 40m), ("Redeem", -5m, 35m)]);
        history[2].GetProperty("receiptNr").GetString().ShouldBe("BILL-1");
        history[2].GetProperty("shopId").GetString().ShouldBe("store-1");
        history[3].GetProperty("receiptNr").GetString().ShouldBe("T-1");
        (await t.GetOkAsync(v.AccountPath)).GetProperty("loyaltyPrograms")[0].Number("balance").ShouldBe(35m);
    }

    [Fact]
    public async Task a_transfer_between_two_accounts_is_a_transfer_movement_on_each_side()
    {
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync();
        var toAccount = "CARD-" + Guid.NewGuid().ToString("N")[..10];
        var toCustomer = await t.NewCustomerAsync(accountNumber: toAccount);
        var to = v with { CustomerId = toCustomer, Account = toAccount };
        await t.PostBasketAsync(v, Basket(v.ProgramId, loads: [new { value = 50 }]));

        var result = await t.PostOkAsync($"{v.AccountPath}/Transfer", new { toAccountNumber = toAccount, loyaltyPointDefinitionId = v.ProgramId, value = 20, comment = "gift" });
        result.Number("fromBalance").ShouldBe(30m);
        result.Number("toBalance").ShouldBe(20m);

        var outgoing = (await t.HistoryAsync(v))[^1];
        outgoing.GetProperty("transactionType").GetString().ShouldBe("Transfer");
        outgoing.Number("amount").ShouldBe(-20m);
        outgoing.GetProperty("comment").GetString().ShouldBe("gift");
        var incoming = (await t.HistoryAsync(to)).ShouldHaveSingleItem();
        incoming.GetProperty("transactionType").GetString().ShouldBe("Transfer");
        incoming.Number("amount").ShouldBe(20m);
        incoming.Number("balance").ShouldBe(20m);

        using var tooMuch = await t.PostAsync($"{v.AccountPath}/Transfer", new { toAccountNumber = toAccount, loyaltyPointDefinitionId = v.ProgramId, value = 31 });
        await Tenant.ShouldFailAsync(tooMuch, 422, "insufficient_balance");
    }

    [Fact]
    public async Task expired_points_written_by_the_lifecycle_show_as_a_negative_expire_movement()
    {
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync(expiry: DateEarned30Days);
        await t.PostBasketAsync(v, Basket(v.ProgramId, loads: [new { value = 10 }]));

        // What the lifecycle's expiry job writes: a PointsExpiry event with a DEBIT line.
        await t.Host.Database.WriteAsync(async (c, tx) =>
        {
            var posting = new Posting(c, tx, t.Host.Database.Dialect, t.OrgId, t.Host.Clock.GetUtcNow(), "expiry-job");
            var key = new WalletKey(OwnerType.Customer, v.CustomerId, v.ProgramId, WalletKey.PlainPoints, PointCategory.Regular);
            await posting.LockWalletsAsync([key]);
            var eventId = await posting.InsertEventAsync(new NewEvent(OwnerType.Customer, v.CustomerId, v.CustomerId, EventNames.PointsExpiry, SourceProgramId: v.ProgramId));
            return await posting.DebitAsync(eventId, key, Points.FromWhole(10), allowNegative: false);
        }, CancellationToken.None);

        var expired = (await t.HistoryAsync(v))[^1];
        expired.GetProperty("transactionType").GetString().ShouldBe("Expire");
        expired.Number("amount").ShouldBe(-10m);
        expired.Number("balance").ShouldBe(0m);
        expired.TryGetProperty("expiresAt", out _).ShouldBeFalse();
    }

    [Fact]
    public async Task paging_and_a_date_window_slice_the_history_without_changing_the_default_answer()
    {
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync();
        var start = t.Host.Clock.GetUtcNow();
        for (var i = 1; i <= 5; i++)
        {
            await t.PostBasketAsync(v, Basket(v.ProgramId, loads: [new { value = i }]));
            t.Host.Clock.Advance(TimeSpan.FromDays(1));
        }
        t.Host.Clock.Set(start);

        var all = await t.HistoryAsync(v);
        all.Select(h => h.Number("amount")).ShouldBe([1m, 2m, 3m, 4m, 5m]);
        (await t.HistoryAsync(v, "?offset=1&limit=2")).Select(h => h.Number("amount")).ShouldBe([2m, 3m]);
        // Every page is the matching slice of the whole history (each branch of the read is cut to offset + limit rows).
        for (var offset = 0; offset <= 6; offset++)
            (await t.HistoryAsync(v, $"?offset={offset}&limit=2")).Select(h => h.Number("amount")).ShouldBe(all.Skip(offset).Take(2).Select(h => h.Number("amount")));
        (await t.HistoryAsync(v, $"?from={Iso(start.AddDays(1))}&offset=1&limit=2")).Select(h => h.Number("amount")).ShouldBe([3m, 4m]);
        (await t.HistoryAsync(v, $"?from={Iso(start.AddDays(1))}&to={Iso(start.AddDays(3))}")).Select(h => h.Number("amount")).ShouldBe([2m, 3m]);

        using var badLimit = await t.Http.GetAsync(v.HistoryPath + "?limit=0");
        await Tenant.ShouldFailAsync(badLimit, 400, "invalid_request");
        using var badDate = await t.Http.GetAsync(v.HistoryPath + "?from=yesterday");
        await Tenant.ShouldFailAsync(badDate, 400, "invalid_request");
    }

    [Fact]
    public async Task an_unknown_account_program_or_voucher_is_a_404_problem_and_bad_bodies_are_400()
    {
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync();
        var entries = await t.CountAsync("ledger_entries");

        using (var r = await t.Http.GetAsync("/api/v1.0/LoyaltyVault/Account/NOPE"))
            await Tenant.ShouldFailAsync(r, 404, "account_not_found");
        using (var r = await t.Http.GetAsync($"/api/v1.0/LoyaltyVault/Account/NOPE/LoyaltyPrograms/{v.ProgramId}/History"))
            await Tenant.ShouldFailAsync(r, 404, "account_not_found");
        using (var r = await t.Http.GetAsync($"{v.AccountPath}/LoyaltyPrograms/999/History"))
            await Tenant.ShouldFailAsync(r, 404, "program_not_found");
        using (var r = await t.PostAsync("/api/v1.0/LoyaltyVault/Account/NOPE/Transaction", Basket(v.ProgramId, loads: [new { value = 1 }])))
            await Tenant.ShouldFailAsync(r, 404, "account_not_found");
        using (var r = await t.PostAsync($"{v.AccountPath}/Transaction", Basket(999, loads: [new { value = 1 }])))
            await Tenant.ShouldFailAsync(r, 404, "program_not_found");
        using (var r = await t.PostAsync($"{v.AccountPath}/Transaction", Basket(v.ProgramId, voucherPurchases: [new { voucherId = 999 }])))
            await Tenant.ShouldFailAsync(r, 404, "voucher_not_found");
        using (var r = await t.PostAsync($"{v.AccountPath}/Transaction", Basket(v.ProgramId, loads: [new { value = 1.0001m }])))
            await Tenant.ShouldFailAsync(r, 400, "invalid_points");
        using (var r = await t.PostAsync($"{v.AccountPath}/Transaction", Basket(v.ProgramId, loads: [new { value = -1 }])))
            await Tenant.ShouldFailAsync(r, 400, "invalid_points");
        using (var r = await t.PostAsync($"{v.AccountPath}/Transaction", Basket(v.ProgramId)))
            await Tenant.ShouldFailAsync(r, 400, "invalid_request");
        using (var r = await t.PostRawAsync($"{v.AccountPath}/Transaction", "{\"loyaltyPrograms\": 5}"))
            await Tenant.ShouldFailAsync(r, 400, "invalid_json");
        using (var r = await t.PostRawAsync($"{v.AccountPath}/Transaction", "not json"))
            await Tenant.ShouldFailAsync(r, 400, "invalid_json");
        // NUL cannot be stored on PostgreSQL: refused at the JSON layer on both databases.
        using (var r = await t.PostAsync($"{v.AccountPath}/Transaction", Basket(v.ProgramId, "R\u0000", loads: [new { value = 1 }])))
            await Tenant.ShouldFailAsync(r, 400, "invalid_json");
        using (var r = await t.PostAsync($"{v.AccountPath}/Transaction", Basket(v.ProgramId, voucherRedemptions: [new { serialId = "S\u0000" }])))
            await Tenant.ShouldFailAsync(r, 400, "invalid_json");
        using (var r = await t.PostAsync($"{v.AccountPath}/Transaction", Basket(v.ProgramId, voucherPurchases: [new { voucherId = 1, validFrom = DateTimeOffset.MaxValue }])))
            await Tenant.ShouldFailAsync(r, 400, "invalid_request");
        using (var r = await t.Http.GetAsync("/api/v1.0/LoyaltyVault/Account/A%01B"))
            await Tenant.ShouldFailAsync(r, 404, "account_not_found");
        using (var r = await t.Http.GetAsync("/openapi/v1.json"))
            r.StatusCode.ShouldBe(HttpStatusCode.OK);
        (await t.CountAsync("ledger_entries")).ShouldBe(entries);
    }

    [Fact]
    public async Task voucher_definitions_are_created_by_an_admin_key_and_listed_per_program()
    {
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync();

        var created = await t.NewVoucherAsync(v.ProgramId, "12.5", validDays: null, uses: 3, name: "Three car washes");
        created.Number("price").ShouldBe(12.5m);
        created.TryGetProperty("validDays", out _).ShouldBeFalse();
        var listed = (await t.GetOkAsync($"/v1/programs/{v.ProgramId}/vouchers")).EnumerateArray().ShouldHaveSingleItem();
        listed.GetProperty("name").GetString().ShouldBe("Three car washes");
        listed.GetProperty("uses").GetInt32().ShouldBe(3);

        using (var r = await t.PostAsync($"/v1/programs/{v.ProgramId}/vouchers", new { name = "free", price = "0" }))
            await Tenant.ShouldFailAsync(r, 400, "invalid_points");
        using (var r = await t.PostAsync("/v1/programs/999/vouchers", new { name = "x", price = "1" }))
            await Tenant.ShouldFailAsync(r, 404, "program_not_found");

        var key = await Tenants.IssueKeyAsync(t.Host.Database, t.OrgId, KeyRole.Write, t.Host.Clock, CancellationToken.None);
        var writer = t with { Http = t.Host.Client(key.KeyId, key.Secret) };
        using (var r = await writer.PostAsync($"/v1/programs/{v.ProgramId}/vouchers", new { name = "x", price = "1" }))
            await Tenant.ShouldFailAsync(r, 403, "forbidden");
        await writer.PostBasketAsync(v, Basket(v.ProgramId, loads: [new { value = 1 }]));
    }
}

public sealed class LoyaltyVaultTestsOnSqlite(SqliteDatabase db) : LoyaltyVaultTests(db), IClassFixture<SqliteDatabase>;

public sealed class LoyaltyVaultTestsOnPostgres(PostgresDatabase db) : LoyaltyVaultTests(db), IClassFixture<PostgresDatabase>;
