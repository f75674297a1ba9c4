using LoyaltyLedger.Storage;
using Npgsql;

namespace LoyaltyLedger.Tests.Infrastructure;

/// <summary>
/// One database per test class (xunit class fixture), on SQLite or PostgreSQL. The same abstract
/// test class runs against both through a one-line subclass each, so every storage behaviour is
/// proven on both databases.
/// </summary>
public abstract class DatabaseFixture : IAsyncLifetime
{
    private TestServerHost? _host;

    public abstract DatabaseProvider Provider { get; }

    /// <summary>The server (in-memory test host) over this class's database.</summary>
    public TestServerHost Host => _host ?? throw new InvalidOperationException("Fixture not initialized.");

    public LedgerDatabase Database => Host.Database;

    protected abstract Task<LedgerDatabase> CreateDatabaseAsync();

    /// <summary>
    /// Another handle on the same database with its own connection pool: what a second server
    /// process would have.
    /// </summary>
    public abstract LedgerDatabase OpenSecondInstance();

    /// <summary>The executable's options that select this database.</summary>
    public abstract string[] CommandLineArgs { get; }

    public async Task InitializeAsync()
    {
        var db = await CreateDatabaseAsync();
        await Migrations.ApplyAsync(db, CancellationToken.None);
        _host = await TestServerHost.StartAsync(db);
    }

    public async Task DisposeAsync()
    {
        if (_host is not null) await _host.DisposeAsync();
        await DropAsync();
    }

    protected virtual Task DropAsync() => Task.CompletedTask;
}

public sealed class SqliteDatabase : DatabaseFixture
{
    private string? _dir;

    public override DatabaseProvider Provider => DatabaseProvider.Sqlite;

    public override LedgerDatabase OpenSecondInstance() => LedgerDatabase.ForSqliteFile(Path.Combine(_dir!, "ledger.db"));

    public override string[] CommandLineArgs => ["--data-dir", _dir!];

    protected override Task<LedgerDatabase> CreateDatabaseAsync()
    {
        _dir = Path.Combine(Path.GetTempPath(), "loyaltyledger-tests", Guid.NewGuid().ToString("N"));
        return Task.FromResult(LedgerDatabase.ForSqliteFile(Path.Combine(_dir, "ledger.db")));
    }

    protected override Task DropAsync()
    {
        try { if (_dir is not null) Directory.Delete(_dir, recursive: true); }
        catch (IOException) { /* a pooled handle may linger; the temp dir is reclaimed later */ }
        return Task.CompletedTask;
    }
}

/// <summary>
/// A fresh database on the PostgreSQL server named by LEDGER_TEST_POSTGRES (scripts/test.sh starts
/// one). Without it the tests fail rather than skip: a green run must have exercised PostgreSQL.
/// </summary>
public sealed class PostgresDatabase : DatabaseFixture
{
    private string? _name;

    public override DatabaseProvider Provider => DatabaseProvider.Postgres;

    public override LedgerDatabase OpenSecondInstance() => LedgerDatabase.ForPostgres(ConnectionString);

    public override string[] CommandLineArgs => ["--postgres", ConnectionString];

    /// <summary>This class's database on the test server.</summary>
    public string ConnectionString => new NpgsqlConnectionStringBuilder(ServerConnectionString) { Database = _name, MaxPoolSize = 40 }.ConnectionString;

    public static string ServerConnectionString =>
        Environment.GetEnvironmentVariable("LEDGER_TEST_POSTGRES")
        ?? throw new InvalidOperationException(
            "LEDGER_TEST_POSTGRES is not set: run the suite with scripts/test.sh, which starts a throwaway PostgreSQL.");

    protected override async Task<LedgerDatabase> CreateDatabaseAsync()
    {
        _name = "ll_test_" + Guid.NewGuid().ToString("N")[..16];
        await using (var admin = new NpgsqlConnection(ServerConnectionString))
        {
            await admin.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE {_name}", admin);
            await create.ExecuteNonQueryAsync();
        }
        var builder = new NpgsqlConnectionStringBuilder(ServerConnectionString) { Database = _name, MaxPoolSize = 40 };
        return LedgerDatabase.ForPostgres(builder.ConnectionString);
    }

    protected override async Task DropAsync()
    {
        if (_name is null) return;
        NpgsqlConnection.ClearAllPools();
        await using var admin = new NpgsqlConnection(ServerConnectionString);
        await admin.OpenAsync();
        await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {_name} WITH (FORCE)", admin);
        await drop.ExecuteNonQueryAsync();
    }
}
