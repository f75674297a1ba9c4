using Dapper;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Tests.Infrastructure;

/// <summary>Reads the raw ledger of one organization, to check what a call wrote (or did not).</summary>
public static class LedgerAudit
{
    /// <summary>Rows per table for the organization: a refused request must leave these unchanged.</summary>
    public static Task<(long Events, long Entries, long Lots, long Bills, long Customers)> CountsAsync(LedgerDatabase db, long orgId) =>
        db.ReadAsync(c => c.QuerySingleAsync<(long, long, long, long, long)>(
            """
            SELECT (SELECT COUNT(*) FROM events WHERE org_id = @orgId),
                   (SELECT COUNT(*) FROM ledger_entries WHERE org_id = @orgId),
                   (SELECT COUNT(*) FROM lots WHERE org_id = @orgId),
                   (SELECT COUNT(*) FROM bills WHERE org_id = @orgId),
                   (SELECT COUNT(*) FROM customers WHERE org_id = @orgId)
            """, new { orgId }), CancellationToken.None);

    /// <summary>
    /// Every wallet of the organization whose stored balance differs from the sum of its entries or
    /// from the sum of its lots' remainders, or with a lot whose remainder is not its original less
    /// its movements. Empty when the ledger's invariants hold.
    /// </summary>
    public static async Task<IReadOnlyList<string>> ViolationsAsync(LedgerDatabase db, long orgId)
    {
        var wallets = await db.ReadAsync(c => c.QueryAsync<(long WalletId, long Balance, long Entries, long Lots, long LastBalanceAfter)>(
            """
            SELECT w.wallet_id, w.balance,
                COALESCE((SELECT SUM(CASE WHEN e.entry_type = 'DEBIT' THEN -e.points ELSE e.points END) FROM ledger_entries e WHERE e.wallet_id = w.wallet_id), 0),
                COALESCE((SELECT SUM(l.remaining) FROM lots l WHERE l.wallet_id = w.wallet_id), 0),
                COALESCE((SELECT e.balance_after FROM ledger_entries e WHERE e.wallet_id = w.wallet_id ORDER BY e.entry_id DESC LIMIT 1), 0)
            FROM wallets w WHERE w.org_id = @orgId
            """, new { orgId }), CancellationToken.None);
        var lots = await db.ReadAsync(c => c.QueryAsync<(long LotId, long Original, long Remaining, long Moved)>(
            """
            SELECT l.lot_id, l.original, l.remaining, COALESCE((SELECT SUM(m.points) FROM lot_movements m WHERE m.lot_id = l.lot_id), 0)
            FROM lots l WHERE l.org_id = @orgId
            """, new { orgId }), CancellationToken.None);
        var problems = new List<string>();
        foreach (var w in wallets)
        {
            if (w.Balance != w.Entries) problems.Add($"wallet {w.WalletId}: balance {w.Balance} != entries {w.Entries}");
            if (w.Balance != w.Lots) problems.Add($"wallet {w.WalletId}: balance {w.Balance} != lots {w.Lots}");
            if (w.Balance != w.LastBalanceAfter) problems.Add($"wallet {w.WalletId}: balance {w.Balance} != last balance_after {w.LastBalanceAfter}");
        }
        foreach (var l in lots)
        {
            if (l.Remaining != l.Original - l.Moved) problems.Add($"lot {l.LotId}: remaining {l.Remaining} != {l.Original} - {l.Moved}");
        }
        return problems;
    }
}
