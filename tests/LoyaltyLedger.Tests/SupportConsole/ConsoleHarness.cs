using System.Net;
using System.Text.RegularExpressions;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Playwright;

namespace LoyaltyLedger.Tests.SupportConsole;

/// <summary>
/// One Chromium (Debian's, driven by Playwright; <c>LEDGER_CHROMIUM</c> names another) and one real
/// Kestrel server on 127.0.0.1 per test class, over the class's database with a clock the tests move.
/// </summary>
public sealed partial class ConsoleHarness : IAsyncLifetime
{
    private IPlaywright? _playwright;
    private IBrowser? _browser;
    private WebApplication? _app;
    private readonly SemaphoreSlim _starting = new(1, 1);

    public IBrowser Browser => _browser ?? throw new InvalidOperationException("The browser is not started.");
    public TestClock Clock { get; } = new(new DateTimeOffset(2025, 3, 1, 12, 0, 0, TimeSpan.Zero));
    public string BaseUrl { get; private set; } = "";
    public LedgerDatabase Database { get; private set; } = default!;

    public async Task InitializeAsync()
    {
        var chromium = Environment.GetEnvironmentVariable("LEDGER_CHROMIUM") ?? "/usr/bin/chromium";
        File.Exists(chromium).ShouldBeTrue($"The console tests need Chromium at {chromium} (Debian: apt-get install chromium; .ci/run installs it).");
        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions { ExecutablePath = chromium, Args = ["--no-sandbox"] });
    }

    /// <summary>The server over the class's database, started on first use.</summary>
    public async Task<string> StartAsync(DatabaseFixture db)
    {
        await _starting.WaitAsync();
        try
        {
            if (_app is not null) return BaseUrl;
            Database = db.OpenSecondInstance();
            _app = Build(Database);
            await _app.StartAsync();
            BaseUrl = _app.Urls.Single();
            return BaseUrl;
        }
        finally
        {
            _starting.Release();
        }
    }

    /// <summary>Another server process's worth (its own connection pool and caches) over the same database.</summary>
    public async Task<WebApplication> StartAnotherServerAsync(DatabaseFixture db)
    {
        var app = Build(db.OpenSecondInstance());
        await app.StartAsync();
        return app;
    }

    private WebApplication Build(LedgerDatabase database) => LedgerServer.Build(new LedgerServerOptions
    {
        Database = database,
        Clock = Clock,
        Configure = builder =>
        {
            builder.WebHost.UseUrls("http://127.0.0.1:0");
            builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["Ledger:RateLimit:PermitsPerSecond"] = "1000000",
                ["Ledger:RateLimit:Burst"] = "1000000",
                ["Ledger:ExpiryInterval"] = "00:00:00",
                // Webhooks are queued and logged but not sent: the console shows them pending.
                ["Ledger:Webhooks:Dispatch"] = "false",
            });
        },
    });

    /// <summary>A new organization with an admin key and an API client for it (the API, not the console).</summary>
    public async Task<ConsoleTenant> NewTenantAsync()
    {
        var org = await Tenants.CreateOrganizationAsync(Database, "console org " + Guid.NewGuid().ToString("N")[..8], Clock, CancellationToken.None);
        var admin = await Tenants.IssueKeyAsync(Database, org.OrgId, KeyRole.Admin, Clock, CancellationToken.None, name: "admin");
        var client = new HttpClient { BaseAddress = new Uri(BaseUrl) };
        client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes($"{admin.KeyId}:{admin.Secret}")));
        return new ConsoleTenant(org.OrgId, admin, new Tenant(org.OrgId, admin, client, null!), this);
    }

    /// <summary>A browser page signed in to the console with the key, at <paramref name="width"/> px.</summary>
    public async Task<IPage> SignedInPageAsync(IssuedKey key, int width = 1280)
    {
        var context = await Browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = width, Height = 900 } });
        context.SetDefaultTimeout(30_000);
        var page = await context.NewPageAsync();
        await SignInAsync(page, key.KeyId, key.Secret);
        (await page.TitleAsync()).ShouldNotContain("Sign in");
        return page;
    }

    public async Task SignInAsync(IPage page, string keyId, string secret)
    {
        await page.GotoAsync(BaseUrl + "/console/signin");
        await page.GetByLabel("Key id").FillAsync(keyId);
        await page.GetByLabel("Secret").FillAsync(secret);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
    }

    /// <summary>
    /// A plain HTTP client of the console (no browser): its own cookies, no redirects followed, so a
    /// test sees exactly what the server answers to a request a browser would never send.
    /// </summary>
    public HttpClient RawClient(CookieContainer cookies) =>
        new(new HttpClientHandler { CookieContainer = cookies, AllowAutoRedirect = false }) { BaseAddress = new Uri(BaseUrl) };

    /// <summary>Signs a raw client in and answers its session's antiforgery token, read from a page's form.</summary>
    public async Task<string> RawSignInAsync(HttpClient client, IssuedKey key)
    {
        var token = await TokenAsync(client, "/console/signin");
        using var response = await client.PostAsync("/console/signin", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["_handler"] = "signin",
            ["__RequestVerificationToken"] = token,
            ["Form.KeyId"] = key.KeyId,
            ["Form.Secret"] = key.Secret,
        }));
        response.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        return await TokenAsync(client, "/console");
    }

    public static async Task<string> TokenAsync(HttpClient client, string path)
    {
        var html = await client.GetStringAsync(path);
        return TokenPattern().Match(html).Groups[1].Value;
    }

    [GeneratedRegex("name=\"__RequestVerificationToken\" value=\"([^\"]+)\"")]
    private static partial Regex TokenPattern();

    public async Task DisposeAsync()
    {
        if (_browser is not null) await _browser.DisposeAsync();
        _playwright?.Dispose();
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
            await Database.DisposeAsync();
        }
    }
}

/// <summary>An organization under test: its admin key, and an API client (HTTP Basic) for setting up data.</summary>
public sealed record ConsoleTenant(long OrgId, IssuedKey Admin, Tenant Api, ConsoleHarness Harness)
{
    public Task<IssuedKey> KeyAsync(KeyRole role) =>
        Tenants.IssueKeyAsync(Harness.Database, OrgId, role, Harness.Clock, CancellationToken.None, name: role.ToString().ToLowerInvariant() + " agent");
}
