using System.Globalization;
using System.Text.Json;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Lifecycle;

/// <summary>
/// Expiry inside a posting: which lots of a wallet are due, the PointsExpiry event that takes
/// exactly those lots, and the activity that moves ROLLING dates and restarts the WHOLE_BALANCE clock.
/// </summary>
/// <remarks>
/// Every posting that spends or takes back points from a REGULAR wallet first expires the lots of
/// that wallet that are due, in the same transaction, so a lot past its date is never spent, even
/// when the background run has not reached it yet; and a qualifying activity expires first and
/// extends afterwards, so it never revives points that were already due.
/// </remarks>
public static class LotExpiry
{
    /// <summary>The expiry policy of a wallet's points: the currency's own, else the program's.</summary>
    public static ExpiryPolicy PolicyFor(LoyaltyProgram program, long currencyId) =>
        currencyId == WalletKey.PlainPoints
            ? program.Expiry
            : program.Currencies.FirstOrDefault(c => c.CurrencyId == currencyId)?.Expiry ?? program.Expiry;

    public static string? CurrencyName(LoyaltyProgram program, long currencyId) =>
        currencyId == WalletKey.PlainPoints ? null : program.Currencies.FirstOrDefault(c => c.CurrencyId == currencyId)?.Name;

    /// <summary>
    /// Expires the lots of a locked REGULAR wallet that are due at <paramref name="asOf"/>: the lots
    /// whose date has come, or (WHOLE_BALANCE) every lot once the wallet's last activity is a full
    /// period old. One PointsExpiry event with one DEBIT line; null when nothing is due, so running
    /// it again writes nothing.
    /// </summary>
    public static async Task<PostingResult?> ExpireDueAsync(Posting posting, LoyaltyProgram program, WalletKey key, DateTimeOffset asOf) =>
        (await ExpireDueAsync(posting, program, [key], asOf)).SingleOrDefault();

    /// <summary>
    /// <see cref="ExpireDueAsync(Posting, LoyaltyProgram, WalletKey, DateTimeOffset)"/> for several
    /// locked wallets: the due lots of all of them are found in one round trip, and only a wallet
    /// that has some gets an expiry event.
    /// </summary>
    public static async Task<IReadOnlyList<PostingResult>> ExpireDueAsync(Posting posting, LoyaltyProgram program,
        IReadOnlyList<WalletKey> keys, DateTimeOffset asOf)
    {
        var asOfMs = asOf.ToUnixTimeMilliseconds();
        var batch = posting.Batch();
        var checks = new List<(WalletKey Key, bool WholeBalanceDue, int Query, int? Next)>();
        foreach (var key in keys.Where(k => k.Category == PointCategory.Regular).Distinct())
        {
            var wallet = posting.Locked(key);
            var policy = PolicyFor(program, key.CurrencyId);
            var lastActivity = wallet.LastActivityAt is { } ms ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : (DateTimeOffset?)null;
            var wholeBalanceDue = policy.WholeBalanceExpiry(lastActivity) is { } at && at <= asOf;
            // The wallet knows no lot of it is due before a time: before it there is nothing to look for.
            if (!wholeBalanceDue && wallet.LotsDueFrom is { } dueFrom && dueFrom > asOfMs) continue;
            // Two statements, not one with `@all = 1 OR ...`: under a generic plan that OR kept the
            // date out of the index condition, so every posting read all of the wallet's open lots
            // (31 buffers for a wallet of 29 lots) to find, nearly always, none due (3 buffers now).
            var query = wholeBalanceDue
                ? batch.Query(
                    $"""
                    SELECT lot_id, remaining, expires_at FROM lots
                    WHERE org_id = @org AND wallet_id = @walletId AND remaining > 0 AND is_debt = 0
                    ORDER BY {LotArithmetic.DebitOrderSql}
                    """,
                    new { org = posting.OrgId, walletId = wallet.WalletId })
                : batch.Query(
                    """
                    SELECT lot_id, remaining, expires_at FROM lots
                    WHERE org_id = @org AND wallet_id = @walletId AND remaining > 0 AND is_debt = 0 AND expires_at <= @asOf
                    ORDER BY expires_at, lot_id
                    """,
                    new { org = posting.OrgId, walletId = wallet.WalletId, asOf = asOfMs });
            // And when the next lot is due, once these are expired (every due lot is, in full); after
            // a whole balance's expiry no lot is left open.
            int? next = wholeBalanceDue
                ? null
                : batch.Query(
                    "SELECT MIN(expires_at) FROM lots WHERE org_id = @org AND wallet_id = @walletId AND remaining > 0 AND is_debt = 0 AND expires_at > @asOf",
                    new { org = posting.OrgId, walletId = wallet.WalletId, asOf = asOfMs });
            checks.Add((key, wholeBalanceDue, query, next));
        }
        if (checks.Count == 0) return [];
        var found = await batch.RunAsync();

        var expired = new List<PostingResult>();
        foreach (var (key, wholeBalanceDue, query, next) in checks)
        {
            var due = found.Rows(query)
                .Select(r => new ConsumedLot(Convert.ToInt64(r[0], CultureInfo.InvariantCulture), new Points(Convert.ToInt64(r[1], CultureInfo.InvariantCulture)),
                    r[2] is null ? null : Convert.ToInt64(r[2], CultureInfo.InvariantCulture)))
                .ToList();
            // Kept with the balance when this posting saves it; a wallet only looked at keeps what it had.
            posting.Locked(key).LotsDueFrom = next is { } nextQuery && found.Rows(nextQuery).Single()[0] is { } nextDue
                ? Convert.ToInt64(nextDue, CultureInfo.InvariantCulture)
                : Wallet.NoLotDue;
            if (due.Count == 0) continue;

            var policy = PolicyFor(program, key.CurrencyId);
            // No customer expires a pool's points: its expiry names none (nor the primary member).
            var customerId = key.OwnerType == OwnerType.Customer ? key.OwnerId : NewEvent.NoCustomer;
            var details = JsonSerializer.Serialize(new Dictionary<string, string>
            {
                ["asOf"] = asOf.ToUniversalTime().ToString("O", CultureInfo.InvariantCulture),
                ["expiryType"] = policy.Kind,
            });
            var eventId = await posting.InsertEventAsync(new NewEvent(key.OwnerType, key.OwnerId, customerId, EventNames.PointsExpiry,
                SourceProgramId: program.ProgramId, DetailsJson: details,
                Reason: wholeBalanceDue ? "The balance expired: no qualifying activity within the expiry period." : "Points reached their expiry date."));
            var debit = await posting.DebitLotsAsync(eventId, key, due);
            expired.Add(new PostingResult(eventId, EventNames.PointsExpiry, null, [EntryView.Of(debit.Entry, CurrencyName(program, key.CurrencyId))]));
        }
        return expired;
    }

    /// <summary>
    /// A qualifying activity (a bill or a named event crediting the wallets) at the posting's time:
    /// restarts each wallet's WHOLE_BALANCE clock and, under ROLLING, moves every open dated lot to
    /// now + period; one round trip for all the wallets. Call it after <see cref="ExpireDueAsync(Posting, LoyaltyProgram, IReadOnlyList{WalletKey}, DateTimeOffset)"/>,
    /// so lots already due stay expired.
    /// </summary>
    public static async Task RecordActivityAsync(Posting posting, LoyaltyProgram program, IEnumerable<WalletKey> keys)
    {
        var batch = posting.Batch();
        AddActivity(batch, posting, program, keys);
        await batch.RunAsync();
    }

    /// <summary><see cref="RecordActivityAsync"/>, added to a batch of the posting's other statements.</summary>
    public static void AddActivity(StatementBatch batch, Posting posting, LoyaltyProgram program, IEnumerable<WalletKey> keys)
    {
        foreach (var key in keys.Distinct())
        {
            var wallet = posting.Locked(key);
            // A clock already at now was set by a statement this posting has already sent (a credit
            // that restarted it with the balance, see Posting.CreditEachAsync): no second update.
            if (wallet.LastActivityAt != posting.NowMs)
            {
                wallet.LastActivityAt = posting.NowMs;
                batch.Execute("UPDATE wallets SET last_activity_at = @now WHERE org_id = @org AND wallet_id = @id", new { now = posting.NowMs, org = posting.OrgId, id = wallet.WalletId });
            }
            var policy = PolicyFor(program, key.CurrencyId);
            if (!policy.ExtendsOnActivity) continue;
            var extended = policy.AddPeriod(posting.Now).ToUnixTimeMilliseconds();
            // Only ever later: an extension never shortens the life of a lot.
            batch.Execute(
                "UPDATE lots SET expires_at = @extended WHERE org_id = @org AND wallet_id = @id AND remaining > 0 AND is_debt = 0 AND expires_at IS NOT NULL AND expires_at < @extended",
                new { extended, org = posting.OrgId, id = wallet.WalletId });
        }
    }

    public static AlternateCurrency? CurrencyOf(LoyaltyProgram program, long currencyId) =>
        currencyId == WalletKey.PlainPoints ? null : program.Currencies.FirstOrDefault(c => c.CurrencyId == currencyId);
}
