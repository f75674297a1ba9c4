using LoyaltyLedger.Ledger;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Tiers;

/// <summary>An owner's tier row as the reads and the evaluation read it.</summary>
internal sealed class OwnerTierRow
{
    /// <summary>Read only where one query reads an owner's rows in several programs (<see cref="TierReads.ForOwnerAsync"/>).</summary>
    public long ProgramId { get; set; }
    /// <summary>Read only where one query reads many owners' rows (the evaluation).</summary>
    public string OwnerType { get; set; } = "";
    public long OwnerId { get; set; }
    public string TierName { get; set; } = "";
    public long TierSince { get; set; }
    public long PeriodNo { get; set; }
    public long PeriodStart { get; set; }
    public long PeriodEnd { get; set; }
    public long MetricLifetime { get; set; }
    public long MetricPeriod { get; set; }
    public long MetricNext { get; set; }
    public long Pinned { get; set; }
    public string? OverrideReason { get; set; }
}

/// <summary>
/// Where an owner stands after a posting counted toward its tier metric: the tier it held when the
/// posting was made (whose multiplier the posting earns at), the period the posting counted in, and
/// the tier the metric now reaches (higher only when this posting crossed a threshold).
/// </summary>
public sealed record TierStanding(
    OwnerType OwnerType,
    long OwnerId,
    LoyaltyProgram Program,
    int Level,
    int Reached,
    long CountedInPeriod,
    Points Metric,
    long PeriodEnd)
{
    public TierPolicy Policy => Program.Tiers!;
    public Tier Tier => Policy.Tiers[Level];
    public Points Multiplier => Tier.Multiplier ?? Points.FromWhole(1);
    public bool Crossed => Reached > Level;
}

/// <summary>
/// The tier engine's part in postings: counting what a posting earns toward its owner's tier metric,
/// upgrading on the posting that crosses a threshold, and taking a return's share back out.
/// </summary>
/// <remarks>
/// <para>Every call comes after the posting has locked the owner's wallets, and the owner's tier row
/// is locked by its own update: tier rows are always locked after wallets (as the event counters
/// are), so tiers add no deadlock. Postings of one owner are serialized on that row, which is why
/// fifty concurrent bills crossing a threshold upgrade exactly once: each reads the counters its
/// own update left, and only the one whose count crosses sees a higher tier than it holds.</para>
/// <para>The metric never counts multiplied earnings (a tier is earned by activity, not by holding
/// a tier), nor the upgrade bonus.</para>
/// </remarks>
public static class TierAccrual
{
    /// <summary>The event name of an upgrade bonus: plain points credited by the posting that upgraded the owner.</summary>
    public const string UpgradeBonusEvent = "TierUpgradeBonus";

    /// <summary>
    /// The wallet an upgrade bonus is credited to, which a posting that may upgrade its owner locks
    /// with its other wallets (before the tier row), or null when the program pays no bonus.
    /// </summary>
    public static WalletKey? BonusWallet(LoyaltyProgram program, OwnerType ownerType, long ownerId) =>
        program.Tiers is { } policy && policy.Tiers.Any(t => t.UpgradeBonus is { IsPositive: true })
            ? new WalletKey(ownerType, ownerId, program.ProgramId, WalletKey.PlainPoints, PointCategory.Regular)
            : null;

    /// <summary>
    /// What a posting's credits count toward the program's tier metric: units of the metric's
    /// currency, or plain points, at the rule's rate (never multiplied), or the amount billed.
    /// </summary>
    public static Points MetricOf(LoyaltyProgram program, IEnumerable<(AlternateCurrency? Currency, Points Points)> baseCredits, long amountBilled)
    {
        if (program.Tiers is not { } policy) return Points.Zero;
        return policy.Metric.Kind switch
        {
            TierMetric.AmountBilled => new Points(amountBilled),
            TierMetric.PointsEarned => baseCredits.Where(c => c.Currency is null).Aggregate(Points.Zero, (sum, c) => sum + c.Points),
            _ => program.TierMetricCurrency is { } metricCurrency
                ? baseCredits.Where(c => c.Currency?.CurrencyId == metricCurrency.CurrencyId).Aggregate(Points.Zero, (sum, c) => sum + c.Points)
                : Points.Zero,
        };
    }

    /// <summary>
    /// Counts <paramref name="metric"/> toward the owner's tier (creating its tier row at the base
    /// tier when it has none) and returns where it stands; null when the program has no tiers. From
    /// here on the posting's lines record the tier held before this count.
    /// </summary>
    /// <remarks>
    /// What is earned after the owner's period ended but before the evaluation decided on it counts
    /// toward the next period (metric_next), and upgrades nobody: the evaluation, which is due, decides
    /// the ended period first and then applies the upgrade the new period's metric supports.
    /// </remarks>
    public static async Task<TierStanding?> CountAsync(Posting posting, LoyaltyProgram program, OwnerType ownerType, long ownerId, Points metric)
    {
        var batch = posting.Batch();
        var count = AddCount(batch, posting, program, ownerType, ownerId, metric);
        return count is null ? null : Standing(count, await batch.RunAsync());
    }

    /// <summary>A count added to a batch, to be read with <see cref="Standing"/> once the batch has run.</summary>
    public sealed record PendingCount(Posting Posting, LoyaltyProgram Program, OwnerType OwnerType, long OwnerId, int Query);

    /// <summary>
    /// Adds <see cref="CountAsync"/>'s upsert to <paramref name="batch"/> (a posting puts it right after
    /// its wallet locks, in the same round trip); null when the program has no tiers.
    /// </summary>
    public static PendingCount? AddCount(StatementBatch batch, Posting posting, LoyaltyProgram program, OwnerType ownerType, long ownerId, Points metric)
    {
        if (program.Tiers is not { } policy) return null;
        var (start, end) = policy.Period.Around(posting.Now);
        var query = batch.Query(
            """
            INSERT INTO owner_tiers (org_id, owner_type, owner_id, program_id, tier_name, tier_since, period_no, period_start, period_end,
                metric_lifetime, metric_period, metric_next, pinned, override_reason, updated_at)
            VALUES (@org, @ownerType, @ownerId, @programId, @base, @now, 1, @start, @end, @metric, @metric, 0, 0, NULL, @now)
            ON CONFLICT (org_id, owner_type, owner_id, program_id) DO UPDATE SET
                metric_lifetime = owner_tiers.metric_lifetime + @metric,
                metric_period = owner_tiers.metric_period + CASE WHEN owner_tiers.period_end > @now THEN @metric ELSE 0 END,
                metric_next = owner_tiers.metric_next + CASE WHEN owner_tiers.period_end > @now THEN 0 ELSE @metric END,
                updated_at = @now
            RETURNING tier_name, period_no, period_end, metric_lifetime, metric_period, metric_next, pinned
            """,
            new
            {
                org = posting.OrgId, ownerType = ownerType.ToWire(), ownerId, programId = program.ProgramId, @base = policy.Base.Name,
                now = posting.NowMs, start = start.ToUnixTimeMilliseconds(), end = end.ToUnixTimeMilliseconds(), metric = metric.Thousandths,
            });
        return new PendingCount(posting, program, ownerType, ownerId, query);
    }

    /// <summary>Where the owner stands after a count (see <see cref="CountAsync"/>); from here on the posting's lines record the tier held before it.</summary>
    public static TierStanding Standing(PendingCount count, BatchResults results)
    {
        var (posting, program, ownerType, ownerId) = (count.Posting, count.Program, count.OwnerType, count.OwnerId);
        var policy = program.Tiers!;
        var row = results.Rows(count.Query).Single();
        static long Long(object? value) => Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture);
        var (tierName, periodNo, periodEnd) = ((string)row[0]!, Long(row[1]), Long(row[2]));
        var (lifetime, period, next, pinned) = (Long(row[3]), Long(row[4]), Long(row[5]), Long(row[6]));
        var level = policy.LevelOf(tierName);
        posting.SetTier(ownerType, ownerId, program.ProgramId, policy.Tiers[level].Name);

        // Once the period has ended, the evaluation decides first (whatever the window): the tier to
        // renew or lose is the one held at the period's end.
        var periodEnded = periodEnd <= posting.NowMs;
        var windowMetric = policy.Metric.Window == TierMetric.Lifetime ? new Points(lifetime) : new Points(periodEnded ? next : period);
        var reached = pinned == 0 && !periodEnded ? Math.Max(level, policy.LevelReached(windowMetric)) : level;
        return new TierStanding(ownerType, ownerId, program, level, reached, periodEnded ? periodNo + 1 : periodNo, windowMetric, periodEnd);
    }

    /// <summary>
    /// Applies the upgrade a posting's count reached (nothing when it crossed no threshold): the
    /// owner's new tier, its history row and tier.changed, and the upgrade bonus of every tier it
    /// passed as one <see cref="UpgradeBonusEvent"/> event. A ROLLING period restarts at the upgrade.
    /// The bonus wallet must have been locked with the posting's others (<see cref="BonusWallet"/>).
    /// </summary>
    public static async Task<PostingResult?> UpgradeAsync(Posting posting, TierStanding standing, long? causedByEventId, long? runId = null)
    {
        if (!standing.Crossed) return null;
        var policy = standing.Policy;
        var to = policy.Tiers[standing.Reached];
        var batch = posting.Batch();
        var periodEnd = standing.PeriodEnd;
        if (policy.Period.Kind == TierPeriod.Rolling)
        {
            // "12 months from the last tier change": the period starts again at the upgrade, and its
            // metric counts from zero (what was earned before it is the previous period's).
            periodEnd = policy.Period.After(posting.Now).ToUnixTimeMilliseconds();
            batch.Execute(
                """
                UPDATE owner_tiers SET tier_name = @tier, tier_since = @now, period_no = period_no + 1, period_start = @now,
                    period_end = @periodEnd, metric_period = 0, metric_next = 0, override_reason = NULL, updated_at = @now
                WHERE org_id = @org AND owner_type = @ownerType AND owner_id = @ownerId AND program_id = @programId
                """,
                RowArgs(posting, standing, to.Name, periodEnd));
        }
        else
        {
            batch.Execute(
                """
                UPDATE owner_tiers SET tier_name = @tier, tier_since = @now, period_end = @periodEnd, override_reason = NULL, updated_at = @now
                WHERE org_id = @org AND owner_type = @ownerType AND owner_id = @ownerId AND program_id = @programId
                """,
                RowArgs(posting, standing, to.Name, periodEnd));
        }
        TierChanges.Add(batch, posting.OrgId, new TierChangeRecord(standing.OwnerType, standing.OwnerId, standing.Program.ProgramId,
            standing.Tier.Name, to.Name, TierCauses.Upgrade, standing.Metric, periodEnd, posting.NowMs, causedByEventId, runId,
            PostedBy: posting.PostedBy));
        await batch.RunAsync();
        posting.SetTier(standing.OwnerType, standing.OwnerId, standing.Program.ProgramId, to.Name);

        var passed = policy.Tiers.Skip(standing.Level + 1).Take(standing.Reached - standing.Level).ToList();
        var bonus = passed.Aggregate(Points.Zero, (sum, t) => sum + (t.UpgradeBonus ?? Points.Zero));
        if (!bonus.IsPositive) return null;
        var key = new WalletKey(standing.OwnerType, standing.OwnerId, standing.Program.ProgramId, WalletKey.PlainPoints, PointCategory.Regular);
        // A customer's bonus is the customer's own event; a group's names no customer (the pool earned it).
        var customerId = standing.OwnerType == OwnerType.Customer ? standing.OwnerId : NewEvent.NoCustomer;
        var eventId = await posting.InsertEventAsync(new NewEvent(standing.OwnerType, standing.OwnerId, customerId, UpgradeBonusEvent,
            DisplayName: $"{to.Name} upgrade bonus", SourceProgramId: standing.Program.ProgramId, RelatedEventId: causedByEventId,
            DetailsJson: System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, string>
            {
                ["fromTier"] = standing.Tier.Name,
                ["toTier"] = to.Name,
                ["tiersPassed"] = string.Join(",", passed.Select(t => t.Name)),
            })));
        var expiresAt = standing.Program.Expiry.ExpiryFor(posting.Now)?.ToUnixTimeMilliseconds();
        var entry = await posting.CreditAsync(eventId, key, bonus, expiresAt);
        return new PostingResult(eventId, UpgradeBonusEvent, null, [EntryView.Of(entry, null)]);
    }

    /// <summary>
    /// Takes a return's share of a bill's metric back out of its owner's counters: lifetime, and the
    /// period the bill counted in if that is still the current (or the next) one. Never below zero;
    /// the tier itself stays until the next evaluation.
    /// </summary>
    public static async Task TakeBackAsync(Posting posting, LoyaltyProgram program, OwnerType ownerType, long ownerId, Points metric, long? countedInPeriod)
    {
        if (program.Tiers is null || !metric.IsPositive) return;
        await posting.ExecuteAsync(
            """
            UPDATE owner_tiers SET
                metric_lifetime = {greatest}(0, metric_lifetime - @metric),
                metric_period = CASE WHEN period_no = @period THEN {greatest}(0, metric_period - @metric) ELSE metric_period END,
                metric_next = CASE WHEN period_no + 1 = @period THEN {greatest}(0, metric_next - @metric) ELSE metric_next END,
                updated_at = @now
            WHERE org_id = @org AND owner_type = @ownerType AND owner_id = @ownerId AND program_id = @programId
            """,
            new
            {
                org = posting.OrgId, ownerType = ownerType.ToWire(), ownerId, programId = program.ProgramId, metric = metric.Thousandths,
                period = countedInPeriod ?? -1, now = posting.NowMs,
            });
    }

    private static object RowArgs(Posting posting, TierStanding standing, string tier, long periodEnd) => new
    {
        org = posting.OrgId, ownerType = standing.OwnerType.ToWire(), ownerId = standing.OwnerId, programId = standing.Program.ProgramId,
        now = posting.NowMs, tier, periodEnd,
    };
}
