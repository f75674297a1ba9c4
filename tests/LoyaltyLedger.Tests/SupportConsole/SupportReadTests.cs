using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Lifecycle;
using LoyaltyLedger.Postings;
using LoyaltyLedger.Support;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.SupportConsole;

/// <summary>
/// The support console's reads and its one new posting, without a browser: ledger pages by cursor,
/// balances over time, the dashboard's kept daily totals, goodwill adjustments, search.
/// </summary>
public abstract class SupportReadTests(DatabaseFixture db)
{
    private const long DayMs = BalanceHistory.DayMs;

    private TestClock Clock => db.Host.Clock;

    private async Task<IReadOnlyList<long>> EventIdsAsync(long orgId, long customerId) =>
        (await db.Database.ReadAsync(c => c.QueryAsync<long>(
            "SELECT event_id FROM events WHERE org_id = @orgId AND owner_type = 'CUSTOMER' AND owner_id = @customerId ORDER BY created_at DESC, event_id DESC",
            new { orgId, customerId }), CancellationToken.None)).ToList();

    [Fact]
    public async Task ledger_pages_walk_older_and_back_newer_by_cursor_with_no_event_missed_or_repeated_even_at_one_instant()
    {
        var t = await db.Host.NewTenantAsync();
        await t.NewShopAsync();
        var customer = await t.NewCustomerAsync();
        // Most events share one instant (the clock stands still), so only the event id orders them.
        for (var i = 0; i < 40; i++) await t.AwardAsync(customer, "1");
        Clock.Advance(TimeSpan.FromMinutes(1));
        for (var i = 0; i < 12; i++) await t.AwardAsync(customer, "2");
        var expected = await EventIdsAsync(t.OrgId, customer);

        var seen = new List<long>();
        var pages = new List<HistoryPage>();
        HistoryCursor? before = null;
        do
        {
            var page = await LedgerHistory.PageAsync(db.Database, t.OrgId, OwnerType.Customer, customer, new HistoryFilter(), before, null, 10, CancellationToken.None);
            pages.Add(page);
            seen.AddRange(page.Events.Select(e => e.EventId));
            before = page.Older;
        } while (before is not null);
        seen.ShouldBe(expected);
        pages.Count.ShouldBe(6);
        pages[0].Newer.ShouldBeNull();

        // Back from the oldest page, newer and newer: the same pages.
        var back = new List<long>(pages[^1].Events.Select(e => e.EventId));
        var after = pages[^1].Newer;
        while (after is not null)
        {
            var page = await LedgerHistory.PageAsync(db.Database, t.OrgId, OwnerType.Customer, customer, new HistoryFilter(), null, after, 10, CancellationToken.None);
            back.InsertRange(0, page.Events.Select(e => e.EventId));
            after = page.Newer;
        }
        back.ShouldBe(expected);
    }

    [Fact]
    public async Task a_filtered_ledger_page_stops_after_its_scan_and_looking_further_back_finds_the_rare_match()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(currencies: ["Stars"]);
        var customer = await t.NewCustomerAsync();
        var stars = await t.AwardAsync(customer, "3", "Stars");
        for (var i = 0; i < 25; i++) await t.AwardAsync(customer, "1");
        var starsCurrency = await db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>(
            "SELECT currency_id FROM currencies WHERE org_id = @org AND name = 'Stars'", new { org = t.OrgId }), CancellationToken.None);
        var filter = new HistoryFilter { CurrencyId = starsCurrency, EntryType = EntryType.Credit, ProgramId = shop.ProgramId };

        var first = await LedgerHistory.PageAsync(db.Database, t.OrgId, OwnerType.Customer, customer, filter, null, null, 10, CancellationToken.None, scanLimit: 10);
        first.Events.ShouldBeEmpty();
        first.StoppedEarly.ShouldBeTrue();
        first.Older.ShouldNotBeNull();

        var found = new List<HistoryEvent>();
        var cursor = first.Older;
        for (var i = 0; i < 5 && cursor is not null; i++)
        {
            var page = await LedgerHistory.PageAsync(db.Database, t.OrgId, OwnerType.Customer, customer, filter, cursor, null, 10, CancellationToken.None, scanLimit: 10);
            found.AddRange(page.Events);
            cursor = page.Older;
        }
        found.Select(e => e.EventId).ShouldBe([stars.GetProperty("eventId").GetInt64()]);
        found[0].Lines.Single().Currency.ShouldBe("Stars");
        cursor.ShouldBeNull();
    }

    [Fact]
    public async Task an_event_shows_its_lines_the_lots_a_debit_took_and_the_events_linked_to_it()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(earnRate: "1");
        var customer = await t.NewCustomerAsync();
        var bill = (await t.BillAsync(shop, customer, "L-1", 30m)).GetProperty("eventId").GetInt64();
        var award = (await t.AwardAsync(customer, "50")).GetProperty("eventId").GetInt64();
        var redemption = (await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "45", programId = shop.ProgramId })).GetProperty("eventId").GetInt64();
        var reversal = (await t.PostOkAsync("/v1/redemptions/reversals", new { redemptionEventId = redemption, points = "5" })).GetProperty("eventId").GetInt64();

        var detail = (await LedgerHistory.EventAsync(db.Database, t.OrgId, redemption, CancellationToken.None))!;
        var debit = detail.Event.Lines.Single();
        debit.EntryType.ShouldBe("DEBIT");
        debit.BalanceAfter.ShouldBe(Points.FromWhole(35));
        // Both lots never expire, so the older first: 30 from the bill, 15 from the award.
        debit.Moved.Select(m => (m.EarnedByEventId, m.Points)).ShouldBe([(bill, Points.FromWhole(30)), (award, Points.FromWhole(15))]);
        detail.ReversedSoFar.ShouldBe(Points.FromWhole(5));
        detail.Related.Select(r => (r.EventId, r.Relation)).ShouldBe([(reversal, "a reversal of this redemption")]);

        var back = (await LedgerHistory.EventAsync(db.Database, t.OrgId, reversal, CancellationToken.None))!;
        back.Related.Select(r => (r.EventId, r.Relation)).ShouldBe([(redemption, "the redemption it reverses")]);
        // The reversal put 5 back into the lot taken last.
        back.Event.Lines.Single().Moved.Select(m => (m.EarnedByEventId, m.Points)).ShouldBe([(award, -Points.FromWhole(5))]);

        var other = await db.Host.NewTenantAsync();
        (await LedgerHistory.EventAsync(db.Database, other.OrgId, redemption, CancellationToken.None)).ShouldBeNull();
    }

    [Fact]
    public async Task the_balance_over_time_is_each_active_days_closing_balance_after_the_balance_before_the_window()
    {
        // Set first: the registration's opening line is the wallet's first line.
        Clock.Set(new DateTimeOffset(2025, 6, 1, 23, 0, 0, TimeSpan.Zero));
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(earnRate: "1");
        var customer = await t.NewCustomerAsync();
        await t.AwardAsync(customer, "10");
        Clock.Advance(TimeSpan.FromHours(2)); // 2 June 01:00
        await t.AwardAsync(customer, "5");
        await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "3", programId = shop.ProgramId });
        Clock.Advance(TimeSpan.FromDays(5)); // 7 June
        await t.AwardAsync(customer, "100");

        var wallet = await db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>(
            "SELECT wallet_id FROM wallets WHERE org_id = @org AND owner_id = @customer AND owner_type = 'CUSTOMER' AND currency_id = 0",
            new { org = t.OrgId, customer }), CancellationToken.None);
        var june1 = new DateTimeOffset(2025, 6, 1, 0, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds() / DayMs;
        var now = Clock.GetUtcNow().ToUnixTimeMilliseconds();

        var window = await BalanceHistory.DailyAsync(db.Database, t.OrgId, wallet, (june1 + 1) * DayMs, now + 1, CancellationToken.None);
        window.Opening.ShouldBe(Points.FromWhole(10));
        window.Days.ShouldBe([new DailyBalance(june1 + 1, Points.FromWhole(12)), new DailyBalance(june1 + 6, Points.FromWhole(112))]);

        var all = await BalanceHistory.DailyAsync(db.Database, t.OrgId, wallet, null, now + 1, CancellationToken.None);
        all.Opening.ShouldBeNull();
        all.Days.Select(d => d.Day).ShouldBe([june1, june1 + 1, june1 + 6]);
        all.Days[0].Balance.ShouldBe(Points.FromWhole(10));
        all.Days[^1].Balance.ShouldBe(Points.FromWhole(112));
    }

    [Fact]
    public async Task the_kept_daily_totals_of_past_days_equal_a_fresh_count_and_today_is_counted_live()
    {
        Clock.Set(new DateTimeOffset(2025, 9, 1, 10, 0, 0, TimeSpan.Zero));
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(earnRate: "1");
        var customer = await t.NewCustomerAsync();
        var day1 = Clock.GetUtcNow().ToUnixTimeMilliseconds() / DayMs;
        await t.BillAsync(shop, customer, "D-1", 100m);
        await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "20", programId = shop.ProgramId });
        Clock.Advance(TimeSpan.FromDays(1));
        await t.PostOkAsync("/v1/returns", new { storeCode = shop.StoreCode, billNumber = "D-1", amount = 50 });
        await t.AwardAsync(customer, "7");
        Clock.Advance(TimeSpan.FromDays(1));
        await t.AwardAsync(customer, "1");

        Points Sum(IEnumerable<DailyMovement> rows, long day, Movement kind) =>
            rows.Where(r => r.Day == day && r.ProgramId == shop.ProgramId && r.CurrencyId == 0 && r.Kind == kind).Aggregate(Points.Zero, (s, r) => s + r.Points);

        var first = await ProgramTotals.DailyAsync(db.Database, t.OrgId, day1 - 1, day1 + 2, Clock.GetUtcNow(), CancellationToken.None);
        Sum(first, day1, Movement.Issued).ShouldBe(Points.FromWhole(100));
        Sum(first, day1, Movement.Redeemed).ShouldBe(Points.FromWhole(20));
        Sum(first, day1 + 1, Movement.Returned).ShouldBe(Points.FromWhole(50));
        Sum(first, day1 + 1, Movement.Issued).ShouldBe(Points.FromWhole(7));
        Sum(first, day1 + 2, Movement.Issued).ShouldBe(Points.FromWhole(1));
        var kept = await db.Database.ReadAsync(c => c.QueryAsync<long>(
            "SELECT day FROM daily_movement_days WHERE org_id = @org ORDER BY day", new { org = t.OrgId }), CancellationToken.None);
        kept.ShouldBe([day1 - 1, day1, day1 + 1]);

        // Today keeps counting; a day is kept once settled, and reads the same as counted live.
        await t.AwardAsync(customer, "2");
        var second = await ProgramTotals.DailyAsync(db.Database, t.OrgId, day1 - 1, day1 + 2, Clock.GetUtcNow(), CancellationToken.None);
        Sum(second, day1 + 2, Movement.Issued).ShouldBe(Points.FromWhole(3));
        Clock.Advance(TimeSpan.FromDays(1) + ProgramTotals.SettleMargin);
        var settled = await ProgramTotals.DailyAsync(db.Database, t.OrgId, day1 - 1, day1 + 2, Clock.GetUtcNow(), CancellationToken.None);
        settled.OrderBy(r => (r.Day, r.ProgramId, r.CurrencyId, r.Category, r.EventName, r.EntryType)).ShouldBe(
            second.OrderBy(r => (r.Day, r.ProgramId, r.CurrencyId, r.Category, r.EventName, r.EntryType)));

        var outstanding = await ProgramTotals.OutstandingAsync(db.Database, t.OrgId, CancellationToken.None);
        outstanding.Single(o => o.ProgramId == shop.ProgramId && o.CurrencyId == 0 && o.Category == "REGULAR").Balance
            .ShouldBe(new Points(await t.BalanceAsync(customer, shop.ProgramId)));
    }

    private Task<T> PostAsync<T>(long orgId, Func<Posting, Task<T>> work) =>
        db.Database.WriteAsync((c, tx) => work(new Posting(c, tx, db.Database.Dialect, orgId, Clock.GetUtcNow(), "agent-key")), CancellationToken.None);

    [Fact]
    public async Task a_goodwill_adjustment_needs_a_reason_credits_a_lot_and_debits_earliest_expiry_first_within_the_balance()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(expiry: new { kind = "DATE_EARNED", days = 30 });
        var customer = await t.NewCustomerAsync();
        await t.AwardAsync(customer, "10");

        var noReason = await Should.ThrowAsync<LedgerException>(() => PostAsync(t.OrgId, p => PointsPostings.AdjustAsync(p,
            new NewGoodwillAdjustment(customer, AdjustmentDirection.Credit, Points.FromWhole(5), "  ", shop.ProgramId))));
        noReason.Code.ShouldBe(ErrorCodes.InvalidRequest);
        var beyond = await Should.ThrowAsync<LedgerException>(() => PostAsync(t.OrgId, p => PointsPostings.AdjustAsync(p,
            new NewGoodwillAdjustment(customer, AdjustmentDirection.Debit, Points.FromWhole(11), "too much", shop.ProgramId))));
        beyond.Code.ShouldBe(ErrorCodes.InsufficientBalance);

        Clock.Advance(TimeSpan.FromDays(1));
        var credit = await PostAsync(t.OrgId, p => PointsPostings.AdjustAsync(p,
            new NewGoodwillAdjustment(customer, AdjustmentDirection.Credit, Points.FromWhole(5), "late parcel", shop.ProgramId)));
        credit.EventName.ShouldBe(EventNames.GoodwillAdjustment);
        credit.Entries.Single().ExpiresAt.ShouldBe(Clock.GetUtcNow().AddDays(30));
        var debit = await PostAsync(t.OrgId, p => PointsPostings.AdjustAsync(p,
            new NewGoodwillAdjustment(customer, AdjustmentDirection.Debit, Points.FromWhole(12), "double credit", shop.ProgramId)));

        var detail = (await LedgerHistory.EventAsync(db.Database, t.OrgId, debit.EventId, CancellationToken.None))!;
        detail.Event.PostedBy.ShouldBe("agent-key");
        detail.Event.Reason.ShouldBe("double credit");
        detail.Event.Details["direction"].ShouldBe("DEBIT");
        // The award's lot (expiring first) whole, then 2 of the goodwill credit's lot.
        detail.Event.Lines.Single().Moved.Select(m => m.Points).ShouldBe([Points.FromWhole(10), Points.FromWhole(2)]);
        (await t.BalanceAsync(customer, shop.ProgramId)).ShouldBe(3_000);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task the_expiry_schedule_with_a_horizon_leaves_out_what_expires_after_it()
    {
        var t = await db.Host.NewTenantAsync();
        await t.NewShopAsync(expiry: new { kind = "DATE_EARNED", days = 30 });
        var customer = await t.NewCustomerAsync();
        await t.AwardAsync(customer, "4");
        Clock.Advance(TimeSpan.FromDays(20));
        await t.AwardAsync(customer, "6");
        var horizon = Clock.GetUtcNow().AddDays(15);

        var items = await db.Database.ReadAsync(c => Schedules.ExpiryScheduleAsync(c, db.Database.Dialect, t.OrgId, OwnerType.Customer, customer, null, false, CancellationToken.None, horizon),
            CancellationToken.None);
        items.Select(i => i.Points).ShouldBe([Points.FromWhole(4)]);
        var all = await db.Database.ReadAsync(c => Schedules.ExpiryScheduleAsync(c, db.Database.Dialect, t.OrgId, OwnerType.Customer, customer, null, false, CancellationToken.None),
            CancellationToken.None);
        all.Select(i => i.Points).ShouldBe([Points.FromWhole(4), Points.FromWhole(6)]);
    }

    [Fact]
    public async Task search_finds_a_customer_by_each_identifier_and_card_and_a_group_by_id_and_nothing_of_another_organization()
    {
        var t = await db.Host.NewTenantAsync();
        await t.NewShopAsync();
        var tag = Guid.NewGuid().ToString("N")[..8];
        var customer = (await t.PostOkAsync("/v1/customers", new
        {
            firstName = "Grace", lastName = "Hopper", email = $"g-{tag}@example.com", mobile = "+1555" + tag, externalId = "X" + tag, accountNumbers = new[] { "C" + tag },
        })).GetProperty("customerId").GetInt64();
        var group = (await t.PostOkAsync("/v1/groups", new { name = "Navy", primaryCustomerId = customer })).GetProperty("groupId").GetInt64();

        foreach (var (kind, value) in new[]
                 {
                     (SearchKind.CustomerId, customer.ToString()), (SearchKind.Email, $"g-{tag}@example.com"), (SearchKind.Mobile, "+1555" + tag),
                     (SearchKind.ExternalId, "X" + tag), (SearchKind.Card, "C" + tag), (SearchKind.Any, " C" + tag + " "),
                 })
        {
            var hits = await CustomerSearch.FindAsync(db.Database, t.OrgId, kind, value, CancellationToken.None);
            hits.ShouldBe([new SearchHit(false, customer, "Grace Hopper", hits.Single().Matched)], kind.ToString());
        }
        (await CustomerSearch.FindAsync(db.Database, t.OrgId, SearchKind.GroupId, group.ToString(), CancellationToken.None))
            .ShouldBe([new SearchHit(true, group, "Navy", "group id")]);

        var other = await db.Host.NewTenantAsync();
        (await CustomerSearch.FindAsync(db.Database, other.OrgId, SearchKind.Email, $"g-{tag}@example.com", CancellationToken.None)).ShouldBeEmpty();
        (await CustomerSearch.FindAsync(db.Database, other.OrgId, SearchKind.Card, "C" + tag, CancellationToken.None)).ShouldBeEmpty();
    }
}

public sealed class SupportReadTestsOnSqlite(SqliteDatabase db) : SupportReadTests(db), IClassFixture<SqliteDatabase>;
public sealed class SupportReadTestsOnPostgres(PostgresDatabase db) : SupportReadTests(db), IClassFixture<PostgresDatabase>;
