using System.Data.Common;
using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Lifecycle;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Vault;

namespace LoyaltyLedger.Support;

/// <summary>What a day's ledger lines did, as the program dashboard counts them.</summary>
public enum Movement
{
    /// <summary>Points earned or given: bills (also while held), events, allocations, vault loads, goodwill credits.</summary>
    Issued,
    /// <summary>Points spent: redemptions and vault purchases.</summary>
    Redeemed,
    /// <summary>Points that reached their expiry date.</summary>
    Expired,
    /// <summary>Points taken back by a returned bill.</summary>
    Returned,
    /// <summary>Everything else that changes the outstanding balance: redemption reversals, goodwill debits, cancelled held points.</summary>
    Other,
    /// <summary>Moves within the organization that change no total: transfers, held points converting to main.</summary>
    Internal,
}

/// <summary>One day's total of one kind of line, per program and currency (0: the program's points) and category.</summary>
public sealed record DailyMovement(long Day, long ProgramId, long CurrencyId, string Category, string EventName, string EntryType, Points Points, long Lines)
{
    public Movement Kind => ProgramTotals.Classify(EventName, EntryType);

    /// <summary>The line's effect on what the organization owes: credits add, debits take away.</summary>
    public Points Signed => EntryType == "DEBIT" ? -Points : Points;
}

/// <summary>The outstanding balance of one program and currency and category: what the organization owes its members.</summary>
public sealed record OutstandingBalance(long ProgramId, string ProgramName, long CurrencyId, string? Currency, string Category, Points Balance, Points Negative, long Wallets);

/// <summary>
/// The program dashboard's figures: points issued, redeemed, expired and returned per day, and the
/// outstanding balance per program, currency and category.
/// </summary>
/// <remarks>
/// A day's totals never change once the day is over: every line is stamped with the time it is
/// posted, and the ledger is append-only. So each past day is added up once, from the
/// organization's events of that day (<c>ix_events_time</c>) and their lines, and kept in
/// <c>daily_movements</c>, with the day marked done in <c>daily_movement_days</c>; the dashboard then
/// reads a few hundred rows instead of a quarter of the organization's history. Days that may still
/// change (today, and yesterday until <see cref="SettleMargin"/> after midnight, for postings in
/// flight and server clocks a little apart) are added up live on every request. Filling is
/// idempotent (insert or nothing), so two servers doing it at once agree.
/// </remarks>
public static class ProgramTotals
{
    public static readonly TimeSpan SettleMargin = TimeSpan.FromMinutes(10);

    public static Movement Classify(string eventName, string entryType)
    {
        var credit = entryType != "DEBIT";
        return eventName switch
        {
            EventNames.PointsTransfer or EventNames.DelayedAccrual => Movement.Internal,
            EventNames.PointsExpiry => credit ? Movement.Other : Movement.Expired,
            EventNames.ReturnBill => credit ? Movement.Other : Movement.Returned,
            EventNames.PointsRedemption or VaultEventNames.VoucherPurchase => credit ? Movement.Other : Movement.Redeemed,
            LifecycleEventNames.RedemptionReversal or LifecycleEventNames.TriggeredPointsCancellation => Movement.Other,
            EventNames.GoodwillAdjustment => credit ? Movement.Issued : Movement.Other,
            // Bills, named events, allocations, vault loads and whatever credits next are issued; an
            // unknown debit still lowers the outstanding balance.
            _ => credit ? Movement.Issued : Movement.Other,
        };
    }

    /// <summary>
    /// The organization's movements on each UTC day from <paramref name="fromDay"/> to
    /// <paramref name="toDay"/> (inclusive; days since 1970-01-01), adding up and keeping the past days
    /// not kept yet.
    /// </summary>
    public static async Task<IReadOnlyList<DailyMovement>> DailyAsync(LedgerDatabase db, long orgId, long fromDay, long toDay, DateTimeOffset now,
        CancellationToken ct)
    {
        // Days that ended before this are settled: nothing posted from now on can land in them.
        var lastSettled = (now - SettleMargin).ToUnixTimeMilliseconds() / BalanceHistory.DayMs - 1;
        var settledTo = Math.Min(toDay, lastSettled);
        if (settledTo >= fromDay)
        {
            var done = (await db.ReadAsync(c => c.QueryAsync<long>(
                new CommandDefinition("SELECT day FROM daily_movement_days WHERE org_id = @orgId AND day >= @fromDay AND day <= @settledTo",
                new { orgId, fromDay, settledTo }, cancellationToken: ct)), ct)).ToHashSet();
            var missing = Enumerable.Range(0, (int)(settledTo - fromDay + 1)).Select(i => fromDay + i).Where(d => !done.Contains(d)).ToList();
            if (missing.Count > 0) await SettleAsync(db, orgId, missing[0], missing[^1], ct);
        }

        return await db.ReadAsync(async c =>
        {
            var kept = (await c.QueryAsync<DailyMovementRow>(
                new CommandDefinition("""
                SELECT day, program_id, currency_id, category, event_name, entry_type, points, lines FROM daily_movements
                WHERE org_id = @orgId AND day >= @fromDay AND day <= @settledTo
                """, new { orgId, fromDay, settledTo }, cancellationToken: ct))).Select(r => r.ToMovement()).ToList();
            var liveFrom = Math.Max(fromDay, settledTo + 1);
            if (liveFrom <= toDay)
                kept.AddRange(await AddUpAsync(c, orgId, liveFrom * BalanceHistory.DayMs, (toDay + 1) * BalanceHistory.DayMs, null, ct));
            return kept;
        }, ct);
    }

    /// <summary>Adds up the days from <paramref name="fromDay"/> to <paramref name="toDay"/> and keeps them, in one transaction.</summary>
    private static Task SettleAsync(LedgerDatabase db, long orgId, long fromDay, long toDay, CancellationToken ct) =>
        db.WriteAsync(async (c, tx) =>
        {
            var rows = await AddUpAsync(c, orgId, fromDay * BalanceHistory.DayMs, (toDay + 1) * BalanceHistory.DayMs, tx, ct);
            // One round trip on PostgreSQL for all of them (a quarter's totals are a few thousand rows).
            var batch = new StatementBatch(c, tx, db.Dialect, ct);
            foreach (var r in rows)
            {
                batch.Execute(
                    """
                    INSERT INTO daily_movements (org_id, day, program_id, currency_id, category, event_name, entry_type, points, lines)
                    VALUES (@orgId, @Day, @ProgramId, @CurrencyId, @Category, @EventName, @EntryType, @points, @Lines)
                    ON CONFLICT DO NOTHING
                    """, new { orgId, r.Day, r.ProgramId, r.CurrencyId, r.Category, r.EventName, r.EntryType, points = r.Points.Thousandths, r.Lines });
            }
            for (var day = fromDay; day <= toDay; day++)
                batch.Execute("INSERT INTO daily_movement_days (org_id, day) VALUES (@orgId, @day) ON CONFLICT DO NOTHING", new { orgId, day });
            await batch.RunAsync(ct);
            return 0;
        }, ct);

    private sealed class DailyMovementRow
    {
        public long Day { get; set; }
        public long ProgramId { get; set; }
        public long CurrencyId { get; set; }
        public string Category { get; set; } = "";
        public string EventName { get; set; } = "";
        public string EntryType { get; set; } = "";
        public long Points { get; set; }
        public long Lines { get; set; }

        public DailyMovement ToMovement() => new(Day, ProgramId, CurrencyId, Category, EventName, EntryType, new Points(Points), Lines);
    }

    /// <summary>The organization's lines posted in [from, to), per day and kind, through its events in time order.</summary>
    private static async Task<IReadOnlyList<DailyMovement>> AddUpAsync(DbConnection c, long orgId, long fromMs, long toMs, DbTransaction? tx, CancellationToken ct) =>
        (await c.QueryAsync<DailyMovementRow>(
            new CommandDefinition("""
            SELECT e.created_at / @dayMs AS day, le.program_id, le.currency_id, le.category, e.event_name, le.entry_type,
                SUM(le.points) AS points, COUNT(*) AS lines
            FROM events e JOIN ledger_entries le ON le.org_id = e.org_id AND le.event_id = e.event_id
            WHERE e.org_id = @orgId AND e.created_at >= @fromMs AND e.created_at < @toMs AND le.entry_type <> 'OPENING_BALANCE'
            GROUP BY e.created_at / @dayMs, le.program_id, le.currency_id, le.category, e.event_name, le.entry_type
            """, new { orgId, fromMs, toMs, dayMs = BalanceHistory.DayMs }, tx, cancellationToken: ct))).Select(r => r.ToMovement()).ToList();

    /// <summary>
    /// What the organization owes: the sum of its wallets' balances per program, currency and
    /// category, with the negative balances (debts) apart. One aggregate over the organization's
    /// wallets (one row per owner, program, currency and category), never over the ledger.
    /// </summary>
    public static Task<IReadOnlyList<OutstandingBalance>> OutstandingAsync(LedgerDatabase db, long orgId, CancellationToken ct) =>
        db.ReadAsync<IReadOnlyList<OutstandingBalance>>(async c =>
        {
            var programs = (await ProgramCatalog.ListAsync(c, db.Dialect, orgId, null, db.Catalog, ct)).ToDictionary(p => p.ProgramId);
            var rows = await c.QueryAsync<(long ProgramId, long CurrencyId, string Category, long Balance, long Negative, long Wallets)>(
                new CommandDefinition("""
                SELECT program_id, currency_id, category, SUM(balance), SUM(CASE WHEN balance < 0 THEN balance ELSE 0 END), COUNT(*)
                FROM wallets WHERE org_id = @orgId
                GROUP BY program_id, currency_id, category
                ORDER BY program_id, currency_id, category
                """, new { orgId }, cancellationToken: ct));
            return rows.Select(r => new OutstandingBalance(r.ProgramId, programs.TryGetValue(r.ProgramId, out var p) ? p.Name : "",
                r.CurrencyId, p is null ? null : LotExpiry.CurrencyName(p, r.CurrencyId), r.Category, new Points(r.Balance), new Points(r.Negative), r.Wallets)).ToList();
        }, ct);
}
