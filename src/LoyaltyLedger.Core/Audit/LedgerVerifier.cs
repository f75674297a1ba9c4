using System.Globalization;
using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Audit;

/// <summary>What a verification found: figures, and every violated invariant (empty when the ledger is sound).</summary>
public sealed record VerificationReport(
    long Organizations,
    long Wallets,
    long Events,
    long Entries,
    long Lots,
    long IdempotencyKeys,
    IReadOnlyList<string> Violations)
{
    public bool Passed => Violations.Count == 0;
}

/// <summary>
/// Recomputes every wallet from its entries and lots and checks the ledger's invariants, on the raw
/// rows, independently of the code that wrote them:
/// stored balance = sum of entries = sum of lot remainders = the last entry's balance_after;
/// every lot's remainder = original - its movements; every debit's lot movements add up to the
/// debit; no negative balance where the program forbids one; no idempotency key posted twice; event
/// and entry ids unique; each event's line_kinds and each owner's running event counts agree with
/// the rows they summarize.
/// </summary>
public static class LedgerVerifier
{
    private sealed class OwnerCountRow
    {
        public long OrgId { get; set; }
        public string OwnerType { get; set; } = "";
        public long OwnerId { get; set; }
        public long? Stored { get; set; }
        public long? StoredPoints { get; set; }
        public long? StoredCurrency { get; set; }
        public long Events { get; set; }
        public long Points { get; set; }
        public long Currency { get; set; }
    }

    /// <summary>How many violations are listed at most; the count stays exact.</summary>
    public const int MaxListed = 200;

    public static async Task<VerificationReport> VerifyAsync(LedgerDatabase db, long? orgId, CancellationToken ct)
    {
        var scope = orgId is null ? "" : " AND w.org_id = @orgId";
        var violations = new List<string>();
        var extra = 0L;
        void Violation(string text)
        {
            if (violations.Count < MaxListed) violations.Add(text);
            else extra++;
        }

        return await db.ReadAsync(async c =>
        {
            // Set-based: one grouped pass over entries and one over lots, joined to the wallets, so the
            // audit stays linear in the ledger's size (a correlated sum per wallet rescans the lots of
            // every wallet, which at millions of rows never finishes).
            var entryOrg = orgId is null ? "" : " WHERE org_id = @orgId";
            var wallets = await c.QueryAsync<(long WalletId, long OrgId, long Balance, long Entries, long Lots, long? LastBalanceAfter, string OwnerType, string Category, long AllowNegative)>(
                new CommandDefinition($"""
                SELECT w.wallet_id, w.org_id, w.balance, COALESCE(es.total, 0), COALESCE(ls.total, 0), le.balance_after,
                    w.owner_type, w.category, COALESCE(p.allow_negative_balance, 0)
                FROM wallets w
                LEFT JOIN (SELECT wallet_id, SUM(CASE WHEN entry_type = 'DEBIT' THEN -points ELSE points END) AS total, MAX(entry_id) AS last_entry
                           FROM ledger_entries{entryOrg} GROUP BY wallet_id) es ON es.wallet_id = w.wallet_id
                LEFT JOIN ledger_entries le ON le.org_id = w.org_id AND le.entry_id = es.last_entry
                LEFT JOIN (SELECT wallet_id, SUM(remaining) AS total FROM lots{entryOrg} GROUP BY wallet_id) ls ON ls.wallet_id = w.wallet_id
                LEFT JOIN programs p ON p.org_id = w.org_id AND p.program_id = w.program_id
                WHERE 1 = 1{scope}
                ORDER BY w.wallet_id
                """, new { orgId }, commandTimeout: 0, cancellationToken: ct));
            var walletCount = 0L;
            foreach (var w in wallets)
            {
                walletCount++;
                if (w.Balance != w.Entries) Violation($"wallet {w.WalletId} (org {w.OrgId}): stored balance {w.Balance} but its entries sum to {w.Entries}");
                if (w.Balance != w.Lots) Violation($"wallet {w.WalletId} (org {w.OrgId}): stored balance {w.Balance} but its lots hold {w.Lots}");
                if (w.LastBalanceAfter is { } last && last != w.Balance) Violation($"wallet {w.WalletId} (org {w.OrgId}): stored balance {w.Balance} but the last entry says {last}");
                if (w.Balance < 0 && w.AllowNegative == 0 && w.OwnerType == "CUSTOMER" && w.Category == "REGULAR")
                    Violation($"wallet {w.WalletId} (org {w.OrgId}): negative balance {w.Balance} where the program forbids it");
            }

            var lotScope = orgId is null ? "" : " AND l.org_id = @orgId";
            var badLots = await c.QueryAsync<(long LotId, long Original, long Remaining, long Moved)>(
                new CommandDefinition($"""
                SELECT l.lot_id, l.original, l.remaining, COALESCE(m.moved, 0)
                FROM lots l LEFT JOIN (SELECT lot_id, SUM(points) AS moved FROM lot_movements GROUP BY lot_id) m ON m.lot_id = l.lot_id
                WHERE l.remaining <> l.original - COALESCE(m.moved, 0){lotScope}
                """, new { orgId }, commandTimeout: 0, cancellationToken: ct));
            foreach (var l in badLots) Violation($"lot {l.LotId}: remainder {l.Remaining} but original {l.Original} less movements {l.Moved}");

            var entryScope = orgId is null ? "" : " AND e.org_id = @orgId";
            var badDebits = await c.QueryAsync<(long EntryId, long Points, long Moved)>(
                new CommandDefinition($"""
                SELECT e.entry_id, e.points, COALESCE(m.moved, 0)
                FROM ledger_entries e LEFT JOIN (SELECT entry_id, SUM(points) AS moved FROM lot_movements GROUP BY entry_id) m ON m.entry_id = e.entry_id
                WHERE e.entry_type = 'DEBIT' AND COALESCE(m.moved, 0) <> e.points{entryScope}
                """, new { orgId }, commandTimeout: 0, cancellationToken: ct));
            foreach (var d in badDebits) Violation($"debit entry {d.EntryId}: {d.Points} debited but its lot movements add up to {d.Moved}");

            var orgFilter = orgId is null ? "" : " WHERE org_id = @orgId";
            var duplicateKeys = await c.ExecuteScalarAsync<long>(
                new CommandDefinition($"SELECT COUNT(*) FROM (SELECT org_id, idempotency_key FROM idempotency_keys{orgFilter} GROUP BY org_id, idempotency_key HAVING COUNT(*) > 1) d", new { orgId }, commandTimeout: 0, cancellationToken: ct));
            if (duplicateKeys > 0) Violation($"{duplicateKeys} idempotency keys recorded more than once");
            var duplicateEvents = await c.ExecuteScalarAsync<long>(new CommandDefinition("SELECT COUNT(*) FROM (SELECT event_id FROM events GROUP BY event_id HAVING COUNT(*) > 1) d", commandTimeout: 0, cancellationToken: ct));
            if (duplicateEvents > 0) Violation($"{duplicateEvents} event ids used more than once");
            var duplicateEntries = await c.ExecuteScalarAsync<long>(new CommandDefinition("SELECT COUNT(*) FROM (SELECT entry_id FROM ledger_entries GROUP BY entry_id HAVING COUNT(*) > 1) d", commandTimeout: 0, cancellationToken: ct));
            if (duplicateEntries > 0) Violation($"{duplicateEntries} entry ids used more than once");
            var orphanEntries = await c.ExecuteScalarAsync<long>(
                new CommandDefinition($"SELECT COUNT(*) FROM ledger_entries e WHERE NOT EXISTS (SELECT 1 FROM events v WHERE v.event_id = e.event_id){entryScope}", new { orgId }, commandTimeout: 0, cancellationToken: ct));
            if (orphanEntries > 0) Violation($"{orphanEntries} entries belong to no event");
            // line_kinds is what the points-ledger read counts and pages by: it must say exactly
            // which kinds of lines (plain points = 1, a currency = 2) each event holds.
            var wrongKinds = await c.ExecuteScalarAsync<long>(
                new CommandDefinition($"""
                SELECT COUNT(*) FROM (
                    SELECT e.event_id, e.line_kinds, COALESCE(MAX(CASE WHEN le.currency_id = 0 THEN 1 ELSE 0 END), 0)
                        + COALESCE(MAX(CASE WHEN le.currency_id <> 0 THEN 2 ELSE 0 END), 0) AS actual
                    FROM events e LEFT JOIN ledger_entries le ON le.org_id = e.org_id AND le.event_id = e.event_id
                    WHERE 1 = 1{(orgId is null ? "" : " AND e.org_id = @orgId")}
                    GROUP BY e.event_id, e.line_kinds) k
                WHERE k.line_kinds <> k.actual
                """, new { orgId }, commandTimeout: 0, cancellationToken: ct));
            if (wrongKinds > 0) Violation($"{wrongKinds} events whose line_kinds do not match their lines");

            // points_seq and currency_seq are what the points-ledger read seeks a page by: each owner's
            // events holding points lines (currency lines) must be numbered 1, 2, 3... in the order the
            // pages show them (time, then event id), and no other event numbered.
            var wrongNumbers = await c.ExecuteScalarAsync<long>(
                new CommandDefinition($"""
                SELECT COUNT(*) FROM ({PageNumbers.EventNumbers(orgFilter)}) n
                WHERE COALESCE(n.points_seq, 0) <> COALESCE(n.points_n, 0) OR COALESCE(n.currency_seq, 0) <> COALESCE(n.currency_n, 0)
                """, new { orgId }, commandTimeout: 0, cancellationToken: ct));
            if (wrongNumbers > 0) Violation($"{wrongNumbers} events whose number in their owner's history (points_seq, currency_seq) is not their place in it");

            // history_seq is what the vault history seeks a page by: each regular plain-points wallet's
            // lines (opening balances left out) and its owner's voucher redemptions in its program must
            // be numbered 1, 2, 3... in the history's order (time, event id, line id), nothing else
            // numbered, and the wallet must hold the count, which Posting numbers on from.
            // Posting also gives the next number without a statement when a movement is stamped at or
            // after the latest time numbered, which the wallet keeps (and the owner's counter row,
            // below): a time behind a numbered movement would number the next one stamped between them last.
            var walletOrg = orgId is null ? "" : " AND w.org_id = @orgId";
            var (wrongHistory, walletsBehind) = await c.QuerySingleAsync<(long, long)>(
                new CommandDefinition($"""
                WITH h AS MATERIALIZED ({PageNumbers.HistoryNumbers(walletOrg)})
                SELECT (SELECT COUNT(*) FROM h WHERE h.stored IS NULL OR h.stored <> h.n),
                    (SELECT COUNT(*) FROM wallets w
                     JOIN (SELECT org_id, wallet_id, MAX(created_at) AS t FROM h GROUP BY org_id, wallet_id) l
                         ON l.org_id = w.org_id AND l.wallet_id = w.wallet_id
                     WHERE w.history_last_at < l.t)
                """, new { orgId }, commandTimeout: 0, cancellationToken: ct));
            var strayHistory = await c.ExecuteScalarAsync<long>(
                new CommandDefinition($"""
                SELECT (SELECT COUNT(*) FROM ledger_entries le JOIN wallets w ON w.org_id = le.org_id AND w.wallet_id = le.wallet_id
                        WHERE le.history_seq IS NOT NULL AND (w.currency_id <> 0 OR w.category <> 'REGULAR' OR le.entry_type = 'OPENING_BALANCE'){walletOrg})
                     + (SELECT COUNT(*) FROM events e WHERE e.history_seq IS NOT NULL AND e.event_name <> 'VoucherRedemption'{(orgId is null ? "" : " AND e.org_id = @orgId")})
                     + (SELECT COUNT(*) FROM wallets w WHERE w.history_count <> (
                            (SELECT COUNT(*) FROM ledger_entries le WHERE le.org_id = w.org_id AND le.wallet_id = w.wallet_id AND le.history_seq IS NOT NULL)
                          + CASE WHEN w.currency_id = 0 AND w.category = 'REGULAR' THEN
                                (SELECT COUNT(*) FROM events e WHERE e.org_id = w.org_id AND e.owner_type = w.owner_type AND e.owner_id = w.owner_id
                                    AND e.event_name = 'VoucherRedemption' AND e.source_program_id = w.program_id AND e.history_seq IS NOT NULL)
                            ELSE 0 END){walletOrg})
                """, new { orgId }, commandTimeout: 0, cancellationToken: ct));
            if (wrongHistory + strayHistory > 0)
                Violation($"{wrongHistory + strayHistory} lines, voucher redemptions or wallets whose numbers in the wallet's history (history_seq, history_count) are not their place in it or its count");

            var ownersBehind = await c.ExecuteScalarAsync<long>(
                new CommandDefinition($"""
                SELECT COUNT(*) FROM owner_event_counts c
                JOIN (SELECT org_id, owner_type, owner_id, MAX(created_at) AS t FROM events{orgFilter} GROUP BY org_id, owner_type, owner_id) e
                    ON e.org_id = c.org_id AND e.owner_type = c.owner_type AND e.owner_id = c.owner_id
                WHERE c.last_event_at < e.t
                """, new { orgId }, commandTimeout: 0, cancellationToken: ct));
            var behind = walletsBehind + ownersBehind;
            if (behind > 0)
                Violation($"{behind} owners or wallets whose latest numbered time (owner_event_counts.last_event_at, wallets.history_last_at) is behind a movement they numbered");

            // A posting looks for due lots only from the time its wallet keeps (lots_due_from): an open
            // dated lot expiring before it would never be expired at a posting.
            var dueMissed = await c.ExecuteScalarAsync<long>(
                new CommandDefinition($"""
                SELECT COUNT(*) FROM wallets w
                WHERE w.lots_due_from IS NOT NULL{(orgId is null ? "" : " AND w.org_id = @orgId")} AND EXISTS (
                    SELECT 1 FROM lots l WHERE l.org_id = w.org_id AND l.wallet_id = w.wallet_id
                        AND l.remaining > 0 AND l.is_debt = 0 AND l.expires_at < w.lots_due_from)
                """, new { orgId }, commandTimeout: 0, cancellationToken: ct));
            if (dueMissed > 0)
                Violation($"{dueMissed} wallets with an open lot that expires before the time from which they keep lots due (wallets.lots_due_from)");

            // owner_event_counts is what the points-ledger read takes totalEntries from: each owner's
            // row must equal its events, counted by line_kinds (checked against the lines above).
            // Owners with events are matched in one grouped pass; a row for an owner with no events
            // must hold zeros.
            var countOrg = orgId is null ? "" : " AND c.org_id = @orgId";
            var wrongCounts = await c.QueryAsync<OwnerCountRow>(
                new CommandDefinition($"""
                SELECT a.org_id, a.owner_type, a.owner_id, c.events AS stored, c.points_events AS stored_points, c.currency_events AS stored_currency,
                    a.events, a.points_events AS points, a.currency_events AS currency
                FROM (SELECT org_id, owner_type, owner_id, COUNT(*) AS events,
                          SUM(CASE WHEN (line_kinds & 1) <> 0 THEN 1 ELSE 0 END) AS points_events,
                          SUM(CASE WHEN (line_kinds & 2) <> 0 THEN 1 ELSE 0 END) AS currency_events
                      FROM events{orgFilter} GROUP BY org_id, owner_type, owner_id) a
                LEFT JOIN owner_event_counts c ON c.org_id = a.org_id AND c.owner_type = a.owner_type AND c.owner_id = a.owner_id
                WHERE c.events IS NULL OR c.events <> a.events OR c.points_events <> a.points_events OR c.currency_events <> a.currency_events
                UNION ALL
                SELECT c.org_id, c.owner_type, c.owner_id, c.events, c.points_events, c.currency_events, 0, 0, 0
                FROM owner_event_counts c
                WHERE (c.events <> 0 OR c.points_events <> 0 OR c.currency_events <> 0){countOrg}
                    AND NOT EXISTS (SELECT 1 FROM events e WHERE e.org_id = c.org_id AND e.owner_type = c.owner_type AND e.owner_id = c.owner_id)
                ORDER BY 1, 2, 3
                """, new { orgId }, commandTimeout: 0, cancellationToken: ct));
            foreach (var w in wrongCounts)
            {
                Violation($"owner {w.OwnerType} {w.OwnerId} (org {w.OrgId}): owner_event_counts says {w.Stored?.ToString(CultureInfo.InvariantCulture) ?? "nothing"} events " +
                    $"({w.StoredPoints ?? 0} with points, {w.StoredCurrency ?? 0} with currencies) but it has {w.Events} ({w.Points} with points, {w.Currency} with currencies)");
            }

            var counts = await c.QuerySingleAsync<(long Orgs, long Events, long Entries, long Lots, long Keys)>(
                new CommandDefinition($"""
                SELECT (SELECT COUNT(*) FROM organizations{(orgId is null ? "" : " WHERE org_id = @orgId")}),
                       (SELECT COUNT(*) FROM events{orgFilter}),
                       (SELECT COUNT(*) FROM ledger_entries{orgFilter}),
                       (SELECT COUNT(*) FROM lots{orgFilter}),
                       (SELECT COUNT(*) FROM idempotency_keys{orgFilter})
                """, new { orgId }, commandTimeout: 0, cancellationToken: ct));
            if (extra > 0) violations.Add($"... and {extra} more violations");
            return new VerificationReport(counts.Orgs, walletCount, counts.Events, counts.Entries, counts.Lots, counts.Keys, violations);
        }, ct);
    }
}
