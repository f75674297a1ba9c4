using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using Dapper;
using LoyaltyLedger.Server.Cli;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Server;

/// <summary>
/// The command line as a new user meets it: help per command, unknown commands and options named,
/// exit codes 0 / 1 / 2, arguments checked before anything is created, one line per problem.
/// Console output is process-wide, so this class runs alone (the Metrics collection).
/// </summary>
[Collection(MetricsCollection.Name)]
public abstract class CommandLineTests(DatabaseFixture db)
{
    private static async Task<(int Exit, string Out, string Error)> RunAsync(params string[] args)
    {
        var (stdout, stderr) = (Console.Out, Console.Error);
        using var output = new StringWriter();
        using var error = new StringWriter();
        Console.SetOut(output);
        Console.SetError(error);
        try
        {
            var exit = await Commands.RunAsync(args);
            return (exit, output.ToString(), error.ToString());
        }
        finally
        {
            Console.SetOut(stdout);
            Console.SetError(stderr);
        }
    }

    [Fact]
    public async Task an_unknown_command_or_option_is_named_and_exits_2()
    {
        var (exit, _, error) = await RunAsync("bogus");
        exit.ShouldBe(Commands.Usage);
        error.ShouldContain("'bogus'");
        (exit, _, error) = await RunAsync("serve", "--bogus");
        exit.ShouldBe(Commands.Usage);
        error.ShouldContain("'--bogus'");
        error.ShouldContain("LoyaltyLedger serve --help");
    }

    [Fact]
    public async Task each_command_has_its_own_help()
    {
        var (exit, output, _) = await RunAsync("serve", "--help");
        exit.ShouldBe(Commands.Success);
        output.ShouldContain("serve [options]");
        output.ShouldContain("--demo");
        output.ShouldNotContain("--customers");
        (exit, output, _) = await RunAsync("seed", "--help");
        exit.ShouldBe(Commands.Success);
        output.ShouldContain("--customers");
    }

    [Fact]
    public async Task a_bad_value_exits_2_with_one_line_naming_it_and_no_dotnet_type_and_creates_nothing()
    {
        var dir = Path.Combine(Path.GetTempPath(), "ll-cli-" + Guid.NewGuid().ToString("N")[..8]);
        var (exit, _, error) = await RunAsync("seed", "--customers", "-5", "--data-dir", dir);
        exit.ShouldBe(Commands.Usage);
        error.ShouldContain("--customers takes a whole number above 0, not '-5'");
        Directory.Exists(dir).ShouldBeFalse();
        (exit, _, error) = await RunAsync("key", "create", "--org", "abc", "--data-dir", dir);
        exit.ShouldBe(Commands.Usage);
        error.ShouldContain("--org takes an organization id (a whole number), not 'abc'");
        error.ShouldNotContain("System.");
        error.ShouldNotContain("Int64");
        Directory.Exists(dir).ShouldBeFalse();
    }

    [Fact]
    public async Task verify_of_an_organization_that_does_not_exist_fails_instead_of_passing()
    {
        var (exit, output, error) = await RunAsync(["verify", "--org", "987654321", .. db.CommandLineArgs]);
        exit.ShouldBe(Commands.Failure);
        error.ShouldContain("organization 987654321 does not exist");
        output.ShouldNotContain("all invariants hold");
    }

    [Fact]
    public async Task a_database_that_cannot_be_reached_is_one_line_and_exit_1_not_a_stack_trace()
    {
        // A loopback port nobody listens on: the connection is refused at once.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();

        var (exit, _, error) = await RunAsync("verify", "--postgres", $"Host=127.0.0.1;Port={port};Username=postgres;Database=postgres;Timeout=3");

        exit.ShouldBe(Commands.Failure);
        error.ShouldStartWith("error: the database failed: ");
        error.Trim().Split('\n').Length.ShouldBe(1);
        error.ShouldNotContain("   at ");
        error.ShouldNotContain("Exception");
    }

    [Fact]
    public async Task a_second_organization_with_the_same_name_is_refused()
    {
        var name = "twin-" + Guid.NewGuid().ToString("N")[..8];
        (await RunAsync(["org", "create", "--name", name, .. db.CommandLineArgs])).Exit.ShouldBe(Commands.Success);
        var (exit, _, error) = await RunAsync(["org", "create", "--name", name, .. db.CommandLineArgs]);
        exit.ShouldBe(Commands.Failure);
        error.ShouldContain($"An organization named '{name}' already exists");
        (await db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM organizations WHERE name = @name", new { name }), CancellationToken.None))
            .ShouldBe(1);
    }

    [Fact]
    public async Task serve_with_wrong_settings_names_each_in_one_line_and_exits_2_before_listening()
    {
        var (exit, _, error) = await RunAsync(["serve", "--urls", "http://127.0.0.1:0", "--set", "Ledger:RateLimit:Burst=0",
            "--set", "Ledger:Webhooks:Timeout=soon", .. db.CommandLineArgs]);
        exit.ShouldBe(Commands.Usage);
        error.ShouldContain("error: Ledger:RateLimit:Burst must be at least 1.");
        error.ShouldContain("error: Ledger:Webhooks:Timeout must be a duration (hh:mm:ss, e.g. 00:05:00), not 'soon'.");
        (await RunAsync("serve", "--set", "no-equals-sign")).Exit.ShouldBe(Commands.Usage);
    }

    [Fact]
    public async Task serve_on_a_port_in_use_says_so_in_one_line_and_exits_1()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var (exit, _, error) = await RunAsync(["serve", "--urls", $"http://127.0.0.1:{port}", .. db.CommandLineArgs]);
        exit.ShouldBe(Commands.Failure);
        error.Trim().ShouldBe($"error: port {port} is in use; choose another with --urls");
    }

    [Fact]
    public async Task a_backup_taken_under_write_load_restores_and_verifies_with_every_write_acknowledged_before_it()
    {
        if (db.Provider == DatabaseProvider.Postgres)
        {
            // PostgreSQL's own tools are the backup: the README's pg_dump and pg_restore commands, run as written.
            await PostgresDumpAndRestoreAsync();
            return;
        }
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var customer = await t.NewCustomerAsync();
        var acknowledgedBefore = new List<string>();
        for (var i = 0; i < 20; i++)
        {
            using var r = await t.PostAsync("/v1/transactions", new { customerId = customer, billNumber = $"BK-{i}", amount = 10m, storeCode = shop.StoreCode });
            r.IsSuccessStatusCode.ShouldBeTrue();
            acknowledgedBefore.Add($"BK-{i}");
        }
        using var stop = new CancellationTokenSource();
        var load = Task.Run(async () =>
        {
            for (var i = 0; !stop.IsCancellationRequested; i++)
                (await t.PostAsync("/v1/transactions", new { customerId = customer, billNumber = $"BL-{i}", amount = 10m, storeCode = shop.StoreCode })).Dispose();
        });
        var backup = Path.Combine(Path.GetTempPath(), "ll-backup-" + Guid.NewGuid().ToString("N")[..8] + ".db");
        var restoredDir = Path.Combine(Path.GetTempPath(), "ll-restored-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            await Task.Delay(200);
            var (exit, output, error) = await RunAsync(["backup", "--out", backup, .. db.CommandLineArgs]);
            exit.ShouldBe(Commands.Success, error);
            output.ShouldContain("backed up");
            await stop.CancelAsync();
            await load;

            (exit, output, error) = await RunAsync("restore", "--from", backup, "--data-dir", restoredDir);
            exit.ShouldBe(Commands.Success, error);
            output.ShouldContain("all invariants hold");
            await using var restored = LedgerDatabase.ForSqliteFile(Path.Combine(restoredDir, "ledger.db"));
            var bills = (await restored.ReadAsync(c => c.QueryAsync<string>("SELECT bill_number FROM bills WHERE org_id = @org", new { org = t.OrgId }),
                CancellationToken.None)).ToHashSet();
            acknowledgedBefore.Where(b => !bills.Contains(b)).ShouldBeEmpty();
            (await LedgerAudit.ViolationsAsync(restored, t.OrgId)).ShouldBeEmpty();

            // Never over an existing ledger or file.
            (await RunAsync("restore", "--from", backup, "--data-dir", restoredDir)).Exit.ShouldBe(Commands.Usage);
            (await RunAsync(["backup", "--out", backup, .. db.CommandLineArgs])).Exit.ShouldBe(Commands.Usage);
        }
        finally
        {
            await stop.CancelAsync();
            File.Delete(backup);
            if (Directory.Exists(restoredDir)) Directory.Delete(restoredDir, recursive: true);
        }
    }

    private async Task PostgresDumpAndRestoreAsync()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var customer = await t.NewCustomerAsync();
        for (var i = 0; i < 10; i++)
            (await t.PostAsync("/v1/transactions", new { customerId = customer, billNumber = $"PG-{i}", amount = 10m, storeCode = shop.StoreCode })).Dispose();
        var source = await db.Database.ReadAsync(c => c.ExecuteScalarAsync<string>("SELECT current_database()"), CancellationToken.None);
        var target = "ll_restored_" + Guid.NewGuid().ToString("N")[..12];
        var server = new Npgsql.NpgsqlConnectionStringBuilder(PostgresDatabase.ServerConnectionString);
        var bin = Directory.GetDirectories("/usr/lib/postgresql").OrderBy(d => d).Last() + "/bin";
        var dump = Path.Combine(Path.GetTempPath(), target + ".dump");
        var common = $"-h {server.Host} -p {server.Port} -U {server.Username}";
        await ShellAsync($"{bin}/pg_dump {common} -Fc -f {dump} {source}");
        await ShellAsync($"{bin}/createdb {common} {target}");
        await ShellAsync($"{bin}/pg_restore {common} -d {target} {dump}");
        var (exit, output, error) = await RunAsync("verify", "--postgres", new Npgsql.NpgsqlConnectionStringBuilder(PostgresDatabase.ServerConnectionString) { Database = target }.ConnectionString);
        exit.ShouldBe(Commands.Success, output + error);
        output.ShouldContain("all invariants hold");
        File.Delete(dump);
    }

    private static async Task ShellAsync(string command)
    {
        using var process = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("/bin/sh", ["-c", command])
        {
            RedirectStandardError = true,
            UseShellExecute = false,
        })!;
        var error = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        process.ExitCode.ShouldBe(0, $"{command}: {error}");
    }

    [Fact]
    public async Task seed_until_ends_the_history_there_so_expire_then_takes_every_seeded_point_that_came_due()
    {
        var name = "expired-" + Guid.NewGuid().ToString("N")[..8];
        // Seeded points expire 36 months after they are earned: a history ending in mid-2022 is all due now.
        var (exit, output, error) = await RunAsync(["seed", "--customers", "25", "--events", "400", "--org-name", name, "--until", "2022-06-01T00:00:00Z", .. db.CommandLineArgs]);
        exit.ShouldBe(Commands.Success, error);
        var orgLine = output.Split('\n').Single(l => l.StartsWith("organization ", StringComparison.Ordinal));
        var orgId = long.Parse(orgLine.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        var lastEvent = await db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>(
            "SELECT MAX(created_at) FROM events WHERE org_id = @orgId", new { orgId }), CancellationToken.None);
        DateTimeOffset.FromUnixTimeMilliseconds(lastEvent).ShouldBeLessThan(new DateTimeOffset(2022, 6, 1, 0, 0, 0, TimeSpan.Zero));
        var held = await PlainPointsAsync(orgId);
        held.ShouldBeGreaterThan(0);

        (exit, output, error) = await RunAsync(["expire", "--org", orgId.ToString(System.Globalization.CultureInfo.InvariantCulture), .. db.CommandLineArgs]);
        exit.ShouldBe(Commands.Success, error);
        output.ShouldContain(" wallets expired");
        (await PlainPointsAsync(orgId)).ShouldBe(0);
        (await LoyaltyLedger.Audit.LedgerVerifier.VerifyAsync(db.Database, orgId, CancellationToken.None)).Violations.ShouldBeEmpty();

        (exit, _, error) = await RunAsync(["seed", "--customers", "5", "--events", "10", "--org-name", name + "-later", "--until", "2999-01-01T00:00:00Z", .. db.CommandLineArgs]);
        exit.ShouldBe(Commands.Usage);
        error.ShouldContain("--until cannot be in the future");
        (await db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>(
            "SELECT COUNT(*) FROM organizations WHERE name = @name", new { name = name + "-later" }), CancellationToken.None)).ShouldBe(0);
    }

    private Task<long> PlainPointsAsync(long orgId) => db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>(
        "SELECT COALESCE(SUM(balance), 0) FROM wallets WHERE org_id = @orgId AND currency_id = 0 AND category = 'REGULAR'", new { orgId }), CancellationToken.None);
}

public sealed class CommandLineTestsOnSqlite(SqliteDatabase db) : CommandLineTests(db), IClassFixture<SqliteDatabase>;

public sealed class CommandLineTestsOnPostgres(PostgresDatabase db) : CommandLineTests(db), IClassFixture<PostgresDatabase>;
