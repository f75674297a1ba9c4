// TEMPORARY: the outbox contract's read API, until branch i13-ow (which builds the outbox) is merged.
// Deleted at that merge.
using System.Data.Common;

namespace LoyaltyLedger.Outbox;

public sealed record OutboxEvent(long EventId, long Position, long OrgId, string Type, long CreatedAt, string Payload);

public static class OutboxEventTypes
{
    public const string LedgerEventPosted = "ledger.event.posted";
    public const string BalanceChanged = "balance.changed";
    public const string PointsExpiring = "points.expiring";
    public const string PointsExpired = "points.expired";
    public const string RedemptionReversed = "redemption.reversed";
    public const string ReturnPosted = "return.posted";
    public const string HeldPointsReleased = "held_points.released";
    public const string CustomerRegistered = "customer.registered";
    public const string WebhookTest = "webhook.test";
}

public static class Outbox
{
    public static Task<IReadOnlyList<OutboxEvent>> ReadAllOrgsAsync(DbConnection c, long afterPosition, int limit, CancellationToken ct) =>
        Task.FromResult<IReadOnlyList<OutboxEvent>>([]);
}
