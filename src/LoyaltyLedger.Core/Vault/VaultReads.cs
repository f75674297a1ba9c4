using System.Data.Common;
using System.Text.Json;
using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Stores;

namespace LoyaltyLedger.Vault;

/// <summary>
/// The vault's read side: an account's history in one program and the account overview. Both read
/// the same ledger rows as the points-ledger API; nothing here is a copy.
/// </summary>
public static class VaultReads
{
    public const int MaxLimit = 1000;

    private sealed class MovementRow
    {
        public long EventId { get; set; }
        public string EventName { get; set; } = "";
        public long CreatedAt { get; set; }
        public string? Details { get; set; }
        public string? Reason { get; set; }
        public long? StoreId { get; set; }
        public long? TillId { get; set; }
        public string? StoreCode { get; set; }
        public string? TillCode { get; set; }
        public string? BillNumber { get; set; }
        public long? EntryId { get; set; }
        public string? EntryType { get; set; }
        public long Points { get; set; }
        public long? BalanceAfter { get; set; }
        public long? ExpiresAt { get; set; }
    }

    /// <summary>
    /// The account's movements in the program's plain points, oldest first (by time, then by the
    /// order they were written). Opening-balance lines of zero are left out: they move nothing.
    /// <paramref name="consistency"/> says whether a read replica may serve it.
    /// </summary>
    /// <remarks>
    /// Stores and tills, which never change, are named from <paramref name="stores"/> (or looked up
    /// once per process) rather than joined on every page.
    /// </remarks>
    public static async Task<IReadOnlyList<VaultMovement>> HistoryAsync(LedgerDatabase db, long orgId, string accountNumber, long programId,
        HistoryQuery query, ReadConsistency consistency, CancellationToken ct, IProgramCache? catalog = null, IStoreCache? stores = null)
    {
        if (query.Limit is < 1 or > MaxLimit) throw LedgerException.Invalid($"limit is 1 to {MaxLimit}.");
        if (query.Offset is < 0) throw LedgerException.Invalid("offset cannot be negative.");
        if (query is { From: { } f, To: { } t } && t <= f) throw LedgerException.Invalid("to must be after from.");
        VaultTransactions.RequireAccountNumber(accountNumber);
        // On PostgreSQL's primary a page by number goes through the read pipeline, holding no
        // connection: its one statement travels with other reads' in one round trip. The program comes
        // from the process's cache (read again once a second, by one read for all that miss it); an
        // unknown program and an empty answer are asked the long way, on a connection, below.
        var pipelined = false;
        if (IsPaged(query) && db.PipelinesReads(consistency) && catalog is not null
            && (await ProgramCatalog.ListSharedAsync(db, orgId, catalog, ct)).FirstOrDefault(p => p.ProgramId == programId) is { } cached)
        {
            var rows = await QueryPageAsync(null, db, orgId, accountNumber, programId, query, byNumber: true, account: null, walletId: null, ct);
            if (rows.Count > 0) return await MovementsAsync(db, null, orgId, rows, cached, stores, ct);
            pipelined = true;
        }
        return await db.ReadAsync(c => HistoryAsync(c, db, orgId, accountNumber, programId, query, tryByNumber: !pipelined, catalog, stores, ct), consistency, ct);
    }

    private static bool IsPaged(HistoryQuery query) => query.Limit is not null || query.Offset is not null;

    private static async Task<IReadOnlyList<VaultMovement>> HistoryAsync(DbConnection c, LedgerDatabase db, long orgId, string accountNumber, long programId,
        HistoryQuery query, bool tryByNumber, IProgramCache? catalog, IStoreCache? stores, CancellationToken ct)
    {
        var paged = IsPaged(query);
        var known = await ProgramCatalog.FindAsync(c, db.Dialect, orgId, programId, null, catalog, ct);
        if (tryByNumber && paged && known is not null)
        {
            // A page by number names the account and its wallet in the same statement: one round trip.
            // An empty answer (no such account, no points wallet, past the last page) is asked again
            // the long way, which tells those apart and answers each as it should.
            var rows = await QueryPageAsync(c, db, orgId, accountNumber, programId, query, byNumber: true, account: null, walletId: null, ct);
            if (rows.Count > 0) return await MovementsAsync(db, c, orgId, rows, known, stores, ct);
        }
        var (account, walletId) = await VaultTransactions.RequireAccountAndWalletAsync(c, orgId, accountNumber, programId, ct);
        var program = known ?? throw LedgerException.NotFound("program", programId);
        var found = await QueryPageAsync(c, db, orgId, accountNumber, programId, query, byNumber: paged && walletId is not null, account, walletId, ct);
        return await MovementsAsync(db, c, orgId, found, program, stores, ct);
    }

    private static async Task<IReadOnlyList<VaultMovement>> MovementsAsync(LedgerDatabase db, DbConnection? c, long orgId, IReadOnlyList<MovementRow> rows,
        LoyaltyProgram program, IStoreCache? stores, CancellationToken ct)
    {
        var (storesById, tillsById) = await StoreDirectory.ByIdsAsync(db, c, orgId, rows.Select(r => r.StoreId).OfType<long>(),
            rows.Select(r => r.TillId).OfType<long>(), stores, null, ct);
        foreach (var row in rows)
        {
            row.StoreCode = row.StoreId is { } storeId && storesById.TryGetValue(storeId, out var store) ? store.Code : null;
            row.TillCode = row.TillId is { } tillId && tillsById.TryGetValue(tillId, out var till) ? till.Code : null;
        }
        return rows.Select(r => ToMovement(r, program)).ToList();
    }

    /// <summary>
    /// The page's rows. Given the account and its wallet, by their ids; without them (<paramref name="account"/>
    /// null), by the account's number, looked up in the same statement (a one-row CTE). Read on
    /// <paramref name="c"/>, or through the read pipeline when it is null.
    /// </summary>
    private static async Task<IReadOnlyList<MovementRow>> QueryPageAsync(DbConnection? c, LedgerDatabase db, long orgId, string accountNumber, long programId,
        HistoryQuery query, bool byNumber, VaultAccountRef? account, long? walletId, CancellationToken ct)
    {
        var paged = IsPaged(query);
        var (walletRef, customerRef) = account is null ? ("(SELECT wallet_id FROM acct)", "(SELECT customer_id FROM acct)") : ("@walletId", "@customerId");
        var acct = account is not null ? "" : """
            acct AS (SELECT a.customer_id, w.wallet_id FROM loyalty_accounts a
                JOIN wallets w ON w.org_id = a.org_id AND w.owner_type = 'CUSTOMER' AND w.owner_id = a.customer_id
                    AND w.program_id = @programId AND w.currency_id = 0 AND w.category = 'REGULAR'
                WHERE a.org_id = @orgId AND a.account_number = @accountNumber),
            """;

        string Window(string alias) =>
            (query.From is null ? "" : $" AND {alias}.created_at >= @from") + (query.To is null ? "" : $" AND {alias}.created_at < @to");
        var page = paged ? " LIMIT @limit OFFSET @offset" : "";
        // Each branch keeps only its first offset + limit rows in the page's order before the joins:
        // the page of the union lies within them, and a page near the start of a long history then
        // costs its own depth, not the whole history sorted (and joined) on every request.
        var top = paged ? " ORDER BY created_at, event_id, entry_id LIMIT @top" : "";
        var topEvents = paged ? " ORDER BY created_at, event_id LIMIT @top" : "";
        // The page is chosen on the bare keys first, and only its rows are then joined to their
        // events, stores, tills, bills and lots: a deep page costs its scan, not its depth in joins.
        // A credit's expiry is the earliest date of the lots it created; a credit that created none
        // with a date (a redemption reversal) puts points back into the lots a debit took, recorded
        // as negative lot movements, and shows the earliest date among those.
        // A page is a range of the movements' numbers in the wallet's history (Posting numbers its
        // lines and the voucher redemptions in its program in the history's order), so any page
        // costs what the first does. Without a window the range starts at 1; a window's movements
        // are the numbers from its first movement's to its last's, each found by a seek to the
        // window's edge on the two time indexes and the numbers of the movements at that instant.
        // The instant of the window's first (last) movement: one seek of each time index.
        string EdgeTime(string bound, string pick, string direction) => $"""
            (SELECT {pick}(m.at) FROM (
                SELECT (SELECT created_at FROM ledger_entries
                        WHERE org_id = @orgId AND wallet_id = {walletRef} AND entry_type <> 'OPENING_BALANCE' AND {bound}
                        ORDER BY created_at {direction} LIMIT 1) AS at
                UNION ALL
                SELECT (SELECT created_at FROM events
                        WHERE org_id = @orgId AND owner_type = 'CUSTOMER' AND owner_id = {customerRef} AND event_name = '{VaultEventNames.VoucherRedemption}'
                            AND source_program_id = @programId AND {bound}
                        ORDER BY created_at {direction} LIMIT 1)) m)
            """;
        // The first (last) number among the movements at that instant.
        string EdgeNumber(string at, string pick) => $"""
            (SELECT {pick}(n.history_seq) FROM (
                SELECT history_seq FROM ledger_entries WHERE org_id = @orgId AND wallet_id = {walletRef} AND history_seq IS NOT NULL AND created_at = {at}
                UNION ALL
                SELECT history_seq FROM events WHERE org_id = @orgId AND owner_type = 'CUSTOMER' AND owner_id = {customerRef} AND source_program_id = @programId
                    AND event_name = '{VaultEventNames.VoucherRedemption}' AND history_seq IS NOT NULL AND created_at = {at}) n)
            """;
        var windowed = query.From is not null || query.To is not null;
        // The window's edges are found once (a CTE of one row), not once per condition that uses them.
        var bounds = !windowed ? "" : $"""
            edge AS (SELECT {(query.From is null ? "NULL" : EdgeTime("created_at >= @from", "MIN", "ASC"))} AS first_at,
                            {(query.To is null ? "NULL" : EdgeTime("created_at < @to", "MAX", "DESC"))} AS last_at),
            bounds AS (SELECT {(query.From is null ? "1" : EdgeNumber("edge.first_at", "MIN"))} AS low,
                              {(query.To is null ? "NULL" : EdgeNumber("edge.last_at", "MAX"))} AS high FROM edge),
            """;
        var (from, low) = windowed ? (", bounds b", "b.low") : ("", "1");
        var range = $"history_seq >= {low} + @offset AND history_seq < {low} + @offset + @limit" + (query.To is null ? "" : " AND history_seq <= b.high");
        // Each row of the page carries its line's type, points and balance. By number, the scan that
        // finds a line reads its row anyway (the numbers' index holds the wallet and the number), so it takes
        // them there, where joining the page back to ledger_entries by id read each row a second time
        // (a third of the buffers of a page of the heaviest customer's history). A walk reads the
        // lines' time index alone, which does not hold the points, so it joins the page's rows only.
        var pageSql = byNumber
            ? $"""
                SELECT created_at, event_id, entry_id, entry_type, points, balance_after FROM ledger_entries{from}
                WHERE org_id = @orgId AND wallet_id = {walletRef} AND {range}
                UNION ALL
                SELECT created_at, event_id, CAST(NULL AS bigint), CAST(NULL AS text), CAST(NULL AS bigint), CAST(NULL AS bigint) FROM events{from}
                WHERE org_id = @orgId AND owner_type = 'CUSTOMER' AND owner_id = {customerRef} AND source_program_id = @programId
                  AND {range}
                """
            : $"""
                SELECT w.created_at, w.event_id, w.entry_id, x.entry_type, x.points, x.balance_after FROM (
                SELECT created_at, event_id, entry_id FROM (
                    SELECT created_at, event_id, entry_id FROM ledger_entries
                    WHERE org_id = @orgId AND wallet_id = {walletRef} AND entry_type <> 'OPENING_BALANCE'{Window("ledger_entries")}{top}) le
                UNION ALL
                SELECT created_at, event_id, CAST(NULL AS bigint) FROM (
                    SELECT created_at, event_id FROM events
                    WHERE org_id = @orgId AND owner_type = 'CUSTOMER' AND owner_id = {customerRef}
                      AND event_name = '{VaultEventNames.VoucherRedemption}' AND source_program_id = @programId{Window("events")}{topEvents}) v
                ORDER BY created_at, event_id, entry_id
                {page}) w
                LEFT JOIN ledger_entries x ON x.org_id = @orgId AND x.entry_id = w.entry_id
                """;
        var sql = $"""
            WITH {acct}{(byNumber ? bounds : "")}page AS (
                {pageSql}
            )
            SELECT p.event_id AS EventId, e.event_name AS EventName, p.created_at AS CreatedAt, e.details AS Details, e.reason AS Reason,
                e.store_id AS StoreId, e.till_id AS TillId, b.bill_number AS BillNumber, p.entry_id AS EntryId, p.entry_type AS EntryType,
                COALESCE(p.points, 0) AS Points, p.balance_after AS BalanceAfter,
                CASE WHEN p.entry_type = 'CREDIT' THEN COALESCE(
                    (SELECT MIN(l.expires_at) FROM lots l WHERE l.org_id = @orgId AND l.credit_entry_id = p.entry_id),
                    (SELECT MIN(l.expires_at) FROM lot_movements m JOIN lots l ON l.org_id = m.org_id AND l.lot_id = m.lot_id
                     WHERE m.org_id = @orgId AND m.entry_id = p.entry_id AND m.points < 0)) END AS ExpiresAt
            FROM page p
            JOIN events e ON e.org_id = @orgId AND e.event_id = p.event_id
            LEFT JOIN bills b ON b.org_id = e.org_id AND b.bill_id = e.bill_id
            ORDER BY p.created_at, p.event_id, p.entry_id
            """;
        var args = new
        {
            walletId = walletId ?? -1, orgId, customerId = account?.CustomerId ?? -1, programId, accountNumber,
            from = query.From?.ToUnixTimeMilliseconds(), to = query.To?.ToUnixTimeMilliseconds(),
            limit = query.Limit ?? MaxLimit, offset = query.Offset ?? 0,
            top = (long)(query.Limit ?? MaxLimit) + (query.Offset ?? 0),
        };
        return c is null ? await db.PipelinedQueryAsync<MovementRow>(sql, args, ct) : await KeptReads.QueryAsync<MovementRow>(c, db.Dialect, sql, args, null, ct);
    }

    private static VaultMovement ToMovement(MovementRow r, LoyaltyProgram program)
    {
        var details = ParseDetails(r.Details);
        string? Detail(string name) => details.TryGetValue(name, out var v) ? v : null;
        var isCredit = r.EntryType == "CREDIT";
        var points = new Points(r.Points);
        var amount = isCredit ? points : -points;
        var balance = r.BalanceAfter is { } after ? new Points(after)
            : long.TryParse(Detail("balance"), System.Globalization.CultureInfo.InvariantCulture, out var recorded) ? new Points(recorded) : Points.Zero;

        var properties = new Dictionary<string, string>();
        foreach (var name in new[] { "voucherId", "serialId", "expiration", "void" })
            if (Detail(name) is { } value) properties[name] = value;

        var comment = Detail("comment") ?? r.Reason;
        return new VaultMovement(
            VaultFormat.Time(r.CreatedAt),
            amount.ToDecimal(),
            TransactionType(r.EventName, isCredit),
            isCredit && !program.Expiry.ExpiresWholeBalance ? VaultFormat.Time(r.ExpiresAt) : null,
            balance.ToDecimal(),
            comment,
            Detail("operatorId"),
            Detail("shopId") ?? r.StoreCode,
            Detail("posId") ?? r.TillCode,
            Detail("receiptNr") ?? r.BillNumber ?? Detail("transactionNumber") ?? Detail("externalReferenceNumber"),
            properties);
    }

    /// <summary>
    /// Ledger event to vault movement type. Anything else that credits is a Load and anything else
    /// that debits a Redeem, so events added later still appear with the right sign.
    /// </summary>
    public static string TransactionType(string eventName, bool isCredit) => eventName switch
    {
        EventNames.PointsTransfer => VaultTransactionTypes.Transfer,
        EventNames.PointsExpiry => VaultTransactionTypes.Expire,
        VaultEventNames.VoucherPurchase => VaultTransactionTypes.Convert,
        VaultEventNames.VoucherRedemption => VaultTransactionTypes.RedeemVoucher,
        _ => isCredit ? VaultTransactionTypes.Load : VaultTransactionTypes.Redeem,
    };

    private static Dictionary<string, string> ParseDetails(string? json)
    {
        var result = new Dictionary<string, string>();
        if (string.IsNullOrEmpty(json)) return result;
        try
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) return result;
            foreach (var p in doc.RootElement.EnumerateObject())
                if (p.Value.ValueKind == JsonValueKind.String) result[p.Name] = p.Value.GetString()!;
        }
        catch (JsonException)
        {
            // Details written by another writer in another shape: the movement is still shown, without them.
        }
        return result;
    }

    /// <summary>Per program: the balance, the vouchers held (active only unless asked), and the vouchers the balance can buy.</summary>
    public static async Task<VaultAccount> AccountAsync(DbConnection c, SqlDialect dialect, long orgId, string accountNumber, bool includeInactive, long nowMs,
        CancellationToken ct, IProgramCache? catalog = null)
    {
        var account = await VaultTransactions.RequireAccountAsync(c, dialect, orgId, accountNumber, null, ct);
        var programs = await ProgramCatalog.ListAsync(c, dialect, orgId, null, catalog, ct);
        var balances = (await KeptReads.QueryAsync<(long ProgramId, long Balance)>(c, dialect, """
            SELECT program_id, balance FROM wallets
            WHERE org_id = @orgId AND owner_type = 'CUSTOMER' AND owner_id = @customerId AND currency_id = 0 AND category = 'REGULAR'
            """,
            new { orgId, customerId = account.CustomerId }, null, ct)).ToDictionary(b => b.ProgramId, b => new Points(b.Balance));
        var vouchers = (await KeptReads.QueryAsync<VaultVoucherRow>(c, dialect, VaultVoucherRow.Select + " AND v.customer_id = @customerId ORDER BY v.created_at, v.serial_id",
            new { org = orgId, customerId = account.CustomerId }, null, ct)).ToLookup(v => v.ProgramId);
        var accountExpiresAt = await KeptReads.ScalarAsync<long?>(c, dialect,
            "SELECT expires_at FROM vault_account_expiry WHERE org_id = @orgId AND account_number = @accountNumber", new { orgId, accountNumber }, null, ct);

        var result = new List<VaultAccountProgram>();
        foreach (var program in programs)
        {
            var balance = balances.TryGetValue(program.ProgramId, out var b) ? b : Points.Zero;
            var held = vouchers[program.ProgramId]
                .Where(v => includeInactive || v.Status(nowMs) is "ACTIVE" or "NOT_YET_VALID")
                .Select(v => v.View(nowMs)).ToList();
            var purchasable = (await VoucherCatalog.ListDefinitionsAsync(c, dialect, orgId, program.ProgramId, null, ct))
                .Where(d => d.Price <= balance)
                .Select(d => new VaultPurchasableVoucher(d.VoucherId, d.Name, d.Price.ToDecimal(), d.ValidDays, d.Uses)).ToList();
            result.Add(new VaultAccountProgram(program.ProgramId, program.Name, balance.ToDecimal(), program.Expiry.Kind, held, purchasable));
        }
        return new VaultAccount(accountNumber, account.CustomerId, account.Status, VaultFormat.Time(accountExpiresAt), result);
    }
}
