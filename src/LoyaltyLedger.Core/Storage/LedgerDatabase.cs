using System.Data.Common;
using Dapper;
using LoyaltyLedger.Telemetry;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace LoyaltyLedger.Storage;

public enum DatabaseProvider { Sqlite, Postgres }

/// <summary>
/// The one store behind both read APIs. SQLite (a file, the embedded default) or PostgreSQL; the SQL
/// is shared and every difference between the two lives in the database's <see cref="SqlDialect"/>.
/// </summary>
public sealed class LedgerDatabase : IAsyncDisposable
{
    static LedgerDatabase()
    {
        // Columns are snake_case, properties PascalCase: let Dapper match program_id to ProgramId.
        Dapper.DefaultTypeMap.MatchNamesWithUnderscores = true;
    }

    private readonly NpgsqlDataSource? _postgres;
    private readonly string? _sqliteConnectionString;
    private readonly string? _sqliteWriterConnectionString;
    private readonly GroupCommit? _sqliteWriter;
    private readonly SqliteCheckpointer? _checkpointer;
    private GroupCommit? _postgresWriters;
    private ReadReplicas? _replicas;
    private ReadSlots? _readSlots;
    private ReadPipeline? _readPipeline;

    private LedgerDatabase(SqlDialect dialect, NpgsqlDataSource? postgres, string? sqlite, string description)
    {
        Dialect = dialect;
        _postgres = postgres;
        _sqliteConnectionString = sqlite;
        _sqliteWriterConnectionString = sqlite is null ? null : new SqliteConnectionStringBuilder(sqlite) { ForeignKeys = false }.ToString();
        if (sqlite is not null && sqlite == _sqliteWriterConnectionString)
            throw new ArgumentException("The SQLite connection string must leave foreign keys unset, so that the writer's pool is its own.", nameof(sqlite));
        Description = description;
        if (sqlite is not null)
        {
            _checkpointer = new SqliteCheckpointer(sqlite);
            _sqliteWriter = new GroupCommit(this, lanes: 1, maxBatch: 64, LedgerTelemetry.SqliteWriterBusy, LedgerTelemetry.SqliteWriterBatch,
                LedgerTelemetry.SqliteWriterReruns, beforeBatch: _checkpointer.CatchUpAsync);
        }
    }

    /// <summary>The checkpointer beside the SQLite writer (null on PostgreSQL), for tests to watch.</summary>
    internal SqliteCheckpointer? Checkpointer => _checkpointer;

    public DatabaseProvider Provider => Dialect.Provider;

    /// <summary>What differs on this database: SQL, transactions, errors, locks (see <see cref="SqlDialect"/>).</summary>
    public SqlDialect Dialect { get; }

    /// <summary>Where the data lives, for start-up messages (no secrets).</summary>
    public string Description { get; }

    public static LedgerDatabase ForSqliteFile(string path)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var builder = new SqliteConnectionStringBuilder
        {
            DataSource = full,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = true,
            // Microsoft.Data.Sqlite retries SQLITE_BUSY until the command timeout: writers from other
            // processes wait their turn instead of failing.
            DefaultTimeout = 30,
        };
        return new LedgerDatabase(SqlDialect.Sqlite, null, builder.ToString(), $"SQLite file {full}");
    }

    public static LedgerDatabase ForPostgres(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        return new LedgerDatabase(SqlDialect.Postgres, PostgresDataSource(connectionString), null,
            $"PostgreSQL {builder.Host}:{builder.Port}/{builder.Database}");
    }

    /// <summary>A PostgreSQL data source as the ledger uses one (the primary's, and each read replica's).</summary>
    internal static NpgsqlDataSource PostgresDataSource(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        if (!connectionString.Contains("Maximum Pool Size", StringComparison.OrdinalIgnoreCase))
            builder.MaxPoolSize = 64;
        // A posting is a few dozen short statements of a few fixed shapes: prepared once per pooled
        // connection, PostgreSQL skips parsing and planning them on every call after the second.
        if (!connectionString.Contains("Auto Prepare", StringComparison.OrdinalIgnoreCase))
        {
            builder.MaxAutoPrepare = 256;
            builder.AutoPrepareMinUsages = 2;
        }
        // Prepared statements keep one generic plan instead of being planned again on every call:
        // left to itself (plan_cache_mode=auto), PostgreSQL kept re-planning the statements whose
        // custom plan looks cheaper on paper (a wallet's open lots, the read's `event_id = ANY(@ids)`
        // joins), and planning was half of PostgreSQL's CPU per points-ledger read and a quarter per
        // write. Every statement of the ledger looks rows up by key through an index, so the generic
        // plan is the plan (docs/indexes.md).
        if (!connectionString.Contains("plan_cache_mode", StringComparison.OrdinalIgnoreCase))
            builder.Options = $"{builder.Options} -c plan_cache_mode=force_generic_plan".Trim();
        // The server sets no session state (transactions are begun with their isolation level, locks
        // are transaction locks; the migration lock is released by its owner), so a connection going
        // back to the pool needs no reset: without this, every open sends six reset statements first.
        if (!connectionString.Contains("Reset On Close", StringComparison.OrdinalIgnoreCase))
            builder.NoResetOnClose = true;
        // An error names the statement of a batch it came from (StatementBatch.FailedAt): a
        // group-commit batch sends its end, its COMMIT and the read of its position in one round trip,
        // and only the failed statement's place tells whether the commit took effect. The statement
        // rides on the exception with its parameters; no error answer or log line of the server shows it.
        builder.IncludeFailedBatchedCommand = true;
        return new NpgsqlDataSourceBuilder(builder.ConnectionString).Build();
    }

    /// <summary>
    /// Lets the reads that allow it (<see cref="ReadConsistency.Replica"/>) be served by PostgreSQL
    /// streaming replicas of this database (see <see cref="Storage.ReadReplicas"/>). PostgreSQL only;
    /// called once, before the first read.
    /// </summary>
    public void UseReadReplicas(ReadReplicaOptions options)
    {
        if (_postgres is null) throw new InvalidOperationException("Read replicas are a PostgreSQL feature; this database is SQLite.");
        if (_replicas is not null) throw new InvalidOperationException("The read replicas are already set.");
        if (options.ConnectionStrings.Count > 0) _replicas = new ReadReplicas(this, options);
    }

    /// <summary>
    /// Gathers the writes of <see cref="WriteAndLocateAsync{T}"/> (the API's writes) and
    /// <see cref="WriteBatchedAsync{T}"/> (the lifecycle run's postings) into shared
    /// transactions: <paramref name="lanes"/> writers, each taking up to <paramref name="maxBatch"/>
    /// waiting writes into one transaction (see <see cref="GroupCommit"/>). PostgreSQL only (SQLite
    /// always has its one writer). The first call sets them; a second server built on this handle, as
    /// tests build, keeps them. The other writes (tier runs, expiry notices, the outbox sequencer,
    /// renumbering, configuration) keep a transaction of their own: they take table or advisory locks,
    /// or run long, and would hold up the writes batched with them.
    /// </summary>
    /// <param name="lanes">Writers, each a connection.</param>
    /// <param name="maxBatch">The most writes one transaction takes.</param>
    /// <param name="sideBySide">The API's writes of a batch first run side by side (see <see cref="LockStep"/>).</param>
    public void UseWriteLanes(int lanes, int maxBatch, bool sideBySide = true)
    {
        if (_postgres is null) throw new InvalidOperationException("Write lanes are for PostgreSQL; SQLite has its one writer.");
        if (_postgresWriters is not null) return;
        _postgresWriters = new GroupCommit(this, lanes, maxBatch, LedgerTelemetry.PostgresWriterBusy, LedgerTelemetry.PostgresWriterBatch,
            LedgerTelemetry.PostgresWriterReruns, LedgerTelemetry.PostgresWriterDeferred)
        {
            SideBySide = sideBySide ? (LedgerTelemetry.PostgresWriterSideBySide, LedgerTelemetry.PostgresWriterRounds) : null,
        };
    }

    /// <summary>
    /// Lets at most <paramref name="slots"/> reads run on the primary at once (see <see cref="ReadSlots"/>);
    /// the others wait their turn. PostgreSQL only (SQLite reads run in the process); the first call
    /// sets them, as for <see cref="UseWriteLanes"/>.
    /// </summary>
    public void UseReadSlots(int slots)
    {
        if (_postgres is null) throw new InvalidOperationException("Read slots are for PostgreSQL; SQLite reads run in the process.");
        ArgumentOutOfRangeException.ThrowIfLessThan(slots, 1);
        _readSlots ??= new ReadSlots(slots);
    }

    /// <summary>
    /// Sends the page reads of both read APIs through a read pipeline (see <see cref="ReadPipeline"/>):
    /// <paramref name="lanes"/> connections, each sending up to <paramref name="maxBatch"/> waiting
    /// reads in one round trip. PostgreSQL only (a SQLite read is a call into the process, with no
    /// round trip to save); the first call sets it, as for <see cref="UseWriteLanes"/>.
    /// </summary>
    public void UseReadPipeline(int lanes, int maxBatch)
    {
        if (_postgres is null) throw new InvalidOperationException("The read pipeline is for PostgreSQL; SQLite reads run in the process.");
        _readPipeline ??= new ReadPipeline(_postgres, lanes, maxBatch);
    }

    /// <summary>The write lanes' side-by-side tries (see <see cref="GroupCommit.SideBySideCounts"/>; null: no lanes), for tests to watch.</summary>
    internal (long Ran, long Broken, long Rounds)? SideBySide => _postgresWriters?.SideBySideCounts;

    /// <summary>Reads the read pipeline has sent (null: none is set), for tests to watch.</summary>
    internal long? PipelinedReads => _readPipeline?.ReadsSent;

    /// <summary>
    /// Whether a read that <paramref name="consistency"/> allows goes through the read pipeline
    /// (<see cref="PipelinedQueryAsync{T}"/>): when there is one, and the read is the primary's. A
    /// read a replica may serve keeps the replicas' routing (<see cref="ReadAsync{T}(Func{DbConnection, Task{T}}, ReadConsistency, CancellationToken)"/>).
    /// </summary>
    internal bool PipelinesReads(ReadConsistency consistency) => _readPipeline is not null && !(consistency.MayUseReplica && _replicas is not null);

    /// <summary>
    /// The rows of one statement, read through the read pipeline (<see cref="PipelinesReads"/> says
    /// when), with no connection of the caller's. A statement whose text or values a batch cannot
    /// bind (see <see cref="KeptReads.Positional"/>) is read on a connection of its own instead.
    /// </summary>
    internal Task<List<T>> PipelinedQueryAsync<T>(string sql, object? args, CancellationToken ct) =>
        _readPipeline?.TryQueryAsync<T>(sql, args, ct) ?? ReadAsync(c => KeptReads.QueryAsync<T>(c, Dialect, sql, args, null, ct), ct);

    /// <summary>
    /// Runs <paramref name="work"/> on <paramref name="held"/>, the connection of the read the caller
    /// is in, or, for a read that holds none (one that went through the read pipeline), on a read of its own.
    /// </summary>
    internal Task<T> OnConnectionAsync<T>(DbConnection? held, Func<DbConnection, Task<T>> work, CancellationToken ct) =>
        held is not null ? work(held) : ReadAsync(work, ct);

    /// <summary>How many reads run on the primary at once (<see cref="UseReadSlots"/>); null: no bound.</summary>
    public int? ReadSlotCount => _readSlots?.Slots;

    /// <summary>The read replicas in use, as host:port (none: every read is the primary's).</summary>
    public IReadOnlyList<string> ReadReplicaNames => _replicas?.Names ?? [];

    public Task<DbConnection> OpenAsync(CancellationToken ct) => OpenAsync(writer: false, ct);

    /// <summary>
    /// A connection for a group-commit lane to write on (<see cref="GroupCommit"/>): on SQLite from a
    /// pool of the writer's own, since what the writer sets on its connection
    /// (<see cref="SqlDialect.BeforeWriteAsync"/>) must not reach a reader.
    /// </summary>
    internal Task<DbConnection> OpenWriterAsync(CancellationToken ct) => OpenAsync(writer: true, ct);

    private async Task<DbConnection> OpenAsync(bool writer, CancellationToken ct)
    {
        if (_postgres is not null)
            return await _postgres.OpenConnectionAsync(ct);

        // The writer's connections come from a pool of their own: Microsoft.Data.Sqlite pools by
        // connection string, and the writer's names foreign keys off explicitly, as the pragmas
        // below set them anyway.
        var connection = new SqliteConnection(writer ? _sqliteWriterConnectionString : _sqliteConnectionString);
        try
        {
            await connection.OpenAsync(ct);
            using var pragma = connection.CreateCommand();
            // FULL: a write acknowledged to a client survives power loss, not just a process crash.
            // The writer leaves checkpoints to the checkpointer beside it (SqliteCheckpointer), so
            // that no commit carries one, and cuts the log's file back when it starts it again.
            pragma.CommandText = writer
                ? $"PRAGMA synchronous=FULL; PRAGMA busy_timeout=30000; PRAGMA foreign_keys=OFF; PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit={SqliteCheckpointer.LogSizeLimit};"
                : "PRAGMA synchronous=FULL; PRAGMA busy_timeout=30000; PRAGMA foreign_keys=OFF;";
            await pragma.ExecuteNonQueryAsync(ct);
            return connection;
        }
        catch
        {
            // A connection that could not be set up (a cancelled open, a file it cannot read) goes
            // back closed, not left open for the finalizer.
            await connection.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Runs <paramref name="work"/> in one transaction and commits it, retrying the whole unit when the
    /// database reports a transient conflict (deadlock, serialization failure, a busy SQLite file).
    /// The transaction begins as <see cref="SqlDialect.BeginWriteAsync"/> says. Right before it commits, its
    /// <see cref="CommitHooks"/> run, and then what its work left for the end (<see cref="CommitHooks.AtTail"/>:
    /// the outbox rows, which take their positions there).
    /// </summary>
    public async Task<T> WriteAsync<T>(Func<DbConnection, DbTransaction, Task<T>> work, CancellationToken ct) =>
        (await WriteCoreAsync(work, locate: false, batched: false, ct)).Result;

    /// <summary>
    /// <see cref="WriteAsync{T}(Func{DbConnection, DbTransaction, Task{T}}, CancellationToken)"/>, and the
    /// WAL position of its commit (<see cref="SqlDialect.CommitPositionAsync"/>; null on SQLite, or when
    /// the position could not be read after the commit): what a write's answer gives the client as its
    /// consistency token.
    /// </summary>
    /// <param name="work">The write.</param>
    /// <param name="ct">Keeps a write that has not started from starting.</param>
    /// <param name="postingsOnly">
    /// The work touches the database only through postings (<c>Ledger.Posting</c>) on the connection it
    /// is given, never through the connection itself: then, on PostgreSQL, it may run side by side
    /// with the other writes of its batch (<see cref="LockStep"/>), which the posting's methods make safe.
    /// </param>
    public Task<(T Result, WalPosition? Position)> WriteAndLocateAsync<T>(Func<DbConnection, DbTransaction, Task<T>> work, CancellationToken ct,
        bool postingsOnly = false) =>
        WriteCoreAsync(work, locate: true, batched: true, ct, postingsOnly);

    /// <summary>
    /// <see cref="WriteAsync{T}(Func{DbConnection, DbTransaction, Task{T}}, CancellationToken)"/> for a
    /// short posting of one owner (a lifecycle run's conversion of a lot or expiry of a wallet): on
    /// PostgreSQL it goes through the write lanes when they are set, as the API's writes do, so that
    /// many of them, issued together, share transactions and commits (see <see cref="GroupCommit"/>).
    /// </summary>
    public async Task<T> WriteBatchedAsync<T>(Func<DbConnection, DbTransaction, Task<T>> work, CancellationToken ct) =>
        (await WriteCoreAsync(work, locate: false, batched: true, ct)).Result;

    private async Task<(T Result, WalPosition? Position)> WriteCoreAsync<T>(Func<DbConnection, DbTransaction, Task<T>> work, bool locate, bool batched,
        CancellationToken ct, bool postingsOnly = false)
    {
        // What this write reads on the side (the catalog, in a lane or not) takes no read slot: no
        // write ever waits for one, so a read holding a slot may wait for a write (ReadSlots).
        ReadSlots.Exempt();
        // SQLite: one writer per process, committing what is waiting as one transaction; PostgreSQL: the
        // API's writes and the lifecycle's postings through the write lanes when they are set (see GroupCommit).
        if (_sqliteWriter is not null)
        {
            try
            {
                return await _sqliteWriter.WriteAsync(work, locate: false, ct, bounded: batched);
            }
            finally
            {
                // After a refusal too: its batch may have committed its neighbours.
                _checkpointer!.Committed();
            }
        }
        if (batched && _postgresWriters is not null) return await _postgresWriters.WriteAsync(work, locate, ct, sideBySide: postingsOnly);
        for (var attempt = 1; ; attempt++)
        {
            await using var connection = await OpenAsync(ct);
            await using var transaction = await Dialect.BeginWriteAsync(connection, ct);
            var hooks = CommitHooks.Open(transaction);
            T result;
            try
            {
                result = await work(connection, transaction);
                await CommitHooks.RunAsync(hooks, ct);
                await CommitHooks.WriteTailAsync(hooks.Tail, connection, transaction, Dialect);
                await transaction.CommitAsync(ct);
            }
            catch (Exception ex) when (attempt < 8 && Dialect.IsTransient(ex))
            {
                await SafeRollbackAsync(transaction);
                await Task.Delay(Random.Shared.Next(5, 20 * attempt), ct);
                continue;
            }
            catch
            {
                await SafeRollbackAsync(transaction);
                throw;
            }
            CommitHooks.RunAfterCommit(hooks.AfterCommit);
            return (result, locate ? await LocateAsync(connection) : null);
        }
    }

    /// <summary>The position after a commit, on its connection; a write that committed is not failed for want of it.</summary>
    internal async Task<WalPosition?> LocateAsync(DbConnection connection)
    {
        try
        {
            return await Dialect.CommitPositionAsync(connection, CancellationToken.None);
        }
        catch (DbException)
        {
            return null;
        }
    }

    /// <summary>
    /// The primary's WAL position now (null on SQLite): at or after every commit that finished before
    /// the call. The token of an answer that did not commit itself (a replayed write).
    /// </summary>
    public async Task<WalPosition?> CurrentPositionAsync(CancellationToken ct)
    {
        if (_postgres is null) return null;
        await using var connection = await OpenAsync(ct);
        return await LocateAsync(connection);
    }

    /// <summary>Runs <paramref name="work"/> on a connection to the primary.</summary>
    /// <remarks>
    /// On PostgreSQL, with read slots set (<see cref="UseReadSlots"/>), the read waits its turn for
    /// one first, unless it runs inside a read or a write (see <see cref="ReadSlots"/>).
    /// On SQLite the connection is one the process keeps open between reads (at most
    /// <see cref="MaxKeptReaders"/>), so the statements a read compiled are there for the next read
    /// on it (<see cref="KeptReads"/>): Microsoft.Data.Sqlite compiles every new command again, and
    /// for a page of either read API compiling cost more than running it. A connection left inside
    /// a transaction or with a statement still running (an open data reader) is closed rather than
    /// kept: either holds a snapshot the next read would start from.
    /// </remarks>
    public async Task<T> ReadAsync<T>(Func<DbConnection, Task<T>> work, CancellationToken ct)
    {
        if (_postgres is not null)
        {
            if (_readSlots is not { } slots || !ReadSlots.TakesSlot)
            {
                await using var connection = await OpenAsync(ct);
                return await work(connection);
            }
            // The slot before the connection: a read waiting its turn holds no pooled connection.
            await slots.EnterAsync(ct);
            try
            {
                // A read inside this one (a lookup the work makes) would otherwise wait for a slot
                // this read holds, and with every slot so held, for ever.
                ReadSlots.Exempt();
                await using var connection = await OpenAsync(ct);
                return await work(connection);
            }
            finally
            {
                slots.Leave();
            }
        }
        SqliteConnection reader;
        if (_readers.TryTake(out var kept))
        {
            Interlocked.Decrement(ref _keptReaders);
            reader = kept;
        }
        else
        {
            reader = (SqliteConnection)await OpenAsync(ct);
            // Tracks the connection's statements, so that IsIdle can ask whether one is still running.
            reader.Handle!.enable_sqlite3_next_stmt(true);
        }
        try
        {
            return await work(reader);
        }
        finally
        {
            // Kept only when nothing of this read is left on it (an answered refusal leaves nothing
            // either, so it keeps its statements too); else the next read would start from this
            // one's snapshot.
            var keep = !_closed && IsIdle(reader);
            if (keep && Interlocked.Increment(ref _keptReaders) > MaxKeptReaders)
            {
                Interlocked.Decrement(ref _keptReaders);
                keep = false;
            }
            if (keep)
            {
                _readers.Add(reader);
                // Disposed meanwhile: the drain may have run before the Add.
                if (_closed) await DrainReadersAsync();
            }
            else
            {
                await reader.DisposeAsync();
            }
        }
    }

    /// <summary>
    /// Runs <paramref name="work"/> on a connection to the primary without waiting for a read slot
    /// (<see cref="UseReadSlots"/>): a health probe measures the database, not the server's queue of
    /// reads. Behind a burst of reads a probe that queued would time out, and the load balancer would
    /// take a busy but working server out of its rotation, piling its load on the others.
    /// And a read a caller must wait for synchronously (the console's key ring, which the framework
    /// loads that way): a thread blocked in the queue is one the reads holding the slots may need.
    /// </summary>
    public async Task<T> ReadOutOfTurnAsync<T>(Func<DbConnection, Task<T>> work, CancellationToken ct)
    {
        ReadSlots.Exempt();
        return await ReadAsync(work, ct);
    }

    /// <summary>Open, outside any transaction, and no statement of it still running (an open data reader holds a snapshot).</summary>
    private static bool IsIdle(SqliteConnection connection)
    {
        if (connection.State != System.Data.ConnectionState.Open || connection.Handle is not { } handle) return false;
        if (SQLitePCL.raw.sqlite3_get_autocommit(handle) == 0) return false;
        try
        {
            for (var statement = SQLitePCL.raw.sqlite3_next_stmt(handle, null); statement is not null; statement = SQLitePCL.raw.sqlite3_next_stmt(handle, statement))
                if (SQLitePCL.raw.sqlite3_stmt_busy(statement) != 0) return false;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // A statement the tracking does not know (prepared before it was on): not known idle.
            return false;
        }
        return true;
    }

    private async Task DrainReadersAsync()
    {
        while (_readers.TryTake(out var reader))
        {
            Interlocked.Decrement(ref _keptReaders);
            await reader.DisposeAsync();
        }
    }

    /// <summary>The most SQLite reader connections kept open between reads; more concurrent reads open and close their own.</summary>
    private const int MaxKeptReaders = 16;

    private readonly System.Collections.Concurrent.ConcurrentBag<SqliteConnection> _readers = [];
    private int _keptReaders;
    private volatile bool _closed;

    /// <summary>
    /// Runs <paramref name="work"/> on a connection that <paramref name="consistency"/> allows: a read
    /// replica's when one will do (see <see cref="Storage.ReadReplicas"/>), else the primary's. A
    /// database error on a replica runs the work again on the primary, so it must only read.
    /// </summary>
    public async Task<T> ReadAsync<T>(Func<DbConnection, Task<T>> work, ReadConsistency consistency, CancellationToken ct)
    {
        if (!consistency.MayUseReplica || _replicas is null) return await ReadAsync(work, ct);
        // No replica will do: the primary serves, in its read slots as any of its reads.
        if (await _replicas.OpenAsync(consistency, ct) is not ({ } connection, { } replica)) return await ReadAsync(work, ct);
        try
        {
            await using (connection) return await work(connection);
        }
        catch (DbException ex) when (!ct.IsCancellationRequested)
        {
            _replicas.Failed(replica, ex);
        }
        return await ReadAsync(work, ct);
    }

    /// <summary>
    /// A connection that <paramref name="consistency"/> allows (<see cref="ReadAsync{T}(Func{DbConnection, Task{T}}, ReadConsistency, CancellationToken)"/>),
    /// for a read that streams (an export): an error on it after it is opened is the caller's.
    /// </summary>
    public async Task<DbConnection> OpenReadAsync(ReadConsistency consistency, CancellationToken ct)
    {
        if (!consistency.MayUseReplica || _replicas is null) return await OpenAsync(ct);
        if (await _replicas.OpenAsync(consistency, ct) is not ({ } connection, { } replica)) return await OpenAsync(ct);
        // A pooled connection to a replica that restarted is broken, and the caller would fail on it:
        // one round trip proves it, else the primary serves.
        try
        {
            await connection.ExecuteScalarAsync<int>(new CommandDefinition("SELECT 1", cancellationToken: ct));
            return connection;
        }
        catch (DbException ex) when (!ct.IsCancellationRequested)
        {
            await connection.DisposeAsync();
            _replicas.Failed(replica, ex);
        }
        return await OpenAsync(ct);
    }

    private static async Task SafeRollbackAsync(DbTransaction transaction)
    {
        try { await transaction.RollbackAsync(CancellationToken.None); }
        catch (InvalidOperationException) { /* already completed */ }
        catch (DbException) { /* connection broken: the server rolls back on its own */ }
    }

    public async ValueTask DisposeAsync()
    {
        _closed = true;
        await DrainReadersAsync();
        if (_replicas is not null) await _replicas.DisposeAsync();
        if (_readPipeline is not null) await _readPipeline.DisposeAsync();
        if (_postgresWriters is not null) await _postgresWriters.DisposeAsync();
        if (_sqliteWriter is not null) await _sqliteWriter.DisposeAsync();
        if (_checkpointer is not null) await _checkpointer.DisposeAsync();
        if (_postgres is not null) await _postgres.DisposeAsync();
        if (_postgres is null) SqliteConnection.ClearAllPools();
    }
}
