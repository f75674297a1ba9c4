namespace LoyaltyLedger.Outbox;

/// <summary>The types of the events the ledger sends out (the <c>type</c> of every envelope).</summary>
public static class OutboxEventTypes
{
    /// <summary>Every ledger event: its name, owner, program, lines with the balance after each, bill or reference, related event.</summary>
    public const string LedgerEventPosted = "ledger.event.posted";

    /// <summary>A wallet's balance moved: old and new balance, one per wallet per posting.</summary>
    public const string BalanceChanged = "balance.changed";

    /// <summary>A wallet's points that expire within its program's notice window; once per lot and window.</summary>
    public const string PointsExpiring = "points.expiring";

    /// <summary>A PointsExpiry event.</summary>
    public const string PointsExpired = "points.expired";

    /// <summary>A RedemptionReversal event.</summary>
    public const string RedemptionReversed = "redemption.reversed";

    /// <summary>A ReturnBill event.</summary>
    public const string ReturnPosted = "return.posted";

    /// <summary>A DelayedAccrual event: promised or trigger-held points reached the main wallet.</summary>
    public const string HeldPointsReleased = "held_points.released";

    /// <summary>A CustomerRegistration event.</summary>
    public const string CustomerRegistered = "customer.registered";

    /// <summary>An owner's tier changed (upgrade, downgrade, override) or was renewed for another period.</summary>
    public const string TierChanged = "tier.changed";

    /// <summary>The ping a webhook endpoint is sent on request; never in the outbox.</summary>
    public const string WebhookTest = "webhook.test";

    /// <summary>The types written to the outbox (and served by the change feed), in the order the README lists them.</summary>
    public static readonly IReadOnlyList<string> InOutbox =
    [
        LedgerEventPosted, BalanceChanged, PointsExpiring, PointsExpired, RedemptionReversed, ReturnPosted,
        HeldPointsReleased, CustomerRegistered, TierChanged,
    ];

    /// <summary>Every type a subscriber may name: those of the outbox and the webhook ping.</summary>
    public static readonly IReadOnlyList<string> All = [.. InOutbox, WebhookTest];

    /// <summary>True for a type of the outbox (exact, lower case).</summary>
    public static bool IsInOutbox(string type) => InOutbox.Contains(type, StringComparer.Ordinal);

    /// <summary>True for any known type, the ping included.</summary>
    public static bool IsKnown(string type) => All.Contains(type, StringComparer.Ordinal);
}
