using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace LoyaltyLedger.PointsLedger;

/// <summary>The response body, field for field as the spec's examples print it.</summary>
public sealed record LedgerResponse(
    SubjectDetails CustomerDetails,
    PageDetails LedgerDetails,
    IReadOnlyList<LedgerEvent> LedgerEntries,
    IReadOnlyList<LedgerClosingBalance>? LedgerClosingBalance,
    IReadOnlyList<LedgerWarning> Warnings);

public sealed record SubjectDetails(string? FirstName, string? LastName, long UserId, string? ExternalId, string EntityType);

public sealed record PageDetails(int PageNumber, int PageSize, long TotalEntries, long PageCount);

/// <summary>One event and the ledger lines of it that the query keeps.</summary>
public sealed record LedgerEvent(
    long EventLogId,
    string EventName,
    long CustomerId,
    [property: JsonConverter(typeof(LedgerDateConverter))] long LedgerCreatedDate,
    // The spec prints "customerDetails": null rather than leaving the field out.
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] EntryCustomer? CustomerDetails,
    IReadOnlyList<EntryDetail> EntryDetails,
    Points NetPointsOnEvent,
    TransactionDetails TransactionDetails,
    string Store,
    string StoreCode,
    string TillCode,
    IReadOnlyDictionary<string, string> EventDetails,
    long? SourceProgramId,
    string? SourceProgramName);

/// <summary>
/// The member behind a group's entry; for a customer's bills the vendor prints {"userId": 0}, and so
/// does this service, so that clients parsing that shape keep working.
/// </summary>
public sealed record EntryCustomer(long UserId, string? FirstName = null, string? LastName = null, string? ExternalId = null, string? Role = null);

public sealed record EntryDetail(string LedgerEntryType, Points Points, string PointsCategory, string ProgramName, long ProgramId, string? AlternateCurrencyName);

/// <summary>A bill's details, or an empty object ({}) for events without a bill.</summary>
public sealed record TransactionDetails(
    long? TransactionId = null,
    string? TransactionNumber = null,
    [property: JsonConverter(typeof(NullableLedgerDateConverter))] long? Date = null,
    [property: JsonConverter(typeof(MoneyConverter))] long? Amount = null,
    [property: JsonConverter(typeof(MoneyConverter))] long? GrossBillAmount = null,
    string? Source = null)
{
    public static readonly TransactionDetails None = new();
}

/// <summary>A wallet's balance at the end of the query's date window.</summary>
public sealed record LedgerClosingBalance(
    long ProgramId,
    string ProgramName,
    string PointsCategory,
    string? AlternateCurrencyName,
    Points ClosingBalance,
    [property: JsonConverter(typeof(LedgerDateConverter))] long Date);

public sealed record LedgerWarning(string Message);

/// <summary>The spec's error body: <c>{"errors":[{"code":N,"message":"..."}],"warnings":[]}</c>.</summary>
public sealed record LedgerErrorBody(IReadOnlyList<LedgerError> Errors, IReadOnlyList<LedgerWarning> Warnings);

public sealed record LedgerError(int Code, string Message);

public static class LedgerJson
{
    /// <summary>The points-ledger API's own serializer settings, independent of the native API's.</summary>
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        // Names and messages are printed as written ("Tier-points", "'abc'"), not as \u escapes.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>
    /// Timestamps as the vendor prints them (a Java timestamp): <c>2024-05-04 07:16:34.0</c>, the
    /// milliseconds without trailing zeros but at least one digit.
    /// </summary>
    /// <remarks>Written field by field rather than through a date pattern and a decimal: every event of every page prints one or two.</remarks>
    public static string FormatDate(long unixMs)
    {
        Span<byte> text = stackalloc byte[MaxDateLength];
        return Encoding.ASCII.GetString(text[..FormatDate(unixMs, text)]);
    }

    /// <summary>The longest <see cref="FormatDate(long)"/>: <c>9999-12-31 23:59:59.999</c>.</summary>
    public const int MaxDateLength = 23;

    /// <summary>
    /// <see cref="FormatDate(long)"/> written as ASCII (UTF-8) into <paramref name="destination"/> (at
    /// least <see cref="MaxDateLength"/> bytes), returning its length: the JSON writer puts it on the
    /// wire without a string in between.
    /// </summary>
    public static int FormatDate(long unixMs, Span<byte> destination)
    {
        var at = DateTimeOffset.FromUnixTimeMilliseconds(unixMs).UtcDateTime;
        Digits(destination[..4], at.Year);
        destination[4] = (byte)'-';
        Digits(destination.Slice(5, 2), at.Month);
        destination[7] = (byte)'-';
        Digits(destination.Slice(8, 2), at.Day);
        destination[10] = (byte)' ';
        Digits(destination.Slice(11, 2), at.Hour);
        destination[13] = (byte)':';
        Digits(destination.Slice(14, 2), at.Minute);
        destination[16] = (byte)':';
        Digits(destination.Slice(17, 2), at.Second);
        destination[19] = (byte)'.';
        return 20 + Points.Decimals(at.Millisecond, minDecimals: 1, destination[20..]);
    }

    /// <summary><paramref name="value"/> in exactly as many digits as <paramref name="destination"/> holds, zero-padded.</summary>
    private static void Digits(Span<byte> destination, int value)
    {
        for (var i = destination.Length - 1; i >= 0; i--, value /= 10) destination[i] = (byte)('0' + value % 10);
    }
}

/// <summary>Writes Unix milliseconds as <see cref="LedgerJson.FormatDate(long)"/>.</summary>
public sealed class LedgerDateConverter : JsonConverter<long>
{
    public override long Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        throw new NotSupportedException("Ledger dates are written, never read.");

    public override void Write(Utf8JsonWriter writer, long value, JsonSerializerOptions options) =>
        writer.WriteStringValue(LedgerJson.FormatDate(value));
}

public sealed class NullableLedgerDateConverter : JsonConverter<long?>
{
    public override long? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        throw new NotSupportedException("Ledger dates are written, never read.");

    public override void Write(Utf8JsonWriter writer, long? value, JsonSerializerOptions options)
    {
        if (value is { } ms) writer.WriteStringValue(LedgerJson.FormatDate(ms));
        else writer.WriteNullValue();
    }
}

/// <summary>
/// Money in thousandths written as the vendor's JSON numbers (<c>200.0</c>, <c>35.5</c>): exact
/// decimal text with at least one decimal, never through floating point.
/// </summary>
public sealed class MoneyConverter : JsonConverter<long?>
{
    public override long? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        throw new NotSupportedException("Amounts are written, never read.");

    public override void Write(Utf8JsonWriter writer, long? value, JsonSerializerOptions options)
    {
        if (value is not { } thousandths) { writer.WriteNullValue(); return; }
        writer.WriteRawValue(Points.Text(thousandths, minDecimals: 1));
    }
}
