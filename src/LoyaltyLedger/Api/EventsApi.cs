using System.Buffers.Text;
using System.ComponentModel;
using System.Globalization;
using System.Text;
using System.Text.Json;
using LoyaltyLedger.Outbox;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using Microsoft.AspNetCore.Http.HttpResults;
using OutboxRows = LoyaltyLedger.Outbox.Outbox;

namespace LoyaltyLedger.Server.Api;

/// <summary>One outgoing event, as the change feed and webhooks send it.</summary>
/// <param name="Id">evt_ and a number: unique, and the same every time the event is sent (receivers de-duplicate by it).</param>
/// <param name="Type">ledger.event.posted, balance.changed, points.expiring, points.expired, redemption.reversed, return.posted, held_points.released or customer.registered.</param>
/// <param name="CreatedAt">When the ledger change happened.</param>
/// <param name="OrgId">The organization.</param>
/// <param name="Data">What happened; its shape depends on the type (see the README, "Events out").</param>
public sealed record EventEnvelope(string Id, string Type, DateTimeOffset CreatedAt, long OrgId, JsonElement Data)
{
    public static EventEnvelope From(OutboxEvent e)
    {
        using var payload = JsonDocument.Parse(e.Payload);
        var root = payload.RootElement;
        return new EventEnvelope(root.GetProperty("id").GetString()!, e.Type, DateTimeOffset.FromUnixTimeMilliseconds(e.CreatedAt), e.OrgId,
            root.GetProperty("data").Clone());
    }
}

/// <summary>A page of the change feed.</summary>
/// <param name="Events">The organization's events after the cursor, in commit order.</param>
/// <param name="NextCursor">Where to continue: pass it as after on the next call (the same cursor when nothing was new).</param>
public sealed record EventFeedPage(IReadOnlyList<EventEnvelope> Events, string NextCursor);

/// <summary>
/// The change feed: <c>GET /v1/events</c>, the organization's outgoing events (the outbox) in commit
/// order after an opaque cursor, for consumers that pull rather than take webhooks.
/// </summary>
public static class EventsApi
{
    public const int DefaultLimit = 100;
    public const int MaxLimit = 1000;

    public static RouteGroupBuilder MapEventsApi(this RouteGroupBuilder v1)
    {
        v1.MapGet("/events", ReadFeedAsync).WithTags("Events").ServedByReplicas().WithName("ReadEventFeed")
            .WithSummary("The organization's events in commit order after a cursor (the change feed): every event exactly once, in order.");
        return v1;
    }

    private static async Task<Ok<EventFeedPage>> ReadFeedAsync(
        [Description("The nextCursor of the previous page; omit it to start from the first event.")] string? after,
        [Description("Events per page, 1 to 1000 (default 100).")] string? limit,
        [Description("Only these types, comma-separated (e.g. points.expiring,points.expired); default: every type.")] string? types,
        HttpContext http, LedgerDatabase db)
    {
        var orgId = http.User.Caller().OrgId;
        var afterPosition = FeedCursor.Parse(after);
        var take = QueryParameters.Int(limit, "limit") ?? DefaultLimit;
        if (take is < 1 or > MaxLimit) throw LedgerException.Invalid($"limit must be a whole number from 1 to {MaxLimit}.");
        var wanted = ParseTypes(types);
        var consistency = ConsistencyTokens.Read(http);
        var ct = http.RequestAborted;

        // A write's events take their positions in its own transaction: a client reads its own writes
        // at once, and a replica that has replayed a write's token holds its events and their positions.
        var page = await db.ReadAsync(c => OutboxRows.ReadPageAsync(c, db.Dialect, orgId, afterPosition, take, wanted, ct), consistency, ct);
        return TypedResults.Ok(new EventFeedPage(page.Events.Select(EventEnvelope.From).ToList(), FeedCursor.Format(page.NextPosition)));
    }

    private static IReadOnlyCollection<string>? ParseTypes(string? types)
    {
        if (string.IsNullOrWhiteSpace(types)) return null;
        var parsed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var part in types.Split(','))
        {
            var type = part.Trim();
            if (type == OutboxEventTypes.WebhookTest)
                throw LedgerException.Invalid($"{OutboxEventTypes.WebhookTest} is the ping sent to a webhook on request; it is never in the feed.");
            if (!OutboxEventTypes.IsInOutbox(type))
                throw LedgerException.Invalid($"types names an unknown event type '{Shorten(type)}': each is one of {string.Join(", ", OutboxEventTypes.InOutbox)}.");
            parsed.Add(type);
        }
        return parsed;
    }

    private static string Shorten(string text) => text.Length <= 60 ? text : text[..60] + "...";
}

/// <summary>
/// The change feed's cursor: opaque to clients, <c>c1.</c> and the base64url of the position after
/// which the next page starts (c1: the first version of the format).
/// </summary>
public static class FeedCursor
{
    private const string Prefix = "c1.";

    public static string Format(long position) =>
        Prefix + Base64Url.EncodeToString(Encoding.ASCII.GetBytes(position.ToString(CultureInfo.InvariantCulture)));

    /// <summary>The position a cursor stands for (0 when there is none); one this server did not make is refused with 400 invalid_cursor.</summary>
    public static long Parse(string? cursor)
    {
        if (string.IsNullOrEmpty(cursor)) return 0;
        if (cursor.Length <= 40 && cursor.StartsWith(Prefix, StringComparison.Ordinal) && Base64Url.IsValid(cursor.AsSpan(Prefix.Length)))
        {
            var digits = Encoding.ASCII.GetString(Base64Url.DecodeFromChars(cursor.AsSpan(Prefix.Length)));
            if (long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var position) && Format(position) == cursor)
                return position;
        }
        throw new LedgerException(ErrorCodes.InvalidCursor, "after is not a cursor of this feed: pass the nextCursor of a previous page, or omit it to start from the first event.");
    }
}
