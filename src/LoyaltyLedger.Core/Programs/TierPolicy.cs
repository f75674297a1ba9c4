using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace LoyaltyLedger.Programs;

/// <summary>
/// A program's tiers (Silver, Gold, Platinum...) and the rules that move members between them:
/// what is counted (<see cref="Metric"/>), over which period a tier is kept (<see cref="Period"/>),
/// and where a member who does not keep a tier goes (<see cref="Downgrade"/>). Stored as JSON with
/// the program (<c>tier_policies</c>) and read with it through the catalog cache.
/// </summary>
public sealed record TierPolicy
{
    public const string OneDown = "ONE_DOWN";
    public const string Supported = "SUPPORTED";
    public const string ToBase = "BASE";
    public const int MaxTiers = 20;
    public const int MaxNameLength = 50;

    /// <summary>The largest multiplier: a tier earns at most a hundred times the rule.</summary>
    public static readonly Points MaxMultiplier = Points.FromWhole(100);

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new PointsJsonConverter() },
    };

    public TierMetric Metric { get; init; } = new();
    public TierPeriod Period { get; init; } = new();
    public string Downgrade { get; init; } = OneDown;
    public IReadOnlyList<Tier> Tiers { get; init; } = [];

    [JsonIgnore]
    public Tier Base => Tiers[0];

    /// <summary>The tier's position (0: the base tier), by name, case-insensitive; the base tier for a name the policy no longer has.</summary>
    public int LevelOf(string? name)
    {
        for (var i = 0; i < Tiers.Count; i++)
            if (string.Equals(Tiers[i].Name, name, StringComparison.OrdinalIgnoreCase)) return i;
        return 0;
    }

    /// <summary>The highest tier whose entry threshold <paramref name="metric"/> reaches.</summary>
    public int LevelReached(Points metric)
    {
        var level = 0;
        for (var i = 1; i < Tiers.Count; i++)
            if (metric >= Tiers[i].Threshold) level = i;
        return level;
    }

    /// <summary>What keeping a tier at an evaluation needs: its renewal threshold, else its entry threshold.</summary>
    public Points KeepNeeds(int level) => Tiers[level].RenewalThreshold ?? Tiers[level].Threshold;

    /// <summary>Where a member at <paramref name="level"/> whose period ended with <paramref name="metric"/> goes (its own level when it keeps it).</summary>
    public int Evaluate(int level, Points metric)
    {
        if (level == 0 || metric >= KeepNeeds(level)) return level;
        return Downgrade switch
        {
            ToBase => 0,
            Supported => Enumerable.Range(0, level).Last(l => l == 0 || metric >= KeepNeeds(l)),
            _ => level - 1,
        };
    }

    /// <summary>Checks the policy as a whole; a refusal names what is wrong (<c>invalid_tiers</c>).</summary>
    public void Validate()
    {
        if (Metric is null) throw Invalid("metric is required.");
        if (Metric.Kind is not (TierMetric.CurrencyUnits or TierMetric.PointsEarned or TierMetric.AmountBilled))
            throw Invalid($"metric.kind is {TierMetric.CurrencyUnits}, {TierMetric.PointsEarned} or {TierMetric.AmountBilled}.");
        if (Metric.Kind == TierMetric.CurrencyUnits && string.IsNullOrWhiteSpace(Metric.Currency))
            throw Invalid("A CURRENCY metric names the alternate currency it counts (metric.currency).");
        if (Metric.Kind != TierMetric.CurrencyUnits && Metric.Currency is not null)
            throw Invalid("metric.currency is only for a CURRENCY metric.");
        if (Metric.Window is not (TierMetric.Lifetime or TierMetric.InPeriod))
            throw Invalid($"metric.window is {TierMetric.Lifetime} or {TierMetric.InPeriod}.");
        (Period ?? throw Invalid("period is required.")).Validate();
        if (Downgrade is not (OneDown or Supported or ToBase))
            throw Invalid($"downgrade is {OneDown}, {Supported} or {ToBase}.");
        if (Tiers is null || Tiers.Count == 0 || Tiers.Count > MaxTiers)
            throw Invalid($"A policy has 1 to {MaxTiers} tiers, the base tier first.");
        var names = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        for (var i = 0; i < Tiers.Count; i++)
        {
            var tier = Tiers[i] ?? throw Invalid($"Tier {i + 1} is empty.");
            var name = tier.Name?.Trim();
            if (string.IsNullOrEmpty(name) || name.Length > MaxNameLength)
                throw Invalid($"Tier {i + 1} needs a name of 1 to {MaxNameLength} characters.");
            if (!names.Add(name)) throw Invalid($"Two tiers are named '{name}'.");
            if (i == 0 && tier.Threshold != Points.Zero)
                throw Invalid($"The first tier ('{name}') is the base tier every member starts in: its threshold is 0.");
            if (i > 0 && tier.Threshold <= Tiers[i - 1].Threshold)
                throw Invalid($"Thresholds must ascend: '{name}' ({tier.Threshold}) is not above '{Tiers[i - 1].Name}' ({Tiers[i - 1].Threshold}).");
            if (tier.RenewalThreshold is { } renewal && (renewal.IsNegative || renewal > tier.Threshold))
                throw Invalid($"The renewal threshold of '{name}' is between 0 and its threshold ({tier.Threshold}).");
            if (tier.Multiplier is { } multiplier && (multiplier < Points.FromWhole(1) || multiplier > MaxMultiplier))
                throw Invalid($"The multiplier of '{name}' is at least 1 and at most {MaxMultiplier.ToDecimal().ToString(CultureInfo.InvariantCulture)}.");
            if (tier.UpgradeBonus is { IsNegative: true })
                throw Invalid($"The upgrade bonus of '{name}' cannot be negative.");
            if (i == 0 && tier.UpgradeBonus is { IsPositive: true })
                throw Invalid($"The base tier ('{name}') has no upgrade bonus: nobody is upgraded into it.");
        }
    }

    /// <summary>The policy as stored and answered: names trimmed, defaults filled in.</summary>
    public TierPolicy Normalized() => this with
    {
        Metric = Metric with { Currency = Metric.Currency?.Trim() },
        Period = Period.Normalized(),
        Tiers = Tiers.Select(t => t with
        {
            Name = t.Name.Trim(),
            Multiplier = t.Multiplier ?? Points.FromWhole(1),
            UpgradeBonus = t.UpgradeBonus ?? Points.Zero,
            RenewalThreshold = t.RenewalThreshold ?? t.Threshold,
        }).ToList(),
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public static TierPolicy FromJson(string json) =>
        JsonSerializer.Deserialize<TierPolicy>(json, Json) ?? throw new InvalidOperationException("A stored tier policy is empty.");

    internal static LedgerException Invalid(string message) => new(TierErrors.InvalidTiers, message, 400);
}

/// <summary>What a tier is earned by: an alternate currency's units, plain points, or the amount billed; over a member's lifetime or the current period.</summary>
public sealed record TierMetric
{
    public const string CurrencyUnits = "CURRENCY";
    public const string PointsEarned = "POINTS";
    public const string AmountBilled = "AMOUNT";
    public const string Lifetime = "LIFETIME";
    public const string InPeriod = "PERIOD";

    public string Kind { get; init; } = PointsEarned;

    /// <summary>For a CURRENCY metric: the alternate currency counted (e.g. Tier-points).</summary>
    public string? Currency { get; init; }

    public string Window { get; init; } = Lifetime;
}

/// <summary>
/// The membership period a tier is kept for: ROLLING (N months from the last tier change) or
/// FIXED_DATE (a year ending every year on a month and day, at midnight UTC).
/// </summary>
public sealed record TierPeriod
{
    public const string Rolling = "ROLLING";
    public const string FixedDate = "FIXED_DATE";

    public string Kind { get; init; } = Rolling;
    public int? Months { get; init; }
    public int? Month { get; init; }
    public int? Day { get; init; }

    public void Validate()
    {
        switch (Kind)
        {
            case Rolling:
                if (Months is { } m && (m < 1 || m > 120)) throw TierPolicy.Invalid("A ROLLING period lasts 1 to 120 months (omit months for 12).");
                if (Month is not null || Day is not null) throw TierPolicy.Invalid("month and day are for a FIXED_DATE period.");
                return;
            case FixedDate:
                // Up to the 28th, so the date exists every year, February included.
                if (Month is not (>= 1 and <= 12) || Day is not (>= 1 and <= 28))
                    throw TierPolicy.Invalid("A FIXED_DATE period ends every year on a month (1-12) and day (1-28).");
                if (Months is not null) throw TierPolicy.Invalid("months is for a ROLLING period.");
                return;
            default:
                throw TierPolicy.Invalid($"period.kind is {Rolling} or {FixedDate}.");
        }
    }

    public TierPeriod Normalized() => Kind == Rolling ? this with { Months = Months ?? 12 } : this;

    /// <summary>The period a member without one starts at <paramref name="at"/>: from then (ROLLING), or the year around it (FIXED_DATE).</summary>
    public (DateTimeOffset Start, DateTimeOffset End) Around(DateTimeOffset at)
    {
        if (Kind == Rolling) return (at, After(at));
        var end = NextFixed(at);
        return (end.AddYears(-1), end);
    }

    /// <summary>The end of a period that starts at <paramref name="start"/>.</summary>
    public DateTimeOffset After(DateTimeOffset start) =>
        Kind == Rolling ? start.AddMonths(Months ?? 12) : NextFixed(start);

    private DateTimeOffset NextFixed(DateTimeOffset at)
    {
        var candidate = new DateTimeOffset(at.UtcDateTime.Year, Month!.Value, Day!.Value, 0, 0, 0, TimeSpan.Zero);
        return candidate > at ? candidate : candidate.AddYears(1);
    }
}

/// <summary>
/// One tier: entered when the metric reaches <see cref="Threshold"/>, kept at an evaluation with
/// <see cref="RenewalThreshold"/> (default: the threshold), earning the rule's points and currencies
/// times <see cref="Multiplier"/>, and paying <see cref="UpgradeBonus"/> points on the way in.
/// </summary>
public sealed record Tier(string Name, Points Threshold, Points? RenewalThreshold = null, Points? Multiplier = null, Points? UpgradeBonus = null);

/// <summary>The error codes of the tier API (documented in the README).</summary>
public static class TierErrors
{
    public const string InvalidTiers = "invalid_tiers";
    public const string TierInUse = "tier_in_use";
    public const string TiersNotConfigured = "tiers_not_configured";
    public const string TierNotFound = "tier_not_found";
}
