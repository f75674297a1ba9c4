using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace LoyaltyLedger;

/// <summary>
/// An exact quantity of points (or of an alternate currency) in thousandths, held in 64 bits.
/// Points are never floating point: "100.5" is 100500 thousandths, and arithmetic is integer arithmetic.
/// </summary>
[JsonConverter(typeof(PointsJsonConverter))]
public readonly record struct Points(long Thousandths) : IComparable<Points>
{
    public const int Scale = 1000;
    public static readonly Points Zero = new(0);

    public static Points FromWhole(long whole) => new(checked(whole * Scale));

    public bool IsPositive => Thousandths > 0;
    public bool IsNegative => Thousandths < 0;

    public static Points operator +(Points a, Points b) => new(checked(a.Thousandths + b.Thousandths));
    public static Points operator -(Points a, Points b) => new(checked(a.Thousandths - b.Thousandths));
    public static Points operator -(Points a) => new(checked(-a.Thousandths));
    public static bool operator <(Points a, Points b) => a.Thousandths < b.Thousandths;
    public static bool operator >(Points a, Points b) => a.Thousandths > b.Thousandths;
    public static bool operator <=(Points a, Points b) => a.Thousandths <= b.Thousandths;
    public static bool operator >=(Points a, Points b) => a.Thousandths >= b.Thousandths;
    public static Points Min(Points a, Points b) => a < b ? a : b;
    public static Points Max(Points a, Points b) => a > b ? a : b;

    public int CompareTo(Points other) => Thousandths.CompareTo(other.Thousandths);

    /// <summary>Three decimals always, as both platforms print points: "100.000", "-20.500".</summary>
    public override string ToString() => Text(Thousandths, minDecimals: 3);

    /// <summary>
    /// Thousandths as exact decimal text: the whole part, then the three decimals with trailing zeros
    /// dropped down to <paramref name="minDecimals"/> (3: "20.500"; 1: "20.5", "200.0"). Integer
    /// arithmetic on the thousandths themselves, with no decimal division and no custom pattern to
    /// interpret: every amount of every page goes through here (the decimal way showed as about 3% of
    /// a points-ledger page's samples in a profile; an A/B could not tell the two apart from the noise).
    /// </summary>
    internal static string Text(long thousandths, int minDecimals)
    {
        Span<byte> text = stackalloc byte[MaxTextLength];
        return Encoding.ASCII.GetString(text[..Format(thousandths, minDecimals, text)]);
    }

    /// <summary>The longest <see cref="Text"/>: a sign, 16 digits, the point and three decimals.</summary>
    internal const int MaxTextLength = 21;

    /// <summary>
    /// <see cref="Text"/> written as ASCII (UTF-8) into <paramref name="destination"/> (at least
    /// <see cref="MaxTextLength"/> bytes), returning its length: the read APIs' JSON writers put it on
    /// the wire without a string in between.
    /// </summary>
    internal static int Format(long thousandths, int minDecimals, Span<byte> destination)
    {
        // long.MinValue has no positive long: its magnitude is taken as an unsigned value.
        var magnitude = thousandths < 0 ? (ulong)(-(thousandths + 1)) + 1 : (ulong)thousandths;
        var at = 0;
        if (thousandths < 0) destination[at++] = (byte)'-';
        (magnitude / Scale).TryFormat(destination[at..], out var whole, default, CultureInfo.InvariantCulture);
        at += whole;
        destination[at++] = (byte)'.';
        return at + Decimals((int)(magnitude % Scale), minDecimals, destination[at..]);
    }

    /// <summary>
    /// Thousandths (0-999) as three decimal digits, trailing zeros dropped down to
    /// <paramref name="minDecimals"/> (500 is "5", 0 with one at least is "0"), written into
    /// <paramref name="destination"/>; returns how many.
    /// </summary>
    internal static int Decimals(int thousandths, int minDecimals, Span<byte> destination)
    {
        var (hundreds, tens, ones) = (thousandths / 100, thousandths / 10 % 10, thousandths % 10);
        var count = Math.Max(ones != 0 ? 3 : tens != 0 ? 2 : hundreds != 0 ? 1 : 0, minDecimals);
        if (count > 0) destination[0] = (byte)('0' + hundreds);
        if (count > 1) destination[1] = (byte)('0' + tens);
        if (count > 2) destination[2] = (byte)('0' + ones);
        return count;
    }

    /// <summary>The value as a decimal number, for APIs that print points as JSON numbers.</summary>
    public decimal ToDecimal() => (decimal)Thousandths / Scale;

    /// <summary>
    /// Parses a decimal quantity with at most three decimals. Anything finer is refused rather than
    /// rounded: silently rounding a client's points is how ledgers drift.
    /// </summary>
    public static bool TryParse(string? text, out Points points, out string? error)
    {
        points = Zero;
        if (string.IsNullOrWhiteSpace(text)) { error = "points are empty"; return false; }
        if (!decimal.TryParse(text, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint,
                CultureInfo.InvariantCulture, out var value))
        {
            error = $"'{text}' is not a decimal number";
            return false;
        }
        return TryFromDecimal(value, out points, out error);
    }

    public static bool TryFromDecimal(decimal value, out Points points, out string? error)
    {
        points = Zero;
        if (value.Scale > 3 && decimal.Round(value, 3) != value)
        {
            error = "points have more than three decimals";
            return false;
        }
        var scaled = value * Scale;
        if (scaled > long.MaxValue / 4 || scaled < long.MinValue / 4)
        {
            error = "points are out of range";
            return false;
        }
        points = new Points((long)scaled);
        error = null;
        return true;
    }

    public static Points Parse(string text) =>
        TryParse(text, out var p, out var error) ? p : throw new FormatException(error);
}

/// <summary>Thrown by the JSON converter so the API can answer with the <c>invalid_points</c> code.</summary>
public sealed class PointsFormatException(string message) : JsonException(message);

/// <summary>Reads points from a JSON number or string (exactly, via decimal); writes "0.000" strings.</summary>
public sealed class PointsJsonConverter : JsonConverter<Points>
{
    public override Points Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        string? error;
        Points points;
        switch (reader.TokenType)
        {
            case JsonTokenType.Number:
                if (!reader.TryGetDecimal(out var value))
                    throw new PointsFormatException("points are out of range");
                if (!Points.TryFromDecimal(value, out points, out error))
                    throw new PointsFormatException(error!);
                return points;
            case JsonTokenType.String:
                if (!Points.TryParse(reader.GetString(), out points, out error))
                    throw new PointsFormatException(error!);
                return points;
            default:
                throw new PointsFormatException("points must be a number or a decimal string");
        }
    }

    public override void Write(Utf8JsonWriter writer, Points value, JsonSerializerOptions options) =>
        writer.WriteStringValue(value.ToString());
}
