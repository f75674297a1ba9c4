using System.Text.Json;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Stores;

namespace LoyaltyLedger.Lifecycle;

/// <summary>Names of the lifecycle events that the points-ledger API has no name for.</summary>
public static class LifecycleEventNames
{
    /// <summary>Points of a redemption put back into the lots they came from.</summary>
    public const string RedemptionReversal = EventNames.RedemptionReversal;

    /// <summary>TRIGGER_BASED points cancelled by the external system instead of released.</summary>
    public const string TriggeredPointsCancellation = "TriggeredPointsCancellation";
}

/// <summary>A bill named by the store it was paid at and its number.</summary>
public sealed record BillReference(string StoreCode, string BillNumber, string? Notes = null);

/// <summary>
/// Points held outside the main wallet: PROMISED points (the program's return window) and
/// TRIGGER_BASED points (waiting for an external release). Each bill's held points are one lot, so
/// a conversion, a release, a cancellation or a return takes exactly that bill's points.
/// </summary>
public static class HeldPoints
{
    private sealed class HeldLot
    {
        public long LotId { get; set; }
        public long Remaining { get; set; }
        public long? ExpiresAt { get; set; }
        public long WalletId { get; set; }
        public string OwnerType { get; set; } = "";
        public long OwnerId { get; set; }
        public long ProgramId { get; set; }
        public long CurrencyId { get; set; }
        public string Category { get; set; } = "";
        public long BillEventId { get; set; }
        public long CustomerId { get; set; }
        public long? BillId { get; set; }
        public long? StoreId { get; set; }
        public long? TillId { get; set; }
        public string? BillNumber { get; set; }
        public string? StoreCode { get; set; }
        public string? TillCode { get; set; }
    }

    private const string HeldLotSelect =
        """
        SELECT l.lot_id AS LotId, l.remaining AS Remaining, l.expires_at AS ExpiresAt, w.wallet_id AS WalletId,
            w.owner_type AS OwnerType, w.owner_id AS OwnerId, w.program_id AS ProgramId, w.currency_id AS CurrencyId,
            w.category AS Category, e.event_id AS BillEventId, e.customer_id AS CustomerId, e.bill_id AS BillId,
            e.store_id AS StoreId, e.till_id AS TillId, b.bill_number AS BillNumber, s.code AS StoreCode, t.code AS TillCode
        FROM lots l
        JOIN wallets w ON w.org_id = l.org_id AND w.wallet_id = l.wallet_id
        JOIN ledger_entries le ON le.org_id = l.org_id AND le.entry_id = l.credit_entry_id
        JOIN events e ON e.org_id = le.org_id AND e.event_id = le.event_id
        LEFT JOIN bills b ON b.org_id = e.org_id AND b.bill_id = e.bill_id
        LEFT JOIN stores s ON s.org_id = e.org_id AND s.store_id = e.store_id
        LEFT JOIN tills t ON t.org_id = e.org_id AND t.till_id = e.till_id
        WHERE l.org_id = @org
        """;

    /// <summary>
    /// Converts one PROMISED lot whose window has passed (the expiry run calls it); false when it was
    /// converted or returned meanwhile, so two runs never convert the same points twice.
    /// </summary>
    public static async Task<PostingResult?> ConvertDueAsync(Posting posting, long lotId, DateTimeOffset asOf)
    {
        var lot = await posting.QuerySingleOrDefaultAsync<HeldLot>(
            HeldLotSelect + " AND l.lot_id = @lotId", new { lotId, org = posting.OrgId });
        if (lot is null || lot.Category != PointCategory.Promised.ToWire()) return null;
        var program = await ProgramCatalog.ResolveForWalletAsync(posting, lot.ProgramId, lot.CurrencyId);
        var heldKey = KeyOf(lot);
        await posting.LockWalletsAsync([heldKey, heldKey with { Category = PointCategory.Regular }]);
        // Re-read under the lock: a concurrent return or run may have taken the lot.
        var remaining = await posting.ScalarAsync<long>("SELECT remaining FROM lots WHERE org_id = @org AND lot_id = @lotId", new { org = posting.OrgId, lotId });
        if (remaining <= 0 || lot.ExpiresAt is not { } due || due > asOf.ToUnixTimeMilliseconds()) return null;
        return await MoveToMainAsync(posting, program, lot, new Points(remaining), "PROMISED_WINDOW_PASSED");
    }

    /// <summary>Releases (to the main wallet) or cancels the TRIGGER_BASED points of a bill.</summary>
    public static async Task<IReadOnlyList<PostingResult>> SettleTriggerAsync(Posting posting, BillReference bill, bool release)
    {
        var lots = await HeldLotsOfBillAsync(posting, bill, PointCategory.TriggerBased);
        if (lots.Count == 0)
            throw new LedgerException("no_held_points", $"Bill '{bill.BillNumber}' has no points waiting for a trigger.", 409);
        var results = new List<PostingResult>();
        var program = await ProgramCatalog.ResolveAsync(posting, lots[0].ProgramId, fresh: true);
        await posting.LockWalletsAsync(lots.SelectMany(l => new[] { KeyOf(l), KeyOf(l) with { Category = PointCategory.Regular } }));
        foreach (var lot in lots)
        {
            var remaining = new Points(await posting.ScalarAsync<long>("SELECT remaining FROM lots WHERE org_id = @org AND lot_id = @id", new { org = posting.OrgId, id = lot.LotId }));
            if (!remaining.IsPositive) continue;
            if (release)
            {
                results.Add(await MoveToMainAsync(posting, program, lot, remaining, "TRIGGER_RELEASED"));
                continue;
            }
            var eventId = await posting.InsertEventAsync(new NewEvent(OwnerOf(lot), lot.OwnerId, lot.CustomerId,
                LifecycleEventNames.TriggeredPointsCancellation, SourceProgramId: program.ProgramId, StoreId: lot.StoreId, TillId: lot.TillId, BillId: lot.BillId,
                RelatedEventId: lot.BillEventId, Reason: bill.Notes ?? "The trigger was cancelled.",
                BillNumber: lot.BillNumber, StoreCode: lot.StoreCode, TillCode: lot.TillCode));
            var debit = await posting.DebitLotsAsync(eventId, KeyOf(lot), [new ConsumedLot(lot.LotId, remaining, lot.ExpiresAt)]);
            results.Add(new PostingResult(eventId, LifecycleEventNames.TriggeredPointsCancellation, lot.BillId,
                [EntryView.Of(debit.Entry, LotExpiry.CurrencyName(program, lot.CurrencyId))]));
        }
        if (results.Count == 0)
            throw new LedgerException("no_held_points", $"The held points of bill '{bill.BillNumber}' were already settled.", 409);
        return results;
    }

    /// <summary>
    /// One DelayedAccrual event, linked to the bill's event and at the bill's store and till (so a
    /// till's ledger shows it beside its bill), with a DEBIT of the held lot and a CREDIT in Main. The main lot's expiry counts from the conversion: points cannot start
    /// expiring before the customer can spend them.
    /// </summary>
    private static async Task<PostingResult> MoveToMainAsync(Posting posting, LoyaltyProgram program, HeldLot lot, Points points, string why)
    {
        var heldKey = KeyOf(lot);
        var mainKey = heldKey with { Category = PointCategory.Regular };
        var eventId = await posting.InsertEventAsync(new NewEvent(OwnerOf(lot), lot.OwnerId, lot.CustomerId, EventNames.DelayedAccrual,
            SourceProgramId: program.ProgramId, StoreId: lot.StoreId, TillId: lot.TillId, BillId: lot.BillId, RelatedEventId: lot.BillEventId,
            BillNumber: lot.BillNumber, StoreCode: lot.StoreCode, TillCode: lot.TillCode,
            DetailsJson: JsonSerializer.Serialize(new Dictionary<string, string> { ["conversion"] = why, ["fromCategory"] = lot.Category })));
        var debit = await posting.DebitLotsAsync(eventId, heldKey, [new ConsumedLot(lot.LotId, points, lot.ExpiresAt)]);
        var expiresAt = LotExpiry.PolicyFor(program, lot.CurrencyId).ExpiryFor(posting.Now)?.ToUnixTimeMilliseconds();
        var credit = await posting.CreditAsync(eventId, mainKey, points, expiresAt);
        var currency = LotExpiry.CurrencyOf(program, lot.CurrencyId);
        return new PostingResult(eventId, EventNames.DelayedAccrual, lot.BillId, [EntryView.Of(debit.Entry, currency?.Name), EntryView.Of(credit, currency?.Name)]);
    }

    private static async Task<List<HeldLot>> HeldLotsOfBillAsync(Posting posting, BillReference bill, PointCategory category)
    {
        var (store, _) = await StoreDirectory.ResolveAsync(posting, bill.StoreCode, null);
        if (store is null) throw LedgerException.Invalid("storeCode is required.");
        var billEventId = await posting.ScalarAsync<long?>(
            "SELECT event_id FROM bills WHERE org_id = @org AND store_id = @storeId AND bill_number = @number",
            new { org = posting.OrgId, storeId = store.StoreId, number = bill.BillNumber })
            ?? throw new LedgerException("bill_not_found", $"No bill '{bill.BillNumber}' at store '{bill.StoreCode}'.", 404);
        return (await posting.QueryAsync<HeldLot>(
            HeldLotSelect + " AND e.event_id = @billEventId AND w.category = @category AND l.is_debt = 0 ORDER BY l.lot_id",
            new { org = posting.OrgId, billEventId, category = category.ToWire() })).ToList();
    }

    private static OwnerType OwnerOf(HeldLot lot) => LedgerNames.ParseOwner(lot.OwnerType);

    private static WalletKey KeyOf(HeldLot lot)
    {
        LedgerNames.TryParseCategory(lot.Category, out var category);
        return new WalletKey(OwnerOf(lot), lot.OwnerId, lot.ProgramId, lot.CurrencyId, category);
    }
}
