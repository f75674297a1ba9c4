using System.Data.Common;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Dapper;
using LoyaltyLedger.Idempotency;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Postings;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Stores;

namespace LoyaltyLedger.Vault;

/// <summary>A loyalty account (card) and the customer whose wallets it reads and writes.</summary>
public sealed record VaultAccountRef(string AccountNumber, long CustomerId, string Status);

/// <summary>
/// The vault's write side: the basket a till posts when it is paid, and transfers between accounts.
/// Everything goes through <see cref="Posting"/>, so a vault movement is an ordinary ledger event
/// that the points-ledger API shows too.
/// </summary>
public static class VaultTransactions
{
    public const int MaxPrograms = 20;
    public const int MaxLinesPerKind = 100;
    private const int MaxContextLength = 200;

    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public static async Task<VaultAccountRef> RequireAccountAsync(DbConnection c, SqlDialect dialect, long orgId, string accountNumber, DbTransaction? tx,
        CancellationToken ct)
    {
        RequireAccountNumber(accountNumber);
        var row = await KeptReads.QuerySingleOrDefaultAsync<(long CustomerId, string Status)?>(c, dialect,
            "SELECT customer_id, status FROM loyalty_accounts WHERE org_id = @orgId AND account_number = @accountNumber",
            new { orgId, accountNumber }, tx, ct);
        return row is { } r ? new VaultAccountRef(accountNumber, r.CustomerId, r.Status) : throw NoSuchAccount(accountNumber);
    }

    /// <summary>
    /// The account, as <see cref="RequireAccountAsync"/>, and its customer's plain-points wallet in
    /// <paramref name="programId"/> (null before its first movement there), in one round trip: what a
    /// read of the account's history needs first.
    /// </summary>
    public static async Task<(VaultAccountRef Account, long? WalletId)> RequireAccountAndWalletAsync(DbConnection c, long orgId, string accountNumber,
        long programId, CancellationToken ct)
    {
        RequireAccountNumber(accountNumber);
        var row = await c.QuerySingleOrDefaultAsync<(long CustomerId, string Status, long? WalletId)?>(
            new CommandDefinition(
                """
                SELECT a.customer_id, a.status, w.wallet_id FROM loyalty_accounts a
                LEFT JOIN wallets w ON w.org_id = a.org_id AND w.owner_type = 'CUSTOMER' AND w.owner_id = a.customer_id
                    AND w.program_id = @programId AND w.currency_id = 0 AND w.category = 'REGULAR'
                WHERE a.org_id = @orgId AND a.account_number = @accountNumber
                """,
            new { orgId, accountNumber, programId }, cancellationToken: ct));
        return row is { } r ? (new VaultAccountRef(accountNumber, r.CustomerId, r.Status), r.WalletId) : throw NoSuchAccount(accountNumber);
    }

    internal static void RequireAccountNumber(string accountNumber)
    {
        // Account numbers are issued without control characters; such a path names no account (and
        // PostgreSQL would refuse a NUL in a parameter with an error rather than an empty result).
        if (accountNumber.Length > 64 || HasControlCharacters(accountNumber))
            throw new LedgerException(VaultErrorCodes.AccountNotFound, "No such loyalty account in this organization.", 404);
    }

    private static LedgerException NoSuchAccount(string accountNumber) =>
        new(VaultErrorCodes.AccountNotFound, $"No loyalty account '{accountNumber}' in this organization.", 404);

    private static async Task<VaultAccountRef> RequireActiveAccountAsync(Posting posting, string accountNumber)
    {
        var account = await posting.WithConnectionAsync((conn, tx) => RequireAccountAsync(conn, posting.Dialect, posting.OrgId, accountNumber, tx, posting.Cancellation));
        if (account.Status != "ACTIVE")
            throw new LedgerException(VaultErrorCodes.AccountInactive, $"Loyalty account '{accountNumber}' is {account.Status}.", 422);
        return account;
    }

    /// <summary>
    /// Posts a paid basket in one transaction: per program its loads first (so a basket can spend
    /// what it earns), then redemptions, voucher purchases and voucher redemptions, each in the order
    /// sent. Any refusal rolls back the whole basket. A receipt already posted from the same shop and
    /// till returns the first answer and writes nothing (Replayed). Vouchers bought get random serials
    /// unless <paramref name="newSerial"/> says otherwise (the demo data, whose examples name a serial).
    /// </summary>
    public static async Task<(VaultTransactionResult Result, bool Replayed)> PostAsync(Posting posting, string accountNumber, VaultTransactionRequest request,
        Func<string>? newSerial = null)
    {
        Validate(request);
        var context = Normalize(request.Context);
        var account = await RequireActiveAccountAsync(posting, accountNumber);
        var programs = new List<LoyaltyProgram>();
        foreach (var lines in request.LoyaltyPrograms)
        {
            programs.Add(await posting.WithConnectionAsync((conn, tx) => ProgramCatalog.FindAsync(conn, posting.Dialect, posting.OrgId, lines.LoyaltyPointDefinitionId, tx, null, posting.Cancellation))
                ?? throw LedgerException.NotFound("program", lines.LoyaltyPointDefinitionId));
        }

        // A receipt is a key of the idempotency store, claimed in this same transaction: a concurrent
        // replay waits for the first to commit and then finds its stored answer.
        var receipt = context.ReceiptNr is { } receiptNr
            ? IdempotencyKey.Receipt(posting.OrgId, context.ShopId ?? "", context.PosId ?? "", receiptNr, accountNumber)
            : null;
        if (receipt is not null)
        {
            var hash = Hash(accountNumber, request);
            if (!await IdempotencyStore.ClaimAsync(posting.Batch(), receipt, hash, posting.NowMs, posting.Cancellation))
            {
                var stored = await IdempotencyStore.ReadAsync(posting.Batch(), receipt, posting.Cancellation);
                if (stored is not { IsPending: false, Body: { } body } || stored.Value.RequestHash != hash)
                {
                    throw new LedgerException(VaultErrorCodes.ReceiptReused,
                        $"Receipt '{context.ReceiptNr}' from shop '{context.ShopId}' and till '{context.PosId}' was already posted with a different basket.", 409);
                }
                return (JsonSerializer.Deserialize<VaultTransactionResult>(body, Json)!, true);
            }
        }

        var keys = programs.Select(p => PointsKey(account.CustomerId, p.ProgramId)).ToList();
        await posting.LockWalletsAsync(keys);
        var (storeId, tillId) = await ResolveShopAsync(posting, context);

        var results = new List<VaultProgramResult>();
        DateTimeOffset? accountExpiresAt = null;
        for (var i = 0; i < programs.Count; i++)
        {
            var basket = new Basket(posting, account, programs[i], keys[i], context, storeId, tillId, newSerial ?? RandomSerial);
            var lines = request.LoyaltyPrograms[i];
            foreach (var load in lines.Loads ?? [])
            {
                await basket.LoadAsync(load);
                if (load.AccountExpiresAt is { } at) accountExpiresAt = at;
            }
            foreach (var redemption in lines.Redemptions ?? []) await basket.RedeemAsync(redemption);
            foreach (var purchase in lines.VoucherPurchases ?? []) await basket.BuyVoucherAsync(purchase);
            foreach (var use in lines.VoucherRedemptions ?? []) await basket.RedeemVoucherAsync(use);
            results.Add(new VaultProgramResult(programs[i].ProgramId, posting.Locked(keys[i]).Balance.ToDecimal(), basket.Movements, basket.Vouchers));
        }

        if (accountExpiresAt is { } expires)
        {
            await posting.ExecuteAsync(
                """
                INSERT INTO vault_account_expiry (org_id, account_number, expires_at, updated_at) VALUES (@org, @accountNumber, @expiresAt, @now)
                ON CONFLICT (org_id, account_number) DO UPDATE SET expires_at = @expiresAt, updated_at = @now
                """,
                new { org = posting.OrgId, accountNumber, expiresAt = expires.ToUnixTimeMilliseconds(), now = posting.NowMs });
        }

        var result = new VaultTransactionResult(accountNumber, context.ReceiptNr, VaultFormat.Time(posting.NowMs), results);
        if (receipt is not null)
        {
            var answer = posting.Batch();
            IdempotencyStore.AddAnswer(answer, receipt, 200, JsonSerializer.Serialize(result, Json));
            await answer.RunAsync();
        }
        return (result, false);
    }

    /// <summary>Moves points between two accounts' customers: a PointsTransfer event (a Transfer movement) on each side.</summary>
    public static async Task<VaultTransferResult> TransferAsync(Posting posting, string fromAccountNumber, VaultTransferRequest request)
    {
        if (string.IsNullOrWhiteSpace(request.ToAccountNumber)) throw LedgerException.Invalid("A transfer needs the toAccountNumber.");
        if (request.Comment is { Length: > MaxContextLength }) throw LedgerException.Invalid($"A comment is at most {MaxContextLength} characters.");
        if (request.Comment is { } comment && comment.Contains('\0', StringComparison.Ordinal)) throw LedgerException.Invalid("The comment contains control characters.");
        var from = await RequireActiveAccountAsync(posting, fromAccountNumber);
        var to = await RequireActiveAccountAsync(posting, request.ToAccountNumber);
        if (from.CustomerId == to.CustomerId) throw LedgerException.Invalid("Both account numbers belong to the same customer.");
        var transfer = await PointsPostings.TransferAsync(posting, new NewTransfer(
            new TransferParty(CustomerId: from.CustomerId), new TransferParty(CustomerId: to.CustomerId), request.Value,
            request.LoyaltyPointDefinitionId, Reason: request.Comment));
        return new VaultTransferResult(fromAccountNumber, request.ToAccountNumber, request.LoyaltyPointDefinitionId, request.Value.ToDecimal(),
            transfer.Entries[0].BalanceAfter.ToDecimal(), transfer.Entries[1].BalanceAfter.ToDecimal());
    }

    internal static bool HasControlCharacters(string text) => text.Any(char.IsControl);

    /// <summary>Dates a client sends stay in a range where adding a validity period cannot overflow.</summary>
    internal static void RequireSaneDate(DateTimeOffset? at, string field)
    {
        if (at is { } t && (t.Year < 1970 || t.Year > 9000))
            throw LedgerException.Invalid($"{field} is out of range (years 1970 to 9000).");
    }

    internal static WalletKey PointsKey(long customerId, long programId) =>
        new(OwnerType.Customer, customerId, programId, WalletKey.PlainPoints, PointCategory.Regular);

    private static void Validate(VaultTransactionRequest request)
    {
        if (request.LoyaltyPrograms is null || request.LoyaltyPrograms.Count == 0)
            throw LedgerException.Invalid("A transaction names at least one loyalty program.");
        if (request.LoyaltyPrograms.Count > MaxPrograms) throw LedgerException.Invalid($"At most {MaxPrograms} loyalty programs per transaction.");
        if (request.LoyaltyPrograms.Any(p => p is null)) throw LedgerException.Invalid("A loyalty program entry is empty.");
        if (request.LoyaltyPrograms.GroupBy(p => p.LoyaltyPointDefinitionId).Any(g => g.Count() > 1))
            throw LedgerException.Invalid("Each loyalty program appears once per transaction.");
        var lineCount = 0;
        foreach (var p in request.LoyaltyPrograms)
        {
            foreach (var count in new[] { p.Loads?.Count ?? 0, p.Redemptions?.Count ?? 0, p.VoucherPurchases?.Count ?? 0, p.VoucherRedemptions?.Count ?? 0 })
            {
                if (count > MaxLinesPerKind) throw LedgerException.Invalid($"At most {MaxLinesPerKind} lines of each kind per program.");
                lineCount += count;
            }
            if ((p.Loads ?? []).Any(l => l is null) || (p.Redemptions ?? []).Any(r => r is null)
                || (p.VoucherPurchases ?? []).Any(v => v is null) || (p.VoucherRedemptions ?? []).Any(v => v is null))
                throw LedgerException.Invalid("A transaction line is empty.");
        }
        if (lineCount == 0) throw LedgerException.Invalid("A transaction has at least one load, redemption, voucher purchase or voucher redemption.");
    }

    private static VaultContext Normalize(VaultContext? context)
    {
        static string? Clean(string? value, string field)
        {
            if (string.IsNullOrWhiteSpace(value)) return null;
            var trimmed = value.Trim();
            // Ids are printable; a comment may span lines but never hold a NUL, which PostgreSQL cannot store.
            if (field == "comment" ? trimmed.Contains('\0', StringComparison.Ordinal) : HasControlCharacters(trimmed))
                throw LedgerException.Invalid($"context.{field} contains control characters.");
            if (trimmed.Length > MaxContextLength) throw LedgerException.Invalid($"context.{field} is at most {MaxContextLength} characters.");
            return trimmed;
        }
        return new VaultContext(Clean(context?.ReceiptNr, "receiptNr"), Clean(context?.ShopId, "shopId"), Clean(context?.PosId, "posId"),
            Clean(context?.OperatorId, "operatorId"), Clean(context?.Comment, "comment"));
    }

    /// <summary>
    /// A shop or till the ledger knows is linked to the events (so the points-ledger API shows it);
    /// an unknown one is not refused, since a till's ids are its own: the text is kept in the details.
    /// </summary>
    private static async Task<(long? StoreId, long? TillId)> ResolveShopAsync(Posting posting, VaultContext context)
    {
        long? storeId = null, tillId = null;
        if (context.ShopId is { } shop)
            storeId = (await posting.WithConnectionAsync((conn, tx) => StoreDirectory.FindStoreAsync(conn, posting.OrgId, shop, tx, posting.Cancellation)))?.StoreId;
        if (context.PosId is { } pos && await posting.WithConnectionAsync((conn, tx) => StoreDirectory.FindTillAsync(conn, posting.OrgId, pos, tx, posting.Cancellation)) is { } till)
        {
            if (context.ShopId is null) storeId = till.StoreId;
            if (till.StoreId == storeId) tillId = till.TillId;
        }
        return (storeId, tillId);
    }

    private static string Hash(string accountNumber, VaultTransactionRequest request) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(accountNumber + "\n" + JsonSerializer.Serialize(request, Json))));

    internal static string? Details(IDictionary<string, string?> details)
    {
        var present = details.Where(kv => kv.Value is not null).ToDictionary(kv => kv.Key, kv => kv.Value);
        return present.Count == 0 ? null : JsonSerializer.Serialize(present);
    }

    /// <summary>The lines of one program of one basket, posted in order against its locked wallet.</summary>
    private sealed class Basket(Posting posting, VaultAccountRef account, LoyaltyProgram program, WalletKey key, VaultContext context, long? storeId, long? tillId,
        Func<string> newSerial)
    {
        public List<VaultMovementResult> Movements { get; } = [];
        public List<VaultVoucher> Vouchers { get; } = [];

        private Dictionary<string, string?> ContextDetails() => new()
        {
            ["accountNumber"] = account.AccountNumber,
            ["receiptNr"] = context.ReceiptNr,
            ["shopId"] = context.ShopId,
            ["posId"] = context.PosId,
            ["operatorId"] = context.OperatorId,
            ["comment"] = context.Comment,
        };

        private Task<long> EventAsync(string name, IDictionary<string, string?> details, string? displayName = null, WalletKey? historyWallet = null) =>
            posting.InsertEventAsync(new NewEvent(OwnerType.Customer, account.CustomerId, account.CustomerId, name,
                DisplayName: displayName, SourceProgramId: program.ProgramId, StoreId: storeId, TillId: tillId,
                DetailsJson: Details(details), Reason: context.Comment,
                StoreCode: storeId is null ? null : context.ShopId, TillCode: tillId is null ? null : context.PosId, HistoryWallet: historyWallet));

        private string? ShownExpiry(long? expiresAt) => program.Expiry.ExpiresWholeBalance ? null : VaultFormat.Time(expiresAt);

        public async Task LoadAsync(VaultLoad load)
        {
            if (!load.Value.IsPositive) throw new LedgerException(ErrorCodes.InvalidPoints, "A load's value must be positive.");
            RequireSaneDate(load.BalanceExpiresAt, "balanceExpiresAt");
            RequireSaneDate(load.AccountExpiresAt, "accountExpiresAt");
            if (load.BalanceExpiresAt is { } explicitExpiry && explicitExpiry <= posting.Now)
                throw LedgerException.Invalid("A load's balanceExpiresAt must be in the future.");
            if (load.AccountExpiresAt is { } accountExpiry && accountExpiry <= posting.Now)
                throw LedgerException.Invalid("A load's accountExpiresAt must be in the future.");
            var expiresAt = (load.BalanceExpiresAt ?? program.Expiry.ExpiryFor(posting.Now))?.ToUnixTimeMilliseconds();
            // Named like any GenericEvent (PointsPostings.PostGenericEventAsync), so the points-ledger API's
            // eventDetails say that this credit was a vault load.
            var details = ContextDetails();
            details["eventDisplayName"] = VaultEventNames.LoadDisplayName;
            details["displayName"] = VaultEventNames.LoadDisplayName;
            var eventId = await EventAsync(EventNames.GenericEvent, details, VaultEventNames.LoadDisplayName);
            var entry = await posting.CreditAsync(eventId, key, load.Value, expiresAt);
            Movements.Add(new VaultMovementResult(VaultTransactionTypes.Load, load.Value.ToDecimal(), entry.BalanceAfter.ToDecimal(), ShownExpiry(expiresAt), null));
        }

        public async Task RedeemAsync(VaultRedemption redemption)
        {
            if (!redemption.Value.IsPositive) throw new LedgerException(ErrorCodes.InvalidPoints, "A redemption's value must be positive.");
            var details = ContextDetails();
            details["transactionNumber"] = context.ReceiptNr;
            var eventId = await EventAsync(EventNames.PointsRedemption, details);
            var debit = await posting.DebitAsync(eventId, key, redemption.Value, program.AllowNegativeBalance);
            Movements.Add(new VaultMovementResult(VaultTransactionTypes.Redeem, (-redemption.Value).ToDecimal(), debit.Entry.BalanceAfter.ToDecimal(), null, null));
        }

        public async Task BuyVoucherAsync(VaultVoucherPurchase purchase)
        {
            RequireSaneDate(purchase.ValidFrom, "validFrom");
            RequireSaneDate(purchase.ExpiresAt, "expiresAt");
            var definition = await posting.WithConnectionAsync((conn, tx) => VoucherCatalog.FindDefinitionAsync(conn, posting.Dialect, posting.OrgId, purchase.VoucherId, tx, posting.Cancellation));
            if (definition is null || definition.ProgramId != program.ProgramId)
            {
                throw new LedgerException(VaultErrorCodes.VoucherNotFound,
                    $"Program {program.ProgramId} sells no voucher {purchase.VoucherId}.", 404);
            }
            var uses = purchase.Use ?? definition.Uses;
            if (uses < 1 || uses > definition.Uses)
                throw LedgerException.Invalid($"Voucher {definition.VoucherId} carries 1 to {definition.Uses} uses.");
            var validFrom = purchase.ValidFrom ?? posting.Now;
            var expiresAt = purchase.ExpiresAt ?? (definition.ValidDays is { } days ? validFrom.AddDays(days) : null);
            if (expiresAt is { } end && (end <= validFrom || end <= posting.Now))
                throw LedgerException.Invalid("A voucher's expiresAt must be after its validFrom and in the future.");

            var serialId = newSerial();
            var expiration = VaultFormat.Time(expiresAt?.ToUnixTimeMilliseconds());
            var details = ContextDetails();
            details["voucherId"] = VaultFormat.Text(definition.VoucherId);
            details["serialId"] = serialId;
            details["expiration"] = expiration;
            var eventId = await EventAsync(VaultEventNames.VoucherPurchase, details);
            // A voucher is never bought on credit, whatever the program allows for redemptions.
            var debit = await posting.DebitAsync(eventId, key, definition.Price, allowNegative: false);
            await posting.ExecuteAsync(
                """
                INSERT INTO voucher_instances (org_id, serial_id, voucher_id, program_id, customer_id, account_number, price,
                    valid_from, expires_at, uses_total, uses_left, purchase_event_id, created_at)
                VALUES (@org, @serialId, @voucherId, @programId, @customerId, @accountNumber, @price,
                    @validFrom, @expiresAt, @uses, @uses, @eventId, @now)
                """,
                new
                {
                    org = posting.OrgId, serialId, voucherId = definition.VoucherId, programId = program.ProgramId, customerId = account.CustomerId,
                    accountNumber = account.AccountNumber, price = definition.Price.Thousandths, validFrom = validFrom.ToUnixTimeMilliseconds(),
                    expiresAt = expiresAt?.ToUnixTimeMilliseconds(), uses, eventId, now = posting.NowMs,
                });
            Movements.Add(new VaultMovementResult(VaultTransactionTypes.Convert, (-definition.Price).ToDecimal(), debit.Entry.BalanceAfter.ToDecimal(), null,
                Properties(definition.VoucherId, serialId, expiration)));
            var voucher = new VaultVoucherRow
            {
                SerialId = serialId, VoucherId = definition.VoucherId, Name = definition.Name, ProgramId = program.ProgramId,
                ValidFrom = validFrom.ToUnixTimeMilliseconds(), ExpiresAt = expiresAt?.ToUnixTimeMilliseconds(), UsesTotal = uses, UsesLeft = uses,
            };
            Vouchers.Add(voucher.View(posting.NowMs));
        }

        public async Task RedeemVoucherAsync(VaultVoucherRedemption use)
        {
            if (string.IsNullOrWhiteSpace(use.SerialId) || use.SerialId.Length > 100 || HasControlCharacters(use.SerialId))
                throw LedgerException.Invalid("A voucher redemption needs a serialId of 1 to 100 printable characters.");
            var voucher = await VaultVoucherRow.FindAsync(posting, use.SerialId)
                ?? throw new LedgerException(VaultErrorCodes.VoucherUnknown, $"No voucher with serial '{use.SerialId}'.", 422);
            if (voucher.CustomerId != account.CustomerId)
                throw new LedgerException(VaultErrorCodes.VoucherForeign, $"Voucher '{use.SerialId}' belongs to another account.", 422);
            if (voucher.ProgramId != program.ProgramId)
            {
                throw new LedgerException(VaultErrorCodes.VoucherForeign,
                    $"Voucher '{use.SerialId}' belongs to loyalty program {voucher.ProgramId}, not {program.ProgramId}.", 422);
            }

            int changed;
            if (!use.Void)
            {
                if (voucher.ValidFrom > posting.NowMs)
                    throw new LedgerException(VaultErrorCodes.VoucherNotYetValid, $"Voucher '{use.SerialId}' is valid from {VaultFormat.Time(voucher.ValidFrom)}.", 422);
                if (voucher.ExpiresAt is { } end && end <= posting.NowMs)
                    throw new LedgerException(VaultErrorCodes.VoucherExpired, $"Voucher '{use.SerialId}' expired at {VaultFormat.Time(end)}.", 422);
                // Conditional update: of two concurrent uses of a last use, exactly one succeeds.
                changed = await posting.ExecuteAsync(
                    "UPDATE voucher_instances SET uses_left = uses_left - 1 WHERE org_id = @org AND serial_id = @serial AND uses_left > 0",
                    new { org = posting.OrgId, serial = voucher.SerialId });
                if (changed == 0) throw new LedgerException(VaultErrorCodes.VoucherUsed, $"Voucher '{use.SerialId}' has no uses left.", 422);
            }
            else
            {
                changed = await posting.ExecuteAsync(
                    "UPDATE voucher_instances SET uses_left = uses_left + 1 WHERE org_id = @org AND serial_id = @serial AND uses_left < uses_total",
                    new { org = posting.OrgId, serial = voucher.SerialId });
                if (changed == 0) throw new LedgerException(VaultErrorCodes.VoucherNotRedeemed, $"Voucher '{use.SerialId}' has no use to void.", 422);
            }

            var expiration = VaultFormat.Time(voucher.ExpiresAt);
            var balance = posting.Locked(key).Balance;
            var details = ContextDetails();
            details["voucherId"] = VaultFormat.Text(voucher.VoucherId);
            details["serialId"] = voucher.SerialId;
            details["expiration"] = expiration;
            details["void"] = use.Void ? "true" : null;
            // The event has no ledger line; the history shows it with the balance of the moment.
            details["balance"] = VaultFormat.Text(balance.Thousandths);
            // Numbered in the wallet's history, which the vault history pages by.
            await EventAsync(VaultEventNames.VoucherRedemption, details, historyWallet: key);
            var properties = Properties(voucher.VoucherId, voucher.SerialId, expiration);
            if (use.Void) properties["void"] = "true";
            Movements.Add(new VaultMovementResult(VaultTransactionTypes.RedeemVoucher, 0m, balance.ToDecimal(), null, properties));
        }

    }

    private static string RandomSerial() =>
        // 80 random bits: a collision (refused by the primary key, never silently merged) is not a practical concern.
        "V" + Convert.ToHexString(RandomNumberGenerator.GetBytes(10));

    internal static Dictionary<string, string> Properties(long voucherId, string serialId, string? expiration)
    {
        var properties = new Dictionary<string, string> { ["voucherId"] = VaultFormat.Text(voucherId), ["serialId"] = serialId };
        if (expiration is not null) properties["expiration"] = expiration;
        return properties;
    }
}

/// <summary>A voucher instance as stored.</summary>
internal sealed class VaultVoucherRow
{
    public string SerialId { get; set; } = "";
    public long VoucherId { get; set; }
    public string Name { get; set; } = "";
    public long ProgramId { get; set; }
    public long CustomerId { get; set; }
    public long ValidFrom { get; set; }
    public long? ExpiresAt { get; set; }
    public long UsesTotal { get; set; }
    public long UsesLeft { get; set; }

    public const string Select = """
        SELECT v.serial_id, v.voucher_id, d.name, v.program_id, v.customer_id, v.valid_from, v.expires_at, v.uses_total, v.uses_left
        FROM voucher_instances v
        JOIN voucher_definitions d ON d.org_id = v.org_id AND d.voucher_id = v.voucher_id
        WHERE v.org_id = @org
        """;

    public static Task<VaultVoucherRow?> FindAsync(Posting posting, string serialId) =>
        posting.QuerySingleOrDefaultAsync<VaultVoucherRow>(Select + " AND v.serial_id = @serialId",
            new { org = posting.OrgId, serialId });

    public string Status(long nowMs) =>
        UsesLeft <= 0 ? "USED"
        : ExpiresAt is { } end && end <= nowMs ? "EXPIRED"
        : ValidFrom > nowMs ? "NOT_YET_VALID"
        : "ACTIVE";

    public VaultVoucher View(long nowMs) => new(SerialId, VoucherId, Name, ProgramId, VaultFormat.Time(ValidFrom), VaultFormat.Time(ExpiresAt),
        (int)UsesTotal, (int)UsesLeft, Status(nowMs));
}
