using System.Data.Common;
using System.Globalization;
using System.Text.Json;
using Dapper;
using LoyaltyLedger.Customers;
using LoyaltyLedger.Groups;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Lifecycle;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Stores;
using LoyaltyLedger.Tiers;

namespace LoyaltyLedger.Postings;

/// <summary>An explicit award of points (no currency) or of an alternate currency.</summary>
public sealed record Award(Points Points, string? Currency = null);

/// <summary>A bill: the points of the program's earn rule and/or explicit awards.</summary>
public sealed record NewBill(
    long CustomerId,
    string BillNumber,
    decimal Amount,
    string StoreCode,
    string? TillCode = null,
    decimal? GrossAmount = null,
    DateTimeOffset? BillDate = null,
    long? ProgramId = null,
    string? Source = null,
    bool EarnByRule = true,
    IReadOnlyList<Award>? Awards = null,
    string? Notes = null,
    long? SourceProgramId = null,
    bool HoldForTrigger = false);

public sealed record NewRedemption(
    Points Points,
    long? CustomerId = null,
    long? GroupId = null,
    long? ProgramId = null,
    string? Currency = null,
    string? TransactionNumber = null,
    string? ExternalReference = null,
    string? Notes = null,
    string? StoreCode = null,
    string? TillCode = null);

public sealed record NewAllocation(long CustomerId, Points Points, string? Currency = null);

public sealed record NewBulkAllocation(IReadOnlyList<NewAllocation> Allocations, long? ProgramId = null, string? Reason = null);

public sealed record NewGenericEvent(
    long CustomerId,
    string EventName,
    IReadOnlyList<Award> Awards,
    long? ProgramId = null,
    string? StoreCode = null,
    string? TillCode = null,
    IReadOnlyDictionary<string, string>? Details = null,
    string? Reason = null,
    long? SourceProgramId = null);

/// <summary>One side of a transfer: a customer, or a user group's pooled wallet.</summary>
public sealed record TransferParty(long? CustomerId = null, long? GroupId = null);

public sealed record NewTransfer(TransferParty From, TransferParty To, Points Points, long? ProgramId = null, string? Currency = null, string? Reason = null);

public sealed record TransferResult(long DebitEventId, long CreditEventId, IReadOnlyList<EntryView> Entries);

/// <summary>Which way a goodwill adjustment moves points.</summary>
public enum AdjustmentDirection { Credit, Debit }

/// <summary>
/// A goodwill adjustment of a customer's main points (or one alternate currency) in one program,
/// with the reason the agent gives; the key that posts it is the event's <c>posted_by</c>.
/// </summary>
public sealed record NewGoodwillAdjustment(
    long CustomerId,
    AdjustmentDirection Direction,
    Points Points,
    string Reason,
    long? ProgramId = null,
    string? Currency = null);

/// <summary>
/// The write side: each method is one business posting (a bill, a redemption, an allocation, an
/// event, a transfer) inside a caller's <see cref="Posting"/>, so the caller decides the transaction
/// and can make the idempotency record part of it.
/// </summary>
public static class PointsPostings
{
    public const int MaxBulkAllocations = 1000;
    public const int MaxAwards = 50;

    public static async Task<PostingResult> AddTransactionAsync(Posting posting, NewBill bill)
    {
        if (string.IsNullOrWhiteSpace(bill.BillNumber) || bill.BillNumber.Length > 100)
            throw LedgerException.Invalid("A bill needs a billNumber of 1 to 100 characters.");
        var amount = Money.Thousandths(bill.Amount, "amount");
        if (amount <= 0) throw new LedgerException(ErrorCodes.InvalidAmount, "The bill amount must be positive.");
        var gross = bill.GrossAmount is { } g ? Money.Thousandths(g, "grossAmount") : amount;
        if (gross < amount) throw new LedgerException(ErrorCodes.InvalidAmount, "grossAmount cannot be below amount.");
        if (string.IsNullOrEmpty(bill.StoreCode)) throw LedgerException.Invalid("A bill needs the storeCode it was paid at.");
        var source = CustomerDirectory.CanonicalSource(bill.Source ?? "INSTORE");
        if (source is null or "ALL") throw LedgerException.Invalid($"Unknown source '{bill.Source}'.");
        if ((bill.Awards?.Count ?? 0) > MaxAwards) throw LedgerException.Invalid($"At most {MaxAwards} awards per bill.");

        // A member of a pooling group earns for the group's wallet.
        var pool = await GroupDirectory.PoolOfAsync(posting, bill.CustomerId, requireCustomer: true);
        var (ownerType, ownerId) = pool is { } p ? (OwnerType.Group, p.GroupId) : (OwnerType.Customer, bill.CustomerId);
        var program = await ProgramCatalog.ResolveAsync(posting, bill.ProgramId, bill.Awards?.Select(a => a?.Currency));
        var (store, till) = await StoreDirectory.ResolveAsync(posting, bill.StoreCode, bill.TillCode);

        // Points from the earn rule, then explicit awards; each becomes its own ledger line. The
        // rule's lines are at the base rate here; the owner's tier multiplies them once it is read.
        var ruleCredits = new List<(AlternateCurrency? Currency, Points Points)>();
        if (bill.EarnByRule)
        {
            var earned = Earn(amount, program.EarnRate);
            if (earned.IsPositive) ruleCredits.Add((null, earned));
            foreach (var currency in program.Currencies)
            {
                var units = Earn(amount, currency.EarnRate);
                if (units.IsPositive) ruleCredits.Add((currency, units));
            }
        }
        var awards = ResolveAwards(program, bill.Awards);
        var baseCredits = ruleCredits.Concat(awards).ToList();
        var tierMetric = TierAccrual.MetricOf(program, baseCredits, amount);

        // Points of a bill wait in a held category when the bill asks for an external trigger or the
        // program has a return window; either way the bill is a qualifying activity of the main wallet.
        var category = bill.HoldForTrigger ? PointCategory.TriggerBased
            : program.PromisedDays is not null ? PointCategory.Promised
            : PointCategory.Regular;
        // The bill's row goes in the wallets' round trip, after their locks: a duplicate is refused
        // there, and the posting rolls back with it.
        var billInsert = -1;
        var billArgs = new
        {
            org = posting.OrgId, storeId = store!.StoreId, tillId = till?.TillId, billNumber = bill.BillNumber,
            customerId = bill.CustomerId, amount, gross, billDate = (bill.BillDate ?? posting.Now).ToUnixTimeMilliseconds(),
            source, now = posting.NowMs, tierMetric = tierMetric.Thousandths,
        };
        TierStanding? standing;
        BatchResults locked;
        try
        {
            (standing, locked) = await LockForCreditsAsync(posting, program, ownerType, ownerId, baseCredits, category, qualifying: true, tierMetric,
                alongside: batch => billInsert = batch.Query(
                    """
                    INSERT INTO bills (org_id, store_id, till_id, bill_number, customer_id, amount, gross_amount, bill_date, source, event_id, created_at,
                        tier_metric)
                    VALUES (@org, @storeId, @tillId, @billNumber, @customerId, @amount, @gross, @billDate, @source, 0, @now, @tierMetric)
                    RETURNING bill_id
                    """, billArgs));
        }
        catch (DbException ex) when (posting.Dialect.IsUniqueViolation(ex, "bills"))
        {
            throw new LedgerException(ErrorCodes.DuplicateBill, $"Bill '{bill.BillNumber}' was already posted at store '{store.Code}'.", 409);
        }
        var billId = locked.SingleLong(billInsert);
        // The bill earns at the tier held before it (a bill that crosses a threshold too): the rule's
        // lines times that tier's multiplier, except the metric's own currency; awards as given.
        var credits = standing is null ? baseCredits : [.. ruleCredits.Select(c => Multiplied(c, standing)), .. awards];
        // The event, the bill's link to it and the lines: one round trip where the posting can.
        var (eventId, entries) = await InsertEventAndCreditAllAsync(posting, new NewEvent(ownerType, ownerId, bill.CustomerId, EventNames.TransactionAdd,
                SourceProgramId: await SourceProgramAsync(posting, bill.SourceProgramId, program), StoreId: store.StoreId, TillId: till?.TillId,
                BillId: billId, Reason: bill.Notes, BillNumber: bill.BillNumber, StoreCode: store.Code, TillCode: till?.Code,
                LineKinds: NewEvent.KindsOf(credits)),
            then: ("UPDATE bills SET event_id = {lastEventId}, tier_period = @tierPeriod WHERE org_id = @org AND bill_id = @billId",
                new { org = posting.OrgId, billId, tierPeriod = standing?.CountedInPeriod }),
            program, credits, category, qualifying: true);
        return new PostingResult(eventId, EventNames.TransactionAdd, billId, entries, await UpgradeAsync(posting, standing, eventId));
    }

    public static async Task<PostingResult> RedeemAsync(Posting posting, NewRedemption request)
    {
        if (!request.Points.IsPositive) throw new LedgerException(ErrorCodes.InvalidPoints, "Points to redeem must be positive.");
        if (request.CustomerId is null) throw LedgerException.Invalid("A redemption needs the customerId redeeming.");
        var customerId = request.CustomerId.Value;
        // A redemption from a group's wallet checks its member here; a customer's own, with the lock below.
        if (request.GroupId is not null) await CustomerDirectory.RequireAsync(posting, customerId);
        var program = await ProgramCatalog.ResolveAsync(posting, request.ProgramId, [request.Currency]);
        var currency = ResolveCurrency(program, request.Currency);
        var (store, till) = await StoreDirectory.ResolveAsync(posting, request.StoreCode, request.TillCode);

        var (ownerType, ownerId, allowNegative) = (OwnerType.Customer, customerId, program.AllowNegativeBalance);
        if (request.GroupId is { } groupId)
        {
            // Cross-member redemption: drawn on the pooled wallet by a member allowed to redeem.
            var group = await GroupDirectory.RequireAsync(posting, groupId);
            var member = group.Members.FirstOrDefault(m => m.CustomerId == customerId)
                ?? throw new LedgerException(ErrorCodes.NotPermitted, $"Customer {customerId} is not a member of group {groupId}.", 403);
            if (!member.MayRedeem) throw new LedgerException(ErrorCodes.NotPermitted, $"Customer {customerId} may not redeem the points of group {groupId}.", 403);
            (ownerType, ownerId) = (OwnerType.Group, groupId);
        }

        var key = new WalletKey(ownerType, ownerId, program.ProgramId, currency?.CurrencyId ?? WalletKey.PlainPoints, PointCategory.Regular);
        // The customer is checked in the lock's round trip: the wallet a lock makes for a customer who
        // does not exist goes with the refused posting.
        int? customerCheck = null;
        var locked = await posting.LockWalletsAsync([key],
            request.GroupId is null ? batch => customerCheck = CustomerDirectory.AddRequire(batch, posting.OrgId, customerId) : null);
        if (customerCheck is { } check) CustomerDirectory.Require(locked!, check, customerId);
        await LotExpiry.ExpireDueAsync(posting, program, key, posting.Now);
        var details = Details(new Dictionary<string, string?>
        {
            ["transactionNumber"] = request.TransactionNumber,
            ["externalReferenceNumber"] = request.ExternalReference,
        });
        if (request.ExternalReference is { Length: > 200 }) throw LedgerException.Invalid("externalReference is at most 200 characters.");
        // The reference has a column of its own (not only the details) so a reversal finds the redemption by it.
        var (eventId, debit) = await posting.InsertEventAndDebitAsync(new NewEvent(ownerType, ownerId, customerId, EventNames.PointsRedemption,
            SourceProgramId: program.ProgramId, StoreId: store?.StoreId, TillId: till?.TillId, DetailsJson: details, Reason: request.Notes,
            ExternalReference: request.ExternalReference, StoreCode: store?.Code, TillCode: till?.Code,
            LineKinds: currency is null ? EventLineKinds.Points : EventLineKinds.Currency), key, request.Points, allowNegative);
        return new PostingResult(eventId, EventNames.PointsRedemption, null, [View(debit.Entry, currency)]);
    }

    public static async Task<IReadOnlyList<PostingResult>> AllocateAsync(Posting posting, NewBulkAllocation request)
    {
        if (request.Allocations is null || request.Allocations.Count == 0) throw LedgerException.Invalid("A bulk allocation needs at least one allocation.");
        if (request.Allocations.Count > MaxBulkAllocations) throw LedgerException.Invalid($"At most {MaxBulkAllocations} allocations per call.");
        var program = await ProgramCatalog.ResolveAsync(posting, request.ProgramId, request.Allocations.Select(x => x?.Currency));
        foreach (var a in request.Allocations)
        {
            if (!a.Points.IsPositive) throw new LedgerException(ErrorCodes.InvalidPoints, $"Points for customer {a.CustomerId} must be positive.");
            await CustomerDirectory.RequireAsync(posting, a.CustomerId);
        }

        var results = new List<PostingResult>();
        // Lock every wallet up front, in key order, before the first write.
        var plan = request.Allocations.Select(a => (a, currency: ResolveCurrency(program, a.Currency))).ToList();
        var bonusWallets = plan.Select(x => TierAccrual.BonusWallet(program, OwnerType.Customer, x.a.CustomerId)).OfType<WalletKey>();
        await posting.LockWalletsAsync(plan.Select(x => new WalletKey(OwnerType.Customer, x.a.CustomerId, program.ProgramId, x.currency?.CurrencyId ?? 0, PointCategory.Regular))
            .Concat(bonusWallets));
        foreach (var byCustomer in plan.GroupBy(x => x.a.CustomerId))
        {
            var credits = byCustomer.Select(x => (x.currency, x.a.Points)).ToList();
            var standing = await TierAccrual.CountAsync(posting, program, OwnerType.Customer, byCustomer.Key, TierAccrual.MetricOf(program, credits, 0));
            var eventId = await posting.InsertEventAsync(new NewEvent(OwnerType.Customer, byCustomer.Key, byCustomer.Key, EventNames.BulkAllocatePoints,
                SourceProgramId: program.ProgramId, Reason: request.Reason, LineKinds: NewEvent.KindsOf(credits)));
            var entries = await CreditAllAsync(posting, eventId, OwnerType.Customer, byCustomer.Key, program, credits);
            results.Add(new PostingResult(eventId, EventNames.BulkAllocatePoints, null, entries, await UpgradeAsync(posting, standing, eventId)));
        }
        return results;
    }

    public static async Task<PostingResult> PostGenericEventAsync(Posting posting, NewGenericEvent request)
    {
        if (string.IsNullOrWhiteSpace(request.EventName) || request.EventName.Length > 100)
            throw LedgerException.Invalid("A generic event needs an eventName of 1 to 100 characters.");
        if (request.Awards is null || request.Awards.Count == 0) throw LedgerException.Invalid("A generic event needs at least one award.");
        if (request.Awards.Count > MaxAwards) throw LedgerException.Invalid($"At most {MaxAwards} awards per event.");
        if (request.Details is { Count: > 50 }) throw LedgerException.Invalid("At most 50 details per event.");
        await CustomerDirectory.RequireAsync(posting, request.CustomerId);
        var program = await ProgramCatalog.ResolveAsync(posting, request.ProgramId, request.Awards.Select(x => x?.Currency));
        var (store, till) = await StoreDirectory.ResolveAsync(posting, request.StoreCode, request.TillCode);
        var credits = ResolveAwards(program, request.Awards);
        var (standing, _) = await LockForCreditsAsync(posting, program, OwnerType.Customer, request.CustomerId, credits, PointCategory.Regular, qualifying: true,
            TierAccrual.MetricOf(program, credits, 0));

        var details = new Dictionary<string, string?>(request.Details?.ToDictionary(kv => kv.Key, kv => (string?)kv.Value) ?? [])
        {
            ["eventDisplayName"] = request.EventName,
            ["displayName"] = request.EventName,
        };
        var eventId = await posting.InsertEventAsync(new NewEvent(OwnerType.Customer, request.CustomerId, request.CustomerId, EventNames.GenericEvent,
            DisplayName: request.EventName, SourceProgramId: await SourceProgramAsync(posting, request.SourceProgramId, program), StoreId: store?.StoreId, TillId: till?.TillId,
            DetailsJson: Details(details), Reason: request.Reason, StoreCode: store?.Code, TillCode: till?.Code, LineKinds: NewEvent.KindsOf(credits)));
        var entries = await CreditAllAsync(posting, eventId, OwnerType.Customer, request.CustomerId, program, credits, PointCategory.Regular, qualifying: true);
        return new PostingResult(eventId, EventNames.GenericEvent, null, entries, await UpgradeAsync(posting, standing, eventId));
    }

    /// <summary>
    /// Moves points between two customers, or a customer and a group: a DEBIT on one side and a
    /// CREDIT on the other, in two linked PointsTransfer events. The credited lots keep the expiry
    /// dates of the lots the debit consumed, so a transfer never extends the life of points.
    /// </summary>
    public static async Task<TransferResult> TransferAsync(Posting posting, NewTransfer request)
    {
        if (!request.Points.IsPositive) throw new LedgerException(ErrorCodes.InvalidPoints, "Points to transfer must be positive.");
        var from = await ResolvePartyAsync(posting, request.From, "from");
        var to = await ResolvePartyAsync(posting, request.To, "to");
        if (from == to) throw LedgerException.Invalid("A transfer needs two different parties.");
        var program = await ProgramCatalog.ResolveAsync(posting, request.ProgramId, [request.Currency]);
        var currency = ResolveCurrency(program, request.Currency);
        var currencyId = currency?.CurrencyId ?? WalletKey.PlainPoints;

        var fromKey = new WalletKey(from.Type, from.Id, program.ProgramId, currencyId, PointCategory.Regular);
        var toKey = new WalletKey(to.Type, to.Id, program.ProgramId, currencyId, PointCategory.Regular);
        await posting.LockWalletsAsync([fromKey, toKey]);
        await LotExpiry.ExpireDueAsync(posting, program, fromKey, posting.Now);

        // Both sides name the customer who sent the points; a customer's own side names that customer.
        var sender = from.Type == OwnerType.Customer ? from.Id : NewEvent.NoCustomer;
        var debitEvent = await posting.InsertEventAsync(new NewEvent(from.Type, from.Id, sender, EventNames.PointsTransfer,
            SourceProgramId: program.ProgramId, Reason: request.Reason,
            DetailsJson: Details(new Dictionary<string, string?> { ["direction"] = "OUT", ["counterparty"] = Describe(to) })));
        var debit = await posting.DebitAsync(debitEvent, fromKey, request.Points, program.AllowNegativeBalance);

        var creditEvent = await posting.InsertEventAsync(new NewEvent(to.Type, to.Id, to.Type == OwnerType.Customer ? to.Id : sender, EventNames.PointsTransfer,
            SourceProgramId: program.ProgramId, Reason: request.Reason, RelatedEventId: debitEvent,
            DetailsJson: Details(new Dictionary<string, string?> { ["direction"] = "IN", ["counterparty"] = Describe(from) })));
        var pieces = debit.Consumed.Select(c => new LotPiece(c.Points, c.ExpiresAt)).ToList();
        var credit = await posting.CreditLotsAsync(creditEvent, toKey, pieces);
        await posting.SetRelatedEventAsync(debitEvent, creditEvent);
        return new TransferResult(debitEvent, creditEvent, [View(debit.Entry, currency), View(credit, currency)]);
    }

    public const int MaxReasonLength = 500;

    /// <summary>
    /// A goodwill credit or debit (<see cref="EventNames.GoodwillAdjustment"/>): one line on the
    /// customer's own main wallet, never a group's pool. A credit is a lot dated by the program's (or
    /// currency's) expiry policy, as an award would be, but is no qualifying activity: an agent's
    /// correction does not keep a dormant balance alive. A debit takes lots earliest expiry first,
    /// after expiring what is due, and is balance-checked like a redemption unless the program
    /// allows negative balances. The reason is mandatory and stored with the event.
    /// </summary>
    public static async Task<PostingResult> AdjustAsync(Posting posting, NewGoodwillAdjustment request)
    {
        if (!Enum.IsDefined(request.Direction)) throw LedgerException.Invalid("direction is Credit or Debit.");
        if (!request.Points.IsPositive) throw new LedgerException(ErrorCodes.InvalidPoints, "Points to adjust must be positive.");
        var reason = request.Reason?.Trim();
        if (string.IsNullOrEmpty(reason)) throw LedgerException.Invalid("A goodwill adjustment needs a reason.");
        if (reason.Length > MaxReasonLength) throw LedgerException.Invalid($"A reason is at most {MaxReasonLength} characters.");
        await CustomerDirectory.RequireAsync(posting, request.CustomerId);
        var program = await ProgramCatalog.ResolveAsync(posting, request.ProgramId, [request.Currency]);
        var currency = ResolveCurrency(program, request.Currency);
        var key = new WalletKey(OwnerType.Customer, request.CustomerId, program.ProgramId, currency?.CurrencyId ?? WalletKey.PlainPoints, PointCategory.Regular);
        await posting.LockWalletsAsync([key]);

        var credit = request.Direction == AdjustmentDirection.Credit;
        var details = Details(new Dictionary<string, string?>
        {
            ["direction"] = credit ? "CREDIT" : "DEBIT",
            ["displayName"] = credit ? "Goodwill credit" : "Goodwill debit",
        });
        if (credit)
        {
            var eventId = await posting.InsertEventAsync(new NewEvent(OwnerType.Customer, request.CustomerId, request.CustomerId, EventNames.GoodwillAdjustment,
                DisplayName: "Goodwill credit", SourceProgramId: program.ProgramId, DetailsJson: details, Reason: reason));
            var entries = await CreditAllAsync(posting, eventId, OwnerType.Customer, request.CustomerId, program, [(currency, request.Points)]);
            return new PostingResult(eventId, EventNames.GoodwillAdjustment, null, entries);
        }

        await LotExpiry.ExpireDueAsync(posting, program, key, posting.Now);
        var debitEvent = await posting.InsertEventAsync(new NewEvent(OwnerType.Customer, request.CustomerId, request.CustomerId, EventNames.GoodwillAdjustment,
            DisplayName: "Goodwill debit", SourceProgramId: program.ProgramId, DetailsJson: details, Reason: reason));
        var debit = await posting.DebitAsync(debitEvent, key, request.Points, program.AllowNegativeBalance);
        return new PostingResult(debitEvent, EventNames.GoodwillAdjustment, null, [View(debit.Entry, currency)]);
    }

    private readonly record struct Party(OwnerType Type, long Id);

    private static string Describe(Party p) => $"{p.Type.ToWire()}:{p.Id.ToString(CultureInfo.InvariantCulture)}";

    private static async Task<Party> ResolvePartyAsync(Posting posting, TransferParty? party, string side)
    {
        if (party is null || (party.CustomerId is null) == (party.GroupId is null))
            throw LedgerException.Invalid($"'{side}' names exactly one of customerId or groupId.");
        if (party.CustomerId is { } customerId)
        {
            await CustomerDirectory.RequireAsync(posting, customerId);
            return new Party(OwnerType.Customer, customerId);
        }
        var group = await GroupDirectory.RequireAsync(posting, party.GroupId!.Value);
        return new Party(OwnerType.Group, group.GroupId);
    }

    /// <summary>
    /// The program that triggered an event (a card program, say) when it is not the one credited;
    /// the points-ledger API shows it as sourceProgramId.
    /// </summary>
    private static async Task<long> SourceProgramAsync(Posting posting, long? sourceProgramId, LoyaltyProgram credited) =>
        sourceProgramId is { } id && id != credited.ProgramId ? (await ProgramCatalog.ResolveAsync(posting, id)).ProgramId : credited.ProgramId;

    /// <summary>
    /// Locks every wallet a credit posting touches, in one call so they are taken in the global key
    /// order; for a qualifying activity that includes the main wallets, whose due lots are expired
    /// before the activity is recorded (an activity never revives points already due). A posting
    /// that counts toward its owner's tier (<paramref name="tierMetric"/>) counts in the same round
    /// trip, right after the locks, and gets where the owner stands (null: the program has no tiers).
    /// </summary>
    private static async Task<(TierStanding? Standing, BatchResults Results)> LockForCreditsAsync(Posting posting, LoyaltyProgram program,
        OwnerType ownerType, long ownerId, IReadOnlyList<(AlternateCurrency? Currency, Points Points)> credits, PointCategory category, bool qualifying,
        Points? tierMetric = null, Action<StatementBatch>? alongside = null)
    {
        var keys = credits.Select(c => new WalletKey(ownerType, ownerId, program.ProgramId, c.Currency?.CurrencyId ?? WalletKey.PlainPoints, category)).ToList();
        var mainKeys = qualifying ? keys.Select(k => k with { Category = PointCategory.Regular }).Distinct().ToList() : [];
        // The upgrade bonus wallet, if the posting may upgrade its owner, is locked now with the
        // others: wallets are always locked before the owner's tier row, which the count then locks.
        var bonusWallet = tierMetric is null ? null : TierAccrual.BonusWallet(program, ownerType, ownerId);
        TierAccrual.PendingCount? count = null;
        var results = await posting.LockWalletsAsync(keys.Concat(mainKeys).Concat(bonusWallet is { } bonus ? [bonus] : []), batch =>
        {
            if (tierMetric is { } metric) count = TierAccrual.AddCount(batch, posting, program, ownerType, ownerId, metric);
            alongside?.Invoke(batch);
        });
        // Read before the expiry below, so its lines record the tier the count read under its lock.
        var standing = count is null ? null : TierAccrual.Standing(count, results!);
        await LotExpiry.ExpireDueAsync(posting, program, mainKeys, posting.Now);
        return (standing, results!);
    }

    private static async Task<IReadOnlyList<EntryView>> CreditAllAsync(Posting posting, long eventId, OwnerType ownerType, long ownerId,
        LoyaltyProgram program, IReadOnlyList<(AlternateCurrency? Currency, Points Points)> credits,
        PointCategory category = PointCategory.Regular, bool qualifying = false)
    {
        var (lines, activity) = await CreditLinesAsync(posting, ownerType, ownerId, program, credits, category, qualifying);
        var posted = await posting.CreditEachAsync(eventId, lines, activity, restartActivity: qualifying && category == PointCategory.Regular);
        return posted.Select((entry, i) => View(entry, credits[i].Currency)).ToList();
    }

    /// <summary>
    /// <see cref="CreditAllAsync"/> of a new event: the event inserted (with <paramref name="then"/>)
    /// and its credits, in one round trip where the posting can (<see cref="Posting.InsertEventAndCreditAsync"/>).
    /// </summary>
    private static async Task<(long EventId, IReadOnlyList<EntryView> Entries)> InsertEventAndCreditAllAsync(Posting posting, NewEvent e,
        (string Sql, object? Args)? then, LoyaltyProgram program, IReadOnlyList<(AlternateCurrency? Currency, Points Points)> credits,
        PointCategory category = PointCategory.Regular, bool qualifying = false)
    {
        var (lines, activity) = await CreditLinesAsync(posting, e.OwnerType, e.OwnerId, program, credits, category, qualifying);
        var (eventId, posted) = await posting.InsertEventAndCreditAsync(e, then, lines, activity, restartActivity: qualifying && category == PointCategory.Regular);
        return (eventId, posted.Select((entry, i) => View(entry, credits[i].Currency)).ToList());
    }

    /// <summary>
    /// The wallets' lines of <paramref name="credits"/> (locked), each with its lot's expiry, and for
    /// a qualifying activity what it adds to the credits' round trip.
    /// </summary>
    private static async Task<(List<(WalletKey Key, Points Points, long? ExpiresAt)> Lines, Action<StatementBatch>? Activity)> CreditLinesAsync(
        Posting posting, OwnerType ownerType, long ownerId, LoyaltyProgram program, IReadOnlyList<(AlternateCurrency? Currency, Points Points)> credits,
        PointCategory category, bool qualifying)
    {
        var keys = credits.Select(c => new WalletKey(ownerType, ownerId, program.ProgramId, c.Currency?.CurrencyId ?? WalletKey.PlainPoints, category)).ToList();
        await posting.LockWalletsAsync(keys);
        var lines = new List<(WalletKey, Points, long?)>();
        for (var i = 0; i < credits.Count; i++)
        {
            var (currency, points) = credits[i];
            var policy = currency?.Expiry ?? program.Expiry;
            // A promised lot's date is the end of its return window (when it converts); a lot waiting
            // for a trigger has none; main points expire by the policy.
            var expiresAt = category switch
            {
                PointCategory.Promised => posting.Now.AddDays(program.PromisedDays ?? 0).ToUnixTimeMilliseconds(),
                PointCategory.TriggerBased => (long?)null,
                _ => policy.ExpiryFor(posting.Now)?.ToUnixTimeMilliseconds(),
            };
            lines.Add((keys[i], points, expiresAt));
        }
        // The credits and, for a qualifying activity, the activity clocks: one round trip. A credited
        // main wallet's clock restarts with its balance; the activity adds the rest (main wallets
        // credited in another category, rolling lot dates).
        Action<StatementBatch>? activity = qualifying
            ? batch => LotExpiry.AddActivity(batch, posting, program, keys.Select(k => k with { Category = PointCategory.Regular }))
            : null;
        return (lines, activity);
    }

    /// <summary>A rule-earned line at the owner's tier: times its multiplier, rounded down to the thousandth, except the tier metric's own currency.</summary>
    private static (AlternateCurrency? Currency, Points Points) Multiplied((AlternateCurrency? Currency, Points Points) line, TierStanding standing) =>
        line.Currency is { } c && c.CurrencyId == standing.Program.TierMetricCurrency?.CurrencyId
            ? line
            : (line.Currency, new Points((long)((Int128)line.Points.Thousandths * standing.Multiplier.Thousandths / Points.Scale)));

    private static async Task<TierUpgrade?> UpgradeAsync(Posting posting, TierStanding? standing, long eventId)
    {
        if (standing is not { Crossed: true }) return null;
        var bonus = await TierAccrual.UpgradeAsync(posting, standing, eventId);
        return new TierUpgrade(standing.Tier.Name, standing.Policy.Tiers[standing.Reached].Name, bonus?.EventId, bonus?.Entries ?? []);
    }

    private static List<(AlternateCurrency? Currency, Points Points)> ResolveAwards(LoyaltyProgram program, IReadOnlyList<Award>? awards)
    {
        var credits = new List<(AlternateCurrency?, Points)>();
        foreach (var award in awards ?? [])
        {
            if (award is null) throw LedgerException.Invalid("An award is empty.");
            if (!award.Points.IsPositive) throw new LedgerException(ErrorCodes.InvalidPoints, "Awarded points must be positive.");
            credits.Add((ResolveCurrency(program, award.Currency), award.Points));
        }
        return credits;
    }

    private static AlternateCurrency? ResolveCurrency(LoyaltyProgram program, string? name) =>
        string.IsNullOrEmpty(name)
            ? null
            : program.Currency(name) ?? throw new LedgerException("currency_not_found",
                $"Program {program.ProgramId} has no alternate currency '{name}'.", 404);

    /// <summary>Points from an amount and a rate, both in thousandths, rounded down to the thousandth.</summary>
    public static Points Earn(long amountThousandths, Points ratePerUnit) =>
        new((long)((Int128)amountThousandths * ratePerUnit.Thousandths / Points.Scale));

    private static string? Details(IDictionary<string, string?> details)
    {
        var present = details.Where(kv => kv.Value is not null).ToDictionary(kv => kv.Key, kv => kv.Value);
        return present.Count == 0 ? null : JsonSerializer.Serialize(present);
    }

    private static EntryView View(PostedEntry e, AlternateCurrency? currency) => EntryView.Of(e, currency?.Name);
}
