using System.Globalization;

namespace LoyaltyLedger.Server.Api;

/// <summary>
/// Query parameters are read as strings and parsed here, so that a malformed value is refused with
/// <c>invalid_request</c> naming the parameter and what it takes, never with the framework's
/// binding error (which names the handler's .NET parameter type).
/// </summary>
public static class QueryParameters
{
    public static long? Long(string? value, string name) =>
        string.IsNullOrEmpty(value) ? null
        : long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n) ? n
        : throw LedgerException.Invalid($"{name} must be a whole number.");

    public static int? Int(string? value, string name) =>
        string.IsNullOrEmpty(value) ? null
        : int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n
        : throw LedgerException.Invalid($"{name} must be a whole number.");

    public static bool? Bool(string? value, string name) =>
        string.IsNullOrEmpty(value) ? null
        : bool.TryParse(value, out var b) ? b
        : throw LedgerException.Invalid($"{name} must be true or false.");

    /// <summary>An instant by <see cref="IsoTime"/>'s rule; <paramref name="allowDate"/> where a plain date is documented.</summary>
    public static DateTimeOffset? Time(string? value, string name, bool allowDate = false) =>
        IsoTime.ParseParameter(value, name, allowDate);
}
