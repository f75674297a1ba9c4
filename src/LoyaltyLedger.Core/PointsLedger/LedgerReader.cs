using System.Data;
using System.Data.Common;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Dapper;
using LoyaltyLedger.Customers;
using LoyaltyLedger.Groups;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Stores;

namespace LoyaltyLedger.PointsLedger;

/// <summary>
/// Reads one owner's ledger a page at a time. A page is a page of events (each with the ledger lines
/// of it the query keeps), in (created_at, event_id) order, read from the owner's slice of
/// <c>ix_events_owner</c>: the count and the page touch only that owner's rows, and each event's
/// lines are checked through <c>ix_ledger_entries_event_filter</c> without reading the table. The
/// common queries (no window, no condition on lines beyond the points/currency scope) take their
/// total from the owner's row of <c>owner_event_counts</c>, so they cost a page, not a history.
/// </summary>
public static class LedgerReader
{
    private sealed record Subject(string OwnerType, long OwnerId, SubjectDetails Details, long? GroupId);

    /// <summary>Reads a page; <paramref name="consistency"/> says whether a read replica may serve it (default: the primary).</summary>
    public static async Task<LedgerResponse> ReadAsync(LedgerDatabase database, long orgId, LedgerQuery query, ReadConsistency consistency,
        CancellationToken ct)
    {
        // On PostgreSQL's primary, a customer's page by number goes through the read pipeline, holding
        // no connection: its one statement travels with other reads' in one round trip. The program
        // list comes from the process's cache (read again once a second, by one read for all that
        // miss it); what the statement cannot answer alone is asked the long way, on a connection, below.
        var pipelined = false;
        if (IsCustomersPageByNumber(query) && database.PipelinesReads(consistency))
        {
            var programs = await ProgramCatalog.ListSharedAsync(database, orgId, database.Catalog, ct);
            if (await CustomersPageByNumberAsync(null, database, orgId, query, programs, ct) is { } page) return page;
            pipelined = true;
        }
        return await database.ReadAsync(connection => ReadAsync(connection, database, orgId, query, tryByNumber: !pipelined, ct), consistency, ct);
    }

    private static async Task<LedgerResponse> ReadAsync(DbConnection connection, LedgerDatabase database, long orgId, LedgerQuery query, bool tryByNumber,
        CancellationToken ct)
    {
        var programs = await ProgramCatalog.ListAsync(connection, database.Dialect, orgId, null, database.Catalog, ct);
        if (tryByNumber && IsCustomersPageByNumber(query) && await CustomersPageByNumberAsync(connection, database, orgId, query, programs, ct) is { } page)
            return page;

        // The subject, the catalog and the filter's tills and members are rows a page does not
        // change; they are read before the page, outside its snapshot.
        var subject = await ResolveSubjectAsync(connection, null, database.Dialect, orgId, query, ct);
        var filter = await BuildFilterAsync(connection, null, database.Dialect, orgId, query, subject, programs, ct);
        if (filter.SeqColumn is not null && !query.IsDateBounded && subject.GroupId is null)
            return (await ReadByNumberAsync(connection, null, database, orgId, query, subject, programs, filter, ct))!;

        // Count and page from one snapshot, so totalEntries and the page agree under concurrent writes
        // (and with them a window's closing balances and a group's members' names and roles).
        await using var tx = await database.Dialect.BeginReadAsync(connection, ct);
        if (filter.SeqColumn is not null)
        {
            var numbered = (await ReadByNumberAsync(connection, tx, database, orgId, query, subject, programs, filter, ct))!;
            await tx.CommitAsync(ct);
            return numbered;
        }

        if (query.Category is not null || query.Currencies == CurrencyScope.NamedCurrencies)
        {
            var wallets = await connection.ExecuteScalarAsync<long>(new CommandDefinition(
                $"SELECT COUNT(*) FROM wallets w WHERE w.org_id = @org AND w.owner_type = @ownerType AND w.owner_id = @ownerId{filter.Wallet}",
                filter.Args, tx, cancellationToken: ct));
            if (wallets == 0) throw new PointsLedgerException(PointsLedgerErrors.NoPointsSummary, "No CPS entry for the given points type.", 404);
        }

        long total;
        List<long> ids;
        if (query.Page == 0)
        {
            // The first page (the usual read) never reads from the other end, so it does not need
            // the total first: the count and the page go to the database together, in one round trip.
            var args = new DynamicParameters(filter.Args);
            args.Add("take", query.Limit);
            args.Add("skip", 0);
            await using (var grid = await connection.QueryMultipleAsync(new CommandDefinition(
                TotalSql(filter) + ";\n" + PageSql(filter, query.Descending), args, tx, cancellationToken: ct)))
            {
                total = await grid.ReadSingleOrDefaultAsync<long?>() ?? 0;
                ids = (await grid.ReadAsync<long>()).ToList();
            }
        }
        else
        {
            total = await TotalAsync(connection, tx, filter, ct);
            ids = [];
        }
        var pageCount = (total + query.Limit - 1) / query.Limit;
        if (total == 0 || query.Page >= pageCount) throw PointsLedgerException.NoEntries();

        if (query.Page > 0) ids = await PageAsync(connection, tx, query, filter, total, ct);
        var events = await LoadEventsAsync(connection, tx, database, orgId, subject, filter, programs, ids, ct);

        IReadOnlyList<LedgerClosingBalance>? closing = null;
        if (query.IsDateBounded) closing = await ClosingBalancesAsync(connection, tx, filter, query.ToMs!.Value, ct);

        await tx.CommitAsync(ct);
        return new LedgerResponse(subject.Details, new PageDetails(query.Page, query.Limit, total, pageCount), events, closing,
            query.Warnings.Select(w => new LedgerWarning(w)).ToList());
    }

    /// <summary>
    /// A customer's page without a window (the default query): the customer is looked up in the
    /// page's own statement, so the read is one round trip. Only the queries that page by number
    /// qualify (points only or currencies only, no condition on lines, no till, program or role), and
    /// building their filter looks nothing up and can refuse nothing, so no answer's error changes
    /// order: the customer is still the first thing found wrong.
    /// </summary>
    private static bool IsCustomersPageByNumber(LedgerQuery query) =>
        query is { Subject: LedgerSubject.Customer, IsDateBounded: false, TillId: null, ProgramId: null, Role: null, Category: null, EntryType: null,
            Currencies: CurrencyScope.PointsOnly or CurrencyScope.CurrenciesOnly };

    /// <summary>
    /// The page of <see cref="IsCustomersPageByNumber"/>'s queries, on <paramref name="c"/> or, when
    /// it is null, through the read pipeline. No row back (no such customer, an identifier two
    /// customers share, no such events, a page past the last) is null: the long way tells those
    /// apart and answers each as the spec says.
    /// </summary>
    private static async Task<LedgerResponse?> CustomersPageByNumberAsync(DbConnection? c, LedgerDatabase database, long orgId, LedgerQuery query,
        IReadOnlyList<LoyaltyProgram> programs, CancellationToken ct)
    {
        var unresolved = new Subject(OwnerType.Customer.ToWire(), 0, new SubjectDetails(null, null, 0, null, ""), null);
        var byNumber = await BuildFilterAsync(c, null, database.Dialect, orgId, query, unresolved, programs, ct, owner: "(SELECT id FROM subject)");
        return byNumber.SeqColumn is null ? null
            : await ReadByNumberAsync(c, null, database, orgId, query, unresolved, programs, byNumber, ct, nameTheCustomer: true);
    }

    /// <summary>The connection a step that reads rows needs; null only on the read pipeline's path, which takes no such step.</summary>
    private static DbConnection Held(DbConnection? c) =>
        c ?? throw new InvalidOperationException("This step of the read looks rows up, and the read holds no connection.");

    /// <summary>
    /// How many of the owner's events the query keeps. A query with no window and no condition but
    /// the points/currency scope reads the owner's running count (kept by Posting) from one row, so
    /// its cost does not grow with the history; any other query counts the matching events.
    /// </summary>
    private static async Task<long> TotalAsync(DbConnection c, DbTransaction tx, Filter filter, CancellationToken ct) =>
        // No counter row: the owner has no events yet.
        await c.ExecuteScalarAsync<long?>(new CommandDefinition(TotalSql(filter), filter.Args, tx, cancellationToken: ct)) ?? 0;

    private static string TotalSql(Filter filter) => filter switch
    {
        { CountColumn: { } column } => $"SELECT {column} FROM owner_event_counts WHERE org_id = @org AND owner_type = @ownerType AND owner_id = @ownerId",
        _ => $"SELECT COUNT(*) FROM events e WHERE e.org_id = @org AND {filter.Events}",
    };

    private static string PageSql(Filter filter, bool descending)
    {
        var direction = descending ? "DESC" : "ASC";
        return $"""
            SELECT e.event_id FROM events e WHERE e.org_id = @org AND {filter.Events}
            ORDER BY e.created_at {direction}, e.event_id {direction}
            LIMIT @take OFFSET @skip
            """;
    }

    /// <summary>
    /// The event ids of the page of a query that is not numbered (numbered ones are read by
    /// <see cref="ReadByNumberAsync"/>), in the order asked for. Pages in the back half are read from
    /// the other end of the index and reversed, so no page skips more than half of the owner's
    /// matching events.
    /// </summary>
    private static async Task<List<long>> PageAsync(DbConnection c, DbTransaction tx, LedgerQuery query, Filter filter, long total, CancellationToken ct)
    {
        var skip = (long)query.Page * query.Limit;
        var take = Math.Min(query.Limit, total - skip);
        var fromOtherEnd = skip > total - skip - take;
        var descending = query.Descending != fromOtherEnd;
        var args = new DynamicParameters(filter.Args);
        args.Add("take", take);
        args.Add("skip", fromOtherEnd ? total - skip - take : skip);
        var ids = (await c.QueryAsync<long>(new CommandDefinition(PageSql(filter, descending), args, tx, cancellationToken: ct))).ToList();
        if (fromOtherEnd) ids.Reverse();
        return ids;
    }

    private class EventRow
    {
        public long EventId { get; set; }
        public string EventName { get; set; } = "";
        public long CustomerId { get; set; }
        public long CreatedAt { get; set; }
        public string? Details { get; set; }
        public string? Reason { get; set; }
        public long? SourceProgramId { get; set; }
        public long? StoreId { get; set; }
        public long? TillId { get; set; }
        public long? BillId { get; set; }
        public string? BillNumber { get; set; }
        public long? BillAmount { get; set; }
        public long? BillGross { get; set; }
        public long? BillDate { get; set; }
        public string? BillSource { get; set; }
    }

    private sealed class EntryRow
    {
        public long EventId { get; set; }
        public string EntryType { get; set; } = "";
        public long Points { get; set; }
        public string Category { get; set; } = "";
        public long ProgramId { get; set; }
        public long CurrencyId { get; set; }
    }

    private sealed class MemberRow
    {
        public long CustomerId { get; set; }
        public string? FirstName { get; set; }
        public string? LastName { get; set; }
        public string? ExternalId { get; set; }
        public string? Role { get; set; }
    }

    /// <summary>A page's event with its bill (the inherited columns), one of its lines, and the total: one row per line.</summary>
    private sealed class NumberedRow : EventRow
    {
        public long? Total { get; set; }
        public long SubjectId { get; set; }
        public string? SubjectFirstName { get; set; }
        public string? SubjectLastName { get; set; }
        public string? SubjectExternalId { get; set; }
        public string? SubjectEntityType { get; set; }
        public string? EntryType { get; set; }
        public long Points { get; set; }
        public string? Category { get; set; }
        public long ProgramId { get; set; }
        public long CurrencyId { get; set; }
    }

    /// <summary>
    /// A query whose events are a range of the owner's numbers (points only or currencies only, with
    /// or without a date window): the total, the page's events, their bills and their lines in one
    /// statement. One statement reads one snapshot, so for a customer's page without a window the
    /// total and the page agree under concurrent writes with no transaction (<paramref name="tx"/>
    /// null), and the page costs one round trip instead of three (the count and the page ids, the
    /// events and lines, the commit). A window's closing balances and a group's members are read by
    /// statements of their own, so those reads pass the read transaction that keeps them in the
    /// page's snapshot.
    /// </summary>
    /// <remarks>
    /// With <paramref name="nameTheCustomer"/>, <paramref name="subject"/> is not known yet: the
    /// statement finds the customer the query's identifier names (one, or none when two share it)
    /// in a one-row CTE, stands it in for the owner, and returns its name with each row; the
    /// answer is null, not an error, when no row comes back.
    /// </remarks>
    private static async Task<LedgerResponse?> ReadByNumberAsync(DbConnection? c, DbTransaction? tx, LedgerDatabase database, long orgId,
        LedgerQuery query, Subject subject, IReadOnlyList<LoyaltyProgram> programs, Filter filter, CancellationToken ct, bool nameTheCustomer = false)
    {
        var (seq, low, high) = (filter.SeqColumn!, filter.SeqLow!, filter.SeqHigh!);
        var args = new DynamicParameters(filter.Args);
        args.Add("skip", (long)query.Page * query.Limit);
        args.Add("take", (long)query.Limit);
        var (subjectCte, subjectColumns, subjectFrom) = ("", "", "");
        if (nameTheCustomer)
        {
            subjectCte = $"""
                WITH subject AS (
                    SELECT CASE WHEN COUNT(*) = 1 THEN MIN(customer_id) END AS id, MIN(first_name) AS first_name, MIN(last_name) AS last_name,
                        MIN(external_id) AS external_id, MIN(entity_type) AS entity_type
                    FROM customers WHERE org_id = @orgId AND customer_id IN ({CustomerDirectory.IdentifiedSql(query.Source, query.AccountId)}))
                """;
            subjectColumns = ", s.id AS subject_id, s.first_name AS subject_first_name, s.last_name AS subject_last_name, s.external_id AS subject_external_id, s.entity_type AS subject_entity_type";
            subjectFrom = "subject s CROSS JOIN ";
            args.Add("orgId", orgId);
            args.Add("kind", query.IdentifierName);
            args.Add("value", query.IdentifierValue);
            args.Add("source", query.Source);
            args.Add("accountId", query.AccountId);
        }
        // Counted from the end the page starts at, and kept within the query's numbers at the other.
        // The edges are read once, into t, with the total they give (0 when a window's are NULL):
        // LIMIT 1 keeps PostgreSQL from pulling b up and evaluating each edge once per reference.
        var (bounds, direction) = query.Descending
            ? ($"e.{seq} <= t.high - @skip AND e.{seq} > t.high - @skip - @take AND e.{seq} >= t.low", "DESC")
            : ($"e.{seq} >= t.low + @skip AND e.{seq} < t.low + @skip + @take AND e.{seq} <= t.high", "ASC");
        var sql = $"""
            {subjectCte}
            SELECT t.total{subjectColumns}, e.event_id, e.event_name, e.customer_id, e.created_at, e.details, e.reason, e.source_program_id, e.store_id, e.till_id,
                b.bill_id, b.bill_number, b.amount AS bill_amount, b.gross_amount AS bill_gross, b.bill_date, b.source AS bill_source,
                le.entry_type, COALESCE(le.points, 0) AS points, le.category, COALESCE(le.program_id, 0) AS program_id, COALESCE(le.currency_id, 0) AS currency_id
            FROM {subjectFrom}(SELECT b.low, b.high, CASE WHEN b.high >= b.low THEN b.high - b.low + 1 ELSE 0 END AS total
                  FROM (SELECT {low} AS low, {high} AS high LIMIT 1) b) t
            JOIN events e ON e.org_id = @org AND {filter.Events} AND {bounds}
            LEFT JOIN bills b ON b.org_id = e.org_id AND b.bill_id = e.bill_id
            LEFT JOIN ledger_entries le ON le.org_id = e.org_id AND le.event_id = e.event_id{filter.Entries}
            ORDER BY e.{seq} {direction}, le.entry_id
            """;
        var rows = c is null ? await database.PipelinedQueryAsync<NumberedRow>(sql, args, ct)
            : await KeptReads.QueryAsync<NumberedRow>(c, database.Dialect, sql, args, tx, ct);
        // No row: the owner has no such event, or the page is past the last.
        if (rows.Count == 0) return nameTheCustomer ? null : throw PointsLedgerException.NoEntries();
        if (nameTheCustomer)
        {
            var first = rows[0];
            subject = new Subject(OwnerType.Customer.ToWire(), first.SubjectId,
                new SubjectDetails(first.SubjectFirstName, first.SubjectLastName, first.SubjectId, first.SubjectExternalId, first.SubjectEntityType ?? ""), null);
        }

        var total = rows[0].Total ?? 0;
        var ids = rows.Select(r => r.EventId).Distinct().ToList();
        var events = rows.DistinctBy(r => r.EventId).ToDictionary(r => r.EventId, r => (EventRow)r);
        var entries = rows.Where(r => r.EntryType is not null).ToLookup(r => r.EventId, r => new EntryRow
        {
            EventId = r.EventId, EntryType = r.EntryType!, Points = r.Points, Category = r.Category ?? "", ProgramId = r.ProgramId, CurrencyId = r.CurrencyId,
        });
        var named = await NameEventsAsync(c, tx, database, orgId, subject, programs, ids, events, entries, ct);

        IReadOnlyList<LedgerClosingBalance>? closing = null;
        if (query.IsDateBounded) closing = await ClosingBalancesAsync(Held(c), tx, filter, query.ToMs!.Value, ct);
        return new LedgerResponse(subject.Details, new PageDetails(query.Page, query.Limit, total, (total + query.Limit - 1) / query.Limit), named, closing,
            query.Warnings.Select(w => new LedgerWarning(w)).ToList());
    }

    /// <summary>
    /// The page's events with their lines. Programs, currencies, stores and tills are named from the
    /// process's catalog (the program list the read already holds; stores and tills, which never
    /// change, by id), not joined on every read: the joins were most of the page's own cost.
    /// </summary>
    private static async Task<IReadOnlyList<LedgerEvent>> LoadEventsAsync(DbConnection c, DbTransaction tx, LedgerDatabase database, long orgId,
        Subject subject, Filter filter, IReadOnlyList<LoyaltyProgram> programs, List<long> ids, CancellationToken ct)
    {
        var dialect = database.Dialect;
        // The ids come from the owner-scoped page query: on SQLite looked up by row id, the
        // organization named unindexed (SqlDialect.Unindexed), since an indexed condition on org_id
        // beside them leads SQLite to walk the organization's slice of events.
        var args = new DynamicParameters(filter.Args);
        args.Add("ids", dialect.IdList(ids));
        // The events and their lines in one round trip.
        var grid = await c.QueryMultipleAsync(new CommandDefinition(
            $"""
            SELECT e.event_id, e.event_name, e.customer_id, e.created_at, e.details, e.reason, e.source_program_id, e.store_id, e.till_id,
                b.bill_id, b.bill_number, b.amount AS bill_amount, b.gross_amount AS bill_gross, b.bill_date, b.source AS bill_source
            FROM events e
            LEFT JOIN bills b ON b.org_id = e.org_id AND b.bill_id = e.bill_id
            WHERE {dialect.InIdList("e.event_id", "ids")} AND {dialect.Unindexed("e.org_id")} = @org;
            SELECT le.event_id, le.entry_type, le.points, le.category, le.program_id, le.currency_id
            FROM ledger_entries le
            JOIN events e ON {dialect.Unindexed("e.org_id")} = le.org_id AND e.event_id = le.event_id
            WHERE {dialect.InIdList("le.event_id", "ids")} AND le.org_id = @org{filter.Entries}
            ORDER BY le.event_id, le.entry_id
            """, args, tx, cancellationToken: ct));
        Dictionary<long, EventRow> rows;
        ILookup<long, EntryRow> entries;
        await using (grid)
        {
            rows = (await grid.ReadAsync<EventRow>()).ToDictionary(r => r.EventId);
            entries = (await grid.ReadAsync<EntryRow>()).ToLookup(r => r.EventId);
        }
        return await NameEventsAsync(c, tx, database, orgId, subject, programs, ids, rows, entries, ct);
    }

    /// <summary>The page's events, their lines in hand, with their members, programs, currencies, stores and tills named.</summary>
    private static async Task<IReadOnlyList<LedgerEvent>> NameEventsAsync(DbConnection? c, DbTransaction? tx, LedgerDatabase database, long orgId,
        Subject subject, IReadOnlyList<LoyaltyProgram> programs, List<long> ids, Dictionary<long, EventRow> rows, ILookup<long, EntryRow> entries,
        CancellationToken ct)
    {
        var dialect = database.Dialect;

        var members = new Dictionary<long, MemberRow>();
        if (subject.GroupId is { } groupId)
        {
            var memberArgs = new { org = orgId, groupId, customers = dialect.IdList(rows.Values.Select(r => r.CustomerId).Distinct()) };
            members = (await Held(c).QueryAsync<MemberRow>(new CommandDefinition(
                $"""
                SELECT cu.customer_id, cu.first_name, cu.last_name, cu.external_id, m.role
                FROM customers cu
                LEFT JOIN group_members m ON m.org_id = cu.org_id AND m.group_id = @groupId AND m.customer_id = cu.customer_id
                WHERE cu.org_id = @org AND {dialect.InIdList("cu.customer_id", "customers")}
                """, memberArgs, tx, cancellationToken: ct))).ToDictionary(m => m.CustomerId);
        }

        // A program or a currency created after the list was read (in the last second, by another
        // process) is not in it: the list is read again, from this read's own connection (a read
        // through the pipeline has none, and takes one).
        var programsById = programs.ToDictionary(p => p.ProgramId);
        bool Known(long programId, long currencyId) => programsById.TryGetValue(programId, out var p)
            && (currencyId == WalletKey.PlainPoints || p.Currencies.Any(cur => cur.CurrencyId == currencyId));
        if (rows.Values.Any(r => r.SourceProgramId is { } id && !programsById.ContainsKey(id))
            || entries.SelectMany(g => g).Any(x => !Known(x.ProgramId, x.CurrencyId)))
            programsById = (await database.OnConnectionAsync(c, held => ProgramCatalog.ListAsync(held, dialect, orgId, tx, ct), ct)).ToDictionary(p => p.ProgramId);
        // Stores and tills never change, and one a replica has is committed: the cache may keep what any read finds.
        var (stores, tills) = await StoreDirectory.ByIdsAsync(database, c, orgId, rows.Values.Select(r => r.StoreId).OfType<long>(),
            rows.Values.Select(r => r.TillId).OfType<long>(), database.Catalog, tx, ct);
        var names = new Names(programsById, stores, tills);
        return ids.Select(id => ToEvent(rows[id], entries[id], subject, members, names)).ToList();
    }

    private sealed record Names(IReadOnlyDictionary<long, LoyaltyProgram> Programs, IReadOnlyDictionary<long, Store> Stores, IReadOnlyDictionary<long, Till> Tills)
    {
        public string ProgramName(long programId) => Programs.TryGetValue(programId, out var p) ? p.Name : "";

        public string? CurrencyName(long programId, long currencyId) =>
            currencyId == WalletKey.PlainPoints ? null
                : Programs.TryGetValue(programId, out var p) ? p.Currencies.FirstOrDefault(c => c.CurrencyId == currencyId)?.Name : null;
    }

    private static LedgerEvent ToEvent(EventRow e, IEnumerable<EntryRow> entries, Subject subject, Dictionary<long, MemberRow> members, Names names)
    {
        var details = entries.Select(x => new EntryDetail(x.EntryType, new Points(x.Points),
            LedgerNames.TryParseCategory(x.Category, out var category) ? category.DisplayName() : x.Category,
            names.ProgramName(x.ProgramId), x.ProgramId, names.CurrencyName(x.ProgramId, x.CurrencyId))).ToList();
        var net = entries.Aggregate(Points.Zero, (sum, x) => x.EntryType == "DEBIT" ? sum - new Points(x.Points) : sum + new Points(x.Points));

        EntryCustomer? customer = null;
        if (subject.GroupId is not null && members.TryGetValue(e.CustomerId, out var m))
            customer = new EntryCustomer(m.CustomerId, m.FirstName, m.LastName, m.ExternalId, m.Role);
        else if (subject.GroupId is null && e.EventName == EventNames.TransactionAdd)
            customer = new EntryCustomer(0);

        var transaction = e.BillId is { } billId
            ? new TransactionDetails(billId, e.BillNumber, e.BillDate, e.BillAmount, e.BillGross, e.BillSource?.ToLowerInvariant())
            : TransactionDetails.None;

        var eventDetails = new Dictionary<string, string>();
        if (!string.IsNullOrEmpty(e.Details))
        {
            foreach (var (key, value) in JsonSerializer.Deserialize<Dictionary<string, string>>(e.Details) ?? [])
                eventDetails[key] = value;
        }
        if (!string.IsNullOrEmpty(e.Reason)) eventDetails["reason"] = e.Reason;

        return new LedgerEvent(e.EventId, e.EventName, e.CustomerId, e.CreatedAt, customer, details, net, transaction,
            Store(e)?.Name ?? "default", Store(e)?.Code ?? "default", (e.TillId is { } till && names.Tills.TryGetValue(till, out var t) ? t.Code : null) ?? "default",
            eventDetails, e.SourceProgramId, e.SourceProgramId is { } source && names.Programs.TryGetValue(source, out var sp) ? sp.Name : null);

        Store? Store(EventRow row) => row.StoreId is { } id && names.Stores.TryGetValue(id, out var s) ? s : null;
    }

    private sealed class ClosingRow
    {
        public long ProgramId { get; set; }
        public string ProgramName { get; set; } = "";
        public string? CurrencyName { get; set; }
        public string Category { get; set; } = "";
        public long? Closing { get; set; }
    }

    /// <summary>Each kept wallet's balance after its last line on or before the window's end.</summary>
    private static async Task<IReadOnlyList<LedgerClosingBalance>> ClosingBalancesAsync(DbConnection c, DbTransaction? tx, Filter filter, long toMs,
        CancellationToken ct)
    {
        var args = new DynamicParameters(filter.Args);
        args.Add("closingAt", toMs);
        var rows = await c.QueryAsync<ClosingRow>(new CommandDefinition(
            $"""
            SELECT w.program_id, p.name AS program_name, cur.name AS currency_name, w.category,
                (SELECT le.balance_after FROM ledger_entries le
                 WHERE le.org_id = w.org_id AND le.entry_id = {Balances.EntryAsOfSql("w", "@closingAt")}) AS closing
            FROM wallets w
            JOIN programs p ON p.org_id = w.org_id AND p.program_id = w.program_id
            LEFT JOIN currencies cur ON cur.org_id = w.org_id AND cur.currency_id = w.currency_id
            WHERE w.org_id = @org AND w.owner_type = @ownerType AND w.owner_id = @ownerId{filter.Wallet}
            ORDER BY w.program_id, w.currency_id, w.category
            """, args, tx, cancellationToken: ct));
        return rows.Where(r => r.Closing is not null).Select(r => new LedgerClosingBalance(r.ProgramId, r.ProgramName,
            LedgerNames.TryParseCategory(r.Category, out var category) ? category.DisplayName() : r.Category,
            r.CurrencyName, new Points(r.Closing!.Value), toMs)).ToList();
    }

    private static async Task<Subject> ResolveSubjectAsync(DbConnection c, DbTransaction? tx, SqlDialect dialect, long orgId, LedgerQuery query, CancellationToken ct)
    {
        if (query.Subject == LedgerSubject.Customer)
        {
            // Two customers, not one of them: answering with either would show a customer another's ledger.
            var matches = await CustomerDirectory.FindAllAsync(c, dialect, orgId, query.Source, query.IdentifierName, query.IdentifierValue, query.AccountId, 2, tx, ct);
            if (matches.Count == 0) throw new PointsLedgerException(PointsLedgerErrors.InvalidUserId, "Invalid userId passed in request", 404);
            if (matches.Count > 1)
            {
                throw new PointsLedgerException(PointsLedgerErrors.AmbiguousIdentifier, query.Source == "ALL"
                    ? $"Several customers have this {query.IdentifierName} in different sources or accounts: pass the source, and acountId for a source with several accounts, to name one"
                    : $"Several customers have this {query.IdentifierName} in source {query.Source}, under different accounts: pass acountId to name one", 400);
            }
            var customer = matches[0];
            return new Subject(OwnerType.Customer.ToWire(), customer.CustomerId,
                new SubjectDetails(customer.FirstName, customer.LastName, customer.CustomerId, customer.ExternalId, customer.EntityType), null);
        }
        var group = await GroupDirectory.FindAsync(c, dialect, orgId, query.IdentifierName, query.IdentifierValue, tx, ct)
            ?? throw new PointsLedgerException(PointsLedgerErrors.InvalidUserId, "Invalid userId passed in request: no such user group", 404);
        return new Subject(OwnerType.Group.ToWire(), group.GroupId,
            new SubjectDetails(group.Name, null, group.GroupId, group.ExternalId, "FLEET"), group.GroupId);
    }

    /// <summary>
    /// The query as SQL: conditions on the owner's events, on their lines, and on the owner's wallets;
    /// and the column of <c>owner_event_counts</c> that holds the number of matching events, when one does.
    /// </summary>
    // SeqColumn: the per-owner number of the events the query keeps (points_seq, currency_seq), set
    // when they are exactly the events so numbered: a page is then a range of numbers.
    // SeqLow, SeqHigh: SQL for the first and last number the query keeps (1 and the owner's count
    // without a date window; with one, the numbers of its first and last event, each one seek of the
    // owner's time index); NULL when the window holds none.
    private sealed record Filter(string Events, string Entries, string Wallet, DynamicParameters Args, string? CountColumn,
        string? SeqColumn = null, string? SeqLow = null, string? SeqHigh = null);

    // owner: the owner's id in the SQL, the parameter or what stands in for it (the id of the
    // statement's own subject CTE, when the customer is looked up in the page's statement).
    private static async Task<Filter> BuildFilterAsync(DbConnection? c, DbTransaction? tx, SqlDialect dialect, long orgId, LedgerQuery query, Subject subject,
        IReadOnlyList<LoyaltyProgram> programs, CancellationToken ct, string owner = "@ownerId")
    {
        var args = new DynamicParameters();
        args.Add("org", orgId);
        args.Add("ownerType", subject.OwnerType);
        args.Add("ownerId", subject.OwnerId);
        var events = new StringBuilder($"e.owner_type = @ownerType AND e.owner_id = {owner}");
        var entries = new StringBuilder();
        var wallet = new StringBuilder();
        // Set by any condition on events beyond the owner, the scope and the date window: the counts
        // and numbers then no longer apply. (A window keeps the numbers: its events are a range of them.)
        var narrowed = false;

        if (query.FromMs is { } from) { events.Append(" AND e.created_at >= @fromMs"); args.Add("fromMs", from); }
        if (query.ToMs is { } to) { events.Append(" AND e.created_at <= @toMs"); args.Add("toMs", to); }

        if (query.TillId is { } till)
        {
            var tillId = await Held(c).ExecuteScalarAsync<long?>(new CommandDefinition(
                "SELECT till_id FROM tills WHERE org_id = @org AND (code = @till OR CAST(till_id AS text) = @till) ORDER BY till_id LIMIT 1",
                new { org = orgId, till }, tx, cancellationToken: ct));
            // An unknown till has no entries: the page is empty, which the spec answers with 11003.
            events.Append(" AND e.till_id = @tillId");
            narrowed = true;
            args.Add("tillId", tillId ?? -1);
        }

        // A pool's event names the customer who acted (NewEvent.CustomerId; 0 when none did), so the
        // role keeps exactly what members of that role did.
        if (subject.GroupId is { } groupId && query.Role is { } role)
        {
            var members = (await Held(c).QueryAsync<long>(new CommandDefinition(
                "SELECT customer_id FROM group_members WHERE org_id = @org AND group_id = @groupId AND upper(role) = @role",
                new { org = orgId, groupId, role }, tx, cancellationToken: ct))).ToList();
            events.Append(" AND ").Append(dialect.InIdList("e.customer_id", "roleMembers"));
            args.Add("roleMembers", dialect.IdList(members));
            narrowed = true;
        }

        // Set when the only condition on an event's lines is the points/currency scope: the event's
        // own line_kinds bits answer it, read from the owner's events index with no probe of lines.
        int? scopeKind = null;
        switch (query.Currencies)
        {
            case CurrencyScope.PointsOnly:
                scopeKind = EventLineKinds.Points;
                entries.Append(" AND le.currency_id = 0");
                wallet.Append(" AND w.currency_id = 0");
                break;
            case CurrencyScope.CurrenciesOnly:
                scopeKind = EventLineKinds.Currency;
                entries.Append(" AND le.currency_id <> 0");
                wallet.Append(" AND w.currency_id <> 0");
                break;
            case CurrencyScope.NamedCurrencies:
                var currencyIds = new List<long>();
                foreach (var name in query.CurrencyNames)
                {
                    var matching = programs.Where(p => query.ProgramId is null || p.ProgramId == query.ProgramId)
                        .SelectMany(p => p.Currencies).Where(x => string.Equals(x.Name, name, StringComparison.OrdinalIgnoreCase)).ToList();
                    if (matching.Count == 0)
                        throw new PointsLedgerException(PointsLedgerErrors.InvalidAlternateCurrencyNames,
                            $"Invalid alternateCurrencyNames passed in request: no alternate currency '{name}'", 400);
                    currencyIds.AddRange(matching.Select(x => x.CurrencyId));
                }
                entries.Append(" AND ").Append(dialect.InIdList("le.currency_id", "currencyIds"));
                wallet.Append(" AND ").Append(dialect.InIdList("w.currency_id", "currencyIds"));
                args.Add("currencyIds", dialect.IdList(currencyIds));
                break;
            case CurrencyScope.PointsAndCurrencies:
                break;
        }

        if (query.Category is { } category)
        {
            entries.Append(" AND le.category = @category");
            wallet.Append(" AND w.category = @category");
            args.Add("category", category.ToWire());
        }
        if (query.EntryType is { } entryType)
        {
            entries.Append(" AND le.entry_type = @entryType");
            args.Add("entryType", entryType.ToWire());
        }
        if (query.ProgramId is { } programId)
        {
            args.Add("programId", programId);
            wallet.Append(" AND w.program_id = @programId");
            var concept = programs.FirstOrDefault(p => p.ProgramId == programId)?.Concept;
            var conceptTills = query.IncludeTillConceptEvents && concept is not null
                ? (await Held(c).QueryAsync<long>(new CommandDefinition("SELECT till_id FROM tills WHERE org_id = @org AND concept = @concept",
                    new { org = orgId, concept }, tx, cancellationToken: ct))).ToList()
                : [];
            if (conceptTills.Count == 0)
            {
                entries.Append(" AND le.program_id = @programId");
            }
            else
            {
                // Deductions at the program's concept's tills count even when another program paid them.
                entries.Append(CultureInfo.InvariantCulture,
                    $" AND (le.program_id = @programId OR (le.entry_type = 'DEBIT' AND {dialect.InIdList("e.till_id", "conceptTills")}))");
                args.Add("conceptTills", dialect.IdList(conceptTills));
            }
        }

        // Every posting writes at least one line, so without a condition on lines no probe is needed.
        // The probe is a correlated scalar subquery rather than EXISTS: PostgreSQL turns EXISTS into a
        // hash semi-join that scans every owner's lines to count one owner's events, while a scalar
        // subquery stays a per-event index probe on both databases.
        var scopeOnly = scopeKind is not null && query.Category is null && query.EntryType is null && query.ProgramId is null;
        if (scopeOnly)
            events.Append(CultureInfo.InvariantCulture, $" AND (e.line_kinds & {scopeKind}) <> 0");
        else if (entries.Length > 0)
            events.Append(CultureInfo.InvariantCulture, $" AND (SELECT 1 FROM ledger_entries le WHERE le.org_id = e.org_id AND le.event_id = e.event_id{entries} LIMIT 1) IS NOT NULL");
        // The running counts follow line_kinds exactly: every event of the owner (those with no lines,
        // such as a registration before any program existed, included), or those with the scope's bit set.
        string? countColumn = null, seqColumn = null, seqLow = null, seqHigh = null;
        if (!narrowed && scopeOnly)
        {
            seqColumn = scopeKind == EventLineKinds.Points ? "points_seq" : "currency_seq";
            if (query.IsDateBounded)
            {
                // The numbers follow (time, event id) order, so the window's events are the numbers
                // from its first event's to its last's: two seeks, however many events it holds.
                string Edge(string bound, string direction) =>
                    $"(SELECT x.{seqColumn} FROM events x WHERE x.org_id = @org AND x.owner_type = @ownerType AND x.owner_id = {owner} AND {bound} " +
                    $"AND (x.line_kinds & {scopeKind}) <> 0 ORDER BY x.created_at {direction}, x.event_id {direction} LIMIT 1)";
                seqLow = Edge("x.created_at >= @fromMs", "ASC");
                seqHigh = Edge("x.created_at <= @toMs", "DESC");
            }
            else
            {
                var counted = scopeKind == EventLineKinds.Points ? "points_events" : "currency_events";
                seqLow = "1";
                seqHigh = $"(SELECT c.{counted} FROM owner_event_counts c WHERE c.org_id = @org AND c.owner_type = @ownerType AND c.owner_id = {owner})";
            }
        }
        else if (!narrowed && !query.IsDateBounded && entries.Length == 0) countColumn = "events";
        return new Filter(events.ToString(), entries.ToString(), wallet.ToString(), args, countColumn, seqColumn, seqLow, seqHigh);
    }
}
