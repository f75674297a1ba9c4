using System.Net;
using System.Text;
using System.Text.Json;
using Dapper;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using LoyaltyLedger.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace LoyaltyLedger.Tests.Server;

/// <summary>What an operator relies on: health probes that look at the database, metrics, and logs that never hold a secret.</summary>
[Collection(MetricsCollection.Name)]
public abstract class OperationsTests(DatabaseFixture db)
{
    private static async Task<(HttpStatusCode Status, JsonElement Body)> ProbeAsync(HttpClient client, string path)
    {
        using var response = await client.GetAsync(path);
        return (response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone());
    }

    [Fact]
    public async Task live_answers_and_ready_answers_200_when_the_database_answers_at_this_builds_migration()
    {
        var anonymous = db.Host.Client();
        (await ProbeAsync(anonymous, "/health/live")).Status.ShouldBe(HttpStatusCode.OK);
        var (status, body) = await ProbeAsync(anonymous, "/health/ready");
        status.ShouldBe(HttpStatusCode.OK);
        body.GetProperty("checks").GetProperty("database").GetProperty("description").GetString()!
            .ShouldContain($"schema at migration {Migrations.All[^1].Version}");
        (await ProbeAsync(anonymous, "/health")).Status.ShouldBe(HttpStatusCode.OK);
    }

    [Fact]
    public async Task ready_is_503_with_the_reason_while_the_schema_is_behind_this_build_and_200_again_after()
    {
        var last = Migrations.All[^1];
        await db.Database.WriteAsync((c, tx) => c.ExecuteAsync("DELETE FROM schema_migrations WHERE version = @v", new { v = last.Version }, tx), CancellationToken.None);
        try
        {
            var (status, body) = await ProbeAsync(db.Host.Client(), "/health/ready");
            status.ShouldBe(HttpStatusCode.ServiceUnavailable);
            body.GetProperty("checks").GetProperty("database").GetProperty("description").GetString()!
                .ShouldContain($"at migration {last.Version - 1}, this build at {last.Version}");
            (await ProbeAsync(db.Host.Client(), "/health/live")).Status.ShouldBe(HttpStatusCode.OK);
        }
        finally
        {
            await db.Database.WriteAsync((c, tx) => c.ExecuteAsync("INSERT INTO schema_migrations (version, name, applied_at) VALUES (@v, @n, 0)",
                new { v = last.Version, n = last.Name }, tx), CancellationToken.None);
        }
        (await ProbeAsync(db.Host.Client(), "/health/ready")).Status.ShouldBe(HttpStatusCode.OK);
    }

    [Fact]
    public async Task ready_is_503_while_the_database_refuses_connections_and_200_again_when_it_takes_them()
    {
        if (db.Provider == DatabaseProvider.Postgres)
        {
            var name = await db.Database.ReadAsync(c => c.ExecuteScalarAsync<string>("SELECT current_database()"), CancellationToken.None);
            // A server of its own, without a pool, so that every probe opens a new connection.
            var builder = new NpgsqlConnectionStringBuilder(PostgresDatabase.ServerConnectionString) { Database = name, Pooling = false, Timeout = 3 };
            await using var host = await TestServerHost.StartAsync(LedgerDatabase.ForPostgres(builder.ConnectionString));
            await AdminAsync($"ALTER DATABASE {name} ALLOW_CONNECTIONS false");
            try
            {
                var (status, body) = await ProbeAsync(host.Client(), "/health/ready");
                status.ShouldBe(HttpStatusCode.ServiceUnavailable);
                body.GetProperty("checks").GetProperty("database").GetProperty("description").GetString()!.ShouldContain("does not answer");
                (await ProbeAsync(host.Client(), "/health/live")).Status.ShouldBe(HttpStatusCode.OK);
            }
            finally
            {
                await AdminAsync($"ALTER DATABASE {name} ALLOW_CONNECTIONS true");
            }
            (await ProbeAsync(host.Client(), "/health/ready")).Status.ShouldBe(HttpStatusCode.OK);
        }
        else
        {
            // SQLite has no server to stop: a path that cannot be opened as a database file is the same to the probe.
            var dir = Path.Combine(Path.GetTempPath(), "ll-health-" + Guid.NewGuid().ToString("N")[..8]);
            Directory.CreateDirectory(Path.Combine(dir, "ledger.db"));
            await using var host = await TestServerHost.StartAsync(LedgerDatabase.ForSqliteFile(Path.Combine(dir, "ledger.db")));
            var (status, body) = await ProbeAsync(host.Client(), "/health/ready");
            status.ShouldBe(HttpStatusCode.ServiceUnavailable);
            body.GetProperty("checks").GetProperty("database").GetProperty("description").GetString()!.ShouldContain("does not answer");
            Directory.Delete(Path.Combine(dir, "ledger.db"));
            await Migrations.ApplyAsync(host.Database, CancellationToken.None);
            (await ProbeAsync(host.Client(), "/health/ready")).Status.ShouldBe(HttpStatusCode.OK);
        }
    }

    private static async Task AdminAsync(string sql)
    {
        await using var admin = new NpgsqlConnection(PostgresDatabase.ServerConnectionString);
        await admin.OpenAsync();
        await using var command = new NpgsqlCommand(sql, admin);
        await command.ExecuteNonQueryAsync();
    }

    private static async Task<double> MetricAsync(HttpClient client, string series)
    {
        var text = await client.GetStringAsync("/metrics");
        return text.Split('\n').Where(l => l.StartsWith(series, StringComparison.Ordinal))
            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task metrics_count_postings_by_kind_and_outcome_replays_and_the_request_duration_by_route()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var customer = await t.NewCustomerAsync();
        var anonymous = db.Host.Client();
        const string committed = "ledger_postings_total{otel_scope_name=\"LoyaltyLedger\",kind=\"AddTransaction\",outcome=\"committed\"}";
        const string refused = "ledger_postings_total{otel_scope_name=\"LoyaltyLedger\",kind=\"Redeem\",outcome=\"refused\"}";
        const string replays = "ledger_idempotent_replays_total{otel_scope_name=\"LoyaltyLedger\",kind=\"AddTransaction\"}";
        const string writerBusy = "ledger_sqlite_writer_busy_seconds_total{";
        const string writerUnits = "ledger_sqlite_writer_batch_sum{";
        const string checkpoints = "ledger_sqlite_checkpoints_total{otel_scope_name=\"LoyaltyLedger\",outcome=\"done\"}";
        var before = (C: await MetricAsync(anonymous, committed), R: await MetricAsync(anonymous, refused), P: await MetricAsync(anonymous, replays));
        var writerBefore = (Busy: await MetricAsync(anonymous, writerBusy), Units: await MetricAsync(anonymous, writerUnits),
            Checkpoints: await MetricAsync(anonymous, checkpoints));

        var bill = new { customerId = customer, billNumber = "M-1", amount = 10m, storeCode = shop.StoreCode };
        (await t.PostAsync("/v1/transactions", bill, "metrics-1")).Dispose();
        (await t.PostAsync("/v1/transactions", bill, "metrics-1")).Dispose();
        (await t.PostAsync("/v1/redemptions", new { customerId = customer, points = "1000" })).Dispose();

        (await MetricAsync(anonymous, committed) - before.C).ShouldBe(1);
        (await MetricAsync(anonymous, refused) - before.R).ShouldBe(1);
        (await MetricAsync(anonymous, replays) - before.P).ShouldBe(1);
        var text = await anonymous.GetStringAsync("/metrics");
        text.ShouldContain("ledger_posting_duration_seconds_bucket{");
        text.ShouldContain("ledger_key_cache_lookups_total{");
        if (db.Provider == DatabaseProvider.Postgres) text.ShouldContain("db_client_connection");
        else
        {
            // The one writer ran at least the bill and the refused redemption, and was busy doing so.
            (await MetricAsync(anonymous, writerUnits) - writerBefore.Units).ShouldBeGreaterThanOrEqualTo(2);
            (await MetricAsync(anonymous, writerBusy) - writerBefore.Busy).ShouldBeGreaterThan(0);
            // Its commits were checkpointed beside it, within the checkpointer's interval.
            for (var waited = 0; waited < 50 && await MetricAsync(anonymous, checkpoints) == writerBefore.Checkpoints; waited++) await Task.Delay(100);
            (await MetricAsync(anonymous, checkpoints) - writerBefore.Checkpoints).ShouldBeGreaterThan(0);
            var metrics = await anonymous.GetStringAsync("/metrics");
            metrics.ShouldContain("ledger_sqlite_checkpoint_duration_seconds_bucket{otel_scope_name=\"LoyaltyLedger\",by=\"checkpointer\"");
            // The log's pages at the last checkpoint: this test's writes are in some log of the process.
            (await MetricAsync(anonymous, "ledger_sqlite_log_pages{")).ShouldBeGreaterThan(0);
        }
    }

    [Fact]
    public async Task metrics_on_a_real_server_give_the_request_duration_by_route_and_status()
    {
        await using var database = db.OpenSecondInstance();
        var app = LedgerServer.Build(new LedgerServerOptions { Database = database, Configure = b => b.WebHost.UseUrls("http://127.0.0.1:0") });
        await app.StartAsync();
        try
        {
            using var client = new HttpClient { BaseAddress = new Uri(app.Urls.Single()) };
            (await client.GetAsync("/v1/programs")).StatusCode.ShouldBe(HttpStatusCode.Unauthorized);
            var text = await client.GetStringAsync("/metrics");
            text.ShouldContain("http_server_request_duration_seconds_count{");
            text.Split('\n').ShouldContain(l => l.StartsWith("http_server_request_duration_seconds_count{", StringComparison.Ordinal)
                && l.Contains("http_route=\"/v1/programs/\"", StringComparison.Ordinal) && l.Contains("http_response_status_code=\"401\"", StringComparison.Ordinal));
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    [Fact]
    public async Task the_server_reads_appsettings_json_once_and_watches_no_settings_file()
    {
        await using var database = db.OpenSecondInstance();
        var app = LedgerServer.Build(new LedgerServerOptions { Database = database, Configure = b => b.WebHost.UseUrls("http://127.0.0.1:0") });
        try
        {
            var files = ((IConfigurationRoot)app.Configuration).Providers.OfType<FileConfigurationProvider>().ToList();
            // appsettings.json and its environment's file are still read (optional), only not watched.
            files.Select(f => f.Source.Path).ShouldContain("appsettings.json");
            files.ShouldAllBe(f => !f.Source.ReloadOnChange);
        }
        finally
        {
            await app.DisposeAsync();
        }
    }

    [Fact]
    public async Task ledger_environment_variables_rank_above_appsettings_json_and_below_the_command_line_on_the_server()
    {
        // A name of this class's own: the two databases' classes may run at once.
        var variable = $"LEDGER_{GetType().Name.ToUpperInvariant()}__";
        var section = $"Ledger:{GetType().Name}";
        Environment.SetEnvironmentVariable(variable + "RANK", "from-environment");
        Environment.SetEnvironmentVariable(variable + "TOP", "from-environment");
        try
        {
            await using var database = db.OpenSecondInstance();
            string? rank = null, top = null;
            var app = LedgerServer.Build(new LedgerServerOptions
            {
                Database = database,
                Args = [$"--{section}:Top=from-command-line"],
                Configure = b =>
                {
                    b.WebHost.UseUrls("http://127.0.0.1:0");
                    // appsettings.json (absent here, so empty) as if it held the setting.
                    ((IConfigurationRoot)b.Configuration).Providers.OfType<FileConfigurationProvider>()
                        .Single(f => f.Source.Path == "appsettings.json").Set($"{section}:Rank", "from-appsettings");
                    rank = b.Configuration[$"{section}:Rank"];
                    top = b.Configuration[$"{section}:Top"];
                },
            });
            await app.DisposeAsync();
            rank.ShouldBe("from-environment");
            top.ShouldBe("from-command-line");
        }
        finally
        {
            Environment.SetEnvironmentVariable(variable + "RANK", null);
            Environment.SetEnvironmentVariable(variable + "TOP", null);
        }
    }

    [Fact]
    public async Task no_key_or_webhook_secret_reaches_a_log_line_at_any_level_and_a_401_writes_no_line_at_information()
    {
        var logs = new CapturedLogs();
        await using var host = await TestServerHost.StartAsync(db.OpenSecondInstance(), new Dictionary<string, string?>
        {
            ["Logging:LogLevel:Default"] = "Trace",
            ["Logging:LogLevel:Microsoft"] = "Trace",
            ["Logging:LogLevel:Microsoft.AspNetCore"] = "Trace",
        }, logs);
        var t = await host.NewTenantAsync();
        using var issued = await t.PostAsync("/v1/keys", new { role = "Write", name = "till" });
        var key = JsonDocument.Parse(await issued.Content.ReadAsStringAsync()).RootElement;
        var keyId = key.GetProperty("keyId").GetString()!;
        var secret = key.GetProperty("secret").GetString()!;
        (await host.Client(keyId, secret).GetAsync("/v1/programs")).StatusCode.ShouldBe(HttpStatusCode.OK);
        using var rotated = await t.PostAsync($"/v1/keys/{keyId}/rotate", new { });
        var newSecret = JsonDocument.Parse(await rotated.Content.ReadAsStringAsync()).RootElement.GetProperty("secret").GetString()!;
        (await host.Client(keyId, secret).GetAsync("/v1/programs")).StatusCode.ShouldBe(HttpStatusCode.Unauthorized);

        using var webhook = await t.PostAsync("/v1/webhooks", new { url = "http://127.0.0.1:9/hook", events = new[] { "*" } });
        var hook = JsonDocument.Parse(await webhook.Content.ReadAsStringAsync()).RootElement;
        var webhookSecret = hook.GetProperty("secret").GetString()!;
        using var rotatedHook = await t.PostAsync($"/v1/webhooks/{hook.GetProperty("id").GetRawText().Trim('"')}/rotate-secret", new { });
        var newWebhookSecret = JsonDocument.Parse(await rotatedHook.Content.ReadAsStringAsync()).RootElement.GetProperty("secret").GetString()!;

        string[] secrets = [secret, newSecret, t.Key.Secret, Convert.ToBase64String(Encoding.UTF8.GetBytes($"{keyId}:{secret}")),
            webhookSecret, newWebhookSecret, webhookSecret["whsec_".Length..], newWebhookSecret["whsec_".Length..]];
        logs.Entries.Count.ShouldBeGreaterThan(0);
        foreach (var entry in logs.Entries)
        {
            foreach (var s in secrets) entry.Message.ShouldNotContain(s);
        }

        var quiet = new CapturedLogs();
        await using var production = await TestServerHost.StartAsync(db.OpenSecondInstance(), logs: quiet);
        (await production.Client("nobody", "wrong").GetAsync("/v1/programs")).StatusCode.ShouldBe(HttpStatusCode.Unauthorized);
        quiet.Entries.Where(e => e.Level >= LogLevel.Information && !e.Category.StartsWith("Microsoft.Hosting.Lifetime", StringComparison.Ordinal))
            .ShouldBeEmpty();
    }
}

/// <summary>Metrics are process-wide: the classes that count them run alone, so counts are exact.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MetricsCollection
{
    public const string Name = "Metrics";
}

public sealed class OperationsTestsOnSqlite(SqliteDatabase db) : OperationsTests(db), IClassFixture<SqliteDatabase>;

public sealed class OperationsTestsOnPostgres(PostgresDatabase db) : OperationsTests(db), IClassFixture<PostgresDatabase>;
