using System.Globalization;
using System.Text.Json;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Stores;
using LoyaltyLedger.Tiers;

namespace LoyaltyLedger.Lifecycle;

/// <summary>A full or partial return of a bill, named by store code and bill number.</summary>
public sealed record NewReturn(string StoreCode, string BillNumber, decimal Amount, string? Notes = null);

/// <summary>Points a return should have taken back but could not, because they were already spent.</summary>
public sealed record ReturnShortfall(long ProgramId, string? Currency, Points Points);

public sealed record ReturnResult(
    long EventId,
    string EventName,
    long BillId,
    decimal ReturnedAmount,
    decimal TotalReturned,
    IReadOnlyList<EntryView> Entries,
    IReadOnlyList<ReturnShortfall> Shortfalls);

/// <summary>
/// ReturnBill: takes back what a bill earned, pro rata to the amount returned.
/// </summary>
/// <remarks>
/// Rounding is cumulative, so partial returns add up exactly to a full one: after returns totalling
/// R of a bill of amount A that credited P, exactly floor(P x R / A) has been taken back (integer
/// thousandths, 128-bit intermediate), and each return takes the difference from the previous total.
/// The returned amounts are counted on the bill row under its lock, so they never exceed the bill.
/// </remarks>
public static class Returns
{
    public const string ReturnExceedsBill = "return_exceeds_bill";

    private sealed class BillCredit
    {
        public long EntryId { get; set; }
        public string OwnerType { get; set; } = "";
        public long OwnerId { get; set; }
        public long ProgramId { get; set; }
        public long CurrencyId { get; set; }
        public string Category { get; set; } = "";
        public long Points { get; set; }
    }

    public static async Task<ReturnResult> ReturnBillAsync(Posting posting, NewReturn request)
    {
        var amount = LoyaltyLedger.Money.Thousandths(request.Amount, "amount");
        if (amount <= 0) throw new LedgerException(ErrorCodes.InvalidAmount, "The returned amount must be positive.");
        if (string.IsNullOrEmpty(request.StoreCode) || string.IsNullOrEmpty(request.BillNumber))
            throw LedgerException.Invalid("A return names the bill by storeCode and billNumber.");
        var (store, _) = await StoreDirectory.ResolveAsync(posting, request.StoreCode, null);
        var bill = await posting.QuerySingleOrDefaultAsync<(long BillId, long Amount, long EventId, long CustomerId, long TierMetric, long? TierPeriod)?>(
            "SELECT bill_id, amount, event_id, customer_id, tier_metric, tier_period FROM bills WHERE org_id = @org AND store_id = @storeId AND bill_number = @number",
            new { org = posting.OrgId, storeId = store!.StoreId, number = request.BillNumber })
            ?? throw new LedgerException("bill_not_found", $"No bill '{request.BillNumber}' at store '{request.StoreCode}'.", 404);

        // The conditional update both locks the bill row and enforces the cap: two concurrent returns
        // cannot both pass a check made before either wrote.
        var after = await posting.ScalarAsync<long?>(
            """
            UPDATE bills SET returned_amount = returned_amount + @amount
            WHERE org_id = @org AND bill_id = @billId AND returned_amount + @amount <= amount
            RETURNING returned_amount
            """,
            new { amount, org = posting.OrgId, billId = bill.BillId });
        if (after is not { } returnedAfter)
        {
            var already = await posting.ScalarAsync<long>("SELECT returned_amount FROM bills WHERE org_id = @org AND bill_id = @billId", new { org = posting.OrgId, billId = bill.BillId });
            throw new LedgerException(ReturnExceedsBill,
                $"Returning {request.Amount} would exceed the bill: {Money(bill.Amount)} billed, {Money(already)} already returned.", 422);
        }
        var returnedBefore = returnedAfter - amount;

        var credits = (await posting.QueryAsync<BillCredit>(
            """
            SELECT entry_id AS EntryId, owner_type AS OwnerType, owner_id AS OwnerId, program_id AS ProgramId,
                currency_id AS CurrencyId, category AS Category, points AS Points
            FROM ledger_entries WHERE org_id = @org AND event_id = @eventId AND entry_type = 'CREDIT' ORDER BY entry_id
            """,
            new { org = posting.OrgId, eventId = bill.EventId })).ToList();
        var billEvent = (await posting.QueryAsync<(string OwnerType, long OwnerId, long? ProgramId)>(
            "SELECT owner_type, owner_id, source_program_id FROM events WHERE org_id = @org AND event_id = @eventId", new { org = posting.OrgId, eventId = bill.EventId })).Single();
        var ownerType = LedgerNames.ParseOwner(billEvent.OwnerType);
        var program = await ProgramCatalog.ResolveAsync(posting, credits.FirstOrDefault()?.ProgramId ?? billEvent.ProgramId, fresh: true);

        var plan = new List<(BillCredit Credit, WalletKey HeldKey, long? HeldLot, Points FromHeld, Points FromMain)>();
        foreach (var c in credits)
        {
            var take = Share(c.Points, returnedAfter, bill.Amount) - Share(c.Points, returnedBefore, bill.Amount);
            if (!take.IsPositive) continue;
            LedgerNames.TryParseCategory(c.Category, out var category);
            var key = new WalletKey(ownerType, billEvent.OwnerId, c.ProgramId, c.CurrencyId, category);
            if (category == PointCategory.Regular)
            {
                plan.Add((c, key, null, Points.Zero, take));
                continue;
            }
            // Held points not yet converted are cancelled first; what already reached Main comes from Main.
            var lot = await posting.QuerySingleOrDefaultAsync<(long LotId, long Remaining)?>(
                "SELECT lot_id, remaining FROM lots WHERE org_id = @org AND credit_entry_id = @entryId AND is_debt = 0", new { org = posting.OrgId, entryId = c.EntryId });
            var fromHeld = lot is { } l ? Points.Min(take, new Points(Math.Max(0, l.Remaining))) : Points.Zero;
            plan.Add((c, key, lot?.LotId, fromHeld, take - fromHeld));
        }

        var mainKeys = plan.Where(p => p.FromMain.IsPositive).Select(p => p.HeldKey with { Category = PointCategory.Regular }).Distinct().ToList();
        await posting.LockWalletsAsync(plan.Select(p => p.HeldKey).Concat(mainKeys));
        foreach (var key in mainKeys)
            await LotExpiry.ExpireDueAsync(posting, program, key, posting.Now);

        var eventId = await posting.InsertEventAsync(new NewEvent(ownerType, billEvent.OwnerId, bill.CustomerId, EventNames.ReturnBill,
            SourceProgramId: program.ProgramId, StoreId: store.StoreId, BillId: bill.BillId, RelatedEventId: bill.EventId, Reason: request.Notes,
            BillNumber: request.BillNumber, StoreCode: store.Code,
            DetailsJson: JsonSerializer.Serialize(new Dictionary<string, string>
            {
                ["returnedAmount"] = Money(amount).ToString(CultureInfo.InvariantCulture),
                ["totalReturned"] = Money(returnedAfter).ToString(CultureInfo.InvariantCulture),
            })));

        // Groups may go negative (one member earns, another spends, the first returns the goods).
        var allowNegative = program.AllowNegativeBalance || ownerType == OwnerType.Group;
        var entries = new List<EntryView>();
        var shortfalls = new List<ReturnShortfall>();
        foreach (var p in plan.Where(p => p.FromHeld.IsPositive))
        {
            var debit = await posting.DebitLotsAsync(eventId, p.HeldKey, [new ConsumedLot(p.HeldLot!.Value, p.FromHeld, null)]);
            entries.Add(EntryView.Of(debit.Entry, LotExpiry.CurrencyName(program, p.Credit.CurrencyId)));
        }
        foreach (var key in mainKeys)
        {
            var wanted = plan.Where(p => p.FromMain.IsPositive && (p.HeldKey with { Category = PointCategory.Regular }) == key)
                .Aggregate(Points.Zero, (sum, p) => sum + p.FromMain);
            var available = Points.Max(Points.Zero, posting.Locked(key).Balance);
            var taken = allowNegative ? wanted : Points.Min(wanted, available);
            if (taken.IsPositive)
            {
                var debit = await posting.DebitAsync(eventId, key, taken, allowNegative);
                entries.Add(EntryView.Of(debit.Entry, LotExpiry.CurrencyName(program, key.CurrencyId)));
            }
            if (wanted > taken)
                shortfalls.Add(new ReturnShortfall(key.ProgramId, LotExpiry.CurrencyName(program, key.CurrencyId), wanted - taken));
        }
        // The return takes its share of what the bill counted toward the owner's tier out of the
        // metric (cumulatively, as the points): the tier itself waits for the next evaluation.
        var tierShare = Share(bill.TierMetric, returnedAfter, bill.Amount) - Share(bill.TierMetric, returnedBefore, bill.Amount);
        await TierAccrual.TakeBackAsync(posting, program, ownerType, billEvent.OwnerId, tierShare, bill.TierPeriod);
        if (shortfalls.Count > 0)
        {
            var shortfallText = string.Join("; ", shortfalls.Select(s => $"{s.Currency ?? "points"}: {s.Points}"));
            await posting.SetReasonAsync(eventId, $"{request.Notes} Already spent, not taken back: {shortfallText}".Trim());
        }
        return new ReturnResult(eventId, EventNames.ReturnBill, bill.BillId, Money(amount), Money(returnedAfter), entries, shortfalls);
    }

    /// <summary>floor(points x part / whole) in thousandths, exact.</summary>
    public static Points Share(long points, long part, long whole) =>
        new((long)((Int128)points * part / whole));

    private static decimal Money(long thousandths) => thousandths / 1000m;
}
