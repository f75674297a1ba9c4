using System.Globalization;
using System.Text.Json;
using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Outbox;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;
using OutboxRows = LoyaltyLedger.Outbox.Outbox;

namespace LoyaltyLedger.Lifecycle;

/// <summary>
/// <c>points.expiring</c>: a wallet's main points that expire within its program's notice window
/// (<see cref="LoyaltyProgram.ExpiryNoticeDays"/>, default 14 days), announced by the lifecycle run
/// once per lot and window, not on every posting.
/// </summary>
/// <remarks>
/// <para>Each notice is recorded in <c>expiry_notices</c> by (wallet, lot, expiry instant), in the
/// same transaction as its outbox row, so a lot is announced once for each date it is due to expire
/// on: a ROLLING extension gives it a new date and, once that comes within the window, a new notice.
/// A WHOLE_BALANCE wallet's lots carry no date; its whole balance is announced (as lot 0) for each
/// date its last activity makes it due.</para>
/// <para>The notices are inserted with ON CONFLICT DO NOTHING and only the rows actually inserted
/// are announced, so two runs at once (two servers) never announce a lot twice.</para>
/// </remarks>
public static class ExpiryNotices
{
    /// <summary>Lots considered per transaction: a large organization's first run is many short transactions.</summary>
    private const int LotsPerTransaction = 2000;

    /// <summary>The lot id a notice of a WHOLE_BALANCE wallet's whole balance is recorded under.</summary>
    private const long WholeBalanceLot = 0;

    private sealed record Due(long WalletId, string OwnerType, long OwnerId, long CurrencyId, long Balance, long LotId, long Remaining, long ExpiresAt);

    /// <summary>Announces what comes due within each program's window from <paramref name="now"/>; returns how many points.expiring it sent.</summary>
    public static async Task<int> AnnounceAsync(LedgerDatabase db, long orgId, DateTimeOffset now, CancellationToken ct)
    {
        var sent = 0;
        foreach (var program in await db.ReadAsync(c => ProgramCatalog.ListAsync(c, db.Dialect, orgId, null, ct), ct))
        {
            if (program.ExpiryNoticeDays <= 0) continue;
            var until = now.AddDays(program.ExpiryNoticeDays);
            sent += await AnnounceDatedLotsAsync(db, orgId, program, now, until, ct);
            sent += await AnnounceWholeBalancesAsync(db, orgId, program, now, until, ct);
        }
        return sent;
    }

    private static async Task<int> AnnounceDatedLotsAsync(LedgerDatabase db, long orgId, LoyaltyProgram program, DateTimeOffset now,
        DateTimeOffset until, CancellationToken ct)
    {
        var sent = 0;
        while (true)
        {
            var (notices, more) = await db.WriteAsync(async (c, tx) =>
            {
                var due = (await c.QueryAsync<Due>(new CommandDefinition(
                    """
                    SELECT w.wallet_id AS WalletId, w.owner_type AS OwnerType, w.owner_id AS OwnerId, w.currency_id AS CurrencyId,
                        w.balance AS Balance, l.lot_id AS LotId, l.remaining AS Remaining, l.expires_at AS ExpiresAt
                    FROM lots l JOIN wallets w ON w.org_id = l.org_id AND w.wallet_id = l.wallet_id
                    WHERE w.org_id = @org AND w.program_id = @programId AND w.category = 'REGULAR'
                        AND l.remaining > 0 AND l.is_debt = 0 AND l.expires_at > @now AND l.expires_at <= @until
                        AND NOT EXISTS (SELECT 1 FROM expiry_notices n
                            WHERE n.org_id = l.org_id AND n.wallet_id = l.wallet_id AND n.lot_id = l.lot_id AND n.expires_at = l.expires_at)
                    ORDER BY w.wallet_id, l.expires_at, l.lot_id
                    LIMIT @limit
                    """,
                    new
                    {
                        org = orgId, programId = program.ProgramId, now = now.ToUnixTimeMilliseconds(), until = until.ToUnixTimeMilliseconds(),
                        limit = LotsPerTransaction,
                    }, tx, cancellationToken: ct))).ToList();
                var full = due.Count == LotsPerTransaction;
                // A full page may end part way through a wallet: leave that wallet to the next page,
                // unless it is the only one (then it is announced in parts).
                if (full && due.Select(d => d.WalletId).Distinct().Count() > 1)
                    due.RemoveAll(d => d.WalletId == due[^1].WalletId);
                return (await NoticeAsync(c, tx, db.Dialect, orgId, program, now, due, ct), full);
            }, ct);
            sent += notices;
            if (!more) return sent;
        }
    }

    private static async Task<int> AnnounceWholeBalancesAsync(LedgerDatabase db, long orgId, LoyaltyProgram program, DateTimeOffset now,
        DateTimeOffset until, CancellationToken ct)
    {
        var sent = 0;
        var policies = new List<(long CurrencyId, ExpiryPolicy Policy)> { (WalletKey.PlainPoints, program.Expiry) };
        policies.AddRange(program.Currencies.Select(c => (c.CurrencyId, c.Expiry)));
        foreach (var (currencyId, policy) in policies.Where(p => p.Policy.ExpiresWholeBalance))
        {
            // SQL bounds that can only let too many through (a month is 28 to 31 days, and the end
            // of the month adds up to 31 more); the exact date is checked per wallet.
            var latest = (until - policy.MinimumPeriod).ToUnixTimeMilliseconds();
            var earliest = (now - TimeSpan.FromDays(((policy.Months ?? 0) * 31) + (policy.Days ?? 0) + 31)).ToUnixTimeMilliseconds();
            sent += await db.WriteAsync(async (c, tx) =>
            {
                var wallets = await c.QueryAsync<(long WalletId, string OwnerType, long OwnerId, long Balance, long LastActivityAt)>(new CommandDefinition(
                    """
                    SELECT wallet_id, owner_type, owner_id, balance, last_activity_at FROM wallets
                    WHERE org_id = @org AND program_id = @programId AND currency_id = @currencyId AND category = 'REGULAR'
                        AND balance > 0 AND last_activity_at > @earliest AND last_activity_at <= @latest
                    """,
                    new { org = orgId, programId = program.ProgramId, currencyId, earliest, latest }, tx, cancellationToken: ct));
                var due = new List<Due>();
                foreach (var w in wallets)
                {
                    if (policy.WholeBalanceExpiry(DateTimeOffset.FromUnixTimeMilliseconds(w.LastActivityAt)) is not { } at || at <= now || at > until) continue;
                    due.Add(new Due(w.WalletId, w.OwnerType, w.OwnerId, currencyId, w.Balance, WholeBalanceLot, w.Balance, at.ToUnixTimeMilliseconds()));
                }
                return await NoticeAsync(c, tx, db.Dialect, orgId, program, now, due, ct);
            }, ct);
        }
        return sent;
    }

    /// <summary>Records the notices of <paramref name="due"/> and announces, per wallet, the lots whose notice this transaction recorded.</summary>
    private static async Task<int> NoticeAsync(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction tx, SqlDialect dialect,
        long orgId, LoyaltyProgram program, DateTimeOffset now, IReadOnlyList<Due> due, CancellationToken ct)
    {
        if (due.Count == 0) return 0;
        var values = new List<string>();
        var args = new DynamicParameters(new { org = orgId, now = now.ToUnixTimeMilliseconds() });
        for (var i = 0; i < due.Count; i++)
        {
            var n = i.ToString(CultureInfo.InvariantCulture);
            values.Add($"(@org, @w{n}, @l{n}, @e{n}, @now)");
            args.Add("w" + n, due[i].WalletId);
            args.Add("l" + n, due[i].LotId);
            args.Add("e" + n, due[i].ExpiresAt);
        }
        var recorded = (await c.QueryAsync<(long WalletId, long LotId, long ExpiresAt)>(
            new CommandDefinition($"""
            INSERT INTO expiry_notices (org_id, wallet_id, lot_id, expires_at, noticed_at) VALUES {string.Join(", ", values)}
            ON CONFLICT DO NOTHING
            RETURNING wallet_id, lot_id, expires_at
            """, args, tx, cancellationToken: ct))).ToHashSet();

        var batch = new StatementBatch(c, tx, dialect, ct);
        var sent = 0;
        foreach (var wallet in due.Where(d => recorded.Contains((d.WalletId, d.LotId, d.ExpiresAt))).GroupBy(d => d.WalletId))
        {
            var lots = wallet.ToList();
            OutboxRows.Add(batch, orgId, OutboxEventTypes.PointsExpiring, now.ToUnixTimeMilliseconds(), w => Write(w, program, lots));
            sent++;
        }
        await batch.RunAsync(ct);
        return sent;
    }

    private static void Write(Utf8JsonWriter w, LoyaltyProgram program, IReadOnlyList<Due> lots)
    {
        var first = lots[0];
        var policy = LotExpiry.PolicyFor(program, first.CurrencyId);
        w.WriteStartObject();
        w.WriteString("ownerType", first.OwnerType);
        w.WriteNumber("ownerId", first.OwnerId);
        if (first.OwnerType == OwnerType.Customer.ToWire()) w.WriteNumber("customerId", first.OwnerId);
        w.WriteNumber("programId", program.ProgramId);
        if (LotExpiry.CurrencyName(program, first.CurrencyId) is { } currency) w.WriteString("currency", currency);
        w.WriteString("category", PointCategory.Regular.ToWire());
        w.WriteString("points", new Points(lots.Sum(l => l.Remaining)).ToString());
        w.WriteString("expiresAt", IsoTime.Format(lots.Min(l => l.ExpiresAt)));
        w.WriteString("balance", new Points(first.Balance).ToString());
        w.WriteString("expiryType", policy.Kind);
        w.WriteNumber("noticeDays", program.ExpiryNoticeDays);
        w.WriteStartArray("expiries");
        foreach (var date in lots.GroupBy(l => l.ExpiresAt).OrderBy(g => g.Key))
        {
            w.WriteStartObject();
            w.WriteString("expiresAt", IsoTime.Format(date.Key));
            w.WriteString("points", new Points(date.Sum(l => l.Remaining)).ToString());
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }
}
