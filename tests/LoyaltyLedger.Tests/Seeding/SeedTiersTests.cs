using Dapper;
using LoyaltyLedger.Audit;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Seeding;
using LoyaltyLedger.Tests.Infrastructure;
using LoyaltyLedger.Tiers;

namespace LoyaltyLedger.Tests.Seeding;

/// <summary>
/// A seed with tiers (<c>seed --tiers</c>, the evaluation benchmark's data): every owner's tier row
/// holds what its seeded postings count toward the metric, and an evaluation as of the end of the
/// history decides exactly the owners the seed made due.
/// </summary>
public abstract class SeedTiersTests(DatabaseFixture db)
{
    private static readonly DateTimeOffset Until = new(2026, 6, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>bench/tier-policy.json (points earned over a rolling 12-month period), with other thresholds if given.</summary>
    private static TierPolicy Policy(string metric = TierMetric.PointsEarned, string? currency = null, long gold = 1000, long platinum = 3000) => new()
    {
        Metric = new TierMetric { Kind = metric, Currency = currency, Window = TierMetric.InPeriod },
        Period = new TierPeriod { Kind = TierPeriod.Rolling, Months = 12 },
        Downgrade = TierPolicy.OneDown,
        Tiers =
        [
            new Tier("Silver", Points.Zero),
            new Tier("Gold", Points.FromWhole(gold), RenewalThreshold: Points.FromWhole(gold * 4 / 5), Multiplier: new Points(1500), UpgradeBonus: Points.FromWhole(100)),
            new Tier("Platinum", Points.FromWhole(platinum), Multiplier: Points.FromWhole(2), UpgradeBonus: Points.FromWhole(250)),
        ],
    };

    private Task<SeedResult> SeedAsync(TierPolicy? policy, double due = 0.5, string suffix = "", long customers = 300, long events = 6_000, double skew = 1.0) =>
        OrganizationSeeder.SeedAsync(db.Database, new SeedOptions
        {
            OrganizationName = "tiered " + Guid.NewGuid().ToString("N")[..8] + suffix, Customers = customers, Events = events, Stores = 5, Until = Until, Skew = skew,
            Tiers = policy is null ? null : new SeedTiers(policy, due),
        }, null, CancellationToken.None);

    private sealed class OwnerRow
    {
        public long OwnerId { get; set; }
        public string TierName { get; set; } = "";
        public long PeriodNo { get; set; }
        public long PeriodStart { get; set; }
        public long PeriodEnd { get; set; }
        public long MetricLifetime { get; set; }
        public long MetricPeriod { get; set; }
        public long MetricNext { get; set; }
        public long Pinned { get; set; }
        /// <summary>From the ledger: plain points credited by bills, generic events and allocations, over the lifetime, the period and after it.</summary>
        public long Lifetime { get; set; }
        public long InPeriod { get; set; }
        public long After { get; set; }
        public long BillsInPeriod { get; set; }
        public long BillsInPeriodCounted { get; set; }
    }

    [Fact]
    public async Task every_seeded_owner_has_a_tier_row_whose_counters_are_what_its_postings_earned()
    {
        var seeded = await SeedAsync(Policy());

        var rows = (await db.Database.ReadAsync(c => c.QueryAsync<OwnerRow>(
            """
            SELECT t.owner_id AS OwnerId, t.tier_name AS TierName, t.period_no AS PeriodNo, t.period_start AS PeriodStart, t.period_end AS PeriodEnd,
                t.metric_lifetime AS MetricLifetime, t.metric_period AS MetricPeriod, t.metric_next AS MetricNext, t.pinned AS Pinned,
                (SELECT COALESCE(SUM(e.points), 0) FROM ledger_entries e JOIN events ev ON ev.org_id = e.org_id AND ev.event_id = e.event_id
                 WHERE e.org_id = t.org_id AND e.owner_type = 'CUSTOMER' AND e.owner_id = t.owner_id AND e.currency_id = 0 AND e.entry_type = 'CREDIT'
                   AND ev.event_name IN ('TransactionAdd', 'GenericEvent', 'BulkAllocatePoints')) AS Lifetime,
                (SELECT COALESCE(SUM(e.points), 0) FROM ledger_entries e JOIN events ev ON ev.org_id = e.org_id AND ev.event_id = e.event_id
                 WHERE e.org_id = t.org_id AND e.owner_type = 'CUSTOMER' AND e.owner_id = t.owner_id AND e.currency_id = 0 AND e.entry_type = 'CREDIT'
                   AND ev.event_name IN ('TransactionAdd', 'GenericEvent', 'BulkAllocatePoints')
                   AND e.created_at >= t.period_start AND e.created_at < t.period_end) AS InPeriod,
                (SELECT COALESCE(SUM(e.points), 0) FROM ledger_entries e JOIN events ev ON ev.org_id = e.org_id AND ev.event_id = e.event_id
                 WHERE e.org_id = t.org_id AND e.owner_type = 'CUSTOMER' AND e.owner_id = t.owner_id AND e.currency_id = 0 AND e.entry_type = 'CREDIT'
                   AND ev.event_name IN ('TransactionAdd', 'GenericEvent', 'BulkAllocatePoints') AND e.created_at >= t.period_end) AS After,
                (SELECT COUNT(*) FROM bills b WHERE b.org_id = t.org_id AND b.customer_id = t.owner_id
                   AND b.bill_date >= t.period_start AND b.bill_date < t.period_end) AS BillsInPeriod,
                (SELECT COUNT(*) FROM bills b WHERE b.org_id = t.org_id AND b.customer_id = t.owner_id
                   AND b.bill_date >= t.period_start AND b.bill_date < t.period_end AND b.tier_period = t.period_no AND b.tier_metric > 0) AS BillsInPeriodCounted
            FROM owner_tiers t WHERE t.org_id = @org AND t.program_id = @program ORDER BY t.owner_id
            """, new { org = seeded.OrgId, program = seeded.ProgramId }), CancellationToken.None)).ToList();

        rows.Count.ShouldBe(300);
        var policy = Policy();
        var untilMs = Until.ToUnixTimeMilliseconds();
        foreach (var row in rows)
        {
            (row.MetricLifetime, row.MetricPeriod, row.MetricNext).ShouldBe((row.Lifetime, row.InPeriod, row.After), $"customer {row.OwnerId}");
            row.BillsInPeriodCounted.ShouldBe(row.BillsInPeriod, $"customer {row.OwnerId}: its bills in the period name the period");
            policy.LevelOf(row.TierName).ShouldBeGreaterThanOrEqualTo(policy.LevelReached(new Points(row.MetricPeriod)), $"customer {row.OwnerId}");
            row.PeriodEnd.ShouldBe(policy.Period.After(DateTimeOffset.FromUnixTimeMilliseconds(row.PeriodStart)).ToUnixTimeMilliseconds());
            if (row.PeriodEnd > untilMs) row.MetricNext.ShouldBe(0);
            row.Pinned.ShouldBe(0);
        }
        var tiers = seeded.Tiers.ShouldNotBeNull();
        (tiers.Owners, tiers.AsOf).ShouldBe((300, Until));
        tiers.Due.ShouldBe(rows.Count(r => r.PeriodEnd <= untilMs));
        tiers.Due.ShouldBeInRange(90, 210);
        tiers.ByTier.ShouldBe(policy.Tiers.Select(t => (t.Name, (long)rows.Count(r => r.TierName == t.Name))).ToList());
        tiers.ByTier[1].Owners.ShouldBeGreaterThan(0);
        tiers.ByTier[2].Owners.ShouldBeGreaterThan(0);
        (await LedgerVerifier.VerifyAsync(db.Database, seeded.OrgId, CancellationToken.None)).Violations.ShouldBeEmpty();
    }

    [Fact]
    public async Task an_evaluation_as_of_the_end_of_the_seeded_history_decides_exactly_the_due_owners_and_a_second_decides_none()
    {
        // bench/tiers.sh's data and policy (even activity, thresholds scaled to it), enough owners
        // that several cross a threshold in the weeks after their period ended.
        var policy = Policy(gold: 450, platinum: 800);
        var seeded = await SeedAsync(policy, due: 0.5, customers: 3_000, events: 15_000, skew: 0);
        var tiers = seeded.Tiers.ShouldNotBeNull();
        var now = DateTimeOffset.UtcNow;

        var first = await TierEvaluation.RunAsync(db.Database, seeded.OrgId, tiers.AsOf, now, "test", CancellationToken.None);
        var second = await TierEvaluation.RunAsync(db.Database, seeded.OrgId, tiers.AsOf, now, "test", CancellationToken.None);

        first.Evaluated.ShouldBe((int)tiers.Due);
        (first.Renewed + first.Downgraded + first.Rolled).ShouldBe(first.Evaluated);
        first.Renewed.ShouldBeGreaterThan(0);
        (second.Evaluated, second.Upgraded).ShouldBe((0, 0));
        var stillDue = await db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>(
            "SELECT COUNT(*) FROM owner_tiers WHERE org_id = @org AND period_end <= @asOf",
            new { org = seeded.OrgId, asOf = tiers.AsOf.ToUnixTimeMilliseconds() }), CancellationToken.None);
        stillDue.ShouldBe(0);

        // The upgrades the new periods supported, applied many owners to a transaction: each owner
        // now holds at least what its period metric reaches, upgraded once, with one bonus each.
        first.Upgraded.ShouldBeGreaterThan(1);
        var standings = await db.Database.ReadAsync(c => c.QueryAsync<(string Tier, long Metric)>(
            "SELECT tier_name, metric_period FROM owner_tiers WHERE org_id = @org", new { org = seeded.OrgId }), CancellationToken.None);
        standings.ShouldAllBe(s => policy.LevelOf(s.Tier) >= policy.LevelReached(new Points(s.Metric)));
        var (upgrades, bonuses) = await db.Database.ReadAsync(c => c.QuerySingleAsync<(long, long)>(
            """
            SELECT (SELECT COUNT(*) FROM tier_changes WHERE org_id = @org AND cause = 'UPGRADE' AND run_id = @run),
                   (SELECT COUNT(*) FROM events WHERE org_id = @org AND event_name = 'TierUpgradeBonus')
            """, new { org = seeded.OrgId, run = first.RunId }), CancellationToken.None);
        (upgrades, bonuses).ShouldBe((first.Upgraded, first.Upgraded));
        (await LedgerVerifier.VerifyAsync(db.Database, seeded.OrgId, CancellationToken.None)).Violations.ShouldBeEmpty();
    }

    [Fact]
    public async Task a_seed_with_tiers_generates_the_same_history_as_a_seed_without()
    {
        var plain = await SeedAsync(null, suffix: " plain");
        var tiered = await SeedAsync(Policy(), suffix: " tiered");

        (tiered.Events, tiered.Entries, tiered.Lots, tiered.HeaviestCustomerEvents).ShouldBe((plain.Events, plain.Entries, plain.Lots, plain.HeaviestCustomerEvents));
        (await BalancesAsync(tiered.OrgId)).ShouldBe(await BalancesAsync(plain.OrgId));
        tiered.Rows.ShouldBe(plain.Rows + 300);
        plain.Tiers.ShouldBeNull();
        var plainTierRows = await db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>(
            """
            SELECT (SELECT COUNT(*) FROM owner_tiers WHERE org_id = @org) + (SELECT COUNT(*) FROM tier_policies WHERE org_id = @org)
                + (SELECT COUNT(*) FROM bills WHERE org_id = @org AND (tier_period IS NOT NULL OR tier_metric <> 0))
            """, new { org = plain.OrgId }), CancellationToken.None);
        plainTierRows.ShouldBe(0);
    }

    [Fact]
    public async Task a_seed_whose_metric_counts_a_currency_the_seeded_program_lacks_is_refused_before_anything_is_written()
    {
        var name = "refused " + Guid.NewGuid().ToString("N")[..8];
        var error = await Should.ThrowAsync<LedgerException>(() => OrganizationSeeder.SeedAsync(db.Database, new SeedOptions
        {
            OrganizationName = name, Customers = 10, Events = 20, Stores = 1, Until = Until,
            Tiers = new SeedTiers(Policy(TierMetric.CurrencyUnits, "Tier-points")),
        }, null, CancellationToken.None));

        error.Code.ShouldBe("currency_not_found");
        (await LoyaltyLedger.Organizations.Tenants.FindOrganizationAsync(db.Database, name, CancellationToken.None)).ShouldBeNull();
    }

    private async Task<long[]> BalancesAsync(long orgId) => (await db.Database.ReadAsync(c => c.QueryAsync<long>(
        "SELECT balance FROM wallets WHERE org_id = @org ORDER BY owner_id, currency_id", new { org = orgId }), CancellationToken.None)).ToArray();
}

public sealed class SeedTiersTestsOnSqlite(SqliteDatabase db) : SeedTiersTests(db), IClassFixture<SqliteDatabase>;

public sealed class SeedTiersTestsOnPostgres(PostgresDatabase db) : SeedTiersTests(db), IClassFixture<PostgresDatabase>;
