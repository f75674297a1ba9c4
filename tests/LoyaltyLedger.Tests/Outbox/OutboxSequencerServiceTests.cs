using Dapper;
using LoyaltyLedger.Outbox;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.Configuration;
using OutboxStore = LoyaltyLedger.Outbox.Outbox;

namespace LoyaltyLedger.Tests.Outbox;

/// <summary>
/// The background sequencer of a server: on its interval it numbers the rows that wait without a
/// position (an earlier version's, or written outside the ledger's writes); the server's own writes
/// number theirs at their commit and do not wait for it. Each test has a database of its own, so that no other server's
/// sequencer (the fixture's) can number the rows in its place.
/// </summary>
public abstract class OutboxSequencerServiceTests(DatabaseFixture db)
{
    private sealed class FreshDatabase(Func<LedgerDatabase> open, Func<Task> drop) : IAsyncDisposable
    {
        public LedgerDatabase Open() => open();
        public ValueTask DisposeAsync() => new(drop());
    }

    private async Task<FreshDatabase> FreshDatabaseAsync()
    {
        FreshDatabase fresh;
        if (db.Provider == DatabaseProvider.Sqlite)
        {
            var dir = Path.Combine(Path.GetTempPath(), "loyaltyledger-tests", Guid.NewGuid().ToString("N"));
            fresh = new FreshDatabase(() => LedgerDatabase.ForSqliteFile(Path.Combine(dir, "ledger.db")), () =>
            {
                try { Directory.Delete(dir, recursive: true); }
                catch (IOException) { /* a pooled handle may linger */ }
                return Task.CompletedTask;
            });
        }
        else
        {
            var name = "ll_test_" + Guid.NewGuid().ToString("N")[..16];
            await using (var admin = new Npgsql.NpgsqlConnection(PostgresDatabase.ServerConnectionString))
            {
                await admin.OpenAsync();
                await admin.ExecuteAsync($"CREATE DATABASE {name}");
            }
            var connectionString = new Npgsql.NpgsqlConnectionStringBuilder(PostgresDatabase.ServerConnectionString) { Database = name, MaxPoolSize = 10 }.ConnectionString;
            fresh = new FreshDatabase(() => LedgerDatabase.ForPostgres(connectionString), async () =>
            {
                Npgsql.NpgsqlConnection.ClearAllPools();
                await using var admin = new Npgsql.NpgsqlConnection(PostgresDatabase.ServerConnectionString);
                await admin.OpenAsync();
                await admin.ExecuteAsync($"DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            });
        }
        await using var migrating = fresh.Open();
        await Migrations.ApplyAsync(migrating, CancellationToken.None);
        return fresh;
    }

    private static async Task<long> NewOrgAsync(LedgerDatabase database) =>
        (await LoyaltyLedger.Organizations.Tenants.CreateOrganizationAsync(database, "sequencer test", TimeProvider.System, CancellationToken.None)).OrgId;

    private async Task<WebApplication> StartServerAsync(LedgerDatabase database, string interval)
    {
        var app = LedgerServer.Build(new LedgerServerOptions
        {
            Database = database,
            Clock = new TestClock(new DateTimeOffset(2025, 3, 1, 12, 0, 0, TimeSpan.Zero)),
            Configure = builder =>
            {
                builder.WebHost.UseTestServer();
                builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
                {
                    [OutboxSequencerService.IntervalKey] = interval,
                    [LifecycleService.IntervalKey] = "0",
                });
            },
        });
        await app.StartAsync();
        return app;
    }

    /// <summary>
    /// A row written in a transaction of its own, outside the ledger's writes (which number their rows
    /// at their commit): it waits without a position for the sequencer, as the rows of a server of an
    /// earlier version do.
    /// </summary>
    private static async Task WriteRowAsync(LedgerDatabase database, long orgId)
    {
        await using var c = await database.OpenAsync(CancellationToken.None);
        await using var tx = await c.BeginTransactionAsync();
        var batch = new StatementBatch(c, tx, database.Dialect);
        OutboxStore.Add(batch, orgId, OutboxEventTypes.BalanceChanged, 0, w => w.WriteNullValue());
        await batch.RunAsync();
        await tx.CommitAsync();
    }

    private static async Task<bool> NumberedWithinAsync(LedgerDatabase database, long orgId, TimeSpan limit)
    {
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (waited.Elapsed < limit)
        {
            var waiting = await database.ReadAsync(c => c.ExecuteScalarAsync<long>(
                "SELECT COUNT(*) FROM outbox_events WHERE org_id = @orgId AND position IS NULL", new { orgId }), CancellationToken.None);
            if (waiting == 0) return true;
            await Task.Delay(20);
        }
        return false;
    }

    [Fact]
    public async Task a_write_of_the_servers_own_is_numbered_at_its_commit_without_waiting_for_the_interval()
    {
        await using var fresh = await FreshDatabaseAsync();
        await using var database = fresh.Open();
        await using var app = await StartServerAsync(database, "01:00:00");
        var orgId = await NewOrgAsync(database);

        await database.WriteAsync(async (c, tx) =>
        {
            var batch = new StatementBatch(c, tx, database.Dialect);
            OutboxStore.Add(batch, orgId, OutboxEventTypes.BalanceChanged, 0, w => w.WriteNullValue());
            await batch.RunAsync();
            return 0;
        }, CancellationToken.None);

        (await database.ReadAsync(c => c.ExecuteScalarAsync<long>(
            "SELECT COUNT(*) FROM outbox_events WHERE org_id = @orgId AND position IS NOT NULL", new { orgId }), CancellationToken.None)).ShouldBe(1);
        await app.StopAsync();
    }

    [Fact]
    public async Task a_row_another_process_left_without_a_position_is_numbered_on_the_interval()
    {
        await using var fresh = await FreshDatabaseAsync();
        await using var database = fresh.Open();
        await using var other = fresh.Open();
        await using var app = await StartServerAsync(database, "00:00:00.050");
        var orgId = await NewOrgAsync(other);

        await WriteRowAsync(other, orgId);

        (await NumberedWithinAsync(database, orgId, TimeSpan.FromSeconds(10))).ShouldBeTrue();
        await app.StopAsync();
    }
}

public sealed class OutboxSequencerServiceTestsOnSqlite(SqliteDatabase db) : OutboxSequencerServiceTests(db), IClassFixture<SqliteDatabase>;

public sealed class OutboxSequencerServiceTestsOnPostgres(PostgresDatabase db) : OutboxSequencerServiceTests(db), IClassFixture<PostgresDatabase>;
