using System.Globalization;
using Dapper;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Tests.Lifecycle;

/// <summary>
/// Reads the stored ledger directly, so tests assert the exact lines and lots that were written
/// and check the ledger's invariants from the rows themselves, not from the API's own reading.
/// </summary>
public static class LedgerProbe
{
    /// <summary>
    /// A customer's ledger lines, oldest first, as "Event TYPE CATEGORY[/currency] points = balance"
    /// (opening-balance lines left out).
    /// </summary>
    public static async Task<List<string>> LinesAsync(LedgerDatabase db, long orgId, long customerId)
    {
        var rows = await db.ReadAsync(c => c.QueryAsync<(string EventName, string EntryType, string Category, long CurrencyId, long Points, long BalanceAfter)>(
            """
            SELECT e.event_name, le.entry_type, le.category, le.currency_id, le.points, le.balance_after
            FROM ledger_entries le JOIN events e ON e.event_id = le.event_id
            WHERE le.org_id = @orgId AND le.owner_type = 'CUSTOMER' AND le.owner_id = @customerId AND le.entry_type <> 'OPENING_BALANCE'
            ORDER BY le.entry_id
            """, new { orgId, customerId }), CancellationToken.None);
        return rows.Select(r =>
            $"{r.EventName} {r.EntryType} {r.Category}{(r.CurrencyId == 0 ? "" : "/" + r.CurrencyId.ToString(CultureInfo.InvariantCulture))} " +
            $"{new Points(r.Points)} = {new Points(r.BalanceAfter)}").ToList();
    }

    /// <summary>A customer's lots in one category, in credit order, as "remaining/original until yyyy-MM-dd" (or "never", or "debt").</summary>
    public static async Task<List<string>> LotsAsync(LedgerDatabase db, long orgId, long customerId, string category = "REGULAR")
    {
        var rows = await db.ReadAsync(c => c.QueryAsync<(long Remaining, long Original, long? ExpiresAt, long IsDebt)>(
            """
            SELECT l.remaining, l.original, l.expires_at, l.is_debt FROM lots l JOIN wallets w ON w.wallet_id = l.wallet_id
            WHERE w.org_id = @orgId AND w.owner_type = 'CUSTOMER' AND w.owner_id = @customerId AND w.category = @category AND w.currency_id = 0
            ORDER BY l.lot_id
            """, new { orgId, customerId, category }), CancellationToken.None);
        return rows.Select(r => r.IsDebt != 0
            ? $"debt {new Points(r.Remaining)}"
            : $"{new Points(r.Remaining)}/{new Points(r.Original)} until " +
              (r.ExpiresAt is { } at ? DateTimeOffset.FromUnixTimeMilliseconds(at).ToString("yyyy-MM-dd", CultureInfo.InvariantCulture) : "never")).ToList();
    }

    /// <summary>
    /// The ledger's invariants over one organization: each wallet's balance equals the sum of its
    /// lines (credits - debits), its last line's balance_after and the sum of its lots' remainders;
    /// each lot's remainder equals its original minus its movements and stays within 0..original
    /// (a debt lot: at most 0); and no redemption or transfer ever took points from a lot already
    /// past its date.
    /// </summary>
    public static async Task AssertInvariantsAsync(LedgerDatabase db, long orgId, string context = "")
    {
        await db.ReadAsync(async c =>
        {
            var wallets = (await c.QueryAsync<(long WalletId, long Balance)>(
                "SELECT wallet_id, balance FROM wallets WHERE org_id = @orgId", new { orgId })).ToList();
            var entries = (await c.QueryAsync<(long EntryId, long WalletId, string EntryType, long Points, long BalanceAfter, long CreatedAt, string EventName)>(
                """
                SELECT le.entry_id, le.wallet_id, le.entry_type, le.points, le.balance_after, le.created_at, e.event_name
                FROM ledger_entries le JOIN events e ON e.event_id = le.event_id WHERE le.org_id = @orgId ORDER BY le.entry_id
                """, new { orgId })).ToList();
            var lots = (await c.QueryAsync<(long LotId, long WalletId, long Original, long Remaining, long? ExpiresAt, long IsDebt)>(
                "SELECT lot_id, wallet_id, original, remaining, expires_at, is_debt FROM lots WHERE org_id = @orgId", new { orgId })).ToList();
            var movements = (await c.QueryAsync<(long EntryId, long LotId, long Points)>(
                "SELECT entry_id, lot_id, points FROM lot_movements WHERE org_id = @orgId", new { orgId })).ToList();

            foreach (var w in wallets)
            {
                var mine = entries.Where(e => e.WalletId == w.WalletId).ToList();
                var fromLines = mine.Sum(e => e.EntryType == "CREDIT" ? e.Points : e.EntryType == "DEBIT" ? -e.Points : 0);
                fromLines.ShouldBe(w.Balance, $"{context}: wallet {w.WalletId} balance vs its lines");
                if (mine.Count > 0) mine[^1].BalanceAfter.ShouldBe(w.Balance, $"{context}: wallet {w.WalletId} last balance_after");
                lots.Where(l => l.WalletId == w.WalletId).Sum(l => l.Remaining).ShouldBe(w.Balance, $"{context}: wallet {w.WalletId} balance vs its lots");
            }
            var moved = movements.GroupBy(m => m.LotId).ToDictionary(g => g.Key, g => g.Sum(m => m.Points));
            foreach (var lot in lots)
            {
                lot.Remaining.ShouldBe(lot.Original - moved.GetValueOrDefault(lot.LotId), $"{context}: lot {lot.LotId} remaining vs movements");
                if (lot.IsDebt != 0) lot.Remaining.ShouldBeLessThanOrEqualTo(0, $"{context}: debt lot {lot.LotId}");
                else lot.Remaining.ShouldBeInRange(0, lot.Original, $"{context}: lot {lot.LotId} within 0..original");
            }
            var lotById = lots.ToDictionary(l => l.LotId);
            var entryById = entries.ToDictionary(e => e.EntryId);
            foreach (var m in movements.Where(m => m.Points > 0))
            {
                var entry = entryById[m.EntryId];
                if (entry.EventName is not ("PointsRedemption" or "PointsTransfer")) continue;
                if (lotById[m.LotId].ExpiresAt is { } expiresAt)
                    expiresAt.ShouldBeGreaterThan(entry.CreatedAt, $"{context}: entry {m.EntryId} spent lot {m.LotId} past its date");
            }
            return 0;
        }, CancellationToken.None);
    }
}
