using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using Dapper;
using LoyaltyLedger.Server.Cli;
using LoyaltyLedger.Tests.Infrastructure;
using LoyaltyLedger.Tests.Lifecycle;
using LoyaltyLedger.Tests.Outbox;

namespace LoyaltyLedger.Tests.Tiers;

/// <summary>
/// Tiers (issue 18) through the HTTP API, on a clock the tests move: upgrades on the crossing
/// posting with their bonus, the multiplier of the tier held, renewal and downgrade at the
/// evaluation date, returns, groups, overrides, the tier on every ledger line, the history and its
/// tier.changed events, and refused configurations that write nothing.
/// </summary>
public abstract class TierTests(DatabaseFixture db)
{
    private static readonly DateTimeOffset Jan1 = new(2025, 1, 1, 10, 0, 0, TimeSpan.Zero);

    /// <summary>Where a ROLLING 12-month period that started at <see cref="Jan1"/> ends.</summary>
    private static readonly DateTimeOffset PeriodEnd = Jan1.AddYears(1);

    private TestClock Clock => db.Host.Clock;

    private static readonly object[] StandardTiers =
    [
        new { name = "Silver", threshold = "0" },
        new { name = "Gold", threshold = "100", renewalThreshold = "80", multiplier = "1.5", upgradeBonus = "10" },
        new { name = "Platinum", threshold = "300", multiplier = "2", upgradeBonus = "50" },
    ];

    /// <summary>A tier configuration on the program's Tier-points currency; the standard tiers unless given.</summary>
    private static object Policy(string window = "LIFETIME", string downgrade = "ONE_DOWN", object? period = null, object[]? tiers = null, object? metric = null) => new
    {
        metric = metric ?? new { kind = "CURRENCY", currency = "Tier-points", window },
        period = period ?? new { kind = "ROLLING", months = 12 },
        downgrade,
        tiers = tiers ?? StandardTiers,
    };

    /// <summary>
    /// A tenant on <see cref="Jan1"/> with a program earning 0.1 point, 0.5 Stars and 1 Tier-point
    /// per unit spent, a store and till, one customer, and the given tiers (the standard ones by default).
    /// </summary>
    private async Task<(Tenant T, Shop Shop, long Customer)> SetUpAsync(object? policy = null)
    {
        Clock.Set(Jan1);
        var t = await db.Host.NewTenantAsync();
        var program = await t.PostOkAsync("/v1/programs", new
        {
            name = "Tiered",
            earnRate = "0.1",
            currencies = new[] { new { name = "Stars", earnRate = "0.5" }, new { name = "Tier-points", earnRate = "1" } },
        });
        var shop = new Shop(program.GetProperty("programId").GetInt64(), "store-1", "till-1");
        await t.PostOkAsync("/v1/stores", new { code = shop.StoreCode, name = "Store 1" });
        await t.PostOkAsync("/v1/tills", new { code = shop.TillCode, storeCode = shop.StoreCode });
        var customer = await t.NewCustomerAsync();
        await PutTiersOkAsync(t, shop.ProgramId, policy ?? Policy());
        return (t, shop, customer);
    }

    private static async Task<HttpResponseMessage> PutTiersAsync(Tenant t, long programId, object body) =>
        await t.Http.PutAsJsonAsync($"/v1/programs/{programId}/tiers", body, Tenant.Json);

    private static async Task<JsonElement> PutTiersOkAsync(Tenant t, long programId, object body)
    {
        using var response = await PutTiersAsync(t, programId, body);
        var text = await response.Content.ReadAsStringAsync();
        ((int)response.StatusCode).ShouldBe(200, text);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private static Task<JsonElement> TierAsync(Tenant t, long customerId, long programId) =>
        t.GetOkAsync($"/v1/customers/{customerId}/tier?programId={programId}");

    private static Task<JsonElement> GroupTierAsync(Tenant t, long groupId, long programId) =>
        t.GetOkAsync($"/v1/groups/{groupId}/tier?programId={programId}");

    private static async Task<string> TierNameAsync(Tenant t, long customerId, long programId) =>
        (await TierAsync(t, customerId, programId)).GetProperty("tier").GetString()!;

    private static async Task<List<JsonElement>> HistoryAsync(Tenant t, long customerId, long programId, string owners = "customers") =>
        (await t.GetOkAsync($"/v1/{owners}/{customerId}/tier-history?programId={programId}")).EnumerateArray().ToList();

    /// <summary>A history as "CAUSE from->to metric" lines, oldest first.</summary>
    private static async Task<List<string>> HistoryLinesAsync(Tenant t, long ownerId, long programId, string owners = "customers") =>
        (await HistoryAsync(t, ownerId, programId, owners)).Select(h =>
            $"{h.GetProperty("cause").GetString()} {Str(h, "fromTier") ?? "none"}->{h.GetProperty("toTier").GetString()} {h.GetProperty("metric").GetString()}").ToList();

    private static Task<JsonElement> EvaluateAsync(Tenant t, DateTimeOffset? asOf = null) =>
        t.PostOkAsync("/v1/lifecycle/tiers/evaluate", asOf is null ? new { } : new { asOf });

    /// <summary>An evaluation's answer as "evaluated/renewed/downgraded/upgraded".</summary>
    private static string Counts(JsonElement run) =>
        $"{run.GetProperty("evaluated").GetInt32()}/{run.GetProperty("renewed").GetInt32()}/{run.GetProperty("downgraded").GetInt32()}/{run.GetProperty("upgraded").GetInt32()}";

    /// <summary>A property's string (or the raw text of a number), null when absent or null.</summary>
    private static string? Str(JsonElement e, string name) =>
        !e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString() : v.GetRawText();

    private static List<string?> EntryTiers(JsonElement answer) =>
        answer.GetProperty("entries").EnumerateArray().Select(e => Str(e, "tier")).ToList();

    /// <summary>
    /// An owner's stored ledger lines, oldest first, as "Event TYPE points [currency] @tier"
    /// (ledger_entries.tier; opening-balance lines left out).
    /// </summary>
    private Task<List<string>> LinesAsync(Tenant t, long ownerId, string ownerType = "CUSTOMER") => db.Database.ReadAsync(async c =>
        (await c.QueryAsync<(string EventName, string EntryType, string? Currency, long Points, string? Tier)>(
            """
            SELECT e.event_name, le.entry_type, cu.name, le.points, le.tier
            FROM ledger_entries le JOIN events e ON e.event_id = le.event_id
            LEFT JOIN currencies cu ON cu.org_id = le.org_id AND cu.currency_id = le.currency_id
            WHERE le.org_id = @orgId AND le.owner_type = @ownerType AND le.owner_id = @ownerId AND le.entry_type <> 'OPENING_BALANCE'
            ORDER BY le.entry_id
            """, new { orgId = t.OrgId, ownerType, ownerId }))
        .Select(r => $"{r.EventName} {r.EntryType} {new Points(r.Points)}{(r.Currency is null ? "" : " " + r.Currency)} @{r.Tier ?? "none"}").ToList(),
        CancellationToken.None);

    private Task<long> EventCountAsync(Tenant t, string eventName) => db.Database.ReadAsync(c =>
        c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM events WHERE org_id = @org AND event_name = @eventName", new { org = t.OrgId, eventName }),
        CancellationToken.None);

    private static Task<JsonElement> ReturnAsync(Tenant t, Shop shop, string billNumber, decimal amount) =>
        t.PostOkAsync("/v1/returns", new { storeCode = shop.StoreCode, billNumber, amount });

    private static Task<JsonElement> OverrideAsync(Tenant t, long customerId, long programId, string tier, string reason, bool pinned = false) =>
        t.PostOkAsync($"/v1/customers/{customerId}/tier/override", new { programId, tier, reason, pinned });

    private static DateTimeOffset Instant(JsonElement e, string name) =>
        DateTimeOffset.Parse(e.GetProperty(name).GetString()!, CultureInfo.InvariantCulture);

    // ---- upgrades ----

    [Fact]
    public async Task the_bill_that_crosses_a_threshold_upgrades_earns_at_the_old_tier_and_the_next_bill_earns_at_the_new_one()
    {
        var (t, shop, c) = await SetUpAsync();
        (await TierAsync(t, c, shop.ProgramId)).GetProperty("tier").GetString().ShouldBe("Silver");

        var crossing = await t.BillAsync(shop, c, "B-1", 150m);
        EntryTiers(crossing).ShouldBe(["Silver", "Silver", "Silver"]);
        var upgrade = crossing.GetProperty("tierUpgrade");
        upgrade.GetProperty("fromTier").GetString().ShouldBe("Silver");
        upgrade.GetProperty("toTier").GetString().ShouldBe("Gold");
        upgrade.GetProperty("bonusEntries").EnumerateArray().Select(e => $"{e.GetProperty("points").GetString()} @{Str(e, "tier")}").ShouldBe(["10.000 @Gold"]);
        var tier = await TierAsync(t, c, shop.ProgramId);
        tier.GetProperty("tier").GetString().ShouldBe("Gold");
        tier.GetProperty("multiplier").GetString().ShouldBe("1.500");
        tier.GetProperty("pinned").GetBoolean().ShouldBeFalse();
        tier.GetProperty("metric").GetProperty("lifetime").GetString().ShouldBe("150.000");
        tier.GetProperty("metric").GetProperty("value").GetString().ShouldBe("150.000");
        tier.GetProperty("nextTier").GetProperty("name").GetString().ShouldBe("Platinum");
        tier.GetProperty("nextTier").GetProperty("threshold").GetString().ShouldBe("300.000");
        tier.GetProperty("nextTier").GetProperty("missing").GetString().ShouldBe("150.000");
        Instant(tier, "since").ShouldBe(Jan1);
        Instant(tier.GetProperty("renewal"), "date").ShouldBe(PeriodEnd);

        var next = await t.BillAsync(shop, c, "B-2", 10m);
        EntryTiers(next).ShouldBe(["Gold", "Gold", "Gold"]);
        Str(next, "tierUpgrade").ShouldBeNull();

        (await LinesAsync(t, c)).ShouldBe([
            "TransactionAdd CREDIT 15.000 @Silver",
            "TransactionAdd CREDIT 75.000 Stars @Silver",
            "TransactionAdd CREDIT 150.000 Tier-points @Silver",
            "TierUpgradeBonus CREDIT 10.000 @Gold",
            "TransactionAdd CREDIT 1.500 @Gold",
            "TransactionAdd CREDIT 7.500 Stars @Gold",
            "TransactionAdd CREDIT 10.000 Tier-points @Gold", // the metric currency is never multiplied
        ]);
        var history = await HistoryAsync(t, c, shop.ProgramId);
        (await HistoryLinesAsync(t, c, shop.ProgramId)).ShouldBe(["UPGRADE Silver->Gold 150.000"]);
        Str(history[0], "eventId").ShouldBe(crossing.GetProperty("eventId").GetInt64().ToString(CultureInfo.InvariantCulture));
        Str(history[0], "runId").ShouldBeNull();
        (await EventCountAsync(t, "TierUpgradeBonus")).ShouldBe(1);
        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(26_500);
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
    }

    [Fact]
    public async Task a_bill_that_crosses_two_tiers_pays_both_bonuses_in_one_TierUpgradeBonus_event()
    {
        var (t, shop, c) = await SetUpAsync();
        var crossing = await t.BillAsync(shop, c, "B-1", 350m);

        EntryTiers(crossing).ShouldBe(["Silver", "Silver", "Silver"]);
        var tier = await TierAsync(t, c, shop.ProgramId);
        tier.GetProperty("tier").GetString().ShouldBe("Platinum");
        tier.GetProperty("multiplier").GetString().ShouldBe("2.000");
        Str(tier, "nextTier").ShouldBeNull();   // the top tier
        (await LinesAsync(t, c)).ShouldBe([
            "TransactionAdd CREDIT 35.000 @Silver",
            "TransactionAdd CREDIT 175.000 Stars @Silver",
            "TransactionAdd CREDIT 350.000 Tier-points @Silver",
            "TierUpgradeBonus CREDIT 60.000 @Platinum",
        ]);
        (await EventCountAsync(t, "TierUpgradeBonus")).ShouldBe(1);
        (await HistoryLinesAsync(t, c, shop.ProgramId)).ShouldBe(["UPGRADE Silver->Platinum 350.000"]);
        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(95_000);
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
    }

    [Fact]
    public async Task a_metric_that_reaches_the_threshold_exactly_upgrades()
    {
        var (t, shop, c) = await SetUpAsync();
        await t.AwardAsync(c, "99.999", "Tier-points");
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Silver");
        (await TierAsync(t, c, shop.ProgramId)).GetProperty("nextTier").GetProperty("missing").GetString().ShouldBe("0.001");
        await t.AwardAsync(c, "0.001", "Tier-points");

        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Gold");
        (await LinesAsync(t, c)).ShouldBe([
            "GenericEvent CREDIT 99.999 Tier-points @Silver",
            "GenericEvent CREDIT 0.001 Tier-points @Silver",
            "TierUpgradeBonus CREDIT 10.000 @Gold",
        ]);
    }

    [Fact]
    public async Task the_multiplier_applies_to_what_the_rule_earns_rounded_down_but_never_to_the_metric_currency_or_awards()
    {
        var (t, shop, c) = await SetUpAsync(Policy(tiers:
        [
            new { name = "Silver", threshold = "0" },
            new { name = "Gold", threshold = "100", multiplier = "1.255" },
        ]));
        await t.AwardAsync(c, "150", "Tier-points");
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Gold");

        var bill = await t.PostOkAsync("/v1/transactions", new
        {
            customerId = c, billNumber = "B-1", amount = 123.457m, storeCode = shop.StoreCode, tillCode = shop.TillCode, programId = shop.ProgramId,
            awards = new[] { new { points = "5", currency = (string?)null }, new { points = "7", currency = (string?)"Stars" }, new { points = "2", currency = (string?)"Tier-points" } },
        });
        EntryTiers(bill).ShouldAllBe(x => x == "Gold");
        await t.PostOkAsync("/v1/events", new { customerId = c, eventName = "Birthday", awards = new[] { new { points = "20" } } });
        // The metric counts the bill's Tier-points at 1x and its award of them: 150 + 123.457 + 2.
        (await TierAsync(t, c, shop.ProgramId)).GetProperty("metric").GetProperty("lifetime").GetString().ShouldBe("275.457");

        (await LinesAsync(t, c)).ShouldBe([
            "GenericEvent CREDIT 150.000 Tier-points @Silver",
            "TransactionAdd CREDIT 15.492 @Gold",             // the rule earns floor(123.457 x 0.1) = 12.345; floor(12.345 x 1.255 = 15.492975)
            "TransactionAdd CREDIT 77.468 Stars @Gold",       // the rule earns floor(123.457 x 0.5) = 61.728; floor(61.728 x 1.255 = 77.46864)
            "TransactionAdd CREDIT 123.457 Tier-points @Gold", // the metric's own currency at 1x
            "TransactionAdd CREDIT 5.000 @Gold",              // awards are never multiplied
            "TransactionAdd CREDIT 7.000 Stars @Gold",
            "TransactionAdd CREDIT 2.000 Tier-points @Gold",
            "GenericEvent CREDIT 20.000 @Gold",
        ]);
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
    }

    [Fact]
    public async Task an_upgrade_an_evaluation_decided_but_did_not_post_is_posted_by_the_next_run_once()
    {
        var (t, shop, c) = await SetUpAsync(Policy(window: "PERIOD"));
        await t.AwardAsync(c, "10", "Tier-points", programId: shop.ProgramId);
        // As a run that stopped after deciding this owner leaves it: its new period already reaches
        // Gold (what it earned after the period ended), marked, and not upgraded yet.
        await db.Database.WriteAsync((conn, tx) => conn.ExecuteAsync(
            "UPDATE owner_tiers SET metric_period = 150000, upgrade_due = 1 WHERE org_id = @org AND owner_id = @c",
            new { org = t.OrgId, c }, tx), CancellationToken.None);
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Silver");

        var first = await EvaluateAsync(t);
        first.GetProperty("upgraded").GetInt32().ShouldBe(1);
        first.GetProperty("evaluated").GetInt32().ShouldBe(0, "nobody's period ended: the run only posts what was marked");
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Gold");
        var history = await HistoryAsync(t, c, shop.ProgramId);
        history.Count.ShouldBe(1);
        history[0].GetProperty("cause").GetString().ShouldBe("UPGRADE");
        history[0].GetProperty("runId").GetInt64().ShouldBe(first.GetProperty("runId").GetInt64());
        (await db.Database.ReadAsync(conn => conn.ExecuteScalarAsync<long>(
            "SELECT upgrade_due FROM owner_tiers WHERE org_id = @org AND owner_id = @c", new { org = t.OrgId, c }), CancellationToken.None)).ShouldBe(0);

        Counts(await EvaluateAsync(t)).ShouldBe("0/0/0/0");
        (await HistoryAsync(t, c, shop.ProgramId)).Count.ShouldBe(1);
    }

    [Fact]
    public async Task fifty_concurrent_bills_crossing_the_threshold_upgrade_once_with_one_bonus_and_the_bills_before_the_crossing_at_the_old_tier()
    {
        var (t, shop, c) = await SetUpAsync(Policy(tiers:
        [
            new { name = "Silver", threshold = "0" },
            new { name = "Gold", threshold = "95", multiplier = "1.5", upgradeBonus = "10" },
            new { name = "Platinum", threshold = "100000", multiplier = "2", upgradeBonus = "50" },
        ]));
        var statuses = await Task.WhenAll(Enumerable.Range(0, 50).Select(async i =>
        {
            using var response = await t.PostAsync("/v1/transactions", new
            {
                customerId = c, billNumber = $"C-{i}", amount = 10m, storeCode = shop.StoreCode, tillCode = shop.TillCode, programId = shop.ProgramId,
            });
            return (int)response.StatusCode;
        }));
        statuses.ShouldAllBe(s => s == 201);

        (await HistoryLinesAsync(t, c, shop.ProgramId)).ShouldBe(["UPGRADE Silver->Gold 100.000"]);
        (await EventCountAsync(t, "TierUpgradeBonus")).ShouldBe(1);
        var tier = await TierAsync(t, c, shop.ProgramId);
        tier.GetProperty("tier").GetString().ShouldBe("Gold");
        tier.GetProperty("metric").GetProperty("lifetime").GetString().ShouldBe("500.000");
        var lines = await LinesAsync(t, c);
        lines.Count(l => l == "TransactionAdd CREDIT 1.000 @Silver").ShouldBe(10);
        lines.Count(l => l == "TransactionAdd CREDIT 1.500 @Gold").ShouldBe(40);
        lines.Count(l => l == "TierUpgradeBonus CREDIT 10.000 @Gold").ShouldBe(1);
        // The bonus comes right after the tenth bill's lines: nothing before it was posted at Gold.
        lines.TakeWhile(l => !l.StartsWith("TierUpgradeBonus", StringComparison.Ordinal)).ShouldAllBe(l => l.EndsWith("@Silver", StringComparison.Ordinal));
        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(10 * 1_000 + 40 * 1_500 + 10_000);
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
    }

    // ---- what the metric counts ----

    [Fact]
    public async Task a_points_metric_counts_the_rule_points_at_1x_even_when_the_tier_multiplies_them()
    {
        var (t, shop, c) = await SetUpAsync(Policy(metric: new { kind = "POINTS", window = "LIFETIME" }, tiers:
        [
            new { name = "Silver", threshold = "0" },
            new { name = "Gold", threshold = "10", multiplier = "2" },
            new { name = "Platinum", threshold = "40", multiplier = "3" },
        ]));
        await t.BillAsync(shop, c, "B-1", 120m);   // 12 points at 1x: Gold
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Gold");
        await t.BillAsync(shop, c, "B-2", 150m);   // 30 points at 2x, 15 counted: 27 in all
        await t.AwardAsync(c, "5");                // awards count: 32
        await t.AwardAsync(c, "100", "Stars");     // not points: not counted

        var tier = await TierAsync(t, c, shop.ProgramId);
        tier.GetProperty("tier").GetString().ShouldBe("Gold");
        tier.GetProperty("metric").GetProperty("lifetime").GetString().ShouldBe("32.000");
        (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(12_000 + 30_000 + 5_000);
    }

    [Fact]
    public async Task an_amount_metric_counts_bill_amounts_and_not_awards()
    {
        var (t, shop, c) = await SetUpAsync(Policy(metric: new { kind = "AMOUNT", window = "LIFETIME" }, tiers:
        [
            new { name = "Silver", threshold = "0" },
            new { name = "Gold", threshold = "200", multiplier = "1.5" },
        ]));
        await t.AwardAsync(c, "500");
        await t.AwardAsync(c, "500", "Tier-points");
        await t.BillAsync(shop, c, "B-1", 150.5m);
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Silver");
        (await TierAsync(t, c, shop.ProgramId)).GetProperty("metric").GetProperty("lifetime").GetString().ShouldBe("150.500");
        await t.BillAsync(shop, c, "B-2", 49.5m);
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Gold");
    }

    // ---- the tier on each entry ----

    [Fact]
    public async Task every_ledger_line_records_the_tier_held_when_it_was_posted_in_the_answer_and_in_the_database()
    {
        var (t, shop, c) = await SetUpAsync();
        var other = await t.NewCustomerAsync();
        var answers = new List<JsonElement>
        {
            await t.BillAsync(shop, c, "B-1", 50m),
            await t.AwardAsync(c, "60", "Tier-points"),   // 110: Gold
            await t.PostOkAsync("/v1/redemptions", new { customerId = c, points = "3", programId = shop.ProgramId }),
            await ReturnAsync(t, shop, "B-1", 20m),
            await t.BillAsync(shop, c, "B-2", 10m),
            await t.PostOkAsync("/v1/transfers", new { from = new { customerId = c }, to = new { customerId = other }, points = "2", programId = shop.ProgramId }),
        };

        var answered = answers.SelectMany(a => a.GetProperty("entries").EnumerateArray())
            .Select(e => (Id: e.GetProperty("entryId").GetInt64(), Tier: Str(e, "tier"))).ToList();
        answered.ShouldAllBe(e => e.Tier != null);
        var stored = (await db.Database.ReadAsync(conn => conn.QueryAsync<(long EntryId, string? Tier)>(
            "SELECT entry_id, tier FROM ledger_entries WHERE org_id = @org AND entry_type <> 'OPENING_BALANCE'", new { org = t.OrgId }), CancellationToken.None))
            .ToDictionary(r => r.EntryId, r => r.Tier);
        foreach (var (id, tier) in answered) stored[id].ShouldBe(tier, $"entry {id}");

        (await LinesAsync(t, c)).ShouldBe([
            "TransactionAdd CREDIT 5.000 @Silver",
            "TransactionAdd CREDIT 25.000 Stars @Silver",
            "TransactionAdd CREDIT 50.000 Tier-points @Silver",
            "GenericEvent CREDIT 60.000 Tier-points @Silver",
            "TierUpgradeBonus CREDIT 10.000 @Gold",
            "PointsRedemption DEBIT 3.000 @Gold",
            "ReturnBill DEBIT 2.000 @Gold",
            "ReturnBill DEBIT 10.000 Stars @Gold",
            "ReturnBill DEBIT 20.000 Tier-points @Gold",
            "TransactionAdd CREDIT 1.500 @Gold",
            "TransactionAdd CREDIT 7.500 Stars @Gold",
            "TransactionAdd CREDIT 10.000 Tier-points @Gold",
            "PointsTransfer DEBIT 2.000 @Gold",
        ]);
        (await LinesAsync(t, other)).ShouldBe(["PointsTransfer CREDIT 2.000 @Silver"]);
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
    }

    // ---- evaluation ----

    [Fact]
    public async Task a_member_who_meets_the_renewal_threshold_in_the_period_keeps_the_tier_at_the_evaluation_date_and_not_before()
    {
        var (t, shop, c) = await SetUpAsync(Policy(window: "PERIOD"));
        var upgrade = await t.AwardAsync(c, "150", "Tier-points");
        var tier = await TierAsync(t, c, shop.ProgramId);
        tier.GetProperty("tier").GetString().ShouldBe("Gold");
        // A ROLLING period restarts at the upgrade: the period metric counts from zero.
        tier.GetProperty("metric").GetProperty("period").GetString().ShouldBe("0.000");
        tier.GetProperty("metric").GetProperty("lifetime").GetString().ShouldBe("150.000");

        Clock.Set(new DateTimeOffset(2025, 6, 1, 10, 0, 0, TimeSpan.Zero));
        await t.AwardAsync(c, "85", "Tier-points");
        tier = await TierAsync(t, c, shop.ProgramId);
        tier.GetProperty("metric").GetProperty("value").GetString().ShouldBe("85.000");
        var renewal = tier.GetProperty("renewal");
        Instant(renewal, "date").ShouldBe(PeriodEnd);
        Instant(renewal, "periodStart").ShouldBe(Jan1);
        renewal.GetProperty("keepsWith").GetString().ShouldBe("80.000");
        renewal.GetProperty("missing").GetString().ShouldBe("0.000");

        Clock.Set(PeriodEnd.AddDays(1));
        Counts(await EvaluateAsync(t, PeriodEnd.AddSeconds(-1))).ShouldBe("0/0/0/0");
        var run = await EvaluateAsync(t, PeriodEnd);
        Counts(run).ShouldBe("1/1/0/0");
        Instant(run, "asOf").ShouldBe(PeriodEnd);

        tier = await TierAsync(t, c, shop.ProgramId);
        tier.GetProperty("tier").GetString().ShouldBe("Gold");
        // The next period starts where the old one ended.
        Instant(tier.GetProperty("renewal"), "periodStart").ShouldBe(PeriodEnd);
        Instant(tier.GetProperty("renewal"), "date").ShouldBe(PeriodEnd.AddYears(1));
        tier.GetProperty("metric").GetProperty("period").GetString().ShouldBe("0.000");
        var history = await HistoryAsync(t, c, shop.ProgramId);
        (await HistoryLinesAsync(t, c, shop.ProgramId)).ShouldBe(["UPGRADE Silver->Gold 150.000", "RENEWAL Gold->Gold 85.000"]);
        Str(history[0], "eventId").ShouldBe(upgrade.GetProperty("eventId").GetInt64().ToString(CultureInfo.InvariantCulture));
        Str(history[1], "runId").ShouldBe(Str(run, "runId"));
        Str(history[1], "eventId").ShouldBeNull();
        (await EventCountAsync(t, "TierUpgradeBonus")).ShouldBe(1);
    }

    [Fact]
    public async Task a_member_below_the_renewal_threshold_is_downgraded_at_the_evaluation_date_and_not_before()
    {
        var (t, shop, c) = await SetUpAsync(Policy(window: "PERIOD"));
        await t.AwardAsync(c, "150", "Tier-points");
        Clock.Set(new DateTimeOffset(2025, 6, 1, 10, 0, 0, TimeSpan.Zero));
        await t.AwardAsync(c, "50", "Tier-points");
        var renewal = (await TierAsync(t, c, shop.ProgramId)).GetProperty("renewal");
        renewal.GetProperty("keepsWith").GetString().ShouldBe("80.000");
        renewal.GetProperty("missing").GetString().ShouldBe("30.000");

        // Never mid-period: an evaluation now, or at any time before the period ends, changes nothing.
        Counts(await EvaluateAsync(t)).ShouldBe("0/0/0/0");
        Clock.Set(PeriodEnd.AddHours(1));
        Counts(await EvaluateAsync(t, PeriodEnd.AddMilliseconds(-1))).ShouldBe("0/0/0/0");
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Gold");

        var run = await EvaluateAsync(t, PeriodEnd);
        Counts(run).ShouldBe("1/0/1/0");
        var tier = await TierAsync(t, c, shop.ProgramId);
        tier.GetProperty("tier").GetString().ShouldBe("Silver");
        tier.GetProperty("multiplier").GetString().ShouldBe("1.000");
        (await HistoryLinesAsync(t, c, shop.ProgramId)).ShouldBe(["UPGRADE Silver->Gold 150.000", "DOWNGRADE Gold->Silver 50.000"]);
        Str((await HistoryAsync(t, c, shop.ProgramId))[1], "runId").ShouldBe(Str(run, "runId"));

        // The next bill earns at the base tier again.
        await t.BillAsync(shop, c, "B-1", 10m);
        (await LinesAsync(t, c)).TakeLast(3).ShouldBe([
            "TransactionAdd CREDIT 1.000 @Silver", "TransactionAdd CREDIT 5.000 Stars @Silver", "TransactionAdd CREDIT 10.000 Tier-points @Silver"]);
    }

    [Fact]
    public async Task a_second_evaluation_at_the_same_instant_changes_nothing()
    {
        var (t, shop, keeper) = await SetUpAsync(Policy(window: "PERIOD"));
        var loser = await t.NewCustomerAsync();
        var basic = await t.NewCustomerAsync();
        long[] owners = [keeper, loser, basic];
        await t.AwardAsync(keeper, "150", "Tier-points");
        await t.AwardAsync(loser, "150", "Tier-points");
        await t.AwardAsync(basic, "20", "Tier-points");
        Clock.Set(new DateTimeOffset(2025, 6, 1, 10, 0, 0, TimeSpan.Zero));
        await t.AwardAsync(keeper, "100", "Tier-points");

        Clock.Set(PeriodEnd.AddDays(3));
        var first = await EvaluateAsync(t, PeriodEnd.AddDays(2));
        first.GetProperty("renewed").GetInt32().ShouldBe(1);
        first.GetProperty("downgraded").GetInt32().ShouldBe(1);
        first.GetProperty("upgraded").GetInt32().ShouldBe(0);
        var histories = new List<List<string>>();
        var tiers = new List<string>();
        foreach (var owner in owners)
        {
            histories.Add(await HistoryLinesAsync(t, owner, shop.ProgramId));
            tiers.Add((await TierAsync(t, owner, shop.ProgramId)).GetRawText());
        }
        var before = await LedgerAudit.CountsAsync(db.Database, t.OrgId);
        var feed = (await t.FeedAsync()).Count;

        Counts(await EvaluateAsync(t, PeriodEnd.AddDays(2))).ShouldBe("0/0/0/0");
        Counts(await EvaluateAsync(t)).ShouldBe("0/0/0/0");

        for (var i = 0; i < owners.Length; i++)
        {
            (await HistoryLinesAsync(t, owners[i], shop.ProgramId)).ShouldBe(histories[i]);
            (await TierAsync(t, owners[i], shop.ProgramId)).GetRawText().ShouldBe(tiers[i]);
        }
        (await LedgerAudit.CountsAsync(db.Database, t.OrgId)).ShouldBe(before);
        (await t.FeedAsync()).Count.ShouldBe(feed);
        histories[0].ShouldBe(["UPGRADE Silver->Gold 150.000", "RENEWAL Gold->Gold 100.000"]);
        histories[1].ShouldBe(["UPGRADE Silver->Gold 150.000", "DOWNGRADE Gold->Silver 0.000"]);
        histories[2].ShouldBeEmpty();
    }

    [Fact]
    public async Task a_return_after_an_upgrade_lowers_the_metric_keeps_the_tier_and_the_next_evaluation_downgrades()
    {
        var (t, shop, c) = await SetUpAsync(Policy(window: "LIFETIME"));
        await t.BillAsync(shop, c, "B-1", 150m);
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Gold");

        Clock.Set(new DateTimeOffset(2025, 2, 1, 10, 0, 0, TimeSpan.Zero));
        var returned = await ReturnAsync(t, shop, "B-1", 100m);
        EntryTiers(returned).ShouldAllBe(x => x == "Gold");
        var tier = await TierAsync(t, c, shop.ProgramId);
        tier.GetProperty("tier").GetString().ShouldBe("Gold");                                  // never downgraded mid-period
        tier.GetProperty("metric").GetProperty("lifetime").GetString().ShouldBe("50.000");      // 150 - floor(150 x 100 / 150)
        tier.GetProperty("renewal").GetProperty("missing").GetString().ShouldBe("30.000");
        (await HistoryLinesAsync(t, c, shop.ProgramId)).ShouldBe(["UPGRADE Silver->Gold 150.000"]);

        // The rest of the bill returned: the metric never goes below zero.
        await ReturnAsync(t, shop, "B-1", 50m);
        (await TierAsync(t, c, shop.ProgramId)).GetProperty("metric").GetProperty("lifetime").GetString().ShouldBe("0.000");
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Gold");

        Clock.Set(PeriodEnd.AddDays(1));
        Counts(await EvaluateAsync(t, PeriodEnd)).ShouldBe("1/0/1/0");
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Silver");
        (await HistoryLinesAsync(t, c, shop.ProgramId)).ShouldBe(["UPGRADE Silver->Gold 150.000", "DOWNGRADE Gold->Silver 0.000"]);
    }

    [Fact]
    public async Task a_partial_return_lowers_the_period_metric_of_the_period_the_bill_counted_in_by_its_share()
    {
        var (t, shop, c) = await SetUpAsync(Policy(window: "PERIOD"));
        await t.AwardAsync(c, "150", "Tier-points");   // Gold; the period restarts at zero
        await t.BillAsync(shop, c, "B-1", 100.003m);    // 100.003 Tier-points in this period
        await ReturnAsync(t, shop, "B-1", 33.001m);     // floor(100.003 x 33.001 / 100.003) = 33.001

        var tier = await TierAsync(t, c, shop.ProgramId);
        tier.GetProperty("metric").GetProperty("period").GetString().ShouldBe("67.002");
        tier.GetProperty("metric").GetProperty("lifetime").GetString().ShouldBe("217.002");
        tier.GetProperty("renewal").GetProperty("missing").GetString().ShouldBe("12.998");
        tier.GetProperty("tier").GetString().ShouldBe("Gold");

        Clock.Set(PeriodEnd.AddDays(1));
        Counts(await EvaluateAsync(t, PeriodEnd)).ShouldBe("1/0/1/0");
        (await HistoryLinesAsync(t, c, shop.ProgramId)).ShouldBe(["UPGRADE Silver->Gold 150.000", "DOWNGRADE Gold->Silver 67.002"]);
    }

    [Fact]
    public async Task postings_after_the_period_ended_count_toward_the_next_period_and_upgrade_only_at_the_evaluation()
    {
        var (t, shop, c) = await SetUpAsync(Policy(window: "PERIOD"));
        await t.AwardAsync(c, "150", "Tier-points");
        Clock.Set(new DateTimeOffset(2025, 6, 1, 10, 0, 0, TimeSpan.Zero));
        await t.AwardAsync(c, "90", "Tier-points");

        Clock.Set(PeriodEnd.AddDays(10));
        await t.AwardAsync(c, "350", "Tier-points");   // would cross Platinum, but the old period awaits its evaluation
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Gold");
        (await HistoryLinesAsync(t, c, shop.ProgramId)).ShouldBe(["UPGRADE Silver->Gold 150.000"]);

        var run = await EvaluateAsync(t, PeriodEnd.AddDays(10));
        run.GetProperty("renewed").GetInt32().ShouldBe(1);
        run.GetProperty("upgraded").GetInt32().ShouldBe(1);
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Platinum");
        var history = await HistoryAsync(t, c, shop.ProgramId);
        (await HistoryLinesAsync(t, c, shop.ProgramId)).ShouldBe([
            "UPGRADE Silver->Gold 150.000", "RENEWAL Gold->Gold 90.000", "UPGRADE Gold->Platinum 350.000"]);
        Str(history[2], "runId").ShouldBe(Str(run, "runId"));
        Str(history[2], "eventId").ShouldBeNull();
    }

    [Fact]
    public async Task on_a_lifetime_metric_too_a_posting_after_the_period_ended_upgrades_nobody_until_the_evaluation()
    {
        var (t, shop, c) = await SetUpAsync(Policy(window: "LIFETIME"));
        await t.AwardAsync(c, "150", "Tier-points");
        Clock.Set(PeriodEnd.AddDays(10));
        await t.AwardAsync(c, "200", "Tier-points");   // 350 in all: past Platinum, but the ended period awaits its evaluation

        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Gold");
        (await EventCountAsync(t, "TierUpgradeBonus")).ShouldBe(1);
        var run = await EvaluateAsync(t, PeriodEnd.AddDays(10));
        Counts(run).ShouldBe("1/1/0/1");
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Platinum");
        (await HistoryLinesAsync(t, c, shop.ProgramId)).ShouldBe([
            "UPGRADE Silver->Gold 150.000", "RENEWAL Gold->Gold 350.000", "UPGRADE Gold->Platinum 350.000"]);
    }

    [Fact]
    public async Task the_evaluation_refuses_an_instant_in_the_future_and_a_key_that_is_not_admin()
    {
        var (t, _, _) = await SetUpAsync();
        using var future = await t.PostAsync("/v1/lifecycle/tiers/evaluate", new { asOf = Jan1.AddDays(1) });
        await Tenant.ShouldFailAsync(future, 400, "invalid_request");

        var writer = await db.Host.NewTenantAsync(Organizations.KeyRole.Write);
        using var forbidden = await writer.PostAsync("/v1/lifecycle/tiers/evaluate", new { });
        await Tenant.ShouldFailAsync(forbidden, 403, "forbidden");
    }

    [Fact]
    public async Task the_tiers_evaluate_command_renews_and_downgrades_as_of_the_instant_given_and_a_second_run_changes_nothing()
    {
        var (t, shop, keeper) = await SetUpAsync(Policy(window: "PERIOD"));
        var loser = await t.NewCustomerAsync();
        await t.AwardAsync(keeper, "150", "Tier-points");
        await t.AwardAsync(loser, "150", "Tier-points");
        Clock.Set(new DateTimeOffset(2025, 6, 1, 10, 0, 0, TimeSpan.Zero));
        await t.AwardAsync(keeper, "80", "Tier-points");
        var org = t.OrgId.ToString(CultureInfo.InvariantCulture);

        (await Commands.RunAsync(["tiers", "evaluate", "--as-of", "2025-12-31T10:00:00Z", "--org", org, .. db.CommandLineArgs])).ShouldBe(0);
        (await TierNameAsync(t, loser, shop.ProgramId)).ShouldBe("Gold");
        (await Commands.RunAsync(["tiers", "evaluate", "--as-of", "2026-01-01T10:00:00Z", "--org", org, .. db.CommandLineArgs])).ShouldBe(0);
        (await Commands.RunAsync(["tiers", "evaluate", "--as-of", "2026-01-01T10:00:00Z", "--org", org, .. db.CommandLineArgs])).ShouldBe(0);
        (await Commands.RunAsync(["tiers", "evaluate", "--as-of", "not-a-date", .. db.CommandLineArgs])).ShouldBe(2);

        (await HistoryLinesAsync(t, keeper, shop.ProgramId)).ShouldBe(["UPGRADE Silver->Gold 150.000", "RENEWAL Gold->Gold 80.000"]);
        (await HistoryLinesAsync(t, loser, shop.ProgramId)).ShouldBe(["UPGRADE Silver->Gold 150.000", "DOWNGRADE Gold->Silver 0.000"]);
        Str((await HistoryAsync(t, keeper, shop.ProgramId))[1], "runId").ShouldNotBeNull();
        (await TierNameAsync(t, keeper, shop.ProgramId)).ShouldBe("Gold");
        (await TierNameAsync(t, loser, shop.ProgramId)).ShouldBe("Silver");
    }

    // ---- downgrade rules and periods ----

    [Theory]
    [InlineData("ONE_DOWN", "Platinum")]
    [InlineData("SUPPORTED", "Gold")]
    [InlineData("BASE", "Silver")]
    public async Task a_member_who_falls_short_is_downgraded_by_the_programs_rule(string rule, string expected)
    {
        var (t, shop, c) = await SetUpAsync(Policy(window: "PERIOD", downgrade: rule, tiers:
        [
            new { name = "Silver", threshold = "0" },
            new { name = "Gold", threshold = "100", renewalThreshold = "80", multiplier = "1.5" },
            new { name = "Platinum", threshold = "300", multiplier = "2" },
            new { name = "Diamond", threshold = "600", multiplier = "3" },
        ]));
        await t.AwardAsync(c, "700", "Tier-points");
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Diamond");
        Clock.Set(new DateTimeOffset(2025, 6, 1, 10, 0, 0, TimeSpan.Zero));
        await t.AwardAsync(c, "90", "Tier-points");   // keeps Gold (80), not Platinum (300)

        Clock.Set(PeriodEnd.AddDays(1));
        Counts(await EvaluateAsync(t, PeriodEnd)).ShouldBe("1/0/1/0");
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe(expected);
        (await HistoryLinesAsync(t, c, shop.ProgramId)).ShouldBe(["UPGRADE Silver->Diamond 700.000", $"DOWNGRADE Diamond->{expected} 90.000"]);
    }

    [Fact]
    public async Task a_fixed_date_period_is_evaluated_every_year_on_its_date_at_midnight_utc()
    {
        var (t, shop, c) = await SetUpAsync(Policy(window: "PERIOD", period: new { kind = "FIXED_DATE", month = 4, day = 1 }));
        Clock.Set(new DateTimeOffset(2025, 1, 10, 9, 0, 0, TimeSpan.Zero));
        await t.AwardAsync(c, "150", "Tier-points");
        var tier = await TierAsync(t, c, shop.ProgramId);
        tier.GetProperty("tier").GetString().ShouldBe("Gold");
        var april2025 = new DateTimeOffset(2025, 4, 1, 0, 0, 0, TimeSpan.Zero);
        Instant(tier.GetProperty("renewal"), "date").ShouldBe(april2025);
        await t.AwardAsync(c, "85", "Tier-points");

        Clock.Set(new DateTimeOffset(2025, 4, 2, 12, 0, 0, TimeSpan.Zero));
        Counts(await EvaluateAsync(t, april2025.AddSeconds(-1))).ShouldBe("0/0/0/0");
        Counts(await EvaluateAsync(t, april2025)).ShouldBe("1/1/0/0");
        tier = await TierAsync(t, c, shop.ProgramId);
        tier.GetProperty("tier").GetString().ShouldBe("Gold");
        Instant(tier.GetProperty("renewal"), "periodStart").ShouldBe(april2025);
        Instant(tier.GetProperty("renewal"), "date").ShouldBe(april2025.AddYears(1));

        // Nothing earned in the next period: lost on its date.
        Clock.Set(new DateTimeOffset(2026, 4, 1, 0, 0, 0, TimeSpan.Zero));
        Counts(await EvaluateAsync(t)).ShouldBe("1/0/1/0");
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Silver");
        (await HistoryAsync(t, c, shop.ProgramId)).Select(h => $"{h.GetProperty("cause").GetString()} {Str(h, "fromTier")}->{h.GetProperty("toTier").GetString()}")
            .ShouldBe(["UPGRADE Silver->Gold", "RENEWAL Gold->Gold", "DOWNGRADE Gold->Silver"]);
    }

    // ---- groups ----

    [Fact]
    public async Task a_group_with_a_pooled_wallet_has_its_own_tier_on_the_pooled_metric_and_its_members_keep_theirs()
    {
        var (t, shop, a) = await SetUpAsync();
        var b = await t.NewCustomerAsync();
        var group = await t.PostOkAsync("/v1/groups", new { name = "Family", primaryCustomerId = a, members = new[] { new { customerId = b } } });
        var groupId = group.GetProperty("groupId").GetInt64();

        await t.BillAsync(shop, a, "G-1", 60m);
        (await GroupTierAsync(t, groupId, shop.ProgramId)).GetProperty("tier").GetString().ShouldBe("Silver");
        var crossing = await t.BillAsync(shop, b, "G-2", 60m);

        var groupTier = await GroupTierAsync(t, groupId, shop.ProgramId);
        groupTier.GetProperty("ownerType").GetString().ShouldBe("GROUP");
        groupTier.GetProperty("tier").GetString().ShouldBe("Gold");
        groupTier.GetProperty("metric").GetProperty("lifetime").GetString().ShouldBe("120.000");
        foreach (var member in new[] { a, b })
        {
            var mine = await TierAsync(t, member, shop.ProgramId);
            mine.GetProperty("tier").GetString().ShouldBe("Silver");
            mine.GetProperty("metric").GetProperty("lifetime").GetString().ShouldBe("0.000");
            (await HistoryAsync(t, member, shop.ProgramId)).ShouldBeEmpty();
        }
        var history = await HistoryAsync(t, groupId, shop.ProgramId, "groups");
        (await HistoryLinesAsync(t, groupId, shop.ProgramId, "groups")).ShouldBe(["UPGRADE Silver->Gold 120.000"]);
        Str(history[0], "eventId").ShouldBe(crossing.GetProperty("eventId").GetInt64().ToString(CultureInfo.InvariantCulture));

        var next = await t.BillAsync(shop, a, "G-3", 10m);
        EntryTiers(next).ShouldBe(["Gold", "Gold", "Gold"]);
        (await LinesAsync(t, groupId, "GROUP")).ShouldBe([
            "TransactionAdd CREDIT 6.000 @Silver",
            "TransactionAdd CREDIT 30.000 Stars @Silver",
            "TransactionAdd CREDIT 60.000 Tier-points @Silver",
            "TransactionAdd CREDIT 6.000 @Silver",
            "TransactionAdd CREDIT 30.000 Stars @Silver",
            "TransactionAdd CREDIT 60.000 Tier-points @Silver",
            "TierUpgradeBonus CREDIT 10.000 @Gold",
            "TransactionAdd CREDIT 1.500 @Gold",
            "TransactionAdd CREDIT 7.500 Stars @Gold",
            "TransactionAdd CREDIT 10.000 Tier-points @Gold",
        ]);

        // An override of the group changes the group only.
        await t.PostOkAsync($"/v1/groups/{groupId}/tier/override", new { programId = shop.ProgramId, tier = "Platinum", reason = "Key account" });
        (await GroupTierAsync(t, groupId, shop.ProgramId)).GetProperty("tier").GetString().ShouldBe("Platinum");
        (await TierNameAsync(t, a, shop.ProgramId)).ShouldBe("Silver");
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
    }

    // ---- overrides ----

    [Fact]
    public async Task an_override_needs_a_reason_and_a_known_tier_and_a_refused_one_changes_nothing()
    {
        var (t, shop, c) = await SetUpAsync();
        await t.AwardAsync(c, "20", "Tier-points");
        var before = (await TierAsync(t, c, shop.ProgramId)).GetRawText();
        var path = $"/v1/customers/{c}/tier/override";

        using (var missing = await t.PostAsync(path, new { programId = shop.ProgramId, tier = "Gold", pinned = false }))
            await Tenant.ShouldFailAsync(missing, 400, "invalid_json");   // a required property absent
        foreach (var reason in new[] { "", "   ", new string('x', 501) })
        {
            using var refused = await t.PostAsync(path, new { programId = shop.ProgramId, tier = "Gold", reason, pinned = false });
            await Tenant.ShouldFailAsync(refused, 400, "invalid_request");
        }
        using (var unknown = await t.PostAsync(path, new { programId = shop.ProgramId, tier = "Bronze", reason = "typo", pinned = false }))
            await Tenant.ShouldFailAsync(unknown, 404, "tier_not_found");

        (await TierAsync(t, c, shop.ProgramId)).GetRawText().ShouldBe(before);
        (await HistoryAsync(t, c, shop.ProgramId)).ShouldBeEmpty();

        var answer = await OverrideAsync(t, c, shop.ProgramId, "Gold", new string('r', 500));
        answer.ValueKind.ShouldBe(JsonValueKind.Object);
        var tier = await TierAsync(t, c, shop.ProgramId);
        tier.GetProperty("tier").GetString().ShouldBe("Gold");
        tier.GetProperty("overrideReason").GetString().ShouldBe(new string('r', 500));
        var history = await HistoryAsync(t, c, shop.ProgramId);
        (await HistoryLinesAsync(t, c, shop.ProgramId)).ShouldBe(["OVERRIDE Silver->Gold 20.000"]);
        history[0].GetProperty("reason").GetString().ShouldBe(new string('r', 500));
        Str(history[0], "postedBy").ShouldBe(t.Key.KeyId);
        // No bonus for an override.
        (await EventCountAsync(t, "TierUpgradeBonus")).ShouldBe(0);
    }

    [Fact]
    public async Task an_override_needs_an_admin_key()
    {
        var (t, shop, c) = await SetUpAsync();
        var key = await Organizations.Tenants.IssueKeyAsync(db.Database, t.OrgId, Organizations.KeyRole.Write, Clock, CancellationToken.None);
        var writer = t with { Http = db.Host.Client(key.KeyId, key.Secret) };
        using var refused = await writer.PostAsync($"/v1/customers/{c}/tier/override", new { programId = shop.ProgramId, tier = "Gold", reason = "x" });
        await Tenant.ShouldFailAsync(refused, 403, "forbidden");
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Silver");
    }

    [Fact]
    public async Task a_pinned_override_survives_evaluations_until_an_unpinned_override_and_the_next_evaluation_applies_the_rules()
    {
        var (t, shop, c) = await SetUpAsync(Policy(window: "PERIOD"));
        await t.AwardAsync(c, "10", "Tier-points");
        await OverrideAsync(t, c, shop.ProgramId, "Gold", "Compensation for a lost order", pinned: true);
        var tier = await TierAsync(t, c, shop.ProgramId);
        tier.GetProperty("tier").GetString().ShouldBe("Gold");
        tier.GetProperty("pinned").GetBoolean().ShouldBeTrue();
        tier.GetProperty("overrideReason").GetString().ShouldBe("Compensation for a lost order");
        var renewalDate = Instant(tier.GetProperty("renewal"), "date");

        // Past the evaluation date and evaluated twice: the pinned tier stays, with no history.
        Clock.Set(renewalDate.AddDays(1));
        foreach (var run in new[] { await EvaluateAsync(t, renewalDate), await EvaluateAsync(t) })
        {
            run.GetProperty("renewed").GetInt32().ShouldBe(0);
            run.GetProperty("downgraded").GetInt32().ShouldBe(0);
            run.GetProperty("upgraded").GetInt32().ShouldBe(0);
        }
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Gold");
        (await HistoryLinesAsync(t, c, shop.ProgramId)).ShouldBe(["OVERRIDE Silver->Gold 10.000"]);

        // Unpinned: the next evaluation date decides by the rules (nothing earned since: down one).
        await OverrideAsync(t, c, shop.ProgramId, "Gold", "Back to the rules", pinned: false);
        tier = await TierAsync(t, c, shop.ProgramId);
        tier.GetProperty("pinned").GetBoolean().ShouldBeFalse();
        var next = Instant(tier.GetProperty("renewal"), "date");
        Clock.Set(next.AddDays(1));
        Counts(await EvaluateAsync(t, next)).ShouldBe("1/0/1/0");
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Silver");
        (await HistoryAsync(t, c, shop.ProgramId)).Select(h => $"{h.GetProperty("cause").GetString()} {Str(h, "fromTier")}->{h.GetProperty("toTier").GetString()}")
            .ShouldBe(["OVERRIDE Silver->Gold", "OVERRIDE Gold->Gold", "DOWNGRADE Gold->Silver"]);
    }

    [Fact]
    public async Task a_pinned_owner_is_not_upgraded_automatically_and_gets_no_bonus()
    {
        var (t, shop, c) = await SetUpAsync();
        await OverrideAsync(t, c, shop.ProgramId, "Gold", "Staff", pinned: true);
        await t.AwardAsync(c, "400", "Tier-points");

        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Gold");
        (await EventCountAsync(t, "TierUpgradeBonus")).ShouldBe(0);
        (await HistoryLinesAsync(t, c, shop.ProgramId)).ShouldBe(["OVERRIDE Silver->Gold 0.000"]);
        (await LinesAsync(t, c)).ShouldBe(["GenericEvent CREDIT 400.000 Tier-points @Gold"]);
    }

    [Fact]
    public async Task an_unpinned_override_lasts_until_the_next_evaluation_which_applies_the_downgrade_rule()
    {
        var (t, shop, c) = await SetUpAsync(Policy(window: "PERIOD"));
        await t.AwardAsync(c, "10", "Tier-points");
        var before = await TierAsync(t, c, shop.ProgramId);
        Clock.Set(new DateTimeOffset(2025, 3, 1, 10, 0, 0, TimeSpan.Zero));
        await OverrideAsync(t, c, shop.ProgramId, "Platinum", "Goodwill after a complaint");
        var tier = await TierAsync(t, c, shop.ProgramId);
        tier.GetProperty("tier").GetString().ShouldBe("Platinum");
        tier.GetProperty("multiplier").GetString().ShouldBe("2.000");
        Instant(tier, "since").ShouldBe(new DateTimeOffset(2025, 3, 1, 10, 0, 0, TimeSpan.Zero));
        var renewalDate = Instant(tier.GetProperty("renewal"), "date");
        // The period is unchanged by an override.
        if (before.TryGetProperty("renewal", out var periodBefore) && periodBefore.ValueKind == JsonValueKind.Object)
            renewalDate.ShouldBe(Instant(periodBefore, "date"));

        // The override's tier earns until then.
        await t.BillAsync(shop, c, "B-1", 10m);
        (await LinesAsync(t, c)).TakeLast(3).ShouldBe([
            "TransactionAdd CREDIT 2.000 @Platinum", "TransactionAdd CREDIT 10.000 Stars @Platinum", "TransactionAdd CREDIT 10.000 Tier-points @Platinum"]);

        Clock.Set(renewalDate.AddDays(1));
        Counts(await EvaluateAsync(t, renewalDate)).ShouldBe("1/0/1/0");
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Gold");   // ONE_DOWN from Platinum
        (await HistoryAsync(t, c, shop.ProgramId)).Select(h => $"{h.GetProperty("cause").GetString()} {Str(h, "fromTier")}->{h.GetProperty("toTier").GetString()}")
            .ShouldBe(["OVERRIDE Silver->Platinum", "DOWNGRADE Platinum->Gold"]);
    }

    // ---- history and events ----

    [Fact]
    public async Task every_tier_change_is_one_history_row_and_one_tier_changed_event_with_the_same_facts()
    {
        var (t, shop, c) = await SetUpAsync(Policy(window: "PERIOD"));
        var start = (await t.GetOkAsync("/v1/events?types=tier.changed")).GetProperty("nextCursor").GetString()!;
        await t.BillAsync(shop, c, "B-1", 150m);                                              // UPGRADE (posting)
        Clock.Set(new DateTimeOffset(2025, 2, 1, 10, 0, 0, TimeSpan.Zero));
        await OverrideAsync(t, c, shop.ProgramId, "Platinum", "VIP launch");                   // OVERRIDE
        Clock.Set(PeriodEnd.AddDays(1));
        await EvaluateAsync(t, PeriodEnd);                                                     // DOWNGRADE (run)
        await t.AwardAsync(c, "100", "Tier-points");
        Clock.Set(PeriodEnd.AddYears(1).AddDays(1));
        await EvaluateAsync(t, PeriodEnd.AddYears(1));                                         // RENEWAL (run)

        var history = await HistoryAsync(t, c, shop.ProgramId);
        history.Select(h => h.GetProperty("cause").GetString()).ShouldBe(["UPGRADE", "OVERRIDE", "DOWNGRADE", "RENEWAL"]);
        var feed = (await t.GetOkAsync($"/v1/events?types=tier.changed&after={start}&limit=1000")).GetProperty("events").EnumerateArray().ToList();
        feed.Count.ShouldBe(history.Count);
        (await t.FeedAsync()).OfType("tier.changed").Count().ShouldBe(history.Count);
        for (var i = 0; i < history.Count; i++)
        {
            var row = history[i];
            var data = feed[i].Data();
            var context = $"change {i} ({row.GetProperty("cause").GetString()})";
            data.GetProperty("ownerType").GetString().ShouldBe("CUSTOMER", context);
            data.GetProperty("ownerId").GetInt64().ShouldBe(c, context);
            data.GetProperty("programId").GetInt64().ShouldBe(shop.ProgramId, context);
            foreach (var name in new[] { "fromTier", "toTier", "cause", "eventId", "runId", "reason", "metric" })
                Str(data, name).ShouldBe(Str(row, name), $"{context}: {name}");
            Instant(data, "changedAt").ShouldBe(Instant(row, "changedAt"), $"{context}: changedAt");
            Instant(data, "renewalDate").ShouldBe(Instant(row, "renewalDate"), $"{context}: renewalDate");
        }
        Str(history[0], "eventId").ShouldNotBeNull();
        Str(history[1], "reason").ShouldBe("VIP launch");
        Str(history[2], "runId").ShouldNotBeNull();
        Str(history[3], "runId").ShouldNotBeNull();
        Str(history[3], "runId").ShouldNotBe(Str(history[2], "runId"));
    }

    // ---- configuration ----

    [Fact]
    public async Task the_configuration_is_answered_and_read_back_with_its_defaults_and_amounts_as_thousandths()
    {
        var (t, shop, _) = await SetUpAsync();
        var stored = await PutTiersOkAsync(t, shop.ProgramId, Policy(window: "PERIOD", downgrade: "SUPPORTED"));

        var tiers = stored.GetProperty("tiers").EnumerateArray().ToList();
        tiers.Select(x => x.GetProperty("name").GetString()).ShouldBe(["Silver", "Gold", "Platinum"]);
        tiers.Select(x => x.GetProperty("threshold").GetString()).ShouldBe(["0.000", "100.000", "300.000"]);
        tiers.Select(x => x.GetProperty("multiplier").GetString()).ShouldBe(["1.000", "1.500", "2.000"]);
        tiers.Select(x => x.GetProperty("upgradeBonus").GetString()).ShouldBe(["0.000", "10.000", "50.000"]);
        tiers[1].GetProperty("renewalThreshold").GetString().ShouldBe("80.000");
        tiers[2].GetProperty("renewalThreshold").GetString().ShouldBe("300.000");
        stored.GetProperty("downgrade").GetString().ShouldBe("SUPPORTED");
        stored.GetProperty("metric").GetProperty("window").GetString().ShouldBe("PERIOD");
        stored.GetProperty("metric").GetProperty("currency").GetString().ShouldBe("Tier-points");
        stored.GetProperty("period").GetProperty("months").GetInt32().ShouldBe(12);

        (await t.GetOkAsync($"/v1/programs/{shop.ProgramId}/tiers")).GetRawText().ShouldBe(stored.GetRawText());
        var key = await Organizations.Tenants.IssueKeyAsync(db.Database, t.OrgId, Organizations.KeyRole.Read, Clock, CancellationToken.None);
        var reader = t with { Http = db.Host.Client(key.KeyId, key.Secret) };
        (await reader.GetOkAsync($"/v1/programs/{shop.ProgramId}/tiers")).GetRawText().ShouldBe(stored.GetRawText());
        using var notAdmin = await PutTiersAsync(reader, shop.ProgramId, Policy());
        await Tenant.ShouldFailAsync(notAdmin, 403, "forbidden");
    }

    [Fact]
    public async Task a_program_without_tiers_answers_tiers_not_configured()
    {
        Clock.Set(Jan1);
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var c = await t.NewCustomerAsync();
        using var tier = await t.Http.GetAsync($"/v1/customers/{c}/tier?programId={shop.ProgramId}");
        await Tenant.ShouldFailAsync(tier, 404, "tiers_not_configured");
        var bill = await t.BillAsync(shop, c, "B-1", 10m);
        EntryTiers(bill).ShouldAllBe(x => x == null);
    }

    public static TheoryData<string, object> RefusedConfigurations() => new()
    {
        { "descending thresholds", new[] { new { name = "Silver", threshold = "0" }, new { name = "Gold", threshold = "300" }, new { name = "Platinum", threshold = "100" } } },
        { "overlapping thresholds", new[] { new { name = "Silver", threshold = "0" }, new { name = "Gold", threshold = "100" }, new { name = "Platinum", threshold = "100" } } },
        { "base threshold not 0", new[] { new { name = "Silver", threshold = "10" }, new { name = "Gold", threshold = "100" } } },
        { "duplicate names", new[] { new { name = "Silver", threshold = "0" }, new { name = "Gold", threshold = "100" }, new { name = "GOLD", threshold = "300" } } },
        { "no tiers", Array.Empty<object>() },
        { "an empty name", new[] { new { name = "Silver", threshold = "0" }, new { name = "", threshold = "100" } } },
        { "a name of 51 characters", new[] { new { name = "Silver", threshold = "0" }, new { name = new string('G', 51), threshold = "100" } } },
        { "21 tiers", Enumerable.Range(0, 21).Select(i => new { name = $"T{i}", threshold = (i * 10).ToString(CultureInfo.InvariantCulture) }).ToArray() },
    };

    public static TheoryData<string, object> RefusedTiers() => new()
    {
        { "multiplier below 1", new { name = "Gold", threshold = "100", multiplier = "0.999" } },
        { "multiplier above 100", new { name = "Gold", threshold = "100", multiplier = "100.001" } },
        { "renewal threshold above the threshold", new { name = "Gold", threshold = "100", renewalThreshold = "100.001" } },
        { "negative upgrade bonus", new { name = "Gold", threshold = "100", upgradeBonus = "-1" } },
    };

    private async Task ShouldRefuseAsync(Tenant t, long programId, object body, int status, string code)
    {
        var stored = (await t.GetOkAsync($"/v1/programs/{programId}/tiers")).GetRawText();
        var before = await LedgerAudit.SnapshotAsync(db.Database, t.OrgId);
        using var response = await PutTiersAsync(t, programId, body);
        var problem = await Tenant.ShouldFailAsync(response, status, code);
        problem.GetProperty("detail").GetString()!.ShouldNotContain("System.");
        (await t.GetOkAsync($"/v1/programs/{programId}/tiers")).GetRawText().ShouldBe(stored);
        (await LedgerAudit.SnapshotAsync(db.Database, t.OrgId)).ShouldBe(before);
    }

    [Theory]
    [MemberData(nameof(RefusedConfigurations))]
    public async Task a_bad_tier_list_is_refused_with_invalid_tiers_and_nothing_written(string why, object tiers)
    {
        var (t, shop, _) = await SetUpAsync();
        await ShouldRefuseAsync(t, shop.ProgramId, new
        {
            metric = new { kind = "CURRENCY", currency = "Tier-points", window = "LIFETIME" },
            period = new { kind = "ROLLING", months = 12 },
            downgrade = "ONE_DOWN",
            tiers,
        }, 400, "invalid_tiers");
        why.ShouldNotBeEmpty();
    }

    [Theory]
    [MemberData(nameof(RefusedTiers))]
    public async Task a_bad_tier_is_refused_with_invalid_tiers_and_nothing_written(string why, object tier)
    {
        var (t, shop, _) = await SetUpAsync();
        await ShouldRefuseAsync(t, shop.ProgramId, Policy(tiers: [new { name = "Silver", threshold = "0" }, tier]), 400, "invalid_tiers");
        why.ShouldNotBeEmpty();
    }

    [Theory]
    [InlineData("multiplier", "1.2345")]
    [InlineData("threshold", "100.0001")]
    [InlineData("upgradeBonus", "0.0001")]
    public async Task an_amount_with_more_than_three_decimals_is_refused_with_invalid_points_and_nothing_written(string field, string value)
    {
        var (t, shop, _) = await SetUpAsync();
        var gold = new Dictionary<string, string> { ["name"] = "Gold", ["threshold"] = "100", [field] = value };
        await ShouldRefuseAsync(t, shop.ProgramId, Policy(tiers: [new { name = "Silver", threshold = "0" }, gold]), 400, "invalid_points");
    }

    [Theory]
    [InlineData("ROLLING", 0, 0)]
    [InlineData("ROLLING", 121, 0)]
    [InlineData("FIXED_DATE", 0, 1)]
    [InlineData("FIXED_DATE", 13, 1)]
    [InlineData("FIXED_DATE", 2, 29)]
    [InlineData("FIXED_DATE", 2, 0)]
    public async Task a_bad_period_is_refused_with_invalid_tiers_and_nothing_written(string kind, int number, int day)
    {
        var (t, shop, _) = await SetUpAsync();
        object period = kind == "ROLLING" ? new { kind, months = number } : new { kind, month = number, day };
        await ShouldRefuseAsync(t, shop.ProgramId, Policy(period: period), 400, "invalid_tiers");
    }

    [Fact]
    public async Task a_metric_currency_the_program_does_not_have_is_refused_with_currency_not_found()
    {
        var (t, shop, _) = await SetUpAsync();
        await ShouldRefuseAsync(t, shop.ProgramId, Policy(metric: new { kind = "CURRENCY", currency = "Miles", window = "LIFETIME" }), 404, "currency_not_found");
    }

    [Fact]
    public async Task tiers_of_a_program_that_does_not_exist_are_refused_with_program_not_found()
    {
        var (t, shop, _) = await SetUpAsync();
        var before = await LedgerAudit.SnapshotAsync(db.Database, t.OrgId);
        using var response = await PutTiersAsync(t, shop.ProgramId + 1000, Policy());
        await Tenant.ShouldFailAsync(response, 404, "program_not_found");
        (await LedgerAudit.SnapshotAsync(db.Database, t.OrgId)).ShouldBe(before);
    }

    [Fact]
    public async Task a_new_tier_list_without_a_tier_members_hold_is_refused_with_tier_in_use()
    {
        var (t, shop, c) = await SetUpAsync();
        await t.AwardAsync(c, "150", "Tier-points");
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Gold");
        await ShouldRefuseAsync(t, shop.ProgramId, Policy(tiers:
        [
            new { name = "Silver", threshold = "0" },
            new { name = "Platinum", threshold = "300", multiplier = "2" },
        ]), 409, "tier_in_use");
        (await TierNameAsync(t, c, shop.ProgramId)).ShouldBe("Gold");
    }
}

public sealed class TierTestsOnSqlite(SqliteDatabase db) : TierTests(db), IClassFixture<SqliteDatabase>;

public sealed class TierTestsOnPostgres(PostgresDatabase db) : TierTests(db), IClassFixture<PostgresDatabase>;
