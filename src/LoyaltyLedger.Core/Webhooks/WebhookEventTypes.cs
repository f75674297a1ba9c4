using LoyaltyLedger.Outbox;

namespace LoyaltyLedger.Webhooks;

/// <summary>The event types an endpoint may subscribe to: the outbox's, or <c>*</c> for all of them.</summary>
public static class WebhookEventTypes
{
    public const string All = "*";
    public const int MaxPerEndpoint = 50;

    /// <summary>Every type the outbox writes, and the ping (which the test call sends whatever the subscription).</summary>
    public static IReadOnlyList<string> Known => OutboxEventTypes.All;

    /// <summary>The subscription as stored: distinct, in the order given; <c>*</c> alone if it is among them.</summary>
    public static IReadOnlyList<string> Validate(IReadOnlyList<string>? events)
    {
        if (events is null || events.Count == 0)
            throw LedgerException.Invalid($"events lists at least one event type, or \"*\" for all: {string.Join(", ", Known)}.");
        if (events.Any(e => e is null)) throw LedgerException.Invalid("events holds event type names: strings, not null.");
        if (events.Count > MaxPerEndpoint) throw LedgerException.Invalid($"events lists at most {MaxPerEndpoint} event types.");
        var unknown = events.Where(e => e != All && !Known.Contains(e, StringComparer.Ordinal)).Distinct().ToList();
        if (unknown.Count > 0)
        {
            throw LedgerException.Invalid(
                $"Unknown event type{(unknown.Count > 1 ? "s" : "")} {string.Join(", ", unknown.Select(u => $"'{Shorten(u)}'"))}; " +
                $"events are \"*\" or of: {string.Join(", ", Known)}.");
        }
        return events.Contains(All) ? [All] : events.Distinct(StringComparer.Ordinal).ToList();
    }

    public static bool Matches(IReadOnlyList<string> subscription, string type) =>
        subscription.Count == 1 && subscription[0] == All || subscription.Contains(type, StringComparer.Ordinal);

    private static string Shorten(string text) => text.Length <= 60 ? text : text[..60] + "...";
}
