using Dapper;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Ledger;

/// <summary>What <see cref="PageNumbers.RenumberAsync"/> changed: rows whose number or count it set again.</summary>
public sealed record RenumberReport(long Events, long Owners, long Lines, long VoucherRedemptions, long Wallets)
{
    public long Total => Events + Owners + Lines + VoucherRedemptions + Wallets;
}

/// <summary>
/// The numbers the two read APIs seek a page by, as they follow from the rows: each event's place in
/// its owner's points history and currency history (<c>events.points_seq</c>, <c>currency_seq</c>),
/// and each movement's place in a plain-points wallet's vault history (<c>ledger_entries.history_seq</c>,
/// <c>events.history_seq</c> for voucher redemptions), with what <see cref="Posting"/> numbers on from
/// (<c>owner_event_counts.last_event_at</c>, <c>wallets.history_count</c> and <c>history_last_at</c>).
/// <c>verify</c> compares the stored numbers with these and <c>renumber</c> writes them: one rule,
/// so the check and the repair cannot drift apart. (Migrations 22 and 23 state the same rule in their
/// own frozen text.)
/// </summary>
public static class PageNumbers
{
    /// <summary>
    /// Every event with the numbers its place gives it: (org_id, event_id, points_seq, currency_seq,
    /// points_n, currency_n); the _n columns are NULL for an event without lines of that kind.
    /// <paramref name="where"/> is empty or a <c>WHERE</c> clause on events.
    /// </summary>
    public static string EventNumbers(string where) => $"""
        SELECT org_id, event_id, points_seq, currency_seq,
            CASE WHEN (line_kinds & 1) <> 0 THEN ROW_NUMBER() OVER (
                PARTITION BY org_id, owner_type, owner_id, (line_kinds & 1) ORDER BY created_at, event_id) END AS points_n,
            CASE WHEN (line_kinds & 2) <> 0 THEN ROW_NUMBER() OVER (
                PARTITION BY org_id, owner_type, owner_id, (line_kinds & 2) ORDER BY created_at, event_id) END AS currency_n
        FROM events{where}
        """;

    /// <summary>
    /// Every movement of a vault history with its number: (org_id, wallet_id, created_at, event_id,
    /// entry_id, stored, n); a voucher redemption has entry_id 0. A history is a regular plain-points
    /// wallet's lines (opening balances left out) and its owner's voucher redemptions in its program,
    /// in time, event id, line id order. <paramref name="walletFilter"/> is empty or
    /// <c>AND w.…</c> conditions on the wallet.
    /// </summary>
    public static string HistoryNumbers(string walletFilter) => $"""
        SELECT i.org_id, i.wallet_id, i.created_at, i.event_id, i.entry_id, i.stored,
            ROW_NUMBER() OVER (PARTITION BY i.org_id, i.wallet_id ORDER BY i.created_at, i.event_id, i.entry_id) AS n
        FROM (
            SELECT le.org_id, le.wallet_id, le.created_at, le.event_id, le.entry_id, le.history_seq AS stored
            FROM ledger_entries le JOIN wallets w ON w.org_id = le.org_id AND w.wallet_id = le.wallet_id
            WHERE w.currency_id = 0 AND w.category = 'REGULAR' AND le.entry_type <> 'OPENING_BALANCE'{walletFilter}
            UNION ALL
            SELECT e.org_id, w.wallet_id, e.created_at, e.event_id, 0, e.history_seq
            FROM events e JOIN wallets w ON w.org_id = e.org_id AND w.owner_type = e.owner_type AND w.owner_id = e.owner_id
                AND w.program_id = e.source_program_id AND w.currency_id = 0 AND w.category = 'REGULAR'
            WHERE e.event_name = '{Posting.VoucherRedemptionEvent}'{walletFilter}) i
        """;

    /// <summary>
    /// Writes every number and count that differs from what the rows give (all organizations, or one),
    /// in one write transaction, and says how many it changed; run on a sound ledger it changes
    /// nothing. It repairs what a server older than migration 22 leaves after <c>migrate</c>: its
    /// events and lines carry no numbers, and the counts Posting numbers on from miss them. On
    /// PostgreSQL it first takes the four tables' write locks (wallets first), so postings wait for it
    /// instead of numbering from counts it is changing (reads go on).
    /// </summary>
    public static Task<RenumberReport> RenumberAsync(LedgerDatabase db, long? orgId, CancellationToken ct) =>
        db.WriteAsync(async (c, tx) =>
        {
            var arguments = new { orgId };
            async Task<long> RunAsync(string sql)
            {
                // A statement of one database alone ({only ...}) is nothing on the other.
                var text = db.Dialect.Expand(sql);
                return string.IsNullOrWhiteSpace(text) ? 0
                    : await c.ExecuteAsync(new CommandDefinition(text, arguments, tx, commandTimeout: 0, cancellationToken: ct));
            }

            // Wallets first, exclusively: every posting (a registration too) locks its wallets before
            // it writes its rows, so new postings wait at their first statement and those in flight
            // finish before this goes on (RenumberLockOrderTests). Plain reads go on.
            await RunAsync("{only postgres}LOCK TABLE wallets IN EXCLUSIVE MODE{end}");
            await RunAsync("{only postgres}LOCK TABLE owner_event_counts, events, ledger_entries IN SHARE ROW EXCLUSIVE MODE{end}");
            var eventWhere = orgId is null ? "" : " WHERE org_id = @orgId";
            var events = await RunAsync($"""
                UPDATE events SET points_seq = n.points_n, currency_seq = n.currency_n
                FROM ({EventNumbers(eventWhere)}) n
                WHERE events.org_id = n.org_id AND events.event_id = n.event_id
                    AND (COALESCE(n.points_seq, 0) <> COALESCE(n.points_n, 0) OR COALESCE(n.currency_seq, 0) <> COALESCE(n.currency_n, 0))
                """);
            var owners = await RunAsync($"""
                UPDATE owner_event_counts SET last_event_at = s.t
                FROM (SELECT org_id AS o, owner_type AS ot, owner_id AS oi, MAX(created_at) AS t
                      FROM events{eventWhere} GROUP BY org_id, owner_type, owner_id) s
                WHERE owner_event_counts.org_id = s.o AND owner_event_counts.owner_type = s.ot AND owner_event_counts.owner_id = s.oi
                    AND owner_event_counts.last_event_at < s.t
                """);

            // The history's numbers are read three times (lines, redemptions, wallet counts): once
            // into a temporary table, as migration 23 does. A failure rolls its creation back.
            await RunAsync($"CREATE TEMPORARY TABLE renumbered_history AS {HistoryNumbers(orgId is null ? "" : " AND w.org_id = @orgId")}");
            long lines = await RunAsync("""
                UPDATE ledger_entries SET history_seq = h.n FROM renumbered_history h
                WHERE h.entry_id <> 0 AND ledger_entries.org_id = h.org_id AND ledger_entries.entry_id = h.entry_id
                    AND COALESCE(h.stored, 0) <> h.n
                """);
            long redemptions = await RunAsync("""
                UPDATE events SET history_seq = h.n FROM renumbered_history h
                WHERE h.entry_id = 0 AND events.org_id = h.org_id AND events.event_id = h.event_id
                    AND COALESCE(h.stored, 0) <> h.n
                """);
            long wallets = await RunAsync("""
                UPDATE wallets SET history_count = h.c, history_last_at = {greatest}(wallets.history_last_at, h.t)
                FROM (SELECT org_id, wallet_id, MAX(n) AS c, MAX(created_at) AS t FROM renumbered_history GROUP BY org_id, wallet_id) h
                WHERE wallets.org_id = h.org_id AND wallets.wallet_id = h.wallet_id
                    AND (wallets.history_count <> h.c OR wallets.history_last_at < h.t)
                """);
            // Numbers where there should be none (verify's strays): not written by any server, but
            // the repair leaves what verify checks whole.
            var walletOrg = orgId is null ? "" : " AND w.org_id = @orgId";
            var orgOnly = orgId is null ? "" : " AND org_id = @orgId";
            lines += await RunAsync($"""
                UPDATE ledger_entries SET history_seq = NULL
                WHERE history_seq IS NOT NULL{orgOnly} AND (entry_type = 'OPENING_BALANCE' OR EXISTS (
                    SELECT 1 FROM wallets w WHERE w.org_id = ledger_entries.org_id AND w.wallet_id = ledger_entries.wallet_id
                        AND (w.currency_id <> 0 OR w.category <> 'REGULAR'){walletOrg}))
                """);
            redemptions += await RunAsync($"UPDATE events SET history_seq = NULL WHERE history_seq IS NOT NULL AND event_name <> '{Posting.VoucherRedemptionEvent}'{orgOnly}");
            wallets += await RunAsync($"""
                UPDATE wallets SET history_count = 0
                WHERE history_count <> 0{orgOnly}
                    AND NOT EXISTS (SELECT 1 FROM renumbered_history h WHERE h.org_id = wallets.org_id AND h.wallet_id = wallets.wallet_id)
                """);
            await RunAsync("DROP TABLE renumbered_history");
            return new RenumberReport(events, owners, lines, redemptions, wallets);
        }, ct);
}
