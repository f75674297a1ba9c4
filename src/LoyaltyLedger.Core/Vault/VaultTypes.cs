using System.Globalization;
using System.Text.Json.Serialization;
using LoyaltyLedger.Ledger;

namespace LoyaltyLedger.Vault;

/// <summary>
/// Event names the loyalty-vault API adds to the ledger. Loads and redemptions reuse the existing
/// GenericEvent and PointsRedemption, so the points-ledger API shows them without knowing the vault.
/// </summary>
public static class VaultEventNames
{
    /// <summary>Points converted into a voucher: one DEBIT line on the program's points.</summary>
    public const string VoucherPurchase = "VoucherPurchase";

    /// <summary>A voucher use (or its void): informational, no ledger line.</summary>
    public const string VoucherRedemption = Posting.VoucherRedemptionEvent;

    /// <summary>The display name of the GenericEvent a vault load posts.</summary>
    public const string LoadDisplayName = "LoyaltyVaultLoad";
}

/// <summary>The vault's movement types, as its history shows them.</summary>
public static class VaultTransactionTypes
{
    public const string Load = "Load";
    public const string Convert = "Convert";
    public const string Redeem = "Redeem";
    public const string Expire = "Expire";
    public const string Transfer = "Transfer";
    public const string RedeemVoucher = "RedeemVoucher";
}

/// <summary>The stable error codes the vault API adds (documented in the README).</summary>
public static class VaultErrorCodes
{
    public const string AccountNotFound = "account_not_found";
    public const string AccountInactive = "account_inactive";
    public const string VoucherNotFound = "voucher_not_found";
    public const string VoucherUnknown = "voucher_serial_unknown";
    public const string VoucherForeign = "voucher_serial_foreign";
    public const string VoucherExpired = "voucher_expired";
    public const string VoucherNotYetValid = "voucher_not_yet_valid";
    public const string VoucherUsed = "voucher_used";
    public const string VoucherNotRedeemed = "voucher_not_redeemed";
    public const string ReceiptReused = "receipt_reused";
}

/// <summary>Wire formatting shared by the vault's answers.</summary>
public static class VaultFormat
{
    /// <summary>ISO 8601 in UTC with milliseconds and a <c>Z</c>, as the vault spec prints dates.</summary>
    public static string Time(long unixMs) => IsoTime.Format(unixMs);

    public static string? Time(long? unixMs) => unixMs is { } ms ? Time(ms) : null;

    public static string Text(long value) => value.ToString(CultureInfo.InvariantCulture);
}

// ---- voucher definitions (native admin API) ----

/// <summary>A voucher that can be bought with a program's points.</summary>
public sealed record VoucherDefinition(long VoucherId, long ProgramId, string Name, decimal Price, int? ValidDays, int Uses);

public sealed record NewVoucherDefinition(string Name, Points Price, long? VoucherId = null, int? ValidDays = null, int? Uses = null);

// ---- the basket transaction ----

public sealed record VaultContext(string? ReceiptNr = null, string? ShopId = null, string? PosId = null, string? OperatorId = null, string? Comment = null);

public sealed record VaultLoad(Points Value, DateTimeOffset? BalanceExpiresAt = null, DateTimeOffset? AccountExpiresAt = null);

public sealed record VaultRedemption(Points Value);

public sealed record VaultVoucherPurchase(long VoucherId, int? Use = null, DateTimeOffset? ValidFrom = null, DateTimeOffset? ExpiresAt = null);

public sealed record VaultVoucherRedemption(string SerialId, bool Void = false);

/// <summary>What a basket does in one program (a loyalty point definition).</summary>
public sealed record VaultProgramLines(
    long LoyaltyPointDefinitionId,
    IReadOnlyList<VaultLoad>? Loads = null,
    IReadOnlyList<VaultRedemption>? Redemptions = null,
    IReadOnlyList<VaultVoucherPurchase>? VoucherPurchases = null,
    IReadOnlyList<VaultVoucherRedemption>? VoucherRedemptions = null);

public sealed record VaultTransactionRequest(IReadOnlyList<VaultProgramLines> LoyaltyPrograms, VaultContext? Context = null);

/// <summary>One movement a basket wrote.</summary>
public sealed record VaultMovementResult(
    string TransactionType,
    decimal Amount,
    decimal Balance,
    string? ExpiresAt,
    IReadOnlyDictionary<string, string>? Properties);

public sealed record VaultVoucher(
    string SerialId,
    long VoucherId,
    string Name,
    long LoyaltyPointDefinitionId,
    string ValidFrom,
    string? ExpiresAt,
    int Uses,
    int UsesLeft,
    string Status);

public sealed record VaultProgramResult(long LoyaltyPointDefinitionId, decimal Balance, IReadOnlyList<VaultMovementResult> Movements, IReadOnlyList<VaultVoucher> VouchersPurchased);

public sealed record VaultTransactionResult(
    string AccountNumber,
    string? ReceiptNr,
    string DateTime,
    IReadOnlyList<VaultProgramResult> LoyaltyPrograms);

public sealed record VaultTransferRequest(string ToAccountNumber, long LoyaltyPointDefinitionId, Points Value, string? Comment = null);

public sealed record VaultTransferResult(string FromAccountNumber, string ToAccountNumber, long LoyaltyPointDefinitionId, decimal Value, decimal FromBalance, decimal ToBalance);

// ---- reads ----

/// <summary>One line of an account's history in one program, shaped as the vault spec prints it.</summary>
public sealed record VaultMovement(
    string DateTime,
    decimal Amount,
    string TransactionType,
    string? ExpiresAt,
    decimal Balance,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Comment,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? OperatorId,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? ShopId,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? PosId,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? ReceiptNr,
    IReadOnlyDictionary<string, string> Properties);

public sealed record VaultPurchasableVoucher(long VoucherId, string Name, decimal Price, int? ValidDays, int Uses);

public sealed record VaultAccountProgram(
    long LoyaltyPointDefinitionId,
    string Name,
    decimal Balance,
    string ExpiryType,
    IReadOnlyList<VaultVoucher> Vouchers,
    IReadOnlyList<VaultPurchasableVoucher> PurchasableVouchers);

public sealed record VaultAccount(
    string AccountNumber,
    long CustomerId,
    string Status,
    string? AccountExpiresAt,
    IReadOnlyList<VaultAccountProgram> LoyaltyPrograms);

/// <summary>Optional window and page of a history read; all null is the whole history.</summary>
public sealed record HistoryQuery(DateTimeOffset? From = null, DateTimeOffset? To = null, int? Offset = null, int? Limit = null);
