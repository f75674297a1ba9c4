using System.Data.Common;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Lifecycle;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Support;

/// <summary>Which of an owner's events the console's ledger shows. Null members do not filter.</summary>
public sealed record HistoryFilter
{
    public long? ProgramId { get; init; }
    /// <summary>A currency id, or <see cref="WalletKey.PlainPoints"/> (0) for the program's points.</summary>
    public long? CurrencyId { get; init; }
    public EntryType? EntryType { get; init; }
    /// <summary>Inclusive start, Unix ms.</summary>
    public long? FromMs { get; init; }
    /// <summary>Exclusive end, Unix ms.</summary>
    public long? ToMs { get; init; }

    public bool FiltersLines => ProgramId is not null || CurrencyId is not null || EntryType is not null;
}

/// <summary>A position in an owner's events, in (created_at, event_id) order: a page starts after or before it.</summary>
public readonly record struct HistoryCursor(long CreatedAt, long EventId)
{
    public override string ToString() =>
        CreatedAt.ToString(CultureInfo.InvariantCulture) + "-" + EventId.ToString(CultureInfo.InvariantCulture);

    public static bool TryParse(string? text, out HistoryCursor cursor)
    {
        cursor = default;
        var parts = text?.Split('-');
        if (parts is not { Length: 2 }
            || !long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var at)
            || !long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var id))
            return false;
        cursor = new HistoryCursor(at, id);
        return true;
    }
}

/// <summary>A lot a ledger line moved: taken by a debit (positive), put back by a reversal (negative).</summary>
public sealed record LotMovement(long LotId, Points Points, long? ExpiresAt, long EarnedAt, bool IsDebt, long? EarnedByEventId);

/// <summary>A lot a credit line created, with what is left of it.</summary>
public sealed record LotCreated(long LotId, Points Original, Points Remaining, long? ExpiresAt);

/// <summary>A ledger line as the console shows it; <see cref="Tier"/> is the tier its owner held in the program when it was posted (null: the program had no tiers).</summary>
public sealed record HistoryLine(
    long EntryId,
    long ProgramId,
    string ProgramName,
    long CurrencyId,
    string? Currency,
    string Category,
    string EntryType,
    Points Points,
    Points BalanceAfter,
    string? Tier,
    IReadOnlyList<LotMovement> Moved,
    IReadOnlyList<LotCreated> Created);

public sealed record BillView(long BillId, string BillNumber, string StoreCode, decimal Amount, decimal Returned, long BillDate);

public sealed record HistoryEvent(
    long EventId,
    string EventName,
    string? DisplayName,
    long CreatedAt,
    string OwnerType,
    long OwnerId,
    long CustomerId,
    string? PostedBy,
    string? Reason,
    IReadOnlyDictionary<string, string> Details,
    long? RelatedEventId,
    string? StoreCode,
    string? TillCode,
    BillView? Bill,
    IReadOnlyList<HistoryLine> Lines)
{
    /// <summary>Credits (and opening balances) minus debits, over the event's lines.</summary>
    public Points Net => Lines.Aggregate(Points.Zero, (sum, l) => l.EntryType == "DEBIT" ? sum - l.Points : sum + l.Points);
}

/// <summary>
/// A page of the console's ledger. <see cref="Older"/> and <see cref="Newer"/> continue it; with a
/// line filter, a page may stop early (<see cref="StoppedEarly"/>, its cursor then at the last event
/// it looked at), so that a filter that matches little never walks a long history in one request.
/// </summary>
public sealed record HistoryPage(IReadOnlyList<HistoryEvent> Events, HistoryCursor? Older, HistoryCursor? Newer, bool StoppedEarly);

/// <summary>An event related to another, and how.</summary>
public sealed record RelatedEvent(long EventId, string EventName, long CreatedAt, string OwnerType, long OwnerId, string Relation);

public sealed record EventDetail(HistoryEvent Event, IReadOnlyList<RelatedEvent> Related, Points? ReversedSoFar);

/// <summary>
/// The support console's ledger: an owner's events newest first with every line, the balance after
/// it and the lots it took or created, and the links between related events.
/// </summary>
/// <remarks>
/// Pages are keyset pages on <c>ix_events_owner</c> (owner, created_at, event_id), read backwards
/// from a cursor, not offsets with a total: the page after the millionth event costs what the first
/// does, and nothing counts the history (the owner's total comes from <c>owner_event_counts</c>).
/// The points-ledger read (<see cref="PointsLedger.LedgerReader"/>) pages by offset with a total,
/// because its spec does; the console does not need either. A filter on lines probes each event's
/// lines through <c>ix_ledger_entries_event_filter</c> (a scalar subquery, as the points-ledger read
/// does, for the same reason) over at most <see cref="ScanLimit"/> events per page.
/// </remarks>
public static class LedgerHistory
{
    public const int MaxPageSize = 100;

    /// <summary>Events a filtered page looks at before it stops and offers to go on.</summary>
    public const int ScanLimit = 5_000;

    /// <summary>
    /// A page of the owner's events: the newest (no cursor), those older than <paramref name="before"/>,
    /// or those newer than <paramref name="after"/>; newest first either way.
    /// </summary>
    public static Task<HistoryPage> PageAsync(LedgerDatabase db, long orgId, OwnerType ownerType, long ownerId, HistoryFilter filter,
        HistoryCursor? before, HistoryCursor? after, int pageSize, CancellationToken ct, int scanLimit = ScanLimit) =>
        db.ReadAsync(async c =>
        {
            pageSize = Math.Clamp(pageSize, 1, MaxPageSize);
            var args = new DynamicParameters();
            args.Add("org", orgId);
            args.Add("ownerType", ownerType.ToWire());
            args.Add("ownerId", ownerId);
            var where = new StringBuilder("e.owner_type = @ownerType AND e.owner_id = @ownerId");
            if (filter.FromMs is { } from) { where.Append(" AND e.created_at >= @fromMs"); args.Add("fromMs", from); }
            if (filter.ToMs is { } to) { where.Append(" AND e.created_at < @toMs"); args.Add("toMs", to); }
            var newerFirst = after is null;
            if (before is { } b)
            {
                // The redundant bound on created_at lets both planners start the index walk at the cursor.
                where.Append(" AND e.created_at <= @cAt AND (e.created_at < @cAt OR e.event_id < @cId)");
                args.Add("cAt", b.CreatedAt);
                args.Add("cId", b.EventId);
            }
            else if (after is { } a)
            {
                where.Append(" AND e.created_at >= @cAt AND (e.created_at > @cAt OR e.event_id > @cId)");
                args.Add("cAt", a.CreatedAt);
                args.Add("cId", a.EventId);
            }
            var direction = newerFirst ? "DESC" : "ASC";

            var probe = new StringBuilder();
            if (filter.ProgramId is { } programId) { probe.Append(" AND le.program_id = @programId"); args.Add("programId", programId); }
            if (filter.CurrencyId is { } currencyId) { probe.Append(" AND le.currency_id = @currencyId"); args.Add("currencyId", currencyId); }
            if (filter.EntryType is { } entryType) { probe.Append(" AND le.entry_type = @entryType"); args.Add("entryType", entryType.ToWire()); }
            args.Add("take", pageSize + 1);

            List<HistoryCursor> found;
            HistoryCursor? scannedTo = null;
            if (probe.Length == 0)
            {
                found = (await c.QueryAsync<(long CreatedAt, long EventId)>(
                    new CommandDefinition($"SELECT e.created_at, e.event_id FROM events e WHERE e.org_id = @org AND {where} ORDER BY e.created_at {direction}, e.event_id {direction} LIMIT @take",
                    args, cancellationToken: ct))).Select(r => new HistoryCursor(r.CreatedAt, r.EventId)).ToList();
            }
            else
            {
                args.Add("scan", scanLimit);
                args.Add("lastScanned", scanLimit - 1);
                var scanned = $"SELECT e.created_at, e.event_id FROM events e WHERE e.org_id = @org AND {where} ORDER BY e.created_at {direction}, e.event_id {direction}";
                await using var grid = await c.QueryMultipleAsync(
                    new CommandDefinition($"""
                    SELECT x.created_at, x.event_id FROM ({scanned} LIMIT @scan) x
                    WHERE (SELECT 1 FROM ledger_entries le WHERE le.org_id = @org AND le.event_id = x.event_id{probe} LIMIT 1) IS NOT NULL
                    ORDER BY x.created_at {direction}, x.event_id {direction} LIMIT @take;
                    {scanned} LIMIT 1 OFFSET @lastScanned;
                    """, args, cancellationToken: ct));
                found = (await grid.ReadAsync<(long CreatedAt, long EventId)>()).Select(r => new HistoryCursor(r.CreatedAt, r.EventId)).ToList();
                var last = (await grid.ReadAsync<(long CreatedAt, long EventId)>()).ToList();
                if (last.Count == 1) scannedTo = new HistoryCursor(last[0].CreatedAt, last[0].EventId);
            }

            var more = found.Count > pageSize;
            if (more) found.RemoveAt(found.Count - 1);
            // A filtered walk that used up its scan without filling the page stops at the last event it looked at.
            var stoppedEarly = !more && scannedTo is not null;
            if (!newerFirst) found.Reverse();
            var events = await LoadAsync(c, db.Dialect, orgId, found.Select(f => f.EventId).ToList(), ct);

            // Where the walk ended continues it; the other way goes back to just past the newest or oldest
            // event shown (or the cursor the page started from, when it showed none).
            var walkedOn = more ? (found[newerFirst ? ^1 : 0]) : stoppedEarly ? scannedTo : null;
            HistoryCursor? older, newer;
            if (newerFirst)
            {
                older = walkedOn;
                newer = before is null ? null : found.Count > 0 ? found[0] : before;
            }
            else
            {
                newer = walkedOn;
                older = found.Count > 0 ? found[^1] : after;
            }
            return new HistoryPage(events, older, newer, stoppedEarly);
        }, ct);

    /// <summary>One event of the organization with its lines, lots and related events; null when there is none.</summary>
    public static Task<EventDetail?> EventAsync(LedgerDatabase db, long orgId, long eventId, CancellationToken ct) =>
        db.ReadAsync(async c =>
        {
            var loaded = await LoadAsync(c, db.Dialect, orgId, [eventId], ct);
            if (loaded.Count == 0) return null;
            var e = loaded[0];
            var related = new List<RelatedEvent>();
            // Two indexed lookups (ix_events_related, the primary key), not one query with OR: with an OR
            // SQLite walks the organization's events in time order instead (3 s at 1.5M events).
            var rows = (await c.QueryAsync<(long EventId, string EventName, long CreatedAt, string OwnerType, long OwnerId, long? RelatedEventId)>(
                new CommandDefinition("""
                SELECT event_id, event_name, created_at, owner_type, owner_id, related_event_id FROM events
                WHERE org_id = @orgId AND related_event_id = @eventId
                UNION ALL
                SELECT event_id, event_name, created_at, owner_type, owner_id, related_event_id FROM events
                WHERE event_id = @relatedId AND org_id = @orgId
                """, new { orgId, eventId, relatedId = e.RelatedEventId ?? -1 }, cancellationToken: ct))).OrderBy(r => (r.CreatedAt, r.EventId)).ToList();
            foreach (var r in rows)
            {
                if (r.EventId == eventId) continue;
                var relation = r.EventId == e.RelatedEventId ? RelationTo(e.EventName, r.EventName) : RelationFrom(e.EventName, r.EventName);
                if (related.Any(x => x.EventId == r.EventId)) continue;
                related.Add(new RelatedEvent(r.EventId, r.EventName, r.CreatedAt, r.OwnerType, r.OwnerId, relation));
            }
            Points? reversed = null;
            if (e.EventName == EventNames.PointsRedemption)
            {
                reversed = new Points(await c.ExecuteScalarAsync<long?>(
                    new CommandDefinition("SELECT SUM(points) FROM redemption_reversals WHERE org_id = @orgId AND redemption_event_id = @eventId",
                    new { orgId, eventId }, cancellationToken: ct)) ?? 0);
            }
            return new EventDetail(e, related, reversed);
        }, ct);

    /// <summary>What the event it names is to this one (this event's related_event_id).</summary>
    private static string RelationTo(string self, string other) => (self, other) switch
    {
        (EventNames.ReturnBill, _) => "the bill it returns",
        (LifecycleEventNames.RedemptionReversal, _) => "the redemption it reverses",
        (EventNames.DelayedAccrual, _) => "the bill whose held points it converted",
        (LifecycleEventNames.TriggeredPointsCancellation, _) => "the bill whose held points it cancelled",
        (EventNames.PointsTransfer, EventNames.PointsTransfer) => "the other side of the transfer",
        _ => "related event",
    };

    /// <summary>What an event that names this one is to it.</summary>
    private static string RelationFrom(string self, string other) => other switch
    {
        EventNames.ReturnBill => "a return of this bill",
        LifecycleEventNames.RedemptionReversal => "a reversal of this redemption",
        EventNames.DelayedAccrual => "its held points converted",
        LifecycleEventNames.TriggeredPointsCancellation => "its held points cancelled",
        EventNames.PointsTransfer when self == EventNames.PointsTransfer => "the other side of the transfer",
        _ => "related event",
    };

    private sealed class EventRow
    {
        public long EventId { get; set; }
        public string EventName { get; set; } = "";
        public string? DisplayName { get; set; }
        public long CreatedAt { get; set; }
        public string OwnerType { get; set; } = "";
        public long OwnerId { get; set; }
        public long CustomerId { get; set; }
        public string? PostedBy { get; set; }
        public string? Reason { get; set; }
        public string? Details { get; set; }
        public long? RelatedEventId { get; set; }
        public string? StoreCode { get; set; }
        public string? TillCode { get; set; }
        public long? BillId { get; set; }
        public string? BillNumber { get; set; }
        public string? BillStoreCode { get; set; }
        public long? BillAmount { get; set; }
        public long? BillReturned { get; set; }
        public long? BillDate { get; set; }
    }

    private sealed class LineRow
    {
        public long EntryId { get; set; }
        public long EventId { get; set; }
        public long ProgramId { get; set; }
        public string ProgramName { get; set; } = "";
        public long CurrencyId { get; set; }
        public string? CurrencyName { get; set; }
        public string Category { get; set; } = "";
        public string EntryType { get; set; } = "";
        public long Points { get; set; }
        public long BalanceAfter { get; set; }
        public string? Tier { get; set; }
    }

    private sealed class MovementRow
    {
        public long EntryId { get; set; }
        public long LotId { get; set; }
        public long Points { get; set; }
        public long? ExpiresAt { get; set; }
        public long EarnedAt { get; set; }
        public long IsDebt { get; set; }
        public long? EarnedByEventId { get; set; }
    }

    private sealed class CreatedRow
    {
        public long CreditEntryId { get; set; }
        public long LotId { get; set; }
        public long Original { get; set; }
        public long Remaining { get; set; }
        public long? ExpiresAt { get; set; }
    }

    /// <summary>
    /// The events with their lines and the lots the lines moved or created, in the order of
    /// <paramref name="ids"/>: four queries in one round trip, each by primary key or an index that
    /// starts with the event or entry id.
    /// </summary>
    private static async Task<IReadOnlyList<HistoryEvent>> LoadAsync(DbConnection c, SqlDialect dialect, long orgId, IReadOnlyList<long> ids, CancellationToken ct)
    {
        if (ids.Count == 0) return [];
        var args = new DynamicParameters();
        args.Add("ids", dialect.IdList(ids));
        args.Add("org", orgId);
        Dictionary<long, EventRow> events;
        List<LineRow> lines;
        await using (var grid = await c.QueryMultipleAsync(
            new CommandDefinition($"""
            SELECT e.event_id, e.event_name, e.display_name, e.created_at, e.owner_type, e.owner_id, e.customer_id, e.posted_by, e.reason,
                e.details, e.related_event_id, s.code AS store_code, t.code AS till_code, b.bill_id, b.bill_number, bs.code AS bill_store_code,
                b.amount AS bill_amount, b.returned_amount AS bill_returned, b.bill_date
            FROM events e
            LEFT JOIN stores s ON s.org_id = e.org_id AND s.store_id = e.store_id
            LEFT JOIN tills t ON t.org_id = e.org_id AND t.till_id = e.till_id
            LEFT JOIN bills b ON b.org_id = e.org_id AND b.bill_id = e.bill_id
            LEFT JOIN stores bs ON bs.org_id = b.org_id AND bs.store_id = b.store_id
            WHERE {dialect.InIdList("e.event_id", "ids")} AND {dialect.Unindexed("e.org_id")} = @org;
            SELECT le.entry_id, le.event_id, le.program_id, p.name AS program_name, le.currency_id, cur.name AS currency_name,
                le.category, le.entry_type, le.points, le.balance_after, le.tier
            FROM ledger_entries le
            JOIN programs p ON p.org_id = le.org_id AND p.program_id = le.program_id
            LEFT JOIN currencies cur ON cur.org_id = le.org_id AND cur.currency_id = le.currency_id
            WHERE {dialect.InIdList("le.event_id", "ids")} AND le.org_id = @org
            ORDER BY le.event_id, le.entry_id;
            """, args, cancellationToken: ct)))
        {
            events = (await grid.ReadAsync<EventRow>()).ToDictionary(e => e.EventId);
            lines = (await grid.ReadAsync<LineRow>()).ToList();
        }
        if (events.Count == 0) return [];

        var entryArgs = new DynamicParameters();
        entryArgs.Add("org", orgId);
        entryArgs.Add("entries", dialect.IdList(lines.Select(l => l.EntryId)));
        ILookup<long, MovementRow> moved;
        ILookup<long, CreatedRow> created;
        if (lines.Count == 0)
        {
            moved = Array.Empty<MovementRow>().ToLookup(m => m.EntryId);
            created = Array.Empty<CreatedRow>().ToLookup(m => m.CreditEntryId);
        }
        else
        {
            await using var grid = await c.QueryMultipleAsync(
                new CommandDefinition($"""
                SELECT m.entry_id, m.lot_id, m.points, l.expires_at, l.earned_at, l.is_debt, ce.event_id AS earned_by_event_id
                FROM lot_movements m
                JOIN lots l ON l.org_id = m.org_id AND l.lot_id = m.lot_id
                LEFT JOIN ledger_entries ce ON ce.org_id = l.org_id AND ce.entry_id = l.credit_entry_id
                WHERE m.org_id = @org AND {dialect.InIdList("m.entry_id", "entries")}
                ORDER BY m.entry_id, m.movement_id;
                SELECT l.credit_entry_id, l.lot_id, l.original, l.remaining, l.expires_at
                FROM lots l
                WHERE l.org_id = @org AND {dialect.InIdList("l.credit_entry_id", "entries")} AND l.is_debt = 0
                ORDER BY l.credit_entry_id, l.lot_id;
                """, entryArgs, cancellationToken: ct));
            moved = (await grid.ReadAsync<MovementRow>()).ToLookup(m => m.EntryId);
            created = (await grid.ReadAsync<CreatedRow>()).ToLookup(m => m.CreditEntryId);
        }

        var linesByEvent = lines.ToLookup(l => l.EventId);
        var result = new List<HistoryEvent>();
        foreach (var id in ids)
        {
            if (!events.TryGetValue(id, out var e)) continue;
            var eventLines = linesByEvent[id].Select(l => new HistoryLine(l.EntryId, l.ProgramId, l.ProgramName, l.CurrencyId, l.CurrencyName,
                l.Category, l.EntryType, new Points(l.Points), new Points(l.BalanceAfter), l.Tier,
                moved[l.EntryId].Select(m => new LotMovement(m.LotId, new Points(m.Points), m.ExpiresAt, m.EarnedAt, m.IsDebt != 0,
                    m.EarnedByEventId == id ? null : m.EarnedByEventId)).ToList(),
                // A credit line's own lots are shown as created; a reversal's restored lots appear as movements.
                created[l.EntryId].Where(x => !moved[l.EntryId].Any(m => m.LotId == x.LotId))
                    .Select(x => new LotCreated(x.LotId, new Points(x.Original), new Points(x.Remaining), x.ExpiresAt)).ToList())).ToList();
            BillView? bill = e.BillId is { } billId
                ? new BillView(billId, e.BillNumber ?? "", e.BillStoreCode ?? "", (e.BillAmount ?? 0) / 1000m, (e.BillReturned ?? 0) / 1000m, e.BillDate ?? 0)
                : null;
            result.Add(new HistoryEvent(e.EventId, e.EventName, e.DisplayName, e.CreatedAt, e.OwnerType, e.OwnerId, e.CustomerId, e.PostedBy,
                e.Reason, ParseDetails(e.Details), e.RelatedEventId, e.StoreCode, e.TillCode, bill, eventLines));
        }
        return result;
    }

    private static Dictionary<string, string> ParseDetails(string? json)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (string.IsNullOrEmpty(json)) return result;
        try
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) return result;
            foreach (var p in doc.RootElement.EnumerateObject())
                result[p.Name] = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : p.Value.GetRawText();
        }
        catch (JsonException)
        {
            // Details are informational: a malformed one is shown as nothing rather than failing the page.
        }
        return result;
    }
}
