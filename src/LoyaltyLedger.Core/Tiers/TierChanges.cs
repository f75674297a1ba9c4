using System.Text.Json;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Outbox;
using LoyaltyLedger.Storage;
using OutboxRows = LoyaltyLedger.Outbox.Outbox;

namespace LoyaltyLedger.Tiers;

/// <summary>Why an owner's tier changed (or, for a renewal, was confirmed for another period).</summary>
public static class TierCauses
{
    public const string Upgrade = "UPGRADE";
    public const string Renewal = "RENEWAL";
    public const string Downgrade = "DOWNGRADE";
    public const string Override = "OVERRIDE";
}

/// <summary>
/// One tier change as it is recorded: the row of <c>tier_changes</c> (the owner's tier history) and
/// its <c>tier.changed</c> announcement, written in the same transaction as the change itself.
/// </summary>
public sealed record TierChangeRecord(
    OwnerType OwnerType,
    long OwnerId,
    long ProgramId,
    string FromTier,
    string ToTier,
    string Cause,
    Points Metric,
    long PeriodEnd,
    long ChangedAt,
    long? EventId = null,
    long? RunId = null,
    string? Reason = null,
    string? PostedBy = null);

public static class TierChanges
{
    /// <summary>Adds the history row and the tier.changed outbox row of <paramref name="change"/> to <paramref name="batch"/>.</summary>
    public static void Add(StatementBatch batch, long orgId, TierChangeRecord change)
    {
        batch.Execute(
            """
            INSERT INTO tier_changes (org_id, owner_type, owner_id, program_id, from_tier, to_tier, cause, event_id, run_id, reason,
                metric, period_end, changed_at, posted_by)
            VALUES (@org, @ownerType, @ownerId, @programId, @fromTier, @toTier, @cause, @eventId, @runId, @reason,
                @metric, @periodEnd, @changedAt, @postedBy)
            """,
            new
            {
                org = orgId, ownerType = change.OwnerType.ToWire(), ownerId = change.OwnerId, programId = change.ProgramId,
                fromTier = change.FromTier, toTier = change.ToTier, cause = change.Cause, eventId = change.EventId, runId = change.RunId,
                reason = change.Reason, metric = change.Metric.Thousandths, periodEnd = change.PeriodEnd, changedAt = change.ChangedAt,
                postedBy = change.PostedBy,
            });
        OutboxRows.Add(batch, orgId, OutboxEventTypes.TierChanged, change.ChangedAt, w => Write(w, change));
    }

    private static void Write(Utf8JsonWriter w, TierChangeRecord c)
    {
        w.WriteStartObject();
        w.WriteString("ownerType", c.OwnerType.ToWire());
        w.WriteNumber("ownerId", c.OwnerId);
        w.WriteNumber("programId", c.ProgramId);
        w.WriteString("fromTier", c.FromTier);
        w.WriteString("toTier", c.ToTier);
        w.WriteString("cause", c.Cause);
        if (c.EventId is { } eventId) w.WriteNumber("eventId", eventId);
        if (c.RunId is { } runId) w.WriteNumber("runId", runId);
        if (c.Reason is { } reason) w.WriteString("reason", reason);
        w.WriteString("metric", c.Metric.ToString());
        w.WriteString("renewalDate", IsoTime.Format(c.PeriodEnd));
        w.WriteString("changedAt", IsoTime.Format(c.ChangedAt));
        w.WriteEndObject();
    }
}
