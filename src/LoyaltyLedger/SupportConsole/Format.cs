using System.Globalization;
using LoyaltyLedger.Ledger;

namespace LoyaltyLedger.Server.SupportConsole;

/// <summary>How the console writes points, dates and names.</summary>
public static class Format
{
    /// <summary>Points with thousands separators and three decimals, as the ledger keeps them: "13,680.000".</summary>
    public static string Points(Points points) => points.ToDecimal().ToString("#,##0.000", CultureInfo.InvariantCulture);

    public static string Points(long thousandths) => Points(new Points(thousandths));

    /// <summary>A tier's multiplier: "1.5×", "2×".</summary>
    public static string Multiplier(Points multiplier) => multiplier.ToDecimal().ToString("0.###", CultureInfo.InvariantCulture) + "×";

    /// <summary>A signed amount for a movement: "+20.000", "-150.000".</summary>
    public static string Signed(Points points) => (points.IsNegative ? "" : "+") + Points(points);

    /// <summary>Whole units for chart labels: "13,680", "1.2M".</summary>
    public static string Short(long thousandths)
    {
        var value = thousandths / 1000m;
        var abs = Math.Abs(value);
        return abs >= 10_000_000 ? (value / 1_000_000m).ToString("0.#", CultureInfo.InvariantCulture) + "M"
            : abs >= 100_000 ? (value / 1000m).ToString("0.#", CultureInfo.InvariantCulture) + "k"
            : value.ToString(abs >= 10 || abs == 0 ? "#,##0" : "0.###", CultureInfo.InvariantCulture);
    }

    public static string Time(long unixMs) => Time(DateTimeOffset.FromUnixTimeMilliseconds(unixMs));

    /// <summary>UTC, to the second: "2025-03-01 12:00:05".</summary>
    public static string Time(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);

    public static string Date(long unixMs) => Date(DateTimeOffset.FromUnixTimeMilliseconds(unixMs));

    public static string Date(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);

    public static string Day(long day) => Date(day * Support.BalanceHistory.DayMs);

    public static string Category(string category) =>
        LedgerNames.TryParseCategory(category, out var c) ? c switch
        {
            PointCategory.Regular => "Main",
            PointCategory.Promised => "Promised",
            _ => "Held for trigger",
        } : category;

    public static string Currency(string? currency) => currency ?? "Points";

    /// <summary>An event's name for people: its display name when it has one ("Goodwill credit"), else its ledger name.</summary>
    public static string EventTitle(string eventName, string? displayName) =>
        displayName is { Length: > 0 } && eventName is EventNames.GoodwillAdjustment or EventNames.GenericEvent
            ? displayName + (eventName == EventNames.GenericEvent ? " (GenericEvent)" : "")
            : eventName;

    public static string Owner(string ownerType, long ownerId) =>
        (ownerType == "GROUP" ? "/console/groups/" : "/console/customers/") + ownerId.ToString(CultureInfo.InvariantCulture);
}
