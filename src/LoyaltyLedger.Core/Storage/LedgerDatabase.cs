using System.Data.Common;
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
    private readonly SqliteGroupCommit? _sqliteWriter;

    private LedgerDatabase(SqlDialect dialect, NpgsqlDataSource? postgres, string? sqlite, string description)
    {
        Dialect = dialect;
        _postgres = postgres;
        _sqliteConnectionString = sqlite;
        Description = description;
        if (sqlite is not null) _sqliteWriter = new SqliteGroupCommit(this);
    }

    public DatabaseProvider Provider => Dialect.Provider;

    /// <summary>What differs on this database: SQL, transactions, errors, locks (see <see cref="SqlDialect"/>).</summary>
    public SqlDialect Dialect { get; }

    /// <summary>Pulsed after every write this handle commits: wakes the outbox sequencer.</summary>
    public CommitSignal Commits { get; } = new();

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
        var dataSource = new NpgsqlDataSourceBuilder(builder.ConnectionString).Build();
        return new LedgerDatabase(SqlDialect.Postgres, dataSource, null,
            $"PostgreSQL {builder.Host}:{builder.Port}/{builder.Database}");
    }

    public async Task<DbConnection> OpenAsync(CancellationToken ct)
    {
        if (_postgres is not null)
            return await _postgres.OpenConnectionAsync(ct);

        var connection = new SqliteConnection(_sqliteConnectionString);
        await connection.OpenAsync(ct);
        using var pragma = connection.CreateCommand();
        // FULL: a write acknowledged to a client survives power loss, not just a process crash.
        pragma.CommandText = "PRAGMA synchronous=FULL; PRAGMA busy_timeout=30000; PRAGMA foreign_keys=OFF;";
        await pragma.ExecuteNonQueryAsync(ct);
        return connection;
    }

    /// <summary>
    /// Runs <paramref name="work"/> in one transaction and commits it, retrying the whole unit when the
    /// database reports a transient conflict (deadlock, serialization failure, a busy SQLite file).
    /// The transaction begins as <see cref="SqlDialect.BeginWriteAsync"/> says. The transaction's <see cref="CommitHooks"/> run right before it commits (a posting's outbox rows).
    /// </summary>
    public async Task<T> WriteAsync<T>(Func<DbConnection, DbTransaction, Task<T>> work, CancellationToken ct)
    {
        // SQLite: one writer per process, committing what is waiting as one transaction (see SqliteGroupCommit).
        if (_sqliteWriter is not null) return await _sqliteWriter.WriteAsync(work, ct);
        for (var attempt = 1; ; attempt++)
        {
            await using var connection = await OpenAsync(ct);
            await using var transaction = await Dialect.BeginWriteAsync(connection, ct);
            var hooks = CommitHooks.Open(transaction);
            try
            {
                var result = await work(connection, transaction);
                await CommitHooks.RunAsync(hooks, ct);
                await transaction.CommitAsync(ct);
                Commits.Pulse();
                return result;
            }
            catch (Exception ex) when (attempt < 8 && Dialect.IsTransient(ex))
            {
                await SafeRollbackAsync(transaction);
                await Task.Delay(Random.Shared.Next(5, 20 * attempt), ct);
            }
            catch
            {
                await SafeRollbackAsync(transaction);
                throw;
            }
        }
    }

    public async Task<T> ReadAsync<T>(Func<DbConnection, Task<T>> work, CancellationToken ct)
    {
        await using var connection = await OpenAsync(ct);
        return await work(connection);
    }

    private static async Task SafeRollbackAsync(DbTransaction transaction)
    {
        try { await transaction.RollbackAsync(CancellationToken.None); }
        catch (InvalidOperationException) { /* already completed */ }
        catch (DbException) { /* connection broken: the server rolls back on its own */ }
    }

    public async ValueTask DisposeAsync()
    {
        if (_postgres is not null) await _postgres.DisposeAsync();
        if (_sqliteWriter is not null) await _sqliteWriter.DisposeAsync();
        if (_postgres is null) SqliteConnection.ClearAllPools();
    }
}
