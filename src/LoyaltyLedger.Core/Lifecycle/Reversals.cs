using LoyaltyLedger.Ledger;
using LoyaltyLedger.Programs;

namespace LoyaltyLedger.Lifecycle;

/// <summary>
/// A reversal of a redemption, named by its event id or its external reference; without points it
/// reverses everything not reversed yet.
/// </summary>
public sealed record NewReversal(long? RedemptionEventId = null, string? ExternalReference = null, Points? Points = null, string? Notes = null);

public sealed record ReversalResult(
    long EventId,
    string EventName,
    long RedemptionEventId,
    Points Reversed,
    Points CameBackAvailable,
    Points CameBackExpired,
    Points TotalReversed,
    Points Redeemed,
    IReadOnlyList<EntryView> Entries,
    long? ExpiryEventId);

/// <summary>
/// Puts redeemed points back into the very lots the redemption consumed (lot_movements says which),
/// so they keep their original expiry: a reversal can neither extend the life of points nor hand back
/// points that have meanwhile expired. Restored points whose lot is past its date are expired at
/// once by a PointsExpiry event in the same transaction, and the answer counts them apart.
/// </summary>
public static class Reversals
{
    public const string AlreadyReversed = "redemption_already_reversed";
    public const string ExceedsRedemption = "reversal_exceeds_redemption";

    private sealed class RedemptionDebit
    {
        public long EventId { get; set; }
        public long CustomerId { get; set; }
        public long EntryId { get; set; }
        public string OwnerType { get; set; } = "";
        public long OwnerId { get; set; }
        public long ProgramId { get; set; }
        public long CurrencyId { get; set; }
        public long Points { get; set; }
    }

    public static async Task<ReversalResult> ReverseRedemptionAsync(Posting posting, NewReversal request)
    {
        if ((request.RedemptionEventId is null) == string.IsNullOrEmpty(request.ExternalReference))
            throw LedgerException.Invalid("A reversal names exactly one of redemptionEventId or externalReference.");
        if (request.Points is { IsPositive: false })
            throw new LedgerException(ErrorCodes.InvalidPoints, "Points to reverse must be positive.");

        var redemptionId = request.RedemptionEventId ?? await ByReferenceAsync(posting, request.ExternalReference!);
        var debit = await posting.QuerySingleOrDefaultAsync<RedemptionDebit>(
            """
            SELECT e.event_id AS EventId, e.customer_id AS CustomerId, le.entry_id AS EntryId, le.owner_type AS OwnerType,
                le.owner_id AS OwnerId, le.program_id AS ProgramId, le.currency_id AS CurrencyId, le.points AS Points
            FROM events e JOIN ledger_entries le ON le.org_id = e.org_id AND le.event_id = e.event_id AND le.entry_type = 'DEBIT'
            WHERE e.org_id = @org AND e.event_id = @redemptionId AND e.event_name = @name
            """,
            new { org = posting.OrgId, redemptionId, name = EventNames.PointsRedemption })
            ?? throw LedgerException.NotFound("redemption", redemptionId);

        var program = await ProgramCatalog.ResolveAsync(posting, debit.ProgramId, fresh: true);
        var key = new WalletKey(LedgerNames.ParseOwner(debit.OwnerType), debit.OwnerId, debit.ProgramId, debit.CurrencyId, PointCategory.Regular);
        // The wallet lock also serializes two reversals of one redemption, so their sum is checked
        // against what is committed.
        await posting.LockWalletsAsync([key]);

        var redeemed = new Points(debit.Points);
        var reversedBefore = new Points(await posting.ScalarAsync<long?>(
            "SELECT SUM(points) FROM redemption_reversals WHERE org_id = @org AND redemption_event_id = @redemptionId",
            new { org = posting.OrgId, redemptionId }) ?? 0);
        var open = redeemed - reversedBefore;
        if (!open.IsPositive)
            throw new LedgerException(AlreadyReversed, $"Redemption {redemptionId} was already reversed in full.", 409);
        var points = request.Points ?? open;
        if (points > open)
        {
            throw new LedgerException(ExceedsRedemption,
                $"Only {open} of the {redeemed} redeemed can still be reversed; {points} was asked for.", 422);
        }

        // Points come back in the reverse order the redemption took them: the debt it ran up first,
        // then the latest-expiring lots, so a partial reversal favours the customer.
        var consumed = (await posting.QueryAsync<(long LotId, long Points)>(
            "SELECT lot_id, points FROM lot_movements WHERE org_id = @org AND entry_id = @entryId AND points > 0 ORDER BY movement_id DESC",
            new { org = posting.OrgId, entryId = debit.EntryId })).ToList();
        var restoredBefore = (await posting.QueryAsync<(long LotId, long Points)>(
            "SELECT lot_id, SUM(points) FROM redemption_reversals WHERE org_id = @org AND redemption_event_id = @redemptionId GROUP BY lot_id",
            new { org = posting.OrgId, redemptionId })).ToDictionary(r => r.LotId, r => r.Points);

        // Lots already due are expired before the reversal, so the expiry after it sees only the
        // restored points that came back past their date.
        await LotExpiry.ExpireDueAsync(posting, program, key, posting.Now);

        var plan = new List<ConsumedLot>();
        var left = points;
        foreach (var (lotId, taken) in consumed)
        {
            if (!left.IsPositive) break;
            var restorable = taken - restoredBefore.GetValueOrDefault(lotId);
            restoredBefore[lotId] = restoredBefore.GetValueOrDefault(lotId) + Math.Max(0, restorable);
            if (restorable <= 0) continue;
            var back = Points.Min(left, new Points(restorable));
            plan.Add(new ConsumedLot(lotId, back, null));
            left -= back;
        }

        var eventId = await posting.InsertEventAsync(new NewEvent(key.OwnerType, key.OwnerId, debit.CustomerId, LifecycleEventNames.RedemptionReversal,
            SourceProgramId: program.ProgramId, RelatedEventId: redemptionId, Reason: request.Notes));
        var credit = await posting.RestoreLotsAsync(eventId, key, plan);
        foreach (var lot in plan)
        {
            await posting.ExecuteAsync(
                "INSERT INTO redemption_reversals (org_id, redemption_event_id, reversal_event_id, lot_id, points) VALUES (@org, @redemptionId, @eventId, @lotId, @points)",
                new { org = posting.OrgId, redemptionId, eventId, lotId = lot.LotId, points = lot.Points.Thousandths });
        }

        var currency = LotExpiry.CurrencyOf(program, key.CurrencyId);
        var entries = new List<EntryView> { EntryView.Of(credit, currency?.Name) };
        var expiry = await LotExpiry.ExpireDueAsync(posting, program, key, posting.Now);
        var expired = Points.Zero;
        if (expiry is not null)
        {
            entries.AddRange(expiry.Entries);
            expired = expiry.Entries.Aggregate(Points.Zero, (sum, e) => sum + e.Points);
        }
        return new ReversalResult(eventId, LifecycleEventNames.RedemptionReversal, redemptionId, points, points - expired, expired,
            reversedBefore + points, redeemed, entries, expiry?.EventId);
    }

    private static async Task<long> ByReferenceAsync(Posting posting, string reference)
    {
        var ids = (await posting.QueryAsync<long>(
            "SELECT event_id FROM events WHERE org_id = @org AND external_reference = @reference AND event_name = @name",
            new { org = posting.OrgId, reference, name = EventNames.PointsRedemption })).ToList();
        return ids.Count switch
        {
            0 => throw LedgerException.NotFound("redemption", reference),
            1 => ids[0],
            _ => throw LedgerException.Invalid($"{ids.Count} redemptions carry the external reference '{reference}': name one by redemptionEventId."),
        };
    }
}
