using System.Data.Common;
using Dapper;
using Microsoft.Data.Sqlite;

namespace LoyaltyLedger.Storage;

/// <summary>SQLite: one file, one writer at a time (every write transaction holds the file's writer lock).</summary>
public sealed class SqliteDialect : SqlDialect
{
    internal SqliteDialect()
        : base(DatabaseProvider.Sqlite,
            name: "sqlite",
            identity: "INTEGER PRIMARY KEY",
            forUpdate: "",
            greatest: "MAX",
            lastEntryId: "last_insert_rowid()",
            lastEventId: "last_insert_rowid()",
            nextOutboxId: "(SELECT COALESCE(MAX(event_id), 0) FROM outbox_events) + r.ord",
            transactionIdColumn: "")
    {
    }

    public override string InIdList(string column, string parameter) => $"{column} IN (SELECT value FROM json_each(@{parameter}))";

    public override object IdList(IEnumerable<long> ids) => "[" + string.Join(",", ids.Select(id => id.ToString(System.Globalization.CultureInfo.InvariantCulture))) + "]";

    public override string Unindexed(string column) => "+" + column;

    public override string ForUpdateSkipLocked(string table) => "";

    public override Task<DbTransaction> BeginWriteAsync(DbConnection connection, CancellationToken ct) =>
        Task.FromResult<DbTransaction>(((SqliteConnection)connection).BeginTransaction(deferred: false));

    public override Task<DbTransaction> BeginReadAsync(DbConnection connection, CancellationToken ct) =>
        Task.FromResult<DbTransaction>(((SqliteConnection)connection).BeginTransaction(deferred: true));

    public override Task<WalPosition?> CommitPositionAsync(DbConnection connection, CancellationToken ct) => Task.FromResult<WalPosition?>(null);

    // A local file: a commit that failed did not happen (SQLite rolls the journal back on the next open).
    public override bool IsCommitOutcomeUnknown(Exception ex) => false;

    public override (string Refuse, string Allow)? LockWaits => null;

    public override bool IsLockWaitRefused(Exception ex) => false;

    // A batch of postings keeps its statement journals in memory. SQLite keeps the original of every
    // page that a statement or a savepoint's work changes, so that it can undo that work alone: a
    // multi-row statement (the wallets' lock) and each write of a batch with savepoints
    // (GroupCommit). By default that journal is a temporary file once it passes 64 KiB, written
    // with two calls a page: under the write mix (32 clients, /proc/PID/io) half of the bytes the
    // server wrote. In memory it is a copy, emptied when the savepoint is released, so a posting's
    // pages at most. temp_store=MEMORY also keeps temporary tables and sorts in memory, without a
    // bound, so a batch with a write that may change whole tables (renumbering, a tier run) keeps
    // the default; setting the value a connection already has changes nothing. The writer's
    // connections have a pool of their own (LedgerDatabase.OpenWriterAsync), so no reader gets one so set.
    public override async Task BeforeWriteAsync(DbConnection connection, bool bounded, CancellationToken ct)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = bounded ? "PRAGMA temp_store=MEMORY" : "PRAGMA temp_store=DEFAULT";
        await command.ExecuteNonQueryAsync(ct);
    }

    // In process, moving a savepoint took 2.4-8.9 µs (Microsoft.Data.Sqlite, a new command each time,
    // on a copy of the seeded file); a unit is a posting's dozens of statements, about a millisecond
    // of the one writer's time. 100 is on the cautious side of that ratio.
    public override int UnitCostInSavepoints => 100;

    public override bool IsTransient(Exception ex) =>
        ex is SqliteException { SqliteErrorCode: 5 or 6 }; // SQLITE_BUSY, SQLITE_LOCKED

    // Nothing cancels a statement of this process's connections but this process.
    public override bool IsCancelledByServer(Exception ex) => false;

    public override bool IsUniqueViolation(Exception ex, string? constraintHint = null) =>
        ex is SqliteException { SqliteExtendedErrorCode: 2067 or 1555 } sq // SQLITE_CONSTRAINT_UNIQUE, _PRIMARYKEY
        && (constraintHint is null || sq.Message.Contains(constraintHint, StringComparison.Ordinal));

    public override void AddTransactionLock(StatementBatch batch, long key)
    {
    }

    public override Task<bool> TryTransactionLockAsync(DbConnection connection, DbTransaction transaction, long key, CancellationToken ct) =>
        Task.FromResult(true);

    public override Task BeforeMigrationsAsync(DbConnection connection, long lockKey, CancellationToken ct) =>
        // WAL lets readers run beside the single writer; it is a property of the file, set once.
        // Migrating writers are serialized by the file's writer lock.
        connection.ExecuteAsync(new CommandDefinition("PRAGMA journal_mode=WAL;", cancellationToken: ct));

    public override Task AfterMigrationsAsync(DbConnection connection, long lockKey, CancellationToken ct) => Task.CompletedTask;

    public override Task<BulkLoad> OpenBulkLoadAsync(LedgerDatabase database, IReadOnlyList<BulkTable> tables, CancellationToken ct) =>
        BulkLoad.OpenSqliteAsync(database.OpenAsync, tables, ct);

    public override bool LoadsTablesInParallel => false;

    public override int? StreamingReadTimeout => null;

    public override bool StreamsThroughCursor => false;

    public override bool KeepsCompiledStatements => true;

    public override bool BindsPositionally => false;

    public override bool WritesRowsFromArrays => false;

    public override Task AfterBulkLoadAsync(LedgerDatabase database, IReadOnlyList<(string Table, string Column)> identities,
        IReadOnlyList<IReadOnlyList<string>> vacuumGroups, CancellationToken ct) => Task.CompletedTask;
}
