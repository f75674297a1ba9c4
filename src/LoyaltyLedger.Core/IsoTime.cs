using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;

namespace LoyaltyLedger;

/// <summary>
/// The one date rule of the native and vault APIs. In: ISO 8601 with seconds and a UTC offset
/// (<c>2024-05-04T07:16:34.000Z</c>, <c>2024-05-04T07:16:34Z</c>, <c>2024-05-04T09:16:34+02:00</c>),
/// and a plain date (<c>2024-05-04</c>, midnight UTC) only where a parameter takes dates. Out:
/// UTC with milliseconds and a <c>Z</c>, <c>2024-05-04T07:16:34.000Z</c>.
/// </summary>
/// <remarks>
/// The framework's own parsing is lenient on purpose (<c>1.5</c> is 5 January of this year, a time
/// without an offset is the server's local time), which makes a typo a silently wrong instant.
/// </remarks>
public static partial class IsoTime
{
    /// <summary>The format of every instant the native API answers with.</summary>
    public const string OutputFormat = "yyyy-MM-dd'T'HH:mm:ss.fff'Z'";

    /// <summary>What a date-time parameter takes, as error details and the README say it.</summary>
    public const string ExpectedDateTime =
        "an ISO 8601 date-time with seconds and a UTC offset, e.g. 2024-05-04T07:16:34.000Z, 2024-05-04T07:16:34Z or 2024-05-04T09:16:34+02:00";

    /// <summary>What a parameter that also takes plain dates takes.</summary>
    public const string ExpectedDateOrDateTime = ExpectedDateTime + ", or a date such as 2024-05-04 (midnight UTC)";

    // ASCII digits only ([0-9], not \d, which matches every script's digits); 'T' and 'Z' upper case.
    [GeneratedRegex(@"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,7})?(Z|[+-][0-9]{2}:[0-9]{2})$", RegexOptions.CultureInvariant)]
    private static partial Regex DateTimePattern();

    [GeneratedRegex(@"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", RegexOptions.CultureInvariant)]
    private static partial Regex DatePattern();

    /// <summary>Parses <paramref name="text"/> by the rule; false for anything else, including impossible dates.</summary>
    public static bool TryParse(string? text, bool allowDate, out DateTimeOffset value)
    {
        value = default;
        if (text is null) return false;
        if (DateTimePattern().IsMatch(text))
            return DateTimeOffset.TryParseExact(text, "yyyy-MM-dd'T'HH:mm:ss.FFFFFFFK", CultureInfo.InvariantCulture,
                DateTimeStyles.AdjustToUniversal, out value);
        if (allowDate && DatePattern().IsMatch(text))
            return DateTimeOffset.TryParseExact(text, "yyyy-MM-dd", CultureInfo.InvariantCulture,
                DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out value);
        return false;
    }

    /// <summary>
    /// An optional query parameter: null when absent or empty, else parsed by the rule or refused with
    /// <c>invalid_request</c> naming the parameter and the format.
    /// </summary>
    public static DateTimeOffset? ParseParameter(string? text, string name, bool allowDate = false) =>
        string.IsNullOrEmpty(text) ? null
        : TryParse(text, allowDate, out var value) ? value
        : throw LedgerException.Invalid($"{name} must be {(allowDate ? ExpectedDateOrDateTime : ExpectedDateTime)}.");

    public static string Format(DateTimeOffset value) => value.UtcDateTime.ToString(OutputFormat, CultureInfo.InvariantCulture);

    public static string Format(long unixMs) => Format(DateTimeOffset.FromUnixTimeMilliseconds(unixMs));
}

/// <summary>
/// Reads instants by <see cref="IsoTime"/>'s rule and writes them in its output format, for every
/// <see cref="DateTimeOffset"/> of the native and vault APIs' JSON.
/// </summary>
public sealed class IsoTimeJsonConverter : JsonConverter<DateTimeOffset>
{
    public override DateTimeOffset Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.String)
            throw new JsonValueException(ErrorCodes.InvalidJson, "a string holding " + IsoTime.ExpectedDateTime);
        return IsoTime.TryParse(reader.GetString(), allowDate: false, out var value)
            ? value
            : throw new JsonValueException(ErrorCodes.InvalidRequest, IsoTime.ExpectedDateTime);
    }

    public override void Write(Utf8JsonWriter writer, DateTimeOffset value, JsonSerializerOptions options) =>
        writer.WriteStringValue(IsoTime.Format(value));
}
