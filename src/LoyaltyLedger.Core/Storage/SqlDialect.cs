using System.Data.Common;
using System.Text.RegularExpressions;

namespace LoyaltyLedger.Storage;

/// <summary>
/// Everything that differs between SQLite and PostgreSQL, in one type per database
/// (<see cref="SqliteDialect"/>, <see cref="PostgresDialect"/>): the few places where their SQL
/// differs (placeholders that <see cref="Expand"/> fills in), how a write or a read transaction
/// begins, which errors are transient or unique violations, the locks that only PostgreSQL needs
/// (SQLite has a single writer), and the housekeeping around migrations and bulk loads. Nothing else
/// asks which database it runs on.
/// </summary>
public abstract partial class SqlDialect
{
    public static readonly SqlDialect Sqlite = new SqliteDialect();

    public static readonly SqlDialect Postgres = new PostgresDialect();

    private protected SqlDialect(DatabaseProvider provider, string name, string identity, string forUpdate, string greatest, string lastEntryId,
        string lastEventId, string nextOutboxId, string transactionIdColumn)
    {
        Provider = provider;
        Name = name;
        Identity = identity;
        ForUpdate = forUpdate;
        Greatest = greatest;
        LastEntryId = lastEntryId;
        LastEventId = lastEventId;
        NextOutboxId = nextOutboxId;
        TransactionIdColumn = transactionIdColumn;
    }

    public DatabaseProvider Provider { get; }

    public string Name { get; }

    /// <summary>A 64-bit surrogate key assigned by the database.</summary>
    public string Identity { get; }

    /// <summary>
    /// Row lock suffix. Empty on SQLite, where the write transaction itself (BEGIN IMMEDIATE) holds
    /// the database's single writer lock.
    /// </summary>
    public string ForUpdate { get; }

    /// <summary>The two-argument maximum function.</summary>
    public string Greatest { get; }

    /// <summary>
    /// The id of the ledger line (event) this transaction inserted last, so a statement batched right
    /// after the insert can refer to it without a round trip for the id. On PostgreSQL the identity
    /// column's sequence as this session last drew it; on SQLite the last inserted rowid, which is why
    /// it must be used by the statement directly after that insert.
    /// </summary>
    public string LastEntryId { get; }

    /// <inheritdoc cref="LastEntryId"/>
    public string LastEventId { get; }

    /// <summary>
    /// The id an outbox row takes, as an expression, so the row's payload can name its own id in the
    /// same statement that inserts it; the statement numbers its rows <c>r.ord</c> (1, 2, ...).
    /// PostgreSQL draws each id from the identity's sequence; SQLite, whose writers are serialized,
    /// takes the highest plus the row's number (outbox rows are never deleted, so an id is never
    /// given twice; the statement reads the highest before it inserts any row).
    /// </summary>
    public string NextOutboxId { get; }

    /// <summary>
    /// A column (with its leading comma) that records which transaction wrote a row: PostgreSQL's
    /// <c>pg_current_xact_id()</c>; nothing on SQLite, whose writers are serialized.
    /// </summary>
    public string TransactionIdColumn { get; }

    /// <summary>
    /// Fills in the placeholders (<c>{identity}</c>, <c>{forUpdate}</c>, ...) of shared SQL, and keeps
    /// a section <c>{only NAME}...{end}</c> only on the database of that <see cref="Name"/> (a
    /// migration step that one database alone takes).
    /// </summary>
    public string Expand(string sql) => !sql.Contains('{', StringComparison.Ordinal) ? sql : KeepOwnSections(sql)
        .Replace("{lastEntryId}", LastEntryId, StringComparison.Ordinal)
        .Replace("{lastEventId}", LastEventId, StringComparison.Ordinal)
        .Replace("{identity}", Identity, StringComparison.Ordinal)
        .Replace("{forUpdate}", ForUpdate, StringComparison.Ordinal)
        .Replace("{greatest}", Greatest, StringComparison.Ordinal)
        .Replace("{nextOutboxId}", NextOutboxId, StringComparison.Ordinal)
        .Replace("{transactionIdColumn}", TransactionIdColumn, StringComparison.Ordinal);

    /// <summary>
    /// A column in a list of ids bound as one parameter, whose argument is <see cref="IdList"/>: the
    /// statement's text is the same whatever the list, so it is compiled (SQLite's kept statements)
    /// or prepared and read (PostgreSQL, <see cref="PositionalSql"/>) once. Ids written into the text
    /// made a new statement for every list, each compiled once and dropped, and each pushing the
    /// statements that run all the time out of those caches. Works in a <see cref="StatementBatch"/>
    /// as well as through Dapper.
    /// </summary>
    public abstract string InIdList(string column, string parameter);

    /// <summary>The argument of <see cref="InIdList"/>: an array on PostgreSQL, a JSON array on SQLite (read with <c>json_each</c>).</summary>
    public abstract object IdList(IEnumerable<long> ids);

    /// <summary>
    /// A column for a condition that must not choose an index: on SQLite the column with a unary plus
    /// (its planner, without statistics, would otherwise read an index on org_id instead of the row
    /// ids listed beside it); on PostgreSQL the column itself, as org_id leads the primary key there.
    /// </summary>
    public abstract string Unindexed(string column);

    /// <summary>
    /// The suffix of a SELECT that claims rows for this transaction and passes over rows another
    /// transaction has claimed (PostgreSQL's <c>FOR UPDATE OF t SKIP LOCKED</c>); empty on SQLite,
    /// whose write transaction is the only writer.
    /// </summary>
    public abstract string ForUpdateSkipLocked(string table);

    /// <summary>
    /// Begins a write transaction: IMMEDIATE on SQLite (it takes the writer lock up front, so two
    /// writers never both read a balance and then write it), READ COMMITTED on PostgreSQL (the rows
    /// written are locked by the statements that write them, wallets in one global order).
    /// </summary>
    public abstract Task<DbTransaction> BeginWriteAsync(DbConnection connection, CancellationToken ct);

    /// <summary>
    /// Begins a read-only transaction whose statements all see one snapshot, so a count and the page
    /// it counts agree under concurrent writes: DEFERRED on SQLite (under WAL a reader's snapshot is
    /// fixed by its first read), REPEATABLE READ on PostgreSQL.
    /// </summary>
    public abstract Task<DbTransaction> BeginReadAsync(DbConnection connection, CancellationToken ct);

    /// <summary>
    /// The write-ahead log position a read replica must have replayed to hold every transaction this
    /// connection has committed: PostgreSQL's <c>pg_current_wal_insert_lsn()</c>, read right after the
    /// commit, which is at or past the commit's record. Null on SQLite, which has no replicas.
    /// </summary>
    public abstract Task<WalPosition?> CommitPositionAsync(DbConnection connection, CancellationToken ct);

    /// <summary>
    /// The commit as a statement of a batch, and the read of its position (<see cref="CommitPositionAsync"/>)
    /// as the statement after it: a group-commit batch sends its end (the outbox rows, stored answers,
    /// audit records), its commit and its position in one round trip instead of three, which every
    /// write of the batch waits for. PostgreSQL's <c>COMMIT</c>; null on SQLite, where the commit
    /// is in process and costs no round trip.
    /// </summary>
    public virtual (string Commit, string Position)? CommitInBatch => null;

    /// <summary>True when retrying the whole transaction may succeed: a deadlock, a serialization failure, a busy file.</summary>
    public abstract bool IsTransient(Exception ex);

    /// <summary>
    /// True when the database cancelled a statement its caller did not cancel (PostgreSQL's 57014 as
    /// the error itself): a cancel request meant for an earlier command on the same pooled
    /// connection, an operator's, a statement timeout. The transaction is rolled back. A group-commit
    /// lane runs such a write again, as after a deadlock (its writes are short, and a stray cancel
    /// is nothing of theirs); a longer job (a tier run, renumbering) does not, so an operator's
    /// cancel stops it.
    /// </summary>
    public abstract bool IsCancelledByServer(Exception ex);

    /// <summary>
    /// The statement after which the rest of a write transaction does not wait for a lock but fails
    /// at once (<see cref="IsLockWaitRefused"/>), and the one that lets it wait again; null where
    /// writes take no locks of their own to wait for (SQLite's one writer holds the whole file). A
    /// group-commit batch refuses waits once its first write has run, so it never waits for a lock
    /// while it holds the locks of another write (see <see cref="GroupCommit"/>).
    /// </summary>
    public abstract (string Refuse, string Allow)? LockWaits { get; }

    /// <summary>
    /// Sets up a group-commit lane's connection (<see cref="GroupCommit"/>) before it begins a batch's
    /// transaction. <paramref name="bounded"/>: every write of the batch is a posting of a few owners,
    /// so it changes a bounded number of pages.
    /// </summary>
    public abstract Task BeforeWriteAsync(DbConnection connection, bool bounded, CancellationToken ct);

    /// <summary>
    /// What running a unit of a group-commit batch again costs, counted in savepoints (a savepoint
    /// set, or moved past a unit that succeeded): how <see cref="GroupCommit"/> weighs setting a
    /// savepoint for every unit of a batch against running part of the batch again after a failure.
    /// </summary>
    public abstract int UnitCostInSavepoints { get; }

    /// <summary>True when <paramref name="ex"/> (or an exception it wraps) is a lock wait refused after <see cref="LockWaits"/>.</summary>
    public abstract bool IsLockWaitRefused(Exception ex);

    /// <summary>
    /// True when a commit that threw <paramref name="ex"/> may still have taken effect: PostgreSQL's
    /// connection lost while committing. An error the database answered means it rolled back.
    /// </summary>
    public abstract bool IsCommitOutcomeUnknown(Exception ex);

    /// <summary>
    /// True when <paramref name="ex"/> is a unique-constraint violation (of a constraint whose name,
    /// or on SQLite whose message, contains <paramref name="constraintHint"/>, when given).
    /// </summary>
    public abstract bool IsUniqueViolation(Exception ex, string? constraintHint = null);

    /// <summary>
    /// Adds to <paramref name="batch"/> the taking of a lock held until the transaction ends, that one
    /// transaction at a time holds (a PostgreSQL advisory lock on <paramref name="key"/>): what SQLite's
    /// single writer gives every write transaction anyway, so there it adds nothing.
    /// </summary>
    public abstract void AddTransactionLock(StatementBatch batch, long key);

    /// <summary>
    /// Tries to take the lock of <see cref="AddTransactionLock"/> without waiting; false when another
    /// transaction holds it. Always true on SQLite.
    /// </summary>
    public abstract Task<bool> TryTransactionLockAsync(DbConnection connection, DbTransaction transaction, long key, CancellationToken ct);

    /// <summary>
    /// Prepares a connection that is about to migrate the schema: on SQLite, switches the file to WAL
    /// (readers beside the single writer; a property of the file, set once); on PostgreSQL, takes a
    /// session lock (an advisory lock on <paramref name="lockKey"/>) so that two servers starting at
    /// once do not both migrate. Undone by <see cref="AfterMigrationsAsync"/>.
    /// </summary>
    public abstract Task BeforeMigrationsAsync(DbConnection connection, long lockKey, CancellationToken ct);

    /// <summary>Releases what <see cref="BeforeMigrationsAsync"/> took.</summary>
    public abstract Task AfterMigrationsAsync(DbConnection connection, long lockKey, CancellationToken ct);

    /// <summary>
    /// Opens a load of rows with explicit ids into <paramref name="tables"/>, visible only once
    /// completed: PostgreSQL's binary COPY, one connection per table; on SQLite, prepared inserts in
    /// one transaction of one connection.
    /// </summary>
    public abstract Task<BulkLoad> OpenBulkLoadAsync(LedgerDatabase database, IReadOnlyList<BulkTable> tables, CancellationToken ct);

    /// <summary>
    /// True when the tables of one <see cref="OpenBulkLoadAsync"/> load through connections of their
    /// own and can be fed at the same time (PostgreSQL); SQLite's one connection takes one row at a time.
    /// </summary>
    public abstract bool LoadsTablesInParallel { get; }

    /// <summary>
    /// The command timeout of a read that streams for as long as its reader takes rows (an export):
    /// none on PostgreSQL, where a timeout would cut a long stream; on SQLite the timeout is how long
    /// to wait for a lock, which a reader never takes, so the default is kept (null).
    /// </summary>
    public abstract int? StreamingReadTimeout { get; }

    /// <summary>
    /// True when a long ordered read should go through a server-side cursor fetched a batch at a time
    /// (PostgreSQL: planned for its first rows, never buffered whole by the client); SQLite runs in the
    /// process and steps one statement a row at a time.
    /// </summary>
    public abstract bool StreamsThroughCursor { get; }

    /// <summary>
    /// True when a connection keeps the statements it compiled, so that a read run again with the
    /// same text reuses them through <see cref="PreparedCommands"/> (<see cref="KeptReads"/>): on
    /// SQLite, whose reader connections <see cref="LedgerDatabase"/> keeps open, as Microsoft.Data.Sqlite
    /// compiles every new command again (parse, plan, generate code). Not on PostgreSQL, where Npgsql
    /// prepares the statements it sees often by itself (automatic preparation, which
    /// <see cref="LedgerDatabase"/> turns on).
    /// </summary>
    public abstract bool KeepsCompiledStatements { get; }

    /// <summary>
    /// True when statements written with named placeholders go to the database with numbered ones,
    /// bound in order (<see cref="PositionalSql"/>): on PostgreSQL, where Npgsql otherwise reads
    /// every statement's text on every execution to find its names and writes it again with numbers
    /// (3.6% of the server's CPU samples under the points-ledger read, and 4.6 of the 59.5 KB its
    /// page allocated). Not on SQLite, which takes names itself.
    /// </summary>
    public abstract bool BindsPositionally { get; }

    /// <summary>
    /// True when one statement can write many rows of one kind from arrays, one array per column,
    /// and use the ids it takes in further writes (PostgreSQL: <c>unnest</c> and data-modifying
    /// <c>WITH</c>): a bill's credits (lines, lots and balances), a debit's lots and their
    /// movements, and a group-commit batch's audit records and stored answers then go as one
    /// statement each. Each statement on PostgreSQL costs its own bind, portal and executor start in
    /// the backend and its own command in Npgsql. Not on SQLite, which runs in process, where a kept
    /// statement per row costs next to nothing.
    /// </summary>
    public abstract bool WritesRowsFromArrays { get; }

    /// <summary>
    /// What a database needs after rows were loaded in bulk with explicit ids, before it serves:
    /// on PostgreSQL, each identity moved past the highest id of its table, and fresh statistics and a
    /// visibility map (<c>VACUUM (ANALYZE)</c>) so that the planner sees millions of rows rather than
    /// an empty table and counts over an owner's events are index-only scans. SQLite needs neither:
    /// a rowid continues after the highest, and its planner reads the indexes as they are.
    /// </summary>
    /// <param name="database">The database loaded.</param>
    /// <param name="identities">The tables (and their identity columns) loaded with explicit ids.</param>
    /// <param name="vacuumGroups">
    /// The loaded tables, in groups: a VACUUM works on one table at a time on one core, so each group
    /// is vacuumed on a connection of its own, at the same time as the others.
    /// </param>
    /// <param name="ct">Stops the work between statements.</param>
    public abstract Task AfterBulkLoadAsync(LedgerDatabase database, IReadOnlyList<(string Table, string Column)> identities,
        IReadOnlyList<IReadOnlyList<string>> vacuumGroups, CancellationToken ct);

    private string KeepOwnSections(string sql) => !sql.Contains("{only ", StringComparison.Ordinal) ? sql
        : OnlySection().Replace(sql, m => m.Groups["name"].Value == Name ? m.Groups["sql"].Value : "");

    [GeneratedRegex(@"\{only (?<name>[a-z]+)\}(?<sql>.*?)\{end\}", RegexOptions.Singleline)]
    private static partial Regex OnlySection();
}
