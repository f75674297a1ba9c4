using System.Globalization;
using Microsoft.AspNetCore.WebUtilities;

namespace LoyaltyLedger.Server.SupportConsole;

/// <summary>Links that change some query parameters of the current page and keep the others.</summary>
public static class Links
{
    public static string With(string uri, params (string Name, string? Value)[] changes)
    {
        var parsed = new Uri(uri);
        var query = QueryHelpers.ParseQuery(parsed.Query).ToDictionary(kv => kv.Key, kv => (string?)kv.Value.ToString(), StringComparer.Ordinal);
        foreach (var (name, value) in changes)
        {
            if (string.IsNullOrEmpty(value)) query.Remove(name);
            else query[name] = value;
        }
        return QueryHelpers.AddQueryString(parsed.AbsolutePath, query);
    }

    public static string Event(long eventId) => "/console/events/" + eventId.ToString(CultureInfo.InvariantCulture);
}
