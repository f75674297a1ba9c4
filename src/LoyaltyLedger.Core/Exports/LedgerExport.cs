using System.Data;
using System.Data.Common;
using Dapper;
using LoyaltyLedger.Customers;
using LoyaltyLedger.Groups;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Exports;

/// <summary>The two formats a ledger export is written in.</summary>
public enum LedgerExportFormat
{
    /// <summary>RFC 4180 CSV with a header row; text that a spreadsheet would run as a formula is neutralized.</summary>
    Csv,

    /// <summary>One JSON object per line (newline-delimited JSON); points as strings with three decimals.</summary>
    Ndjson,
}

public static class LedgerExportFormats
{
    public const string CsvContentType = "text/csv";
    public const string NdjsonContentType = "application/x-ndjson";

    public static string ContentType(this LedgerExportFormat format) =>
        format == LedgerExportFormat.Csv ? CsvContentType + "; charset=utf-8" : NdjsonContentType;

    public static string FileExtension(this LedgerExportFormat format) => format == LedgerExportFormat.Csv ? "csv" : "ndjson";

    public static bool TryParse(string? text, out LedgerExportFormat format)
    {
        switch (text?.ToLowerInvariant())
        {
            case "csv": format = LedgerExportFormat.Csv; return true;
            case "ndjson": format = LedgerExportFormat.Ndjson; return true;
            default: format = default; return false;
        }
    }
}

/// <summary>
/// Which of an organization's ledger lines to export: all of them, or those of a time window
/// (<see cref="From"/> inclusive, <see cref="To"/> exclusive, by the event's time), of one owner
/// (a customer's or a group's wallets), of one program, or of one event name; the filters combine.
/// </summary>
public sealed record LedgerExportFilter
{
    public DateTimeOffset? From { get; init; }
    public DateTimeOffset? To { get; init; }
    public long? CustomerId { get; init; }
    public long? GroupId { get; init; }
    public long? ProgramId { get; init; }
    public string? EventName { get; init; }
}

/// <summary>
/// An organization's ledger, one row per ledger line, in (time, event id, line) order, written as
/// CSV or NDJSON while it is read: the rows go from the database's reader to the output through a
/// buffer of a fixed size, so an export of any length costs the same memory. The HTTP endpoint and
/// the <c>export</c> command both use it.
/// </summary>
/// <remarks>
/// <see cref="OpenAsync"/> refuses a bad filter or an unknown customer, group or program before a
/// byte is written, so the caller can still answer with an error; <see cref="WriteAsync"/> then
/// streams. The export is one SELECT, so it reads one consistent snapshot on both databases.
/// </remarks>
public sealed class LedgerExport : IAsyncDisposable
{
    /// <summary>The columns, in order: the CSV header and the NDJSON property names.</summary>
    public static readonly IReadOnlyList<string> Columns =
    [
        "eventId", "entryId", "time", "eventName", "displayName", "ownerType", "ownerId", "programId", "currency", "category",
        "entryType", "points", "balanceAfter", "billNumber", "storeCode", "tillCode", "reason", "relatedEventId", "tier",
    ];

    /// <summary>How often (in lines) <see cref="WriteAsync"/> reports progress.</summary>
    public const int ProgressEvery = 10_000;

    private readonly DbConnection _connection;
    private readonly LedgerDatabase _database;
    private readonly string _where;
    private readonly Dictionary<string, object> _parameters;

    private LedgerExport(DbConnection connection, LedgerDatabase database, string where, Dictionary<string, object> parameters)
    {
        _connection = connection;
        _database = database;
        _where = where;
        _parameters = parameters;
    }

    /// <summary>
    /// Checks the filter (a window whose end is not after its start, a customer together with a
    /// group: <c>invalid_request</c>; an unknown customer, group or program: its <c>_not_found</c>)
    /// and opens the connection the export will read on (a read replica's when <paramref name="consistency"/> allows one).
    /// </summary>
    public static async Task<LedgerExport> OpenAsync(LedgerDatabase db, long orgId, LedgerExportFilter filter, ReadConsistency consistency,
        CancellationToken ct)
    {
        if (filter is { From: { } from, To: { } to } && to <= from)
            throw LedgerException.Invalid("to must be after from (from is inclusive, to exclusive).");
        if (filter is { CustomerId: not null, GroupId: not null })
            throw LedgerException.Invalid("Name at most one of customerId and groupId.");

        var where = "";
        var parameters = new Dictionary<string, object> { ["orgId"] = orgId };
        if (filter.From is { } f)
        {
            where += " AND e.created_at >= @from";
            parameters["from"] = f.ToUnixTimeMilliseconds();
        }
        if (filter.To is { } t)
        {
            where += " AND e.created_at < @to";
            parameters["to"] = t.ToUnixTimeMilliseconds();
        }
        if (filter.CustomerId is { } customerId)
        {
            where += " AND e.owner_type = 'CUSTOMER' AND e.owner_id = @ownerId";
            parameters["ownerId"] = customerId;
        }
        if (filter.GroupId is { } groupId)
        {
            where += " AND e.owner_type = 'GROUP' AND e.owner_id = @ownerId";
            parameters["ownerId"] = groupId;
        }
        if (filter.ProgramId is { } programId)
        {
            where += " AND le.program_id = @programId";
            parameters["programId"] = programId;
        }
        if (filter.EventName is { Length: > 0 } eventName)
        {
            where += " AND e.event_name = @eventName";
            parameters["eventName"] = eventName;
        }

        var connection = await db.OpenReadAsync(consistency, ct);
        try
        {
            if (filter.CustomerId is { } c) await CustomerDirectory.RequireAsync(connection, db.Dialect, orgId, c, null, ct);
            if (filter.GroupId is { } g) await GroupDirectory.RequireAsync(connection, db.Dialect, orgId, g, null, ct);
            if (filter.ProgramId is { } p && await ProgramCatalog.FindAsync(connection, db.Dialect, orgId, p, null, db.Catalog, ct) is null)
                throw LedgerException.NotFound("program", p);
            return new LedgerExport(connection, db, where, parameters);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    /// <summary>How many lines the export holds now (for a progress bar; lines written meanwhile may add to it).</summary>
    public Task<long> CountAsync(CancellationToken ct) =>
        _connection.ExecuteScalarAsync<long>(new CommandDefinition(
            $"SELECT COUNT(*) FROM events e JOIN ledger_entries le ON le.org_id = e.org_id AND le.event_id = e.event_id WHERE e.org_id = @orgId{_where}",
            new DynamicParameters(_parameters), commandTimeout: Unlimited, cancellationToken: ct));

    // A long export is not a slow statement: rows keep coming as long as the reader takes them,
    // and a filter that matches rarely may leave long gaps between them. Cancellation stops it.
    private int? Unlimited => _database.Dialect.StreamingReadTimeout;

    /// <summary>Lines fetched from a PostgreSQL cursor per round trip.</summary>
    private const int FetchSize = 5_000;

    /// <summary>
    /// Writes the lines to <paramref name="output"/> in <paramref name="format"/>, reporting the
    /// number written so far to <paramref name="progress"/> every <see cref="ProgressEvery"/> lines
    /// and at the end. Returns the number of lines written.
    /// </summary>
    public async Task<long> WriteAsync(Stream output, LedgerExportFormat format, Action<long>? progress, CancellationToken ct)
    {
        await using var lines = format == LedgerExportFormat.Csv ? (ILineWriter)new CsvLines(output) : new NdjsonLines(output);
        var written = 0L;
        var rows = _database.Dialect.StreamsThroughCursor ? ReadFromCursorAsync(ct) : ReadAsync(ct);
        await foreach (var line in rows.WithCancellation(ct))
        {
            await lines.WriteAsync(line, ct);
            if (++written % ProgressEvery == 0) progress?.Invoke(written);
        }
        await lines.CompleteAsync(ct);
        progress?.Invoke(written);
        return written;
    }

    // Each line's currency, bill, store and till are scalar subqueries, not joins: a join lets a
    // planner hash the organization's bills and then sort the result, which holds the first line back
    // until the whole history is read; a subquery is one index probe per line and keeps the plan a
    // walk of the events' time index (ix_events_time, or ix_events_owner for one owner) with each
    // event's lines sorted on their own (SQLite: "temp b-tree for right part of order by";
    // PostgreSQL: an incremental sort).
    private string Query =>
        $"""
        SELECT e.event_id, le.entry_id, e.created_at, e.event_name, e.display_name, le.owner_type, le.owner_id, le.program_id,
            CASE WHEN le.currency_id = 0 THEN NULL
                 ELSE (SELECT c.name FROM currencies c WHERE c.org_id = le.org_id AND c.currency_id = le.currency_id) END,
            le.category, le.entry_type, le.points, le.balance_after,
            CASE WHEN e.bill_id IS NULL THEN NULL ELSE (SELECT b.bill_number FROM bills b WHERE b.org_id = e.org_id AND b.bill_id = e.bill_id) END,
            CASE WHEN e.store_id IS NULL THEN NULL
                 ELSE (SELECT s.code FROM stores s WHERE s.org_id = e.org_id AND s.store_id = e.store_id) END,
            CASE WHEN e.till_id IS NULL THEN NULL
                 ELSE (SELECT t.code FROM tills t WHERE t.org_id = e.org_id AND t.till_id = e.till_id) END,
            e.reason, e.related_event_id, le.tier
        FROM events e
        JOIN ledger_entries le ON le.org_id = e.org_id AND le.event_id = e.event_id
        WHERE e.org_id = @orgId{_where}
        ORDER BY e.created_at, e.event_id, le.entry_id
        """;

    private DbCommand Command(string sql, DbTransaction? transaction = null, bool parameters = true)
    {
        var command = _connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = transaction;
        if (Unlimited is { } timeout) command.CommandTimeout = timeout;
        foreach (var (name, value) in parameters ? _parameters : [])
        {
            var parameter = command.CreateParameter();
            parameter.ParameterName = name;
            parameter.Value = value;
            command.Parameters.Add(parameter);
        }
        return command;
    }

    /// <summary>SQLite: one statement, stepped a row at a time by the reader (SQLite runs in this process).</summary>
    private async IAsyncEnumerable<LedgerExportLine> ReadAsync([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        await using var command = Command(Query);
        await using var reader = await command.ExecuteReaderAsync(CommandBehavior.SequentialAccess, ct);
        while (await reader.ReadAsync(ct)) yield return Read(reader);
    }

    /// <summary>
    /// PostgreSQL: a cursor, fetched a batch at a time. Declared as a cursor, the query is planned for
    /// its first rows (<c>cursor_tuple_fraction</c>): the time index walked in order with an
    /// incremental sort per event, where a plain SELECT of a whole organization is planned for its
    /// total cost, as a hash join sorted at the end, and sends nothing until all of it is sorted. A
    /// client that goes away leaves at most a batch unread: the transaction is rolled back, which
    /// closes the cursor, instead of the connection draining the rest of a result.
    /// </summary>
    private async IAsyncEnumerable<LedgerExportLine> ReadFromCursorAsync([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        await using var transaction = await _connection.BeginTransactionAsync(IsolationLevel.ReadCommitted, ct);
        await using (var declare = Command("DECLARE ledger_export NO SCROLL CURSOR FOR " + Query, transaction))
            await declare.ExecuteNonQueryAsync(ct);
        await using var fetch = Command($"FETCH FORWARD {FetchSize} FROM ledger_export", transaction, parameters: false);
        for (var fetched = FetchSize; fetched == FetchSize;)
        {
            fetched = 0;
            await using var reader = await fetch.ExecuteReaderAsync(CommandBehavior.SequentialAccess, ct);
            while (await reader.ReadAsync(ct))
            {
                fetched++;
                yield return Read(reader);
            }
        }
        await transaction.CommitAsync(ct);
    }

    // Each column read once, in order (SequentialAccess).
    private static LedgerExportLine Read(DbDataReader r)
    {
        var (eventId, entryId, createdAt, eventName, displayName) = (r.GetInt64(0), r.GetInt64(1), r.GetInt64(2), r.GetString(3), Text(r, 4));
        var (ownerType, ownerId, programId, currency, category) = (r.GetString(5), r.GetInt64(6), r.GetInt64(7), Text(r, 8), r.GetString(9));
        var (entryType, points, balanceAfter) = (r.GetString(10), r.GetInt64(11), r.GetInt64(12));
        return new LedgerExportLine(eventId, entryId, createdAt, eventName, displayName, ownerType, ownerId, programId, currency, category,
            entryType, SignedPoints(entryType, points), new Points(balanceAfter),
            BillNumber: Text(r, 13), StoreCode: Text(r, 14), TillCode: Text(r, 15), Reason: Text(r, 16),
            RelatedEventId: r.IsDBNull(17) ? null : r.GetInt64(17), Tier: Text(r, 18));
    }

    private static string? Text(DbDataReader r, int ordinal) => r.IsDBNull(ordinal) ? null : r.GetString(ordinal);

    /// <summary>
    /// Lines store a debit's points as a positive quantity with its entry type; the export signs
    /// them, so a wallet's lines add up to its balance in a spreadsheet or a warehouse.
    /// </summary>
    private static Points SignedPoints(string entryType, long thousandths) =>
        new(entryType == "DEBIT" ? -thousandths : thousandths);

    public ValueTask DisposeAsync() => _connection.DisposeAsync();
}

/// <summary>One exported line. <see cref="Tier"/> is the tier its owner held in the line's program when it was posted (null when the program had no tiers).</summary>
public readonly record struct LedgerExportLine(
    long EventId,
    long EntryId,
    long CreatedAt,
    string EventName,
    string? DisplayName,
    string OwnerType,
    long OwnerId,
    long ProgramId,
    string? Currency,
    string Category,
    string EntryType,
    Points Points,
    Points BalanceAfter,
    string? BillNumber,
    string? StoreCode,
    string? TillCode,
    string? Reason,
    long? RelatedEventId,
    string? Tier);
