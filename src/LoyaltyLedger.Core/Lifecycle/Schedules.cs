using System.Data.Common;
using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Lifecycle;

/// <summary>
/// An upcoming expiry of main points: how many, when, of which program and currency
/// (<c>pointsType</c>: the currency's name, or POINTS), under which policy kind.
/// </summary>
public sealed record ExpiryScheduleItem(Points Points, DateTimeOffset ExpiryDate, long ProgramId, string PointsType, string ExpiryType, string? Currency, string Category);

/// <summary>Held points of one bill: when PROMISED points convert (null for TRIGGER_BASED: on release).</summary>
public sealed record HeldScheduleItem(Points Points, DateTimeOffset? ConvertsAt, long ProgramId, string? Currency, string Category, long? BillId, long BillEventId);

/// <summary>A wallet's balance at a past instant, from the balance_after of its last line by then.</summary>
public sealed record BalanceAsOf(long ProgramId, string? Currency, string Category, Points Balance, long? LastEntryId);

/// <summary>The lifecycle reads: expiry schedule, held-points schedule, balance as of a date.</summary>
public static class Schedules
{
    public const string PlainPointsType = "POINTS";

    /// <summary>
    /// Upcoming expiries of an owner's main points, soonest first, per program, currency and date.
    /// A WHOLE_BALANCE wallet shows its whole balance at last activity + period. With
    /// <paramref name="earliestOnly"/>, only the soonest expiry per program and currency. With
    /// <paramref name="until"/>, only what expires by then (the support console's horizon: a long
    /// history's lots expiring years ahead are not read at all, since the open lots are indexed by date).
    /// </summary>
    public static async Task<IReadOnlyList<ExpiryScheduleItem>> ExpiryScheduleAsync(DbConnection c, SqlDialect dialect, long orgId, OwnerType ownerType, long ownerId,
        long? programId, bool earliestOnly, CancellationToken ct, DateTimeOffset? until = null)
    {
        var untilMs = until?.ToUnixTimeMilliseconds();
        var programs = (await ProgramCatalog.ListAsync(c, dialect, orgId, null, ct)).ToDictionary(p => p.ProgramId);
        var items = new List<ExpiryScheduleItem>();
        // A condition only when there is a horizon, so the open-lots index range is bounded by it.
        var horizon = untilMs is null ? "" : " AND l.expires_at <= @untilMs";
        var dated = await KeptReads.QueryAsync<(long ProgramId, long CurrencyId, long ExpiresAt, long Points)>(c, dialect, $"""
            SELECT w.program_id, w.currency_id, l.expires_at, SUM(l.remaining)
            FROM lots l JOIN wallets w ON w.org_id = l.org_id AND w.wallet_id = l.wallet_id
            WHERE w.org_id = @orgId AND w.owner_type = @ownerType AND w.owner_id = @ownerId AND w.category = 'REGULAR'
                AND l.remaining > 0 AND l.is_debt = 0 AND l.expires_at IS NOT NULL AND (@programId IS NULL OR w.program_id = @programId)
                {horizon}
            GROUP BY w.program_id, w.currency_id, l.expires_at
            """,
            new { orgId, ownerType = ownerType.ToWire(), ownerId, programId, untilMs }, null, ct);
        foreach (var d in dated)
        {
            if (!programs.TryGetValue(d.ProgramId, out var program)) continue;
            items.Add(Item(program, d.CurrencyId, d.Points, d.ExpiresAt));
        }

        var wallets = await KeptReads.QueryAsync<(long ProgramId, long CurrencyId, long Balance, long? LastActivityAt)>(c, dialect, """
            SELECT program_id, currency_id, balance, last_activity_at FROM wallets
            WHERE org_id = @orgId AND owner_type = @ownerType AND owner_id = @ownerId AND category = 'REGULAR' AND balance > 0
                AND (@programId IS NULL OR program_id = @programId)
            """,
            new { orgId, ownerType = ownerType.ToWire(), ownerId, programId }, null, ct);
        foreach (var w in wallets)
        {
            if (!programs.TryGetValue(w.ProgramId, out var program)) continue;
            var at = LotExpiry.PolicyFor(program, w.CurrencyId)
                .WholeBalanceExpiry(w.LastActivityAt is { } ms ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : null);
            if (at is { } date && (until is null || date <= until)) items.Add(Item(program, w.CurrencyId, w.Balance, date.ToUnixTimeMilliseconds()));
        }

        var ordered = items.OrderBy(i => i.ExpiryDate).ThenBy(i => i.ProgramId).ThenBy(i => i.PointsType, StringComparer.Ordinal);
        return earliestOnly
            ? ordered.GroupBy(i => (i.ProgramId, i.PointsType)).Select(g => g.First()).OrderBy(i => i.ExpiryDate).ToList()
            : ordered.ToList();
    }

    private static ExpiryScheduleItem Item(LoyaltyProgram program, long currencyId, long points, long expiresAt)
    {
        var currency = LotExpiry.CurrencyName(program, currencyId);
        return new ExpiryScheduleItem(new Points(points), DateTimeOffset.FromUnixTimeMilliseconds(expiresAt), program.ProgramId,
            currency ?? PlainPointsType, LotExpiry.PolicyFor(program, currencyId).Kind, currency, PointCategory.Regular.ToWire());
    }

    /// <summary>An owner's held points per bill: PROMISED (with their conversion date) and TRIGGER_BASED.</summary>
    public static async Task<IReadOnlyList<HeldScheduleItem>> HeldScheduleAsync(DbConnection c, SqlDialect dialect, long orgId, OwnerType ownerType, long ownerId,
        CancellationToken ct)
    {
        var programs = (await ProgramCatalog.ListAsync(c, dialect, orgId, null, ct)).ToDictionary(p => p.ProgramId);
        var rows = await KeptReads.QueryAsync<(long ProgramId, long CurrencyId, string Category, long Remaining, long? ExpiresAt, long? BillId, long EventId)>(c, dialect, """
            SELECT w.program_id, w.currency_id, w.category, l.remaining, l.expires_at, e.bill_id, e.event_id
            FROM lots l
            JOIN wallets w ON w.org_id = l.org_id AND w.wallet_id = l.wallet_id
            JOIN ledger_entries le ON le.org_id = l.org_id AND le.entry_id = l.credit_entry_id
            JOIN events e ON e.org_id = le.org_id AND e.event_id = le.event_id
            WHERE w.org_id = @orgId AND w.owner_type = @ownerType AND w.owner_id = @ownerId AND w.category <> 'REGULAR'
                AND l.remaining > 0 AND l.is_debt = 0
            ORDER BY CASE WHEN l.expires_at IS NULL THEN 1 ELSE 0 END, l.expires_at, l.lot_id
            """,
            new { orgId, ownerType = ownerType.ToWire(), ownerId }, null, ct);
        return rows.Select(r => new HeldScheduleItem(new Points(r.Remaining),
            r.ExpiresAt is { } at ? DateTimeOffset.FromUnixTimeMilliseconds(at) : null, r.ProgramId,
            programs.TryGetValue(r.ProgramId, out var p) ? LotExpiry.CurrencyName(p, r.CurrencyId) : null,
            r.Category, r.BillId, r.EventId)).ToList();
    }

    /// <summary>
    /// Every wallet of an owner as it stood at <paramref name="asOf"/>: the balance after the last line
    /// applied among those stamped by then (<see cref="Balances.EntryAsOfSql"/>); wallets with no line
    /// by then are left out.
    /// </summary>
    public static async Task<IReadOnlyList<BalanceAsOf>> BalancesAsOfAsync(DbConnection c, SqlDialect dialect, long orgId, OwnerType ownerType, long ownerId,
        DateTimeOffset asOf, CancellationToken ct)
    {
        var programs = (await ProgramCatalog.ListAsync(c, dialect, orgId, null, ct)).ToDictionary(p => p.ProgramId);
        var rows = await KeptReads.QueryAsync<(long ProgramId, long CurrencyId, string Category, long EntryId, long BalanceAfter)>(c, dialect, $"""
            SELECT w.program_id, w.currency_id, w.category, le.entry_id, le.balance_after
            FROM wallets w
            JOIN ledger_entries le ON le.org_id = w.org_id AND le.entry_id = {Balances.EntryAsOfSql("w", "@asOf")}
            WHERE w.org_id = @orgId AND w.owner_type = @ownerType AND w.owner_id = @ownerId
            ORDER BY w.program_id, w.currency_id, w.category
            """,
            new { orgId, ownerType = ownerType.ToWire(), ownerId, asOf = asOf.ToUnixTimeMilliseconds() }, null, ct);
        return rows.Select(r => new BalanceAsOf(r.ProgramId,
            programs.TryGetValue(r.ProgramId, out var p) ? LotExpiry.CurrencyName(p, r.CurrencyId) : null,
            r.Category, new Points(r.BalanceAfter), r.EntryId)).ToList();
    }
}
