using System.Text.Json;
using System.Text.Json.Serialization;

namespace LoyaltyLedger.Programs;

/// <summary>
/// When credited points expire, per program and per alternate currency. Kinds:
/// <list type="bullet">
/// <item><c>NEVER</c>;</item>
/// <item><c>DATE_EARNED</c>: N days and/or months after the credit, optionally to the end of that month;</item>
/// <item><c>ROLLING</c>: N days/months after the credit, and each qualifying activity moves every open lot to activity + N;</item>
/// <item><c>FIXED_DATE</c>: the next occurrence of a month and day (e.g. every 31 December) after the credit;</item>
/// <item><c>WHOLE_BALANCE</c>: lots carry no date; the whole balance expires N days/months after the last activity.</item>
/// </list>
/// Each lot is stamped with its expiry when it is credited, so a change of policy never moves points
/// already earned (except by the rolling rule's own extension). The rolling extension, the
/// whole-balance clock (wallets.last_activity_at) and the expiry itself live in
/// <see cref="LoyaltyLedger.Lifecycle.LotExpiry"/> and <see cref="LoyaltyLedger.Lifecycle.LifecycleRun"/>.
/// </summary>
public sealed record ExpiryPolicy
{
    public const string Never = "NEVER";
    public const string DateEarned = "DATE_EARNED";
    public const string Rolling = "ROLLING";
    public const string FixedDate = "FIXED_DATE";
    public const string WholeBalance = "WHOLE_BALANCE";

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public string Kind { get; init; } = Never;
    public int? Days { get; init; }
    public int? Months { get; init; }
    public bool EndOfMonth { get; init; }
    /// <summary>For FIXED_DATE: the month (1-12) and day of the yearly expiry date.</summary>
    public int? Month { get; init; }
    public int? Day { get; init; }

    public static ExpiryPolicy NeverExpires { get; } = new();

    /// <summary>True when the vault history omits expiresAt: the balance expires as a whole.</summary>
    [JsonIgnore]
    public bool ExpiresWholeBalance => Kind == WholeBalance;

    public void Validate()
    {
        switch (Kind)
        {
            case Never:
                return;
            case DateEarned or Rolling or WholeBalance:
                if ((Days ?? 0) < 0 || (Months ?? 0) < 0 || (Days ?? 0) + (Months ?? 0) <= 0 || Days > 36_500 || Months > 1_200)
                    throw LedgerException.Invalid($"A {Kind} expiry needs a positive number of days and/or months.");
                return;
            case FixedDate:
                if (Month is not (>= 1 and <= 12) || Day is not >= 1 || Day > DateTime.DaysInMonth(2023, Month.Value))
                    throw LedgerException.Invalid("A FIXED_DATE expiry needs a valid month (1-12) and day.");
                return;
            default:
                throw LedgerException.Invalid($"Unknown expiry kind '{Kind}'. Supported: NEVER, DATE_EARNED, ROLLING, FIXED_DATE, WHOLE_BALANCE.");
        }
    }

    /// <summary>The period added to a date (credit or activity) by the day/month kinds.</summary>
    public DateTimeOffset AddPeriod(DateTimeOffset from)
    {
        var at = from.ToUniversalTime().AddMonths(Months ?? 0).AddDays(Days ?? 0);
        if (EndOfMonth)
        {
            // The last instant of that month: points earned in a month all expire together.
            at = new DateTimeOffset(at.Year, at.Month, 1, 0, 0, 0, TimeSpan.Zero).AddMonths(1).AddMilliseconds(-1);
        }
        return at;
    }

    /// <summary>The expiry stamped on a lot credited at <paramref name="earnedAt"/>; null when the lot itself carries none.</summary>
    public DateTimeOffset? ExpiryFor(DateTimeOffset earnedAt)
    {
        switch (Kind)
        {
            case DateEarned or Rolling:
                return AddPeriod(earnedAt);
            case FixedDate:
                var utc = earnedAt.ToUniversalTime();
                // The end of the fixed day, in the year of the credit or, once passed, the next year.
                var candidate = new DateTimeOffset(utc.Year, Month!.Value, Day!.Value, 0, 0, 0, TimeSpan.Zero).AddDays(1).AddMilliseconds(-1);
                return candidate > utc ? candidate : candidate.AddYears(1);
            default:
                return null;
        }
    }

    /// <summary>True when each qualifying activity moves every open lot of the wallet to activity + period.</summary>
    [JsonIgnore]
    public bool ExtendsOnActivity => Kind == Rolling;

    /// <summary>
    /// For WHOLE_BALANCE: the instant the whole balance of a wallet whose last activity was at
    /// <paramref name="lastActivityAt"/> expires; null for the other kinds.
    /// </summary>
    public DateTimeOffset? WholeBalanceExpiry(DateTimeOffset? lastActivityAt) =>
        Kind == WholeBalance && lastActivityAt is { } at ? AddPeriod(at) : null;

    /// <summary>
    /// The shortest time <see cref="AddPeriod"/> can add (a month counted as 28 days): a safe
    /// lower bound that lets the expiry run pick candidate wallets in SQL before the exact check.
    /// </summary>
    [JsonIgnore]
    public TimeSpan MinimumPeriod => TimeSpan.FromDays(((Months ?? 0) * 28) + (Days ?? 0));

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public static ExpiryPolicy FromJson(string? json) =>
        string.IsNullOrEmpty(json) ? NeverExpires : JsonSerializer.Deserialize<ExpiryPolicy>(json, Json) ?? NeverExpires;
}
