using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using Dapper;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Server;

/// <summary>
/// SIGTERM, as systemd or Kubernetes send it: the server stops taking requests, lets the postings
/// in flight finish, and exits 0; every write it acknowledged is in the ledger.
/// </summary>
public abstract class ShutdownTests(DatabaseFixture db)
{
    [Fact]
    public async Task sigterm_under_load_exits_0_and_every_acknowledged_write_is_in_the_ledger()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var customer = await t.NewCustomerAsync();

        var port = FreePort();
        var log = Path.Combine(Path.GetTempPath(), $"ll-shutdown-{Guid.NewGuid():N}.log");
        var info = new ProcessStartInfo("/bin/sh")
        {
            ArgumentList = { "-c", $"exec dotnet '{ServerDll()}' serve {string.Join(' ', db.CommandLineArgs.Select(a => $"'{a}'"))} --urls http://127.0.0.1:{port} >'{log}' 2>&1" },
            UseShellExecute = false,
        };
        using var server = Process.Start(info)!;
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(30) };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
                Convert.ToBase64String(Encoding.UTF8.GetBytes($"{t.Key.KeyId}:{t.Key.Secret}")));
            await WaitUntilReadyAsync(http, server, log);

            var acknowledged = new ConcurrentBag<string>();
            var sent = 0;
            var stopping = Stopwatch.StartNew();
            var clients = Enumerable.Range(0, 8).Select(async c =>
            {
                for (var i = 0; ; i++)
                {
                    var number = $"SIG-{c}-{i}";
                    Interlocked.Increment(ref sent);
                    try
                    {
                        using var response = await http.PostAsJsonAsync("/v1/transactions",
                            new { customerId = customer, billNumber = number, amount = 10m, storeCode = shop.StoreCode });
                        if (response.IsSuccessStatusCode) acknowledged.Add(number);
                    }
                    catch (HttpRequestException)
                    {
                        return; // the server stopped listening
                    }
                    if (stopping.Elapsed > TimeSpan.FromSeconds(40)) return;
                }
            }).ToList();

            await Task.Delay(1500);
            Process.Start("kill", ["-TERM", server.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
            await Task.WhenAll(clients);
            using (var limit = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
                await server.WaitForExitAsync(limit.Token); // throws if the server has not exited within 30 s of SIGTERM
            server.ExitCode.ShouldBe(0, File.ReadAllText(log));

            acknowledged.Count.ShouldBeGreaterThan(0);
            var stored = (await db.Database.ReadAsync(c => c.QueryAsync<string>(
                "SELECT bill_number FROM bills WHERE org_id = @org AND bill_number LIKE 'SIG-%'", new { org = t.OrgId }), CancellationToken.None)).ToHashSet();
            acknowledged.Where(n => !stored.Contains(n)).ShouldBeEmpty();
            (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
        }
        finally
        {
            if (!server.HasExited) server.Kill(entireProcessTree: true);
            File.Delete(log);
        }
    }

    private static async Task WaitUntilReadyAsync(HttpClient http, Process server, string log)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(60))
        {
            if (server.HasExited) throw new InvalidOperationException($"the server exited at start: {await File.ReadAllTextAsync(log)}");
            try
            {
                using var response = await http.GetAsync("/health/ready");
                if (response.StatusCode == HttpStatusCode.OK) return;
            }
            catch (HttpRequestException) { /* not listening yet */ }
            await Task.Delay(100);
        }
        throw new TimeoutException("the server did not become ready in 60 s");
    }

    /// <summary>The built executable beside these tests' configuration (Release under scripts/test.sh).</summary>
    internal static string ServerDll()
    {
        var configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name; // bin/<Configuration>/net10.0/
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var dll = Path.Combine(dir.FullName, "src", "LoyaltyLedger", "bin", configuration, "net10.0", "LoyaltyLedger.dll");
            if (File.Exists(dll)) return dll;
        }
        throw new FileNotFoundException("The built LoyaltyLedger.dll was not found; build the solution first.");
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

public sealed class ShutdownTestsOnSqlite(SqliteDatabase db) : ShutdownTests(db), IClassFixture<SqliteDatabase>;

public sealed class ShutdownTestsOnPostgres(PostgresDatabase db) : ShutdownTests(db), IClassFixture<PostgresDatabase>;
