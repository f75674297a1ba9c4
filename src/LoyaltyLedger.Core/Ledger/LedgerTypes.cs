namespace LoyaltyLedger.Ledger;

/// <summary>Who a wallet belongs to: one customer, or a user group's pooled wallet.</summary>
public enum OwnerType { Customer, Group }

/// <summary>The three kinds of ledger line.</summary>
public enum EntryType { Credit, Debit, OpeningBalance }

/// <summary>
/// Point categories. A wallet holds points of exactly one category: REGULAR points are redeemable
/// (shown as "Main"), PROMISED points wait out a return window (DelayedAccrualPointCategory),
/// TRIGGER_BASED points wait for an external release (ExternalTriggerBasedPointCategory).
/// </summary>
public enum PointCategory { Regular, Promised, TriggerBased }

public static class LedgerNames
{
    public static string ToWire(this OwnerType t) => t == OwnerType.Customer ? "CUSTOMER" : "GROUP";
    public static OwnerType ParseOwner(string s) => s == "GROUP" ? OwnerType.Group : OwnerType.Customer;

    public static string ToWire(this EntryType t) => t switch
    {
        EntryType.Credit => "CREDIT",
        EntryType.Debit => "DEBIT",
        _ => "OPENING_BALANCE",
    };

    public static bool TryParseEntryType(string? s, out EntryType type)
    {
        switch (s?.ToUpperInvariant())
        {
            case "CREDIT": type = EntryType.Credit; return true;
            case "DEBIT": type = EntryType.Debit; return true;
            case "OPENING_BALANCE": type = EntryType.OpeningBalance; return true;
            default: type = default; return false;
        }
    }

    public static string ToWire(this PointCategory c) => c switch
    {
        PointCategory.Regular => "REGULAR",
        PointCategory.Promised => "PROMISED",
        _ => "TRIGGER_BASED",
    };

    /// <summary>The category's name in the points-ledger API's entryDetails.pointsCategory.</summary>
    public static string DisplayName(this PointCategory c) => c switch
    {
        PointCategory.Regular => "Main",
        PointCategory.Promised => "DelayedAccrualPointCategory",
        _ => "ExternalTriggerBasedPointCategory",
    };

    public static bool TryParseCategory(string? s, out PointCategory category)
    {
        switch (s?.ToUpperInvariant())
        {
            case "REGULAR" or "MAIN": category = PointCategory.Regular; return true;
            case "PROMISED" or "DELAYEDACCRUALPOINTCATEGORY": category = PointCategory.Promised; return true;
            case "TRIGGER_BASED" or "EXTERNALTRIGGERBASEDPOINTCATEGORY": category = PointCategory.TriggerBased; return true;
            default: category = default; return false;
        }
    }
}

/// <summary>The names of ledger events, as the points-ledger API shows them.</summary>
public static class EventNames
{
    public const string CustomerRegistration = "CustomerRegistration";
    public const string CustomerUpdate = "CustomerUpdate";
    public const string TransactionAdd = "TransactionAdd";
    public const string PointsRedemption = "PointsRedemption";
    public const string BulkAllocatePoints = "BulkAllocatePoints";
    public const string GenericEvent = "GenericEvent";
    public const string PointsTransfer = "PointsTransfer";
    public const string ReturnBill = "ReturnBill";
    public const string DelayedAccrual = "DelayedAccrual";
    public const string PointsExpiry = "PointsExpiry";
    /// <summary>Points of a redemption put back into the lots they came from (lifecycle).</summary>
    public const string RedemptionReversal = "RedemptionReversal";

    /// <summary>
    /// A support agent's correction (goodwill credit or debit) with its mandatory reason. The
    /// points-ledger spec has no name for it; like the lifecycle's own names it is shown as is.
    /// </summary>
    public const string GoodwillAdjustment = "GoodwillAdjustment";
}

/// <summary>
/// A wallet's identity: owner x program x currency x category. Currency 0 is the program's plain
/// points. Ordered, so that a posting that touches several wallets locks them in one global order
/// and two concurrent postings can never deadlock on each other.
/// </summary>
public readonly record struct WalletKey(OwnerType OwnerType, long OwnerId, long ProgramId, long CurrencyId, PointCategory Category)
    : IComparable<WalletKey>
{
    public const long PlainPoints = 0;

    public int CompareTo(WalletKey other)
    {
        var c = OwnerType.CompareTo(other.OwnerType);
        if (c == 0) c = OwnerId.CompareTo(other.OwnerId);
        if (c == 0) c = ProgramId.CompareTo(other.ProgramId);
        if (c == 0) c = CurrencyId.CompareTo(other.CurrencyId);
        if (c == 0) c = Category.CompareTo(other.Category);
        return c;
    }
}

/// <summary>A locked wallet inside a posting: its row id and current balance.</summary>
public sealed class Wallet
{
    public long WalletId { get; init; }
    public WalletKey Key { get; init; }
    public Points Balance { get; set; }

    /// <summary>The alternate currency's name, or null for the program's plain points.</summary>
    public string? CurrencyName { get; init; }

    /// <summary>The wallet's qualifying-activity clock (Unix ms), as read when it was locked and kept by the posting.</summary>
    public long? LastActivityAt { get; set; }

    /// <summary>The tier the owner holds in the wallet's program (null when the program has no tiers), recorded on every line.</summary>
    public string? Tier { get; set; }

    /// <summary>
    /// True for a wallet whose movements the vault history shows (regular plain points): its lines,
    /// opening balances left out, and its owner's voucher redemptions in its program are numbered.
    /// </summary>
    public bool KeepsHistory => Key.CurrencyId == WalletKey.PlainPoints && Key.Category == PointCategory.Regular;

    /// <summary>How many movements of the wallet's history are numbered (the last number), as read with the lock and kept by the posting.</summary>
    public long HistoryCount { get; set; }

    /// <summary>The latest time among them (Unix ms).</summary>
    public long HistoryLastAt { get; set; }

    /// <summary>True when this posting numbered the latest movement (so one of the same millisecond comes after it).</summary>
    public bool HistoryLastIsThisPostings { get; set; }

    /// <summary>True when the count or time changed since the wallet row was last written.</summary>
    public bool HistoryUnsaved { get; set; }

    /// <summary>
    /// A time (Unix ms) before which none of the wallet's open lots is due: every lot with points
    /// remaining and a date expires at or after it (<see cref="NoLotDue"/> when none has a date; null
    /// when not known). A posting need not look for due lots at a time before it. Read with the lock,
    /// kept by the posting (lowered by any lot it opens or refills, set by a look for due lots) and
    /// saved with the balance.
    /// </summary>
    public long? LotsDueFrom { get; set; }

    /// <summary><see cref="LotsDueFrom"/> of a wallet with no open dated lot.</summary>
    public const long NoLotDue = long.MaxValue;

    /// <summary>
    /// A lot of the wallet now holds points until <paramref name="expiresAt"/> (a new lot, or points
    /// put back into one): the time from which lots are due can only come earlier.
    /// </summary>
    public void LotHolds(long? expiresAt)
    {
        if (expiresAt is { } at && LotsDueFrom is { } from && at < from) LotsDueFrom = at;
    }
}

/// <summary>A ledger line as posted.</summary>
public sealed record PostedEntry(long EntryId, long WalletId, WalletKey Key, EntryType Type, Points Points, Points BalanceAfter, long? ExpiresAt, string? Tier = null);
