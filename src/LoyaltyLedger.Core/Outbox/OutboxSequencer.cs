using Dapper;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Outbox;

/// <summary>
/// Gives committed outbox rows that have no position yet their positions, in commit order, so that
/// a reader paging by position sees every row exactly once. A write through
/// <see cref="LedgerDatabase.WriteAsync{T}"/> numbers its own rows at its end, under the same lock
/// (<c>Outbox.PositionedRows</c>); what is left here is the rows written outside it, and those of a
/// server of an earlier version during an upgrade. A hosted service runs it every
/// <c>Ledger:Outbox:SequencerInterval</c> (100 ms by default).
/// </summary>
/// <remarks>
/// <para>One run takes the rows without a position that it can see, in <c>event_id</c> order, and
/// numbers them on from the highest position given so far. Only one numbering works at a time (on
/// PostgreSQL under a transaction-level advisory lock, across every server process; on SQLite the
/// write transaction itself is exclusive), and its positions become visible together, when it
/// commits, before the lock is released. So positions only ever grow: a row that commits later gets
/// a higher position than every row numbered before it, and a reader that has read up to position P
/// never misses a row, because no row can still get a position at or below P.</para>
/// <para>A run sees a row only once the row's transaction has committed. Ids are taken in one order
/// and transactions commit in another: when the transaction that took a lower id commits last, its
/// row is numbered in a later run, after the higher id that committed first: positions follow commit
/// order, not id order. On SQLite the writers are serialized, so the order is the id order; the same
/// code serves both.</para>
/// <para>PostgreSQL rows also record their transaction (<c>xact</c>). Numbering only rows older than
/// the snapshot's xmin is not needed here, because positions are given by one holder of the lock at
/// a time, which commits before it lets go; and it would hold every feed back behind any long writing
/// transaction on the server, in any of its databases (a bulk load, a migration, a session left idle
/// in a transaction).</para>
/// </remarks>
public static class OutboxSequencer
{
    /// <summary>At most this many rows are numbered in one run (one transaction); a caller that wants all runs again.</summary>
    public const int MaxPerRun = 5000;

    /// <summary>
    /// The advisory lock under which positions are given on PostgreSQL, by a run or by a transaction
    /// writing its own rows at its end (migrations hold 7340001).
    /// </summary>
    private const long AdvisoryLock = 7340013;

    /// <summary>Adds the taking of the positions' lock, held until the transaction ends, to <paramref name="batch"/> (nothing on SQLite, whose writers are serialized).</summary>
    internal static void AddLock(StatementBatch batch, SqlDialect dialect) => dialect.AddTransactionLock(batch, AdvisoryLock);

    private const string NumberSql =
        """
        WITH top AS (SELECT COALESCE(MAX(position), 0) AS position FROM outbox_events WHERE position IS NOT NULL),
        waiting AS (
            SELECT org_id, event_id, ROW_NUMBER() OVER (ORDER BY event_id) AS n
            FROM (SELECT org_id, event_id FROM outbox_events WHERE position IS NULL ORDER BY event_id LIMIT @limit) w)
        UPDATE outbox_events SET position = top.position + waiting.n
        FROM top, waiting
        WHERE outbox_events.org_id = waiting.org_id AND outbox_events.event_id = waiting.event_id
        """;

    /// <summary>
    /// Numbers the committed rows that have no position yet (at most <see cref="MaxPerRun"/>);
    /// returns how many it numbered. Cheap when there are none: one probe of a partial index, which
    /// holds only the rows waiting.
    /// </summary>
    /// <param name="database">The ledger's database.</param>
    /// <param name="ct">Cancels the run.</param>
    public static async Task<int> RunOnceAsync(LedgerDatabase database, CancellationToken ct)
    {
        var waiting = await database.ReadAsync(c => c.ExecuteScalarAsync<long?>(new CommandDefinition(
            "SELECT MIN(event_id) FROM outbox_events WHERE position IS NULL", cancellationToken: ct)), ct);
        if (waiting is null) return 0;
        return await database.WriteAsync(async (c, tx) =>
        {
            // The lock and the numbering in one round trip; the lock is held until the commit.
            var batch = new StatementBatch(c, tx, database.Dialect, ct);
            AddLock(batch, database.Dialect);
            var numbered = batch.Execute(NumberSql, new { limit = MaxPerRun });
            return (await batch.RunAsync(ct)).Affected(numbered);
        }, ct);
    }

    /// <summary>Runs until every committed row has a position; returns how many it numbered.</summary>
    public static async Task<int> RunAllAsync(LedgerDatabase database, CancellationToken ct)
    {
        var total = 0;
        int numbered;
        do
        {
            numbered = await RunOnceAsync(database, ct);
            total += numbered;
        } while (numbered == MaxPerRun);
        return total;
    }
}
