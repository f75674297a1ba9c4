using System.Buffers;
using System.Data.Common;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Dapper;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Outbox;

/// <summary>
/// The transactional outbox: the events the ledger sends out, written in the same transaction as
/// the change that caused them (so nothing is announced that did not commit, and nothing that
/// committed goes unannounced), and read in commit order by the change feed and the webhook
/// dispatcher.
/// </summary>
/// <remarks>
/// A row takes its position at the end of the transaction that writes it, under a lock held until
/// that commit (<see cref="PositionedRows"/>), or, written outside a write of <see cref="LedgerDatabase"/>,
/// from <see cref="OutboxSequencer"/> once it has committed: in commit order either way. Readers page
/// by position, never by <c>event_id</c>: ids are taken in one order and transactions commit in
/// another, so a reader paging by id could pass an id whose transaction had not committed yet and
/// never come back for it.
/// </remarks>
public static class Outbox
{
    private static readonly JsonWriterOptions WriterOptions = new()
    {
        // The payload is sent as application/json, never embedded in HTML: only what JSON itself
        // requires is escaped, so names and reasons in any script stay readable.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>One outbox row to write: its type and a writer of its <c>data</c> (exactly one JSON value).</summary>
    public readonly record struct NewRow(string Type, Action<Utf8JsonWriter> WriteData);

    /// <summary>The most rows one insert statement writes: a group-commit batch of 16 postings of four rows each.</summary>
    private const int MaxRowsPerStatement = 64;

    // The inserts of 1 to MaxRowsPerStatement rows, without positions (for the sequencer) and with
    // them (at the end of a write, under the positions' lock).
    private static readonly string[] InsertSql = [.. Enumerable.Range(0, MaxRowsPerStatement + 1).Select(n => InsertSqlFor(n, positioned: false))];
    private static readonly string[] PositionedInsertSql = [.. Enumerable.Range(0, MaxRowsPerStatement + 1).Select(n => InsertSqlFor(n, positioned: true))];

    // The envelope names the row's own id, which is only known in the statement that takes it: the
    // statement takes each row's id first (numbered r.ord among the statement's rows, for SQLite) and
    // builds the payload around it. PostgreSQL does not flatten a subquery whose columns call
    // nextval(), so each row's id is drawn once and used twice. Positioned, the statement reads the
    // highest position and numbers on from it; a later statement of the same transaction sees the
    // rows of the one before it.
    private static string InsertSqlFor(int rows, bool positioned)
    {
        if (rows == 0) return "";
        var values = string.Join("\n    UNION ALL ", Enumerable.Range(0, rows).Select(i => string.Create(CultureInfo.InvariantCulture,
            $"SELECT {i + 1} AS ord, @org{i} AS org, @at{i} AS created_at, @type{i} AS type, @rest{i} AS rest")));
        var (column, value, top) = positioned
            ? (", position", ", top.position + n.ord", "\n(SELECT COALESCE(MAX(position), 0) AS position FROM outbox_events WHERE position IS NOT NULL) top CROSS JOIN")
            : ("", "", "");
        return $$"""
            INSERT INTO outbox_events (event_id, org_id{{column}}, type, created_at, payload)
            SELECT n.id, n.org{{value}}, n.type, n.created_at, '{"id":"evt_' || CAST(n.id AS text) || n.rest
            FROM {{top}} (SELECT {nextOutboxId} AS id, r.ord, r.org, r.created_at, r.type, r.rest FROM (
                {{values}}) r) n
            """;
    }

    /// <summary>Adds the inserts of <paramref name="rows"/> to <paramref name="batch"/>, as few statements as it takes.</summary>
    private static void AddInserts(StatementBatch batch, IReadOnlyList<PendingRow> rows, string[] sql)
    {
        for (var start = 0; start < rows.Count; start += MaxRowsPerStatement)
        {
            var count = Math.Min(MaxRowsPerStatement, rows.Count - start);
            var args = new Dictionary<string, object?>(count * 4);
            for (var i = 0; i < count; i++)
            {
                var row = rows[start + i];
                var n = i.ToString(CultureInfo.InvariantCulture);
                args["org" + n] = row.OrgId;
                args["at" + n] = row.CreatedAt;
                args["type" + n] = row.Type;
                args["rest" + n] = row.Rest;
            }
            batch.Execute(sql[count], args);
        }
    }

    /// <summary>
    /// Adds the insert of one outbox row to <paramref name="batch"/> (and so to its transaction): the
    /// envelope <c>{"id":"evt_N","type":...,"createdAt":...,"orgId":...,"data":...}</c>, whose
    /// <c>data</c> <paramref name="writeData"/> writes (exactly one JSON value).
    /// </summary>
    public static void Add(StatementBatch batch, long orgId, string type, long createdAtMs, Action<Utf8JsonWriter> writeData) =>
        AddAll(batch, orgId, createdAtMs, [new NewRow(type, writeData)]);

    /// <summary>
    /// Adds the inserts of <paramref name="rows"/> to <paramref name="batch"/>'s transaction as
    /// <see cref="Add"/> would. Inside <see cref="LedgerDatabase.WriteAsync{T}"/> (and a group-commit
    /// batch) they are left for the end of the transaction, where they are written with the rows of
    /// every other write it holds and take their positions (<see cref="PositionedRows"/>). Otherwise
    /// they go into <paramref name="batch"/> without a position, in as few statements as they can, and
    /// <see cref="OutboxSequencer"/> numbers them after their commit.
    /// </summary>
    public static void AddAll(StatementBatch batch, long orgId, long createdAtMs, IReadOnlyList<NewRow> rows)
    {
        if (rows.Count == 0) return;
        // The payload is written now, from what the posting holds now, wherever the row goes.
        var pending = new PendingRow[rows.Count];
        for (var i = 0; i < rows.Count; i++)
            pending[i] = new PendingRow(orgId, createdAtMs, rows[i].Type, Rest(orgId, rows[i].Type, createdAtMs, rows[i].WriteData));
        if (CommitHooks.AtTail(batch.Transaction, PositionedRows.Instance, pending)) return;
        AddInserts(batch, pending, InsertSql);
    }

    /// <summary>An outbox row ready to insert: everything but its id, which the insert takes.</summary>
    private sealed record PendingRow(long OrgId, long CreatedAt, string Type, string Rest);

    /// <summary>
    /// Writes the outbox rows of a whole transaction at its end, with their positions: under the
    /// sequencer's lock, held until the commit, each row is numbered on from the highest position
    /// given so far. Positions so follow commit order, as the sequencer's do: a transaction that
    /// takes the lock after another has released it (at its commit, once it is visible) numbers after
    /// it. This saves the sequencer's update of every row after its commit (on PostgreSQL a new copy
    /// of the row and three index entries, and the outbox's largest statement), and a group-commit
    /// batch writes the rows of all its writes in one statement. The cost is that transactions writing
    /// outbox rows take the lock in turn for their last statement and their commit.
    /// </summary>
    private sealed class PositionedRows : ICommitTail
    {
        public static readonly PositionedRows Instance = new();

        public bool HoldsLockUntilCommit => true;

        public void Add(StatementBatch batch, SqlDialect dialect, IReadOnlyList<object> items)
        {
            var rows = items.SelectMany(i => (PendingRow[])i).ToList();
            if (rows.Count == 0) return;
            OutboxSequencer.AddLock(batch, dialect);
            AddInserts(batch, rows, PositionedInsertSql);
        }
    }

    /// <summary>The envelope after its id: <c>","type":...,"data":...}</c>.</summary>
    private static string Rest(long orgId, string type, long createdAtMs, Action<Utf8JsonWriter> writeData)
    {
        if (!OutboxEventTypes.IsInOutbox(type)) throw new ArgumentException($"'{type}' is not an outbox event type.", nameof(type));
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var json = new Utf8JsonWriter(buffer, WriterOptions))
        {
            json.WriteStartObject();
            json.WriteString("type", type);
            json.WriteString("createdAt", IsoTime.Format(createdAtMs));
            json.WriteNumber("orgId", orgId);
            json.WritePropertyName("data");
            writeData(json);
            json.WriteEndObject();
        }
        // Everything after the id: the object just written without its opening brace.
        return "\"," + Encoding.UTF8.GetString(buffer.WrittenSpan[1..]);
    }

    /// <summary>
    /// An organization's sequenced events after <paramref name="afterPosition"/> (0: from the
    /// beginning), in position (commit) order, at most <paramref name="limit"/>; only the given
    /// <paramref name="types"/> when some are given.
    /// </summary>
    public static async Task<IReadOnlyList<OutboxEvent>> ReadAsync(DbConnection c, SqlDialect dialect, long orgId, long afterPosition, int limit,
        IReadOnlyCollection<string>? types, CancellationToken ct)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        var args = TypeFilter(types, out var filter);
        args.Add("orgId", orgId);
        args.Add("afterPosition", afterPosition);
        args.Add("limit", limit);
        return await QueryAsync(c, dialect,
            $"""
            SELECT {Columns} FROM outbox_events
            WHERE org_id = @orgId AND position > @afterPosition{filter}
            ORDER BY position
            LIMIT @limit
            """,
            args, ct);
    }

    /// <summary>Every organization's sequenced events after <paramref name="afterPosition"/>, in position order (for a dispatcher that serves them all).</summary>
    public static async Task<IReadOnlyList<OutboxEvent>> ReadAllOrgsAsync(DbConnection c, SqlDialect dialect, long afterPosition, int limit, CancellationToken ct)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        return await QueryAsync(c, dialect,
            $"""
            SELECT {Columns} FROM outbox_events
            WHERE position > @afterPosition
            ORDER BY position
            LIMIT @limit
            """,
            new { afterPosition, limit }, ct);
    }

    /// <summary>
    /// A page of the change feed: <see cref="ReadAsync"/>, and the position to continue after. That
    /// is the last event's when the page is full; otherwise the highest position given to any row
    /// when the page was read, so a consumer of a few rare types does not scan the same other
    /// events again on every call.
    /// </summary>
    /// <remarks>
    /// The highest position is read before the page, and the page reads only up to it: positions are
    /// given in increasing order, so every row at or below the highest position seen is already
    /// final, and one given after that read is above it and comes in a later page.
    /// </remarks>
    public static async Task<OutboxPage> ReadPageAsync(DbConnection c, SqlDialect dialect, long orgId, long afterPosition, int limit,
        IReadOnlyCollection<string>? types, CancellationToken ct)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        var highest = await KeptReads.ScalarAsync<long?>(c, dialect, "SELECT MAX(position) FROM outbox_events WHERE position IS NOT NULL", null, null, ct) ?? 0;
        if (highest <= afterPosition) return new OutboxPage([], afterPosition);
        var args = TypeFilter(types, out var filter);
        args.Add("orgId", orgId);
        args.Add("afterPosition", afterPosition);
        args.Add("highest", highest);
        args.Add("limit", limit);
        var events = await QueryAsync(c, dialect,
            $"""
            SELECT {Columns} FROM outbox_events
            WHERE org_id = @orgId AND position > @afterPosition AND position <= @highest{filter}
            ORDER BY position
            LIMIT @limit
            """,
            args, ct);
        return new OutboxPage(events, events.Count == limit ? events[^1].Position : highest);
    }

    /// <summary>
    /// <c> AND type IN (@type0, ...)</c> for the given types (none: no filter), one parameter each,
    /// written out rather than left to Dapper, which expands a list on SQLite but passes an array to
    /// PostgreSQL, where IN takes none. The callers add their values by name too (not as a template
    /// object), so that <see cref="KeptReads"/> binds them to the statement it keeps.
    /// </summary>
    private static DynamicParameters TypeFilter(IReadOnlyCollection<string>? types, out string filter)
    {
        var args = new DynamicParameters();
        var distinct = types?.Distinct(StringComparer.Ordinal).ToList() ?? [];
        if (distinct.Count == 0)
        {
            filter = "";
            return args;
        }
        var names = new List<string>();
        for (var i = 0; i < distinct.Count; i++)
        {
            var name = "type" + i.ToString(System.Globalization.CultureInfo.InvariantCulture);
            args.Add(name, distinct[i]);
            names.Add("@" + name);
        }
        filter = $" AND type IN ({string.Join(", ", names)})";
        return args;
    }

    private const string Columns = "event_id AS EventId, position AS Position, org_id AS OrgId, type AS Type, created_at AS CreatedAt, payload AS Payload";

    private sealed class Row
    {
        public long EventId { get; set; }
        public long Position { get; set; }
        public long OrgId { get; set; }
        public string Type { get; set; } = "";
        public long CreatedAt { get; set; }
        public string Payload { get; set; } = "";
    }

    private static async Task<IReadOnlyList<OutboxEvent>> QueryAsync(DbConnection c, SqlDialect dialect, string sql, object args, CancellationToken ct) =>
        (await KeptReads.QueryAsync<Row>(c, dialect, sql, args, null, ct))
            .Select(r => new OutboxEvent(r.EventId, r.Position, r.OrgId, r.Type, r.CreatedAt, r.Payload))
            .ToList();
}

/// <summary>A page of the change feed and the position after which the next page starts.</summary>
public sealed record OutboxPage(IReadOnlyList<OutboxEvent> Events, long NextPosition);
