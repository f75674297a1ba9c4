using LoyaltyLedger.Ledger;

namespace LoyaltyLedger.Seeding;

/// <summary>
/// Tiers for a seed: the policy to configure on the seeded program before anything is generated
/// (the body of <c>PUT /v1/programs/{id}/tiers</c>), and the share of owners whose period has ended
/// by the end of the history, so that an evaluation as of that instant has that share to decide.
/// </summary>
public sealed record SeedTiers(string PolicyJson, double DueShare = 0.5);

/// <summary>
/// What the seeder needs of a tier policy: which of a posting's amounts count, over which window,
/// how long a period lasts, and the thresholds. Built from the configured policy, so the seed counts
/// what the configuration says.
/// </summary>
internal sealed record SeedTierPolicy(
    SeedTierMetric Metric,
    long MetricCurrencyId,
    bool LifetimeWindow,
    int RollingMonths,
    int FixedMonth,
    int FixedDay,
    IReadOnlyList<(string Name, long Threshold, long RenewalThreshold)> Tiers);

internal enum SeedTierMetric { Points, Currency, Amount }

/// <summary>
/// Each seeded owner's tier state, counted in memory from the history the generator writes, the way
/// the tier engine counts it: the metric over the owner's lifetime, over its current period, and
/// what it earned after that period ended (due owners only: it counts toward the next period). The
/// owner holds the highest tier its window metric reaches, in the current period or in the one
/// before (the tier its last evaluation kept or gave), so an evaluation meets renewals, downgrades
/// and upgrades alike. Periods are drawn with a random generator of their own, so a seed with tiers
/// generates the same history as one without.
/// </summary>
/// <remarks>
/// The history itself is generated at 1x: the seeded lines record no tier (as lines posted before a
/// program's tiers were configured), and the owners have no tier history rows.
/// </remarks>
internal sealed class SeededTiers(SeedTierPolicy policy, long orgId, long programId, DateTimeOffset asOf, double dueShare, int randomSeed)
{
    /// <summary>Due owners' periods ended at most this long before the evaluation's instant.</summary>
    private static readonly TimeSpan DueSpread = TimeSpan.FromDays(30);

    private readonly Random _random = new(unchecked(randomSeed * 31 + 17));
    private readonly long _asOfMs = asOf.ToUnixTimeMilliseconds();
    private long _joinedAt, _previousStart, _start, _end, _periodNo;
    private long _lifetime, _previous, _current, _next;

    private readonly long[] _byTier = new long[policy.Tiers.Count];

    public long Owners { get; private set; }
    public long Due { get; private set; }

    public IReadOnlyList<(string Tier, long Owners)> ByTier() => policy.Tiers.Select((t, i) => (t.Name, _byTier[i])).ToArray();

    /// <summary>Starts an owner: draws its period, due by <c>asOf</c> or not.</summary>
    public void Begin(long joinedAt)
    {
        _joinedAt = joinedAt;
        var due = _random.NextDouble() < dueShare;
        DateTimeOffset start, end, previousStart;
        if (policy.RollingMonths > 0)
        {
            end = due
                ? asOf - TimeSpan.FromMilliseconds(_random.NextDouble() * DueSpread.TotalMilliseconds)
                : asOf + TimeSpan.FromMilliseconds(1 + _random.NextDouble() * ((asOf.AddMonths(policy.RollingMonths) - asOf).TotalMilliseconds - 1));
            start = end.AddMonths(-policy.RollingMonths);
            previousStart = start.AddMonths(-policy.RollingMonths);
        }
        else
        {
            // Every owner's period ends on the same yearly date: a due owner has not yet been
            // evaluated for the last one, the others have.
            var last = new DateTimeOffset(asOf.Year, policy.FixedMonth, policy.FixedDay, 0, 0, 0, TimeSpan.Zero);
            if (last > asOf) last = last.AddYears(-1);
            end = due ? last : last.AddYears(1);
            start = end.AddYears(-1);
            previousStart = start.AddYears(-1);
        }
        (_previousStart, _start, _end) = (previousStart.ToUnixTimeMilliseconds(), start.ToUnixTimeMilliseconds(), end.ToUnixTimeMilliseconds());
        // Periods are numbered from 1, the owner's first (the one it joined in).
        var length = Math.Max(1, _end - _start);
        _periodNo = _joinedAt >= _start ? 1 : 1 + (_start - _joinedAt + length - 1) / length;
        (_lifetime, _previous, _current, _next) = (0, 0, 0, 0);
        Owners++;
        if (_end <= _asOfMs) Due++;
    }

    /// <summary>
    /// What a bill counts toward the metric: its amount, or what the rule earned at 1x in the
    /// metric's wallet (<paramref name="earned"/> per wallet, in the order of <paramref name="currencies"/>).
    /// </summary>
    public long BillMetric(long amount, ReadOnlySpan<long> currencies, ReadOnlySpan<long> earned)
    {
        if (policy.Metric == SeedTierMetric.Amount) return amount;
        var wanted = policy.Metric == SeedTierMetric.Points ? WalletKey.PlainPoints : policy.MetricCurrencyId;
        for (var i = 0; i < currencies.Length; i++)
            if (currencies[i] == wanted) return Math.Max(0, earned[i]);
        return 0;
    }

    /// <summary>What an award of plain points (a generic event, a bulk allocation) counts toward the metric.</summary>
    public long AwardMetric(long points) => policy.Metric == SeedTierMetric.Points ? points : 0;

    /// <summary>Counts a posting at <paramref name="at"/>; answers the number of the period it counted in.</summary>
    public long Count(long at, long metric)
    {
        _lifetime += metric;
        if (at >= _end) { _next += metric; return _periodNo + 1; }
        if (at >= _start) { _current += metric; return _periodNo; }
        if (at >= _previousStart) _previous += metric;
        return Math.Max(1, _periodNo - (_start - at + (_end - _start) - 1) / Math.Max(1, _end - _start));
    }

    /// <summary>Writes the owner's row of <c>owner_tiers</c>.</summary>
    public void Finish(BulkRowWriter row, string ownerType, long ownerId, long updatedAt)
    {
        var tier = policy.LifetimeWindow
            ? Supported(_lifetime - _next)
            : Math.Max(Supported(_previous), Supported(_current));
        _byTier[tier]++;
        var since = tier == 0 ? _joinedAt : Math.Max(_start, _joinedAt);
        row.Start();
        row.Long(orgId); row.Text(ownerType); row.Long(ownerId); row.Long(programId); row.Text(policy.Tiers[tier].Name);
        row.Long(since); row.Long(_periodNo); row.Long(_start); row.Long(_end);
        row.Long(_lifetime); row.Long(_current); row.Long(_next); row.Long(0); row.Text(null); row.Long(updatedAt);
        row.End();
    }

    /// <summary>The highest tier whose threshold the metric reaches (the base tier's is 0).</summary>
    private int Supported(long metric)
    {
        var tier = 0;
        for (var i = 1; i < policy.Tiers.Count; i++)
            if (metric >= policy.Tiers[i].Threshold) tier = i;
        return tier;
    }
}
