using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;
using LoyaltyLedger.Tests.PointsLedger;
using LoyaltyLedger.Tests.Vault;

namespace LoyaltyLedger.Tests.Storage;

/// <summary>
/// Reads from a real PostgreSQL streaming replica (<see cref="StreamingReplica"/>), with
/// read-your-writes through the Ledger-Consistency-Token: a read that sends a write's token always
/// sees that write, whether a replica or the primary serves it; a replica that lags or is down is
/// skipped without an error. Replicas are a PostgreSQL feature, so this class runs on PostgreSQL only
/// (SQLite's side, no token and a refused setting, is in ConsistencyTokenTests).
/// </summary>
public abstract class ReadReplicaTests(PostgresDatabase db, StreamingReplica replica)
{
    private const string TokenHeader = "Ledger-Consistency-Token";

    private async Task<TestServerHost> StartServerAsync(TimeSpan? maxLag = null, TimeSpan? tokenWait = null)
    {
        await replica.CatchUpAsync();
        var settings = new Dictionary<string, string?> { ["Ledger:ReadReplicas:0"] = replica.ConnectionStringFor(db.ConnectionString) };
        if (maxLag is { } lag) settings["Ledger:ReplicaMaxLag"] = lag.ToString("c", CultureInfo.InvariantCulture);
        if (tokenWait is { } wait) settings["Ledger:ReplicaTokenWait"] = wait.ToString("c", CultureInfo.InvariantCulture);
        var server = await TestServerHost.StartAsync(db.OpenSecondInstance(), settings);
        server.Database.ReadReplicaNames.ShouldBe([$"127.0.0.1:{replica.Port}"]);
        return server;
    }

    /// <summary>A bill of <paramref name="amount"/> points (earn rate 1); returns the answer's token.</summary>
    private static async Task<string> BillAsync(Tenant t, VaultSetup v, string billNumber, decimal amount)
    {
        using var response = await t.PostAsync("/v1/transactions",
            new { customerId = v.CustomerId, billNumber, amount, storeCode = v.Shop.StoreCode, tillCode = v.Shop.TillCode, programId = v.ProgramId });
        response.StatusCode.ShouldBe(HttpStatusCode.Created, await response.Content.ReadAsStringAsync());
        var token = response.Headers.GetValues(TokenHeader).Single();
        WalPosition.TryParse(token, out _).ShouldBeTrue(token);
        return token;
    }

    private static async Task<JsonElement> GetAsync(Tenant t, string path, string? token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (token is not null) request.Headers.Add(TokenHeader, token);
        using var response = await t.Http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        response.StatusCode.ShouldBe(HttpStatusCode.OK, text);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>The points-ledger read's event count and the vault account's balance, as one read each.</summary>
    private static async Task<(long Events, decimal Balance)> ReadBothAsync(Tenant t, VaultSetup v, string? token)
    {
        var ledger = await GetAsync(t, LedgerApi.Path + "?" + LedgerApi.Customer(v.CustomerId), token);
        var account = await GetAsync(t, v.AccountPath, token);
        var balance = account.GetProperty("loyaltyPrograms").EnumerateArray()
            .Single(p => p.GetProperty("loyaltyPointDefinitionId").GetInt64() == v.ProgramId).Number("balance");
        return (ledger.Total(), balance);
    }

    /// <summary>
    /// Reads until the server routes a read without a token to the replica as fresh: its monitor has
    /// then sampled the replica caught up, so the replica's lag has a bound. The lag metric alone does
    /// not say so: before the first such sample it shows how long the replica has been known to be
    /// behind, a lower bound, which starts small (a test that waited on it failed under load, its
    /// reads routed to the primary for "lag").
    /// </summary>
    private static async Task WaitUntilTheReplicaServesFreshAsync(TestServerHost server, Tenant t, VaultSetup v)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        var before = await RoutedAsync(server, "replica", "fresh");
        while (true)
        {
            await ReadBothAsync(t, v, token: null);
            if (await RoutedAsync(server, "replica", "fresh") > before) return;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"No read without a token was served by the replica in 10 s: {await RoutingAsync(server)}");
            await Task.Delay(50);
        }
    }

    /// <summary>The server's routing and replica metrics, for a failure's message.</summary>
    private static async Task<string> RoutingAsync(TestServerHost server) =>
        string.Join('\n', (await server.Client().GetStringAsync("/metrics")).Split('\n')
            .Where(l => l.StartsWith("ledger_routed_reads_total{", StringComparison.Ordinal) || l.StartsWith("ledger_replica_", StringComparison.Ordinal)));

    private static async Task<double> RoutedAsync(TestServerHost server, string servedBy, string reason)
    {
        var text = await server.Client().GetStringAsync("/metrics");
        return text.Split('\n')
            .Where(l => l.StartsWith("ledger_routed_reads_total{", StringComparison.Ordinal)
                        && l.Contains($"served_by=\"{servedBy}\"", StringComparison.Ordinal) && l.Contains($"reason=\"{reason}\"", StringComparison.Ordinal))
            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task a_read_that_sends_back_the_token_of_a_write_always_sees_it_and_replicas_serve_most_of_them()
    {
        await using var server = await StartServerAsync();
        var t = await server.NewTenantAsync();
        var v = await t.NewVaultAsync();
        // The set-up's writes answered tokens this test does not keep: without one, a replica a moment behind may serve.
        await replica.CatchUpAsync();
        var (events, _) = await ReadBothAsync(t, v, token: null);
        var servedBefore = await RoutedAsync(server, "replica", "caught_up");

        var stale = new List<string>();
        for (var i = 1; i <= 200; i++)
        {
            var token = await BillAsync(t, v, $"B-{i}", 10m);
            var (seen, balance) = await ReadBothAsync(t, v, token);
            if (seen != events + i || balance != 10m * i) stale.Add($"pair {i}: {seen} events (want {events + i}), balance {balance} (want {10m * i})");
        }

        stale.ShouldBeEmpty();
        // Two reads a pair; the replica on this machine keeps up, so it serves (nearly) all of them.
        (await RoutedAsync(server, "replica", "caught_up") - servedBefore).ShouldBeGreaterThan(200);
    }

    [Fact]
    public async Task every_successful_write_answer_carries_a_token_a_vault_basket_and_an_idempotent_replay_too()
    {
        await using var server = await StartServerAsync();
        var t = await server.NewTenantAsync();
        var v = await t.NewVaultAsync();
        var first = await BillAsync(t, v, "B-1", 5m);

        using var basket = await t.PostAsync($"{v.AccountPath}/Transaction", VaultBuilders.Basket(v.ProgramId, "R-1", loads: [new { value = 3 }]), "basket-1");
        basket.StatusCode.ShouldBe(HttpStatusCode.OK, await basket.Content.ReadAsStringAsync());
        var second = basket.Headers.GetValues(TokenHeader).Single();
        using var replay = await t.PostAsync($"{v.AccountPath}/Transaction", VaultBuilders.Basket(v.ProgramId, "R-1", loads: [new { value = 3 }]), "basket-1");
        replay.Headers.GetValues("Idempotent-Replayed").Single().ShouldBe("true");
        var third = replay.Headers.GetValues(TokenHeader).Single();

        WalPosition.TryParse(first, out var a).ShouldBeTrue();
        WalPosition.TryParse(second, out var b).ShouldBeTrue();
        WalPosition.TryParse(third, out var c).ShouldBeTrue();
        (a < b).ShouldBeTrue($"{first} then {second}");
        (b <= c).ShouldBeTrue($"{second} then the replay's {third}");
        (await ReadBothAsync(t, v, third)).Balance.ShouldBe(8m);
    }

    [Fact]
    public async Task a_token_the_replica_has_not_replayed_waits_the_token_wait_and_then_the_primary_serves_the_write()
    {
        await using var server = await StartServerAsync(tokenWait: TimeSpan.FromMilliseconds(300));
        var t = await server.NewTenantAsync();
        var v = await t.NewVaultAsync();
        // The set-up's writes answered tokens this test does not keep: without one, a replica a moment behind may serve.
        await replica.CatchUpAsync();
        var (events, _) = await ReadBothAsync(t, v, token: null);
        var waitedBefore = await RoutedAsync(server, "primary", "token_wait");

        await replica.PauseReplayAsync();
        try
        {
            var token = await BillAsync(t, v, "B-paused", 7m);
            var clock = Stopwatch.StartNew();
            var ledger = await GetAsync(t, LedgerApi.Path + "?" + LedgerApi.Customer(v.CustomerId), token);
            clock.Elapsed.ShouldBeGreaterThanOrEqualTo(TimeSpan.FromMilliseconds(250));
            ledger.Total().ShouldBe(events + 1);
            (await ReadBothAsync(t, v, token)).Balance.ShouldBe(7m);
        }
        finally
        {
            await replica.ResumeReplayAsync();
        }
        (await RoutedAsync(server, "primary", "token_wait") - waitedBefore).ShouldBeGreaterThanOrEqualTo(3);
    }

    [Fact]
    public async Task a_program_list_a_replica_read_loads_is_not_kept_for_the_postings_that_follow()
    {
        // A lag bound wide enough that the paused replica keeps serving reads without a token.
        await using var server = await StartServerAsync(maxLag: TimeSpan.FromSeconds(60));
        var t = await server.NewTenantAsync();
        var v = await t.NewVaultAsync();
        await replica.CatchUpAsync();
        await WaitUntilTheReplicaServesFreshAsync(server, t, v);

        await replica.PauseReplayAsync();
        try
        {
            // The primary has the new currency (and this process forgets its cached programs); the replica does not.
            await t.PostOkAsync($"/v1/programs/{v.ProgramId}/currencies", new { name = "Gems", earnRate = "1" });
            var servedBefore = await RoutedAsync(server, "replica", "fresh");
            await ReadBothAsync(t, v, token: null);
            // It failed once in a full local run under load (0 of 2 served by the replica): the
            // routing metrics say why (lag, down, error) if it fails again.
            (await RoutedAsync(server, "replica", "fresh") - servedBefore).ShouldBe(2, await RoutingAsync(server));

            // The bill reads the program through the cache: it must see the currency, not the replica's list.
            var bill = await t.PostOkAsync("/v1/transactions", new
            {
                customerId = v.CustomerId, billNumber = "B-gems", amount = 10m, storeCode = v.Shop.StoreCode, tillCode = v.Shop.TillCode, programId = v.ProgramId,
            });
            bill.GetProperty("entries").EnumerateArray()
                .Where(e => e.TryGetProperty("currency", out var c) && c.ValueKind == JsonValueKind.String)
                .Select(e => e.GetProperty("currency").GetString()).ShouldContain("Gems");
        }
        finally
        {
            await replica.ResumeReplayAsync();
        }
    }

    [Fact]
    public async Task a_replica_that_falls_behind_more_than_the_max_lag_is_skipped_by_reads_without_a_token()
    {
        await using var server = await StartServerAsync(maxLag: TimeSpan.FromMilliseconds(500));
        var t = await server.NewTenantAsync();
        var v = await t.NewVaultAsync();
        await replica.CatchUpAsync();
        await WaitUntilTheReplicaServesFreshAsync(server, t, v);
        var freshBefore = await RoutedAsync(server, "replica", "fresh");
        await ReadBothAsync(t, v, token: null);
        (await RoutedAsync(server, "replica", "fresh") - freshBefore).ShouldBe(2);

        await replica.PauseReplayAsync();
        try
        {
            await BillAsync(t, v, "B-behind", 4m);
            await Task.Delay(1200);
            var lagBefore = await RoutedAsync(server, "primary", "lag");
            // The replica has not replayed the bill: only the primary can show it.
            (await ReadBothAsync(t, v, token: null)).Balance.ShouldBe(4m);
            (await RoutedAsync(server, "primary", "lag") - lagBefore).ShouldBe(2);
            var metrics = await server.Client().GetStringAsync("/metrics");
            var lag = metrics.Split('\n').Single(l => l.StartsWith("ledger_replica_lag_seconds{", StringComparison.Ordinal) && l.Contains($":{replica.Port}\"", StringComparison.Ordinal));
            double.Parse(lag[(lag.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture).ShouldBeGreaterThan(0.5);
            metrics.ShouldContain("ledger_replica_lag_bytes{");
        }
        finally
        {
            await replica.ResumeReplayAsync();
        }
    }

    [Fact]
    public async Task with_the_replica_stopped_reads_with_and_without_a_token_go_on_from_the_primary_without_an_error()
    {
        await using var server = await StartServerAsync();
        var t = await server.NewTenantAsync();
        var v = await t.NewVaultAsync();
        // The set-up's writes answered tokens this test does not keep: without one, a replica a moment behind may serve.
        await replica.CatchUpAsync();
        var (events, _) = await ReadBothAsync(t, v, token: null);

        await replica.HaltAsync();
        try
        {
            var downBefore = await RoutedAsync(server, "primary", "down");
            var clock = Stopwatch.StartNew();
            for (var i = 1; i <= 20; i++)
            {
                var token = await BillAsync(t, v, $"B-{i}", 1m);
                (await ReadBothAsync(t, v, token)).ShouldBe((events + i, 1m * i));
                (await ReadBothAsync(t, v, token: null)).ShouldBe((events + i, 1m * i));
            }
            // Marked down after the first failure: the reads do not each wait for a connection attempt.
            clock.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(20));
            (await RoutedAsync(server, "primary", "down") - downBefore).ShouldBeGreaterThan(70);
            (await server.Client().GetAsync("/health/ready")).StatusCode.ShouldBe(HttpStatusCode.OK);
        }
        finally
        {
            await replica.ResumeAsync();
        }
    }

    [Fact]
    public async Task a_replica_serves_the_change_feed_balances_schedules_and_exports_with_the_write_of_the_token_in_them()
    {
        await using var server = await StartServerAsync();
        var t = await server.NewTenantAsync();
        var v = await t.NewVaultAsync();
        var caughtUp = await RoutedAsync(server, "replica", "caught_up");
        var token = await BillAsync(t, v, "B-all", 12m);

        var feed = await GetAsync(t, "/v1/events?limit=1000", token);
        feed.GetProperty("events").EnumerateArray().ShouldContain(e => e.GetProperty("type").GetString() == "ledger.event.posted"
            && e.GetProperty("data").ToString().Contains("B-all", StringComparison.Ordinal));
        var balances = await GetAsync(t, $"/v1/customers/{v.CustomerId}/balances", token);
        balances.EnumerateArray().Sum(b => decimal.Parse(b.GetProperty("balance").GetString()!, CultureInfo.InvariantCulture)).ShouldBe(12m);
        (await GetAsync(t, $"/v1/lifecycle/expiry-schedule?customerId={v.CustomerId}", token)).ValueKind.ShouldBe(JsonValueKind.Array);
        using (var request = new HttpRequestMessage(HttpMethod.Get, $"/v1/exports/ledger.csv?customerId={v.CustomerId}"))
        {
            request.Headers.Add(TokenHeader, token);
            using var export = await t.Http.SendAsync(request);
            export.StatusCode.ShouldBe(HttpStatusCode.OK);
            (await export.Content.ReadAsStringAsync()).ShouldContain("B-all");
        }
        (await RoutedAsync(server, "replica", "caught_up") - caughtUp).ShouldBe(4);
    }
}

public sealed class ReadReplicaTestsOnPostgres(PostgresDatabase db, StreamingReplica replica)
    : ReadReplicaTests(db, replica), IClassFixture<PostgresDatabase>, IClassFixture<StreamingReplica>;
