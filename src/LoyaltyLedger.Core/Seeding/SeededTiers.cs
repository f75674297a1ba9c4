using LoyaltyLedger.Ledger;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tiers;

namespace LoyaltyLedger.Seeding;

/// <summary>
/// Tiers for a seed: the policy to configure on the seeded program before anything is generated
/// (what <c>PUT /v1/programs/{id}/tiers</c> takes), and the share of owners whose period has ended
/// by the end of the history, so that an evaluation as of that instant has that share to decide.
/// </summary>
public sealed record SeedTiers(TierPolicy Policy, double DueShare = 0.5);

/// <summary>
/// Each seeded owner's tier row, counted in memory from the history the generator writes, with the
/// tier engine's own rules (<see cref="TierAccrual.MetricOf"/> for what a posting counts,
/// <see cref="TierPolicy.LevelReached"/>, <see cref="TierPeriod.After"/>): the metric over the
/// owner's lifetime, over its current period, and what it earned after that period ended (due
/// owners only: that counts toward the next period). The owner holds the highest tier its window
/// metric reaches in the current period or reached in the one before (the tier its last evaluation
/// kept or gave), so an evaluation meets renewals, downgrades and upgrades alike. Periods are drawn
/// with a random generator of their own, so a seed with tiers generates the same history as one
/// without.
/// </summary>
/// <remarks>
/// The history itself is the seeder's, at 1x: its lines record no tier (as lines posted before a
/// program had tiers), and the owners have no tier history rows.
/// </remarks>
internal sealed class SeededTiers
{
    /// <summary>Due owners' periods ended at most this long before the evaluation's instant.</summary>
    private static readonly TimeSpan DueSpread = TimeSpan.FromDays(30);

    private readonly LoyaltyProgram _program;
    private readonly TierPolicy _policy;
    private readonly long _orgId;
    private readonly DateTimeOffset _asOf;
    private readonly double _dueShare;
    private readonly Random _random;
    /// <summary>The currency of each of an owner's wallets, in the generator's wallet order (null: plain points).</summary>
    private readonly AlternateCurrency?[] _walletCurrencies;
    private readonly (AlternateCurrency? Currency, Points Points)[] _credits;
    private readonly long[] _byTier;
    private long _joinedAt, _previousStart, _start, _end, _periodNo;
    private long _lifetime, _previous, _current, _next;

    /// <summary>Counts for the seeded <paramref name="program"/>, read back with its tiers; periods are drawn around <paramref name="asOf"/>.</summary>
    public SeededTiers(LoyaltyProgram program, long orgId, DateTimeOffset asOf, double dueShare, int randomSeed)
    {
        _program = program;
        _policy = program.Tiers ?? throw new ArgumentException("the program has no tiers", nameof(program));
        (_orgId, _asOf, _dueShare) = (orgId, asOf, dueShare);
        _random = new Random(unchecked(randomSeed * 31 + 17));
        _walletCurrencies = [null, .. program.Currencies];
        _credits = new (AlternateCurrency?, Points)[_walletCurrencies.Length];
        _byTier = new long[_policy.Tiers.Count];
    }

    public long Owners { get; private set; }
    public long Due { get; private set; }

    public IReadOnlyList<(string Tier, long Owners)> ByTier() => _policy.Tiers.Select((t, i) => (t.Name, _byTier[i])).ToArray();

    /// <summary>Starts an owner: draws its current period, ended by the evaluation's instant or not.</summary>
    public void Begin(long joinedAt)
    {
        _joinedAt = joinedAt;
        var due = _random.NextDouble() < _dueShare;
        var period = _policy.Period;
        DateTimeOffset start;
        if (period.Kind == TierPeriod.Rolling)
        {
            var months = period.Months ?? 12;
            var end = due
                ? _asOf - TimeSpan.FromMilliseconds(_random.NextDouble() * DueSpread.TotalMilliseconds)
                : _asOf + TimeSpan.FromMilliseconds(1 + _random.NextDouble() * ((_asOf.AddMonths(months) - _asOf).TotalMilliseconds - 1));
            start = end.AddMonths(-months);
            _previousStart = start.AddMonths(-months).ToUnixTimeMilliseconds();
        }
        else
        {
            // Every owner's period ends on the same yearly date: a due owner has not been evaluated
            // for the last one yet, the others have.
            var (current, _) = period.Around(_asOf);
            start = due ? current.AddYears(-1) : current;
            _previousStart = start.AddYears(-1).ToUnixTimeMilliseconds();
        }
        (_start, _end) = (start.ToUnixTimeMilliseconds(), period.After(start).ToUnixTimeMilliseconds());
        // Periods are numbered from 1, the one the owner joined in.
        var length = Math.Max(1, _end - _start);
        _periodNo = _joinedAt >= _start ? 1 : 1 + (_start - _joinedAt + length - 1) / length;
        (_lifetime, _previous, _current, _next) = (0, 0, 0, 0);
        Owners++;
        if (_end <= _asOf.ToUnixTimeMilliseconds()) Due++;
    }

    /// <summary>What a bill counts toward the metric, from what the rule earned at 1x in each wallet (in the generator's wallet order).</summary>
    public long BillMetric(long amount, ReadOnlySpan<long> earned)
    {
        for (var i = 0; i < _credits.Length; i++) _credits[i] = (_walletCurrencies[i], new Points(earned[i]));
        return TierAccrual.MetricOf(_program, _credits, amount).Thousandths;
    }

    /// <summary>What an award of plain points (a generic event, a bulk allocation) counts toward the metric.</summary>
    public long AwardMetric(long points) => TierAccrual.MetricOf(_program, [(null, new Points(points))], 0).Thousandths;

    /// <summary>Counts a posting made at <paramref name="at"/>; answers the number of the period it counted in (as bills.tier_period).</summary>
    public long Count(long at, long metric)
    {
        _lifetime += metric;
        if (at >= _end) { _next += metric; return _periodNo + 1; }
        if (at >= _start) { _current += metric; return _periodNo; }
        if (at >= _previousStart) _previous += metric;
        var length = Math.Max(1, _end - _start);
        return Math.Max(1, _periodNo - (_start - at + length - 1) / length);
    }

    /// <summary>Writes the owner's row of <c>owner_tiers</c>.</summary>
    public void Finish(BulkRowWriter row, string ownerType, long ownerId, long updatedAt)
    {
        var level = _policy.Metric.Window == TierMetric.Lifetime
            ? _policy.LevelReached(new Points(_lifetime - _next))
            : Math.Max(_policy.LevelReached(new Points(_previous)), _policy.LevelReached(new Points(_current)));
        _byTier[level]++;
        var since = level == 0 ? _joinedAt : Math.Max(_start, _joinedAt);
        row.Start();
        row.Long(_orgId); row.Text(ownerType); row.Long(ownerId); row.Long(_program.ProgramId); row.Text(_policy.Tiers[level].Name);
        row.Long(since); row.Long(_periodNo); row.Long(_start); row.Long(_end);
        row.Long(_lifetime); row.Long(_current); row.Long(_next); row.Long(0); row.Text(null); row.Long(updatedAt);
        row.End();
    }
}
