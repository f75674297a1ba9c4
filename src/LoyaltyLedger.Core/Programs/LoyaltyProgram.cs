namespace LoyaltyLedger.Programs;

/// <summary>
/// A loyalty program: its own points (in thousandths), an earn rule, an expiry policy, and the
/// alternate currencies (stars, stamps, tier points) that are earned beside its points. In the
/// vault API a program is a "loyalty point definition".
/// </summary>
public sealed class LoyaltyProgram
{
    public long ProgramId { get; init; }
    public string Name { get; init; } = "";
    /// <summary>The concept (brand, banner) whose tills this program belongs to.</summary>
    public string? Concept { get; init; }
    /// <summary>Points earned per 1.000 of bill amount (the earn rule), e.g. 0.100 = one point per ten spent.</summary>
    public Points EarnRate { get; init; }
    public bool AllowNegativeBalance { get; init; }
    public ExpiryPolicy Expiry { get; init; } = ExpiryPolicy.NeverExpires;
    public bool IsDefault { get; init; }
    /// <summary>
    /// When set, the points of a bill are held PROMISED for this many days (a return window) and
    /// become regular points only when it passes.
    /// </summary>
    public int? PromisedDays { get; init; }

    /// <summary>The default of <see cref="ExpiryNoticeDays"/>.</summary>
    public const int DefaultExpiryNoticeDays = 14;

    /// <summary>
    /// How many days before main points expire the lifecycle run announces them (points.expiring),
    /// once per lot and expiry date; 0: never.
    /// </summary>
    public int ExpiryNoticeDays { get; init; } = DefaultExpiryNoticeDays;
    public IReadOnlyList<AlternateCurrency> Currencies { get; init; } = [];

    /// <summary>The program's tiers and their rules, or null when it has none (see <see cref="TierPolicy"/>).</summary>
    public TierPolicy? Tiers { get; init; }

    /// <summary>The alternate currency a CURRENCY tier metric counts, or null.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public AlternateCurrency? TierMetricCurrency =>
        Tiers?.Metric is { Kind: TierMetric.CurrencyUnits, Currency: { } name } ? Currency(name) : null;

    public AlternateCurrency? Currency(string name) =>
        Currencies.FirstOrDefault(c => string.Equals(c.Name, name, StringComparison.OrdinalIgnoreCase));
}

/// <summary>A named currency of a program, with its own ledger lines, balances and expiry.</summary>
public sealed class AlternateCurrency
{
    public long CurrencyId { get; init; }
    public long ProgramId { get; init; }
    public string Name { get; init; } = "";
    /// <summary>Units earned per 1.000 of bill amount; zero when only explicit awards give it.</summary>
    public Points EarnRate { get; init; }
    public ExpiryPolicy Expiry { get; init; } = ExpiryPolicy.NeverExpires;
}
