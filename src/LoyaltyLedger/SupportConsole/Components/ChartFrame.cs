using System.Globalization;

namespace LoyaltyLedger.Server.SupportConsole.Components;

/// <summary>
/// The geometry of a server-rendered SVG chart: a plot area in a fixed viewBox (the SVG scales to
/// its container), a day axis and a value axis with round ticks. Values are points in thousandths.
/// </summary>
public sealed class ChartFrame
{
    public const double Width = 960, Height = 300, Left = 96, Right = 24, Top = 16, Bottom = 36;

    public ChartFrame(long fromDay, long toDay, long minValue, long maxValue)
    {
        FromDay = fromDay;
        ToDay = Math.Max(toDay, fromDay + 1);
        (Min, Max, Step) = NiceRange(Math.Min(0, minValue), Math.Max(0, maxValue));
    }

    public long FromDay { get; }
    public long ToDay { get; }
    public long Min { get; }
    public long Max { get; }
    public long Step { get; }

    public static double PlotWidth => Width - Left - Right;
    public static double PlotHeight => Height - Top - Bottom;

    public double X(double day) => Left + (day - FromDay) / (ToDay - FromDay) * PlotWidth;

    // Points stay integer thousandths; only the pixel position they are drawn at is a double.
    public double Y(long value) => Top + (double)(Max - value) / (Max - Min) * PlotHeight;

    public IEnumerable<long> ValueTicks()
    {
        for (var v = Min; v <= Max; v += Step) yield return v;
    }

    /// <summary>
    /// About five dates along the axis, on whole days, none so near the right edge that its label
    /// would be cut off; every other one is marked <c>Alternate</c> (hidden on a phone, where labels are larger).
    /// </summary>
    public IEnumerable<(long Day, bool Alternate)> DayTicks(double offset = 0)
    {
        var span = ToDay - FromDay;
        var step = Math.Max(1, (long)Math.Ceiling(span / 5.0));
        var n = 0;
        for (var d = FromDay; X(d + offset) <= Width - Right - 50; d += step) yield return (d, n++ % 2 == 1);
    }

    public static string N(double value) => value.ToString("0.#", CultureInfo.InvariantCulture);

    /// <summary>A range from a round number to a round number with about four round steps (1, 2 or 5 times a power of ten).</summary>
    public static (long Min, long Max, long Step) NiceRange(long min, long max)
    {
        if (max <= min) max = min + 1000;
        var rough = (max - min) / 4.0;
        var magnitude = Math.Pow(10, Math.Floor(Math.Log10(rough)));
        var step = (long)Math.Max(1, new[] { 1, 2, 5, 10 }.Select(m => m * magnitude).First(s => s >= rough));
        var low = (long)Math.Floor((double)min / step) * step;
        var high = (long)Math.Ceiling((double)max / step) * step;
        return (low, high, step);
    }
}
