using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Playwright;

namespace LoyaltyLedger.Tests.Api;

/// <summary>
/// The reference page at /docs, opened in a real browser (Debian's Chromium driven by Playwright):
/// it lists the operations, and no request leaves 127.0.0.1 (no CDN, fonts or telemetry), so it
/// works on a machine with no internet. <c>LEDGER_CHROMIUM</c> names another browser binary.
/// </summary>
public abstract class ReferencePageTests(DatabaseFixture db)
{
    [Fact]
    public async Task the_reference_page_lists_the_operations_with_no_request_leaving_the_machine()
    {
        var chromium = Environment.GetEnvironmentVariable("LEDGER_CHROMIUM") ?? "/usr/bin/chromium";
        File.Exists(chromium).ShouldBeTrue($"The browser test needs Chromium at {chromium} (Debian: apt-get install chromium; .ci/run installs it).");

        await using var database = db.OpenSecondInstance();
        var app = LedgerServer.Build(new LedgerServerOptions
        {
            Database = database,
            Configure = builder => builder.WebHost.UseUrls("http://127.0.0.1:0"),
        });
        await app.StartAsync();
        try
        {
            var baseUrl = app.Urls.Single();
            using var playwright = await Playwright.CreateAsync();
            await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = chromium,
                Args = ["--no-sandbox"],
            });
            var page = await browser.NewPageAsync();
            var outside = new List<string>();
            await page.RouteAsync("**/*", async route =>
            {
                if (new Uri(route.Request.Url).Host == "127.0.0.1") { await route.ContinueAsync(); return; }
                lock (outside) outside.Add(route.Request.Url);
                await route.AbortAsync();
            });

            await page.GotoAsync(baseUrl + "/docs");
            // Every operation of the document is listed by its summary (all tags open).
            var document = await ApiDocument.ReadAsync(new HttpClient { BaseAddress = new Uri(baseUrl) });
            await page.GetByText("Posts a bill (TransactionAdd)").First.WaitForAsync(new LocatorWaitForOptions { Timeout = 30_000 });
            var text = await page.InnerTextAsync("body");
            var missing = document.Operations.Select(o => o.Node["summary"]!.GetValue<string>())
                .Where(summary => !text.Contains(summary.TrimEnd('.'), StringComparison.Ordinal)).ToList();
            missing.ShouldBeEmpty();
            text.ShouldContain("/v2/pointsLedger/getCustomerLedgerInfo");
            outside.ShouldBeEmpty();
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }
}

public sealed class ReferencePageTestsOnSqlite(SqliteDatabase db) : ReferencePageTests(db), IClassFixture<SqliteDatabase>;
public sealed class ReferencePageTestsOnPostgres(PostgresDatabase db) : ReferencePageTests(db), IClassFixture<PostgresDatabase>;
