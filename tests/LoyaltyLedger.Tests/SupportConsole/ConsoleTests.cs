using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Dapper;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Tests.Infrastructure;
using LoyaltyLedger.Tests.PointsLedger;
using Microsoft.Playwright;

namespace LoyaltyLedger.Tests.SupportConsole;

/// <summary>
/// The support console (/console) in a real browser (Chromium through Playwright) against a real
/// server, and the requests a browser would never send (forged posts) through a plain HTTP client.
/// </summary>
public abstract partial class ConsoleTests(DatabaseFixture db, ConsoleHarness harness)
{
    /// <summary>An organization with a shop, a customer known by every identifier, in a (non-pooling) group, with a bill.</summary>
    private sealed record Scene(ConsoleTenant Org, Shop Shop, long CustomerId, string Email, string Mobile, string ExternalId, string Card, long GroupId)
    {
        public Tenant Api => Org.Api;
    }

    private async Task<Scene> SceneAsync(string firstName = "Ada", object? expiry = null)
    {
        await harness.StartAsync(db);
        var org = await harness.NewTenantAsync();
        var t = org.Api;
        var shop = await t.NewShopAsync(currencies: ["Stars"], expiry: expiry);
        var tag = Guid.NewGuid().ToString("N")[..10];
        var (email, mobile, externalId, card) = ($"ada-{tag}@example.com", "+44" + Random.Shared.NextInt64(1_000_000_000, 9_999_999_999), "EXT-" + tag, "6001" + tag);
        var customer = await t.PostOkAsync("/v1/customers", new
        {
            firstName, lastName = "Lovelace", email, mobile, externalId, accountNumbers = new[] { card },
        });
        var customerId = customer.GetProperty("customerId").GetInt64();
        var partner = await t.NewCustomerAsync(firstName: "Partner");
        var group = await t.PostOkAsync("/v1/groups", new
        {
            name = "Family " + tag, primaryCustomerId = partner, poolsPoints = false, members = new[] { new { customerId, role = "SECONDARY" } },
        });
        await t.BillAsync(shop, customerId, "B-1", 1000m);
        return new Scene(org, shop, customerId, email, mobile, externalId, card, group.GetProperty("groupId").GetInt64());
    }

    [Fact]
    public async Task signing_in_with_a_wrong_secret_is_refused_and_the_secret_is_never_in_a_url_the_page_or_browser_storage()
    {
        var scene = await SceneAsync();
        var context = await harness.Browser.NewContextAsync();
        var page = await context.NewPageAsync();

        await harness.SignInAsync(page, scene.Org.Admin.KeyId, "not-the-secret");
        (await page.GetByRole(AriaRole.Alert).InnerTextAsync()).ShouldContain("do not match");
        (await page.ContentAsync()).ShouldNotContain("not-the-secret");

        await harness.SignInAsync(page, scene.Org.Admin.KeyId, scene.Org.Admin.Secret);
        new Uri(page.Url).AbsolutePath.ShouldBe("/console");
        (await page.ContentAsync()).ShouldNotContain(scene.Org.Admin.Secret);
        page.Url.ShouldNotContain(scene.Org.Admin.Secret);
        (await page.EvaluateAsync<int>("localStorage.length + sessionStorage.length")).ShouldBe(0);
        var cookie = (await context.CookiesAsync()).Single(c => c.Name == "ledger_console");
        cookie.HttpOnly.ShouldBeTrue();
        cookie.SameSite.ShouldBe(SameSiteAttribute.Strict);
        cookie.Path.ShouldBe("/console");
        cookie.Value.ShouldNotContain(scene.Org.Admin.Secret);
        await context.CloseAsync();
    }

    [Fact]
    public async Task each_way_of_searching_finds_the_customer_or_the_group()
    {
        var scene = await SceneAsync();
        var page = await harness.SignedInPageAsync(scene.Org.Admin);
        var customerPage = $"/console/customers/{scene.CustomerId}";

        foreach (var (by, value, expected) in new[]
                 {
                     ("Customer id", scene.CustomerId.ToString(), customerPage), ("Email", scene.Email, customerPage), ("Mobile", scene.Mobile, customerPage),
                     ("External id", scene.ExternalId, customerPage), ("Card number", scene.Card, customerPage),
                     ("Group id", scene.GroupId.ToString(), $"/console/groups/{scene.GroupId}"), ("Anything", scene.Email, customerPage),
                 })
        {
            await page.GotoAsync(harness.BaseUrl + "/console");
            await page.GetByLabel("Search by").SelectOptionAsync(new SelectOptionValue { Label = by });
            await page.GetByLabel("Search for").FillAsync(value);
            await page.GetByRole(AriaRole.Button, new() { Name = "Search" }).ClickAsync();
            new Uri(page.Url).AbsolutePath.ShouldBe(expected, $"searching by {by}");
        }

        await page.GotoAsync(harness.BaseUrl + "/console/search?by=email&q=nobody%40example.com");
        (await page.Locator("main").InnerTextAsync()).ShouldContain("Nothing in your organization matches");
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task the_customer_page_shows_the_balances_the_balances_api_answers()
    {
        var scene = await SceneAsync();
        await scene.Api.AwardAsync(scene.CustomerId, "12.345", "Stars");
        await scene.Api.PostOkAsync("/v1/redemptions", new { customerId = scene.CustomerId, points = "30.5", programId = scene.Shop.ProgramId });
        var page = await harness.SignedInPageAsync(scene.Org.Admin);
        await page.GotoAsync($"{harness.BaseUrl}/console/customers/{scene.CustomerId}");

        var api = await scene.Api.GetOkAsync($"/v1/customers/{scene.CustomerId}/balances");
        var rows = page.Locator("table.balances tbody tr");
        (await rows.CountAsync()).ShouldBe(api.GetArrayLength());
        foreach (var balance in api.EnumerateArray())
        {
            var currency = balance.TryGetProperty("currency", out var c) ? c.GetString() : "";
            var row = page.Locator($"table.balances tr[data-program='{balance.GetProperty("programId").GetInt64()}'][data-currency='{currency}'][data-category='{balance.GetProperty("category").GetString()}']");
            var shown = (await row.Locator("td.balance").InnerTextAsync()).Replace(",", "");
            shown.ShouldBe(balance.GetProperty("balance").GetString());
        }
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task the_balance_chart_has_one_point_per_day_with_activity_in_the_period()
    {
        var scene = await SceneAsync();
        var t = scene.Api;
        // Activity on four more days, two events on one of them; one day 40 days back from the last.
        harness.Clock.Advance(TimeSpan.FromDays(1));
        await t.BillAsync(scene.Shop, scene.CustomerId, "B-2", 50m);
        harness.Clock.Advance(TimeSpan.FromDays(40));
        await t.AwardAsync(scene.CustomerId, "5");
        await t.PostOkAsync("/v1/redemptions", new { customerId = scene.CustomerId, points = "2", programId = scene.Shop.ProgramId });
        harness.Clock.Advance(TimeSpan.FromDays(3));
        await t.BillAsync(scene.Shop, scene.CustomerId, "B-3", 70m);
        harness.Clock.Advance(TimeSpan.FromHours(2));

        var wallet = await harness.Database.ReadAsync(c => c.ExecuteScalarAsync<long>(
            "SELECT wallet_id FROM wallets WHERE org_id = @org AND owner_id = @id AND owner_type = 'CUSTOMER' AND currency_id = 0 AND category = 'REGULAR'",
            new { org = scene.Org.OrgId, id = scene.CustomerId }), CancellationToken.None);
        var days = (await harness.Database.ReadAsync(c => c.QueryAsync<long>(
            "SELECT DISTINCT created_at / 86400000 FROM ledger_entries WHERE wallet_id = @wallet ORDER BY 1", new { wallet }), CancellationToken.None))
            .Select(d => DateTimeOffset.FromUnixTimeMilliseconds(d * 86_400_000).ToString("yyyy-MM-dd")).ToList();
        days.Count.ShouldBe(4);

        var page = await harness.SignedInPageAsync(scene.Org.Admin);
        foreach (var (range, shown) in new[] { ("all", days), ("90", days), ("30", days.Skip(2).ToList()) })
        {
            await page.GotoAsync($"{harness.BaseUrl}/console/customers/{scene.CustomerId}?range={range}&wallet={wallet}");
            var points = await page.Locator("svg.balance-chart circle.point").EvaluateAllAsync<string[]>("points => points.map(p => p.dataset.day)");
            points.ShouldBe(shown.ToArray(), $"range {range}");
        }
        // Each point is the balance at the end of its day: the last one is the balance now.
        var last = await page.Locator("svg.balance-chart circle.point title").Last.TextContentAsync();
        var balance = await t.BalanceAsync(scene.CustomerId, scene.Shop.ProgramId);
        last!.ShouldEndWith(LoyaltyLedger.Server.SupportConsole.Format.Points(balance));
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task a_goodwill_credit_shows_in_the_ledger_and_the_points_ledger_api_at_once_and_a_double_click_posts_it_once()
    {
        var scene = await SceneAsync();
        var writer = await scene.Org.KeyAsync(KeyRole.Write);
        var before = await scene.Api.BalanceAsync(scene.CustomerId, scene.Shop.ProgramId);
        var page = await harness.SignedInPageAsync(writer);
        await page.GotoAsync($"{harness.BaseUrl}/console/customers/{scene.CustomerId}");
        await page.GetByRole(AriaRole.Link, new() { Name = "Goodwill credit or debit" }).ClickAsync();
        await page.Locator("[name='Form.Points']").FillAsync("25");
        await page.Locator("[name='Form.Reason']").FillAsync("Parcel lost in transit <b>sorry</b>");
        await page.GetByRole(AriaRole.Button, new() { Name = "Post adjustment" }).DblClickAsync();
        await page.WaitForURLAsync(new Regex("/console/events/\\d+"));

        (await page.GetByRole(AriaRole.Status).InnerTextAsync()).ShouldContain("Posted");
        (await page.Locator(".posted-by").InnerTextAsync()).ShouldBe(writer.KeyId);
        (await page.Locator(".reason").InnerTextAsync()).ShouldBe("Parcel lost in transit <b>sorry</b>");
        (await GoodwillEventsAsync(scene)).ShouldBe(1);
        (await scene.Api.BalanceAsync(scene.CustomerId, scene.Shop.ProgramId)).ShouldBe(before + 25_000);

        await page.GotoAsync($"{harness.BaseUrl}/console/customers/{scene.CustomerId}");
        var newest = page.Locator("ol.events details.event").First;
        (await newest.Locator(".name").InnerTextAsync()).ShouldBe("Goodwill credit");
        (await newest.Locator(".amounts").InnerTextAsync()).ShouldBe("+25.000 points");
        (await newest.Locator(".by").InnerTextAsync()).ShouldBe("by " + writer.KeyId);

        var ledger = await scene.Api.LedgerOkAsync(LedgerApi.Customer(scene.CustomerId, "&sortOrder=DESC"));
        var entry = ledger.Events()[0];
        entry.GetProperty("eventName").GetString().ShouldBe("GoodwillAdjustment");
        entry.GetProperty("eventDetails").GetProperty("reason").GetString().ShouldBe("Parcel lost in transit <b>sorry</b>");
        entry.GetProperty("netPointsOnEvent").GetString().ShouldBe("25.000");

        // The same form sent again (a resubmitted page) is the same posting: it answers the same event and writes nothing.
        var cookies = new CookieContainer();
        using var raw = harness.RawClient(cookies);
        await harness.RawSignInAsync(raw, writer);
        var form = await raw.GetStringAsync($"/console/customers/{scene.CustomerId}/adjust");
        var fields = AdjustFields(form, "7", "Second visit");
        using var first = await raw.PostAsync($"/console/customers/{scene.CustomerId}/adjust", new FormUrlEncodedContent(fields));
        using var second = await raw.PostAsync($"/console/customers/{scene.CustomerId}/adjust", new FormUrlEncodedContent(fields));
        first.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        second.Headers.Location.ShouldBe(first.Headers.Location);
        (await GoodwillEventsAsync(scene)).ShouldBe(2);
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task a_goodwill_debit_beyond_the_balance_is_refused_with_its_reason_and_writes_nothing()
    {
        var scene = await SceneAsync();
        var cookies = new CookieContainer();
        using var raw = harness.RawClient(cookies);
        await harness.RawSignInAsync(raw, scene.Org.Admin);
        var snapshot = await LedgerAudit.SnapshotAsync(harness.Database, scene.Org.OrgId);

        var fields = AdjustFields(await raw.GetStringAsync($"/console/customers/{scene.CustomerId}/adjust"), "1000000", "Too much");
        fields["Form.Direction"] = "Debit";
        using var refused = await raw.PostAsync($"/console/customers/{scene.CustomerId}/adjust", new FormUrlEncodedContent(fields));
        ((int)refused.StatusCode).ShouldBe(422);
        (await refused.Content.ReadAsStringAsync()).ShouldContain("less than the 1000000.000 asked for");

        fields = AdjustFields(await raw.GetStringAsync($"/console/customers/{scene.CustomerId}/adjust"), "5", "  ");
        using var noReason = await raw.PostAsync($"/console/customers/{scene.CustomerId}/adjust", new FormUrlEncodedContent(fields));
        noReason.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await noReason.Content.ReadAsStringAsync()).ShouldContain("Give a reason");
        (await LedgerAudit.SnapshotAsync(harness.Database, scene.Org.OrgId)).ShouldBe(snapshot);
    }

    [Fact]
    public async Task a_read_key_has_no_action_buttons_and_forged_actions_are_refused_with_nothing_written()
    {
        var scene = await SceneAsync();
        var redemption = await scene.Api.PostOkAsync("/v1/redemptions", new { customerId = scene.CustomerId, points = "10", programId = scene.Shop.ProgramId });
        var redemptionId = redemption.GetProperty("eventId").GetInt64();
        var reader = await scene.Org.KeyAsync(KeyRole.Read);
        var writer = await scene.Org.KeyAsync(KeyRole.Write);

        var page = await harness.SignedInPageAsync(reader);
        await page.GotoAsync($"{harness.BaseUrl}/console/customers/{scene.CustomerId}");
        (await page.GetByRole(AriaRole.Link, new() { Name = "Goodwill credit or debit" }).CountAsync()).ShouldBe(0);
        await page.GotoAsync($"{harness.BaseUrl}/console/events/{redemptionId}");
        (await page.GetByRole(AriaRole.Link, new() { Name = "Reverse this redemption" }).CountAsync()).ShouldBe(0);
        var denied = await page.GotoAsync($"{harness.BaseUrl}/console/customers/{scene.CustomerId}/adjust");
        denied!.Status.ShouldBe(403);
        await page.Context.CloseAsync();

        // A write key's own form, to forge from.
        var writerClient = harness.RawClient(new CookieContainer());
        await harness.RawSignInAsync(writerClient, writer);
        var fields = AdjustFields(await writerClient.GetStringAsync($"/console/customers/{scene.CustomerId}/adjust"), "500", "forged");
        var snapshot = await LedgerAudit.SnapshotAsync(harness.Database, scene.Org.OrgId);

        // A read key's session with a valid token of its own: refused by role.
        var readerClient = harness.RawClient(new CookieContainer());
        var readerToken = await harness.RawSignInAsync(readerClient, reader);
        var asReader = new Dictionary<string, string>(fields) { ["__RequestVerificationToken"] = readerToken };
        using (var response = await readerClient.PostAsync($"/console/customers/{scene.CustomerId}/adjust", new FormUrlEncodedContent(asReader)))
            response.StatusCode.ShouldBe(HttpStatusCode.Forbidden);
        using (var response = await readerClient.PostAsync($"/console/events/{redemptionId}/reverse", new FormUrlEncodedContent(new Dictionary<string, string>
               {
                   ["_handler"] = "reverse", ["__RequestVerificationToken"] = readerToken, ["Form.FormKey"] = "forged-1", ["Form.Reason"] = "forged",
               })))
            response.StatusCode.ShouldBe(HttpStatusCode.Forbidden);

        // The write key's session without the token, or with another session's token: refused as not from the console.
        var noToken = new Dictionary<string, string>(fields);
        noToken.Remove("__RequestVerificationToken");
        using (var response = await writerClient.PostAsync($"/console/customers/{scene.CustomerId}/adjust", new FormUrlEncodedContent(noToken)))
        {
            response.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
            var body = await response.Content.ReadAsStringAsync();
            body.ShouldContain("The form could not be accepted");
            body.ShouldNotContain("Exception");
        }
        using (var response = await writerClient.PostAsync($"/console/customers/{scene.CustomerId}/adjust", new FormUrlEncodedContent(asReader)))
            response.StatusCode.ShouldBe(HttpStatusCode.BadRequest);

        // No session at all: to the sign-in page.
        using (var response = await harness.RawClient(new CookieContainer()).PostAsync($"/console/customers/{scene.CustomerId}/adjust", new FormUrlEncodedContent(fields)))
        {
            response.StatusCode.ShouldBe(HttpStatusCode.Redirect);
            response.Headers.Location!.AbsolutePath.ShouldBe("/console/signin");
        }
        (await LedgerAudit.SnapshotAsync(harness.Database, scene.Org.OrgId)).ShouldBe(snapshot);
    }

    [Fact]
    public async Task a_customer_named_like_a_script_is_shown_as_text()
    {
        var scene = await SceneAsync(firstName: "<script>alert(1)</script>");
        var page = await harness.SignedInPageAsync(scene.Org.Admin);
        var dialogs = 0;
        page.Dialog += (_, dialog) => { dialogs++; _ = dialog.DismissAsync(); };

        await page.GotoAsync($"{harness.BaseUrl}/console/search?by=email&q={Uri.EscapeDataString(scene.Email)}");
        (await page.Locator("h1 .customer-name").InnerTextAsync()).ShouldBe("<script>alert(1)</script> Lovelace");
        (await page.Locator("script").CountAsync()).ShouldBe(0);
        (await page.ContentAsync()).ShouldContain("&lt;script&gt;alert(1)&lt;/script&gt;");
        await page.GotoAsync($"{harness.BaseUrl}/console/groups/{scene.GroupId}");
        dialogs.ShouldBe(0);
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task signing_out_ends_the_session_even_for_a_copy_of_its_cookie()
    {
        var scene = await SceneAsync();
        var page = await harness.SignedInPageAsync(scene.Org.Admin);
        var copy = (await page.Context.CookiesAsync()).Single(c => c.Name == "ledger_console").Value;

        await page.GetByRole(AriaRole.Button, new() { Name = "Sign out" }).ClickAsync();
        new Uri(page.Url).AbsolutePath.ShouldBe("/console/signin");
        await page.GotoAsync($"{harness.BaseUrl}/console/customers/{scene.CustomerId}");
        new Uri(page.Url).AbsolutePath.ShouldBe("/console/signin");

        var cookies = new CookieContainer();
        cookies.Add(new Uri(harness.BaseUrl), new System.Net.Cookie("ledger_console", copy, "/console"));
        using var replayed = await harness.RawClient(cookies).GetAsync($"/console/customers/{scene.CustomerId}");
        replayed.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        replayed.Headers.Location!.AbsolutePath.ShouldBe("/console/signin");
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task a_revoked_or_rotated_key_ends_its_sessions_within_the_key_cache_lifetime()
    {
        var scene = await SceneAsync();
        var revoked = await scene.Org.KeyAsync(KeyRole.Read);
        var rotated = await scene.Org.KeyAsync(KeyRole.Read);
        var elsewhere = await scene.Org.KeyAsync(KeyRole.Read);
        var sessions = new Dictionary<string, HttpClient>();
        foreach (var key in new[] { revoked, rotated, elsewhere })
        {
            sessions[key.KeyId] = harness.RawClient(new CookieContainer());
            await harness.RawSignInAsync(sessions[key.KeyId], key);
        }
        var path = $"/console/customers/{scene.CustomerId}";

        // Through this server: at once.
        (await scene.Api.Http.DeleteAsync($"/v1/keys/{revoked.KeyId}")).StatusCode.ShouldBe(HttpStatusCode.NoContent);
        (await scene.Api.PostOkAsync($"/v1/keys/{rotated.KeyId}/rotate", new { })).GetProperty("secret").GetString().ShouldNotBe(rotated.Secret);
        foreach (var key in new[] { revoked, rotated })
        {
            using var response = await sessions[key.KeyId].GetAsync(path);
            response.StatusCode.ShouldBe(HttpStatusCode.Redirect, key.KeyId);
            response.Headers.Location!.AbsolutePath.ShouldBe("/console/signin");
        }

        // Through another server process (another handle on the database): once this one's cache of the key expires.
        using (var response = await sessions[elsewhere.KeyId].GetAsync(path)) response.StatusCode.ShouldBe(HttpStatusCode.OK);
        await using (var other = db.OpenSecondInstance())
            await Tenants.RevokeKeyAsync(other, scene.Org.OrgId, elsewhere.KeyId, harness.Clock, CancellationToken.None);
        await Task.Delay(CatalogCache.KeysTtl + TimeSpan.FromMilliseconds(200));
        using (var response = await sessions[elsewhere.KeyId].GetAsync(path)) response.StatusCode.ShouldBe(HttpStatusCode.Redirect);
    }

    [Fact]
    public async Task a_session_and_its_forms_work_on_another_server_sharing_the_database_and_signing_out_there_ends_it_here()
    {
        var scene = await SceneAsync();
        var cookies = new CookieContainer();
        using var here = harness.RawClient(cookies);
        await harness.RawSignInAsync(here, scene.Org.Admin);
        var form = await here.GetStringAsync($"/console/customers/{scene.CustomerId}/adjust");
        var session = cookies.GetCookies(new Uri(harness.BaseUrl + "/console"))["ledger_console"]!.Value;

        var other = await harness.StartAnotherServerAsync(db);
        try
        {
            // Cookies are not kept per port: the same container signs the client in there too.
            using var there = new HttpClient(new HttpClientHandler { CookieContainer = cookies, AllowAutoRedirect = false }) { BaseAddress = new Uri(other.Urls.Single()) };
            using (var page = await there.GetAsync($"/console/customers/{scene.CustomerId}")) page.StatusCode.ShouldBe(HttpStatusCode.OK);
            // A form rendered by the first server is accepted by the second (one key ring, in the database).
            using (var posted = await there.PostAsync($"/console/customers/{scene.CustomerId}/adjust", new FormUrlEncodedContent(AdjustFields(form, "3", "elsewhere"))))
                posted.StatusCode.ShouldBe(HttpStatusCode.Redirect);
            var token = await ConsoleHarness.TokenAsync(there, "/console");
            using (var signedOut = await there.PostAsync("/console/signout", new FormUrlEncodedContent(new Dictionary<string, string>
                   {
                       ["_handler"] = "signout", ["__RequestVerificationToken"] = token,
                   })))
                signedOut.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        }
        finally
        {
            await other.StopAsync();
            await other.DisposeAsync();
        }
        (await GoodwillEventsAsync(scene)).ShouldBe(1);
        // The servers share the key ring through the database, not through a directory they happen to share here.
        (await harness.Database.ReadAsync(c => c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM console_key_ring"), CancellationToken.None)).ShouldBeGreaterThan(0);
        cookies.Add(new Uri(harness.BaseUrl), new System.Net.Cookie("ledger_console", session, "/console"));
        using var after = await here.GetAsync($"/console/customers/{scene.CustomerId}");
        after.StatusCode.ShouldBe(HttpStatusCode.Redirect);
    }

    [Fact]
    public async Task the_console_session_opens_no_api_and_basic_credentials_open_no_console_page()
    {
        var scene = await SceneAsync();
        var cookies = new CookieContainer();
        using var raw = harness.RawClient(cookies);
        await harness.RawSignInAsync(raw, scene.Org.Admin);
        // The console's cookie is scoped to /console, and the API would not take it anyway: send it there by hand.
        using var api = new HttpRequestMessage(HttpMethod.Get, $"/v1/customers/{scene.CustomerId}/balances");
        api.Headers.Add("Cookie", cookies.GetCookieHeader(new Uri(harness.BaseUrl + "/console")));
        using (var response = await raw.SendAsync(api)) response.StatusCode.ShouldBe(HttpStatusCode.Unauthorized);

        using var basic = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(harness.BaseUrl) };
        basic.DefaultRequestHeaders.Authorization = scene.Api.Http.DefaultRequestHeaders.Authorization;
        using (var response = await basic.GetAsync($"/console/customers/{scene.CustomerId}"))
        {
            response.StatusCode.ShouldBe(HttpStatusCode.Redirect);
            response.Headers.Location!.AbsolutePath.ShouldBe("/console/signin");
            response.Headers.WwwAuthenticate.ShouldBeEmpty();
        }
    }

    [Fact]
    public async Task unknown_ids_and_addresses_show_a_not_found_page_and_never_a_stack_trace()
    {
        var scene = await SceneAsync();
        using var raw = harness.RawClient(new CookieContainer());
        await harness.RawSignInAsync(raw, scene.Org.Admin);
        // A customer of another organization, with an id this one has not given.
        var other = await harness.NewTenantAsync();
        var otherCustomer = (await other.Api.PostOkAsync("/v1/customers", new { customerId = 55_555_555, firstName = "Other" })).GetProperty("customerId").GetInt64();

        foreach (var path in new[]
                 {
                     "/console/customers/987654321", $"/console/customers/{otherCustomer}", "/console/customers/abc", "/console/groups/987654321",
                     "/console/events/987654321", "/console/events/abc/reverse", $"/console/events/{long.MaxValue}", "/console/no/such/page",
                     "/console/customers/987654321/tier", $"/console/customers/{otherCustomer}/tier", "/console/groups/987654321/tier",
                     $"/console/customers/{scene.CustomerId}?before=garbage&lt=MOON&from=yesterday&range=forever&wallet=-1",
                 })
        {
            using var response = await raw.GetAsync(path);
            var html = await response.Content.ReadAsStringAsync();
            var expected = path.Contains('?') ? HttpStatusCode.OK : HttpStatusCode.NotFound;
            response.StatusCode.ShouldBe(expected, path);
            response.Content.Headers.ContentType!.MediaType.ShouldBe("text/html", path);
            html.ShouldNotContain("Exception", Case.Sensitive, path);
            html.ShouldNotContain("   at ", Case.Sensitive, path);
            if (expected == HttpStatusCode.NotFound) html.ShouldContain("Not found", Case.Sensitive, path);
        }
    }

    [Fact]
    public async Task reversing_a_redemption_and_returning_a_bill_from_the_console_post_events_linked_to_them()
    {
        var scene = await SceneAsync();
        var t = scene.Api;
        var redemption = (await t.PostOkAsync("/v1/redemptions", new { customerId = scene.CustomerId, points = "40", programId = scene.Shop.ProgramId }))
            .GetProperty("eventId").GetInt64();
        var bill = (await t.BillAsync(scene.Shop, scene.CustomerId, "B-R", 200m)).GetProperty("eventId").GetInt64();
        var before = await t.BalanceAsync(scene.CustomerId, scene.Shop.ProgramId);
        var writer = await scene.Org.KeyAsync(KeyRole.Write);
        var page = await harness.SignedInPageAsync(writer);

        await page.GotoAsync($"{harness.BaseUrl}/console/events/{redemption}");
        await page.GetByRole(AriaRole.Link, new() { Name = "Reverse this redemption" }).ClickAsync();
        await page.Locator("[name='Form.Points']").FillAsync("15");
        await page.Locator("[name='Form.Reason']").FillAsync("Order cancelled");
        await page.GetByRole(AriaRole.Button, new() { Name = "Reverse" }).ClickAsync();
        await page.WaitForURLAsync(new Regex("posted=1"));
        (await page.Locator(".related").InnerTextAsync()).ShouldContain($"event {redemption}");
        await page.GetByRole(AriaRole.Link, new() { Name = $"PointsRedemption, event {redemption}" }).ClickAsync();
        (await page.Locator(".related").InnerTextAsync()).ShouldContain("a reversal of this redemption");

        await page.GotoAsync($"{harness.BaseUrl}/console/events/{bill}");
        await page.GetByRole(AriaRole.Link, new() { Name = "Return this bill" }).ClickAsync();
        await page.Locator("[name='Form.Amount']").FillAsync("100");
        await page.Locator("[name='Form.Reason']").FillAsync("Half the goods came back");
        await page.GetByRole(AriaRole.Button, new() { Name = "Return" }).ClickAsync();
        await page.WaitForURLAsync(new Regex("posted=1"));
        (await page.Locator("h1").InnerTextAsync()).ShouldStartWith("ReturnBill");
        (await page.Locator(".related").InnerTextAsync()).ShouldContain("the bill it returns");

        // 15 back from the reversal, 10 taken by returning half of a 200.00 bill that earned 20.
        (await t.BalanceAsync(scene.CustomerId, scene.Shop.ProgramId)).ShouldBe(before + 15_000 - 10_000);
        (await LedgerAudit.ViolationsAsync(harness.Database, scene.Org.OrgId)).ShouldBeEmpty();
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task an_admin_creates_rotates_and_revokes_keys_and_a_new_secret_is_shown_once()
    {
        var scene = await SceneAsync();
        var page = await harness.SignedInPageAsync(scene.Org.Admin);
        await page.GotoAsync(harness.BaseUrl + "/console/admin/keys");
        await page.Locator("[name='Create.Role']").SelectOptionAsync("Write");
        await page.Locator("[name='Create.Name']").FillAsync("till 7");
        await page.GetByRole(AriaRole.Button, new() { Name = "Create key" }).ClickAsync();
        var secret = await page.Locator(".the-secret").InnerTextAsync();
        var keyId = await page.Locator(".secret code").First.InnerTextAsync();
        (await Tenants.AuthenticateAsync(harness.Database, keyId, secret, CancellationToken.None))!.Role.ShouldBe(KeyRole.Write);

        // Shown once: the list, and a reload of the list, never show it again.
        await page.GotoAsync(harness.BaseUrl + "/console/admin/keys");
        (await page.ContentAsync()).ShouldNotContain(secret);

        await page.Locator($"tr[data-key='{keyId}']").GetByRole(AriaRole.Link, new() { Name = "Rotate" }).ClickAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Rotate" }).ClickAsync();
        var rotated = await page.Locator(".the-secret").InnerTextAsync();
        rotated.ShouldNotBe(secret);
        (await Tenants.AuthenticateAsync(harness.Database, keyId, secret, CancellationToken.None)).ShouldBeNull();

        await page.Locator($"tr[data-key='{keyId}']").GetByRole(AriaRole.Link, new() { Name = "Revoke" }).ClickAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Revoke" }).ClickAsync();
        (await page.GetByRole(AriaRole.Status).InnerTextAsync()).ShouldContain("is revoked");
        (await Tenants.AuthenticateAsync(harness.Database, keyId, rotated, CancellationToken.None)).ShouldBeNull();

        var writer = await scene.Org.KeyAsync(KeyRole.Write);
        var writerPage = await harness.SignedInPageAsync(writer);
        (await writerPage.GotoAsync(harness.BaseUrl + "/console/admin/keys"))!.Status.ShouldBe(403);
        (await writerPage.GetByRole(AriaRole.Link, new() { Name = "API keys" }).CountAsync()).ShouldBe(0);
        await writerPage.Context.CloseAsync();
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task an_admin_creates_a_webhook_sees_its_secret_once_pings_it_and_redelivers_the_ping_from_its_log()
    {
        await harness.StartAsync(db);
        var org = await harness.NewTenantAsync();
        var page = await harness.SignedInPageAsync(org.Admin);
        await page.GetByRole(AriaRole.Link, new() { Name = "Webhooks" }).ClickAsync();
        await page.Locator("[name='Create.Url']").FillAsync("https://example.com/hooks/loyalty");
        await page.GetByLabel("balance.changed", new() { Exact = true }).CheckAsync();
        await page.GetByLabel("points.expired", new() { Exact = true }).CheckAsync();
        await page.Locator("[name='Create.Description']").FillAsync("CRM <sync>");
        await page.GetByRole(AriaRole.Button, new() { Name = "Create webhook" }).ClickAsync();
        var secret = await page.Locator(".the-secret").InnerTextAsync();
        secret.ShouldStartWith("whsec_");
        var id = long.Parse(await page.Locator(".secret code").First.InnerTextAsync());
        var api = await org.Api.GetOkAsync($"/v1/webhooks/{id}");
        api.GetProperty("events").EnumerateArray().Select(e => e.GetString()).ShouldBe(["balance.changed", "points.expired"]);
        api.GetProperty("description").GetString().ShouldBe("CRM <sync>");

        // Shown once: the list, reloaded, never shows it again.
        await page.GotoAsync(harness.BaseUrl + "/console/admin/webhooks");
        (await page.ContentAsync()).ShouldNotContain(secret);
        var row = page.Locator($"tr[data-webhook='{id}']");
        (await row.Locator("td.status").InnerTextAsync()).ShouldBe("enabled");

        await row.GetByRole(AriaRole.Link, new() { Name = "Test" }).ClickAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Send test ping" }).ClickAsync();
        await page.GetByRole(AriaRole.Link, new() { Name = "see the delivery log" }).ClickAsync();
        new Uri(page.Url).AbsolutePath.ShouldBe($"/console/admin/webhooks/{id}");
        var delivery = page.Locator("ol.deliveries > li");
        (await delivery.CountAsync()).ShouldBe(1);
        (await delivery.Locator(".type").InnerTextAsync()).ShouldBe("webhook.test");
        (await delivery.Locator(".status").InnerTextAsync()).ShouldBe("pending");
        var deliveryId = await delivery.GetAttributeAsync("data-delivery");

        // Dispatch is off in this server: the ping waits, and redelivering it asks for its try now.
        await delivery.GetByRole(AriaRole.Button, new() { Name = "Redeliver" }).ClickAsync();
        (await page.GetByRole(AriaRole.Status).InnerTextAsync()).ShouldBe($"Delivery {deliveryId} is tried next.");
        var log = await org.Api.GetOkAsync($"/v1/webhooks/{id}/deliveries");
        log.GetProperty("deliveries").GetArrayLength().ShouldBe(1);

        await page.GotoAsync(harness.BaseUrl + "/console/admin/webhooks");
        await row.GetByRole(AriaRole.Link, new() { Name = "Disable" }).ClickAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Disable" }).ClickAsync();
        (await row.Locator("td.status").InnerTextAsync()).ShouldStartWith("disabled");
        (await org.Api.GetOkAsync($"/v1/webhooks/{id}")).GetProperty("enabled").GetBoolean().ShouldBeFalse();
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task a_read_key_cannot_open_the_webhooks_page_and_forged_or_foreign_webhook_posts_write_nothing()
    {
        await harness.StartAsync(db);
        var org = await harness.NewTenantAsync();
        var other = await harness.NewTenantAsync();
        var theirs = (await other.Api.PostOkAsync("/v1/webhooks", new { url = "https://example.com/theirs", events = new[] { "*" } })).GetProperty("id").GetInt64();
        var reader = await org.KeyAsync(KeyRole.Read);

        using var readerClient = harness.RawClient(new CookieContainer());
        var readerToken = await harness.RawSignInAsync(readerClient, reader);
        using (var response = await readerClient.GetAsync("/console/admin/webhooks")) response.StatusCode.ShouldBe(HttpStatusCode.Forbidden);
        (await readerClient.GetStringAsync("/console")).ShouldNotContain("/console/admin/webhooks");

        using var admin = harness.RawClient(new CookieContainer());
        var adminToken = await harness.RawSignInAsync(admin, org.Admin);
        var html = await admin.GetStringAsync("/console/admin/webhooks");
        var create = new Dictionary<string, string>
        {
            ["_handler"] = "create",
            ["Create.FormKey"] = Regex.Match(html, "name=\"Create.FormKey\" value=\"([^\"]+)\"").Groups[1].Value,
            ["Create.Url"] = "https://example.com/forged",
            ["Create.Events"] = "*",
        };
        using (var response = await readerClient.PostAsync("/console/admin/webhooks",
                   new FormUrlEncodedContent(new Dictionary<string, string>(create) { ["__RequestVerificationToken"] = readerToken })))
            response.StatusCode.ShouldBe(HttpStatusCode.Forbidden);
        using (var response = await admin.PostAsync("/console/admin/webhooks", new FormUrlEncodedContent(create)))
        {
            response.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
            (await response.Content.ReadAsStringAsync()).ShouldContain("The form could not be accepted");
        }

        // Another organization's webhook is as unknown as one that never was: its log, its confirm step, a posted action.
        foreach (var path in new[] { $"/console/admin/webhooks/{theirs}", "/console/admin/webhooks/987654321" })
        {
            using var response = await admin.GetAsync(path);
            response.StatusCode.ShouldBe(HttpStatusCode.NotFound, path);
            (await response.Content.ReadAsStringAsync()).ShouldContain("Not found", Case.Sensitive, path);
        }
        (await admin.GetStringAsync($"/console/admin/webhooks?confirm=delete&webhook={theirs}")).ShouldNotContain("Action.Verb");
        // The confirm form of one of ours, posted with theirs: the Core, scoped to this organization, does not find it.
        var ours = (await org.Api.PostOkAsync("/v1/webhooks", new { url = "https://example.com/ours", events = new[] { "*" } })).GetProperty("id").GetInt64();
        using (var response = await admin.PostAsync($"/console/admin/webhooks?confirm=delete&webhook={ours}", new FormUrlEncodedContent(new Dictionary<string, string>
               {
                   ["_handler"] = "webhookaction", ["__RequestVerificationToken"] = adminToken, ["Action.FormKey"] = "foreign-1",
                   ["Action.WebhookId"] = theirs.ToString(), ["Action.Verb"] = "delete",
               })))
            response.StatusCode.ShouldBe(HttpStatusCode.NotFound);

        (await org.Api.GetOkAsync("/v1/webhooks")).EnumerateArray().Select(w => w.GetProperty("id").GetInt64()).ShouldBe([ours]);
        (await other.Api.GetOkAsync($"/v1/webhooks/{theirs}")).GetProperty("url").GetString().ShouldBe("https://example.com/theirs");
    }

    [Fact]
    public async Task the_dashboard_counts_points_issued_redeemed_and_returned_today_and_the_outstanding_balance()
    {
        var scene = await SceneAsync();
        var t = scene.Api;
        await t.PostOkAsync("/v1/redemptions", new { customerId = scene.CustomerId, points = "30", programId = scene.Shop.ProgramId });
        await t.PostOkAsync("/v1/returns", new { storeCode = scene.Shop.StoreCode, billNumber = "B-1", amount = 100 });
        var page = await harness.SignedInPageAsync(scene.Org.Admin);
        await page.GotoAsync($"{harness.BaseUrl}/console/dashboard?program={scene.Shop.ProgramId}&currency=0");

        // Today: the bill of 1000.00 earned 100, 30 redeemed, a tenth of the bill returned takes back 10.
        var today = await page.Locator("table.movement-totals tbody tr").Nth(1).Locator("td").AllInnerTextsAsync();
        today.ShouldBe(["Today", "100.000", "30.000", "0.000", "10.000"]);
        var outstanding = await page.Locator($"table.outstanding tr[data-program='{scene.Shop.ProgramId}'][data-currency=''][data-category='REGULAR'] td.balance").InnerTextAsync();
        var balance = await t.BalanceAsync(scene.CustomerId, scene.Shop.ProgramId);
        outstanding.Replace(",", "").ShouldBe(new Points(balance).ToString());
        (await page.Locator("svg.movement-chart polyline").CountAsync()).ShouldBe(4);
        await page.Context.CloseAsync();
    }

    /// <summary>
    /// Tiers on the scene's program: points earned this period (the rule's, at 1x), Silver, Gold at 100
    /// (kept with 80, earns 1.5x, 10 points on the way in), Platinum at 300 (2x).
    /// </summary>
    private static Task<JsonElement> TiersAsync(Tenant t, long programId) =>
        t.PutOkAsync($"/v1/programs/{programId}/tiers", new
        {
            metric = new { kind = "POINTS", window = "PERIOD" },
            period = new { kind = "ROLLING", months = 12 },
            downgrade = "ONE_DOWN",
            tiers = new object[]
            {
                new { name = "Silver", threshold = "0" },
                new { name = "Gold", threshold = "100", renewalThreshold = "80", multiplier = "1.5", upgradeBonus = "10" },
                new { name = "Platinum", threshold = "300", multiplier = "2" },
            },
        });

    private static string Day(JsonElement instant) => instant.GetDateTimeOffset().UtcDateTime.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task a_customer_who_is_upgraded_shows_the_tier_card_the_upgrade_in_the_history_and_each_line_its_tier()
    {
        var scene = await SceneAsync();
        var t = scene.Api;
        await TiersAsync(t, scene.Shop.ProgramId);
        // 100 points at Silver cross into Gold (the bill earns at Silver); the period restarts; 20 more earn 30 at Gold.
        var upgrade = (await t.BillAsync(scene.Shop, scene.CustomerId, "U-1", 1000m)).GetProperty("eventId").GetInt64();
        harness.Clock.Advance(TimeSpan.FromMinutes(5));
        await t.BillAsync(scene.Shop, scene.CustomerId, "U-2", 200m);
        var api = await t.GetOkAsync($"/v1/customers/{scene.CustomerId}/tier?programId={scene.Shop.ProgramId}");
        var page = await harness.SignedInPageAsync(scene.Org.Admin);
        await page.GotoAsync($"{harness.BaseUrl}/console/customers/{scene.CustomerId}");

        var card = page.Locator($"#tiers [data-program='{scene.Shop.ProgramId}'] .tier-card");
        (await card.Locator(".tier").InnerTextAsync()).ShouldBe("Gold");
        api.GetProperty("tier").GetString().ShouldBe("Gold");
        (await card.Locator(".multiplier").InnerTextAsync()).ShouldBe("1.5×");
        var metric = await card.Locator(".metric").InnerTextAsync();
        metric.ShouldContain("20.000 points earned, this period");
        metric.ShouldContain("lifetime 120.000");
        api.GetProperty("metric").GetProperty("lifetime").GetString().ShouldBe("120.000");
        (await card.Locator(".next-tier").InnerTextAsync()).ShouldBe("Platinum at 300.000: 280.000 more");
        var renewal = await card.Locator(".renewal").InnerTextAsync();
        renewal.ShouldStartWith(Day(api.GetProperty("renewal").GetProperty("date")) + ": keeps Gold with 80.000, 60.000 more");
        (await card.Locator(".pinned").CountAsync()).ShouldBe(0);

        var history = page.Locator($"#tiers [data-program='{scene.Shop.ProgramId}'] table.tier-history tbody tr");
        (await history.CountAsync()).ShouldBe(1);
        (await history.GetAttributeAsync("data-cause")).ShouldBe("UPGRADE");
        (await history.Locator(".change").InnerTextAsync()).ShouldBe("Silver → Gold");
        await history.GetByRole(AriaRole.Link, new() { Name = $"event {upgrade}" }).ClickAsync();
        new Uri(page.Url).AbsolutePath.ShouldBe($"/console/events/{upgrade}");

        // The bill's lines record the tier before its crossing; its bonus, a related event, the new one.
        var billTiers = await page.Locator("table.lines tr.line td.tier").AllInnerTextsAsync();
        billTiers.Count.ShouldBeGreaterThan(0);
        billTiers.ShouldAllBe(tier => tier == "Silver");
        await page.GetByRole(AriaRole.Link, new() { NameRegex = new Regex("^TierUpgradeBonus, event") }).ClickAsync();
        (await page.Locator("table.lines tr.line td.tier").AllInnerTextsAsync()).ShouldBe(["Gold"]);
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task a_pooling_groups_page_shows_the_tier_its_members_bills_earn_it_and_a_program_without_tiers_shows_none()
    {
        var scene = await SceneAsync();
        var t = scene.Api;
        await TiersAsync(t, scene.Shop.ProgramId);
        var member = await t.NewCustomerAsync(firstName: "Pooled");
        var pool = (await t.PostOkAsync("/v1/groups", new { name = "Pool " + Guid.NewGuid().ToString("N")[..6], primaryCustomerId = member, poolsPoints = true }))
            .GetProperty("groupId").GetInt64();
        await t.BillAsync(scene.Shop, member, "P-1", 3500m);
        var page = await harness.SignedInPageAsync(scene.Org.Admin);

        await page.GotoAsync($"{harness.BaseUrl}/console/groups/{pool}");
        (await page.Locator("#tiers .tier-card .tier").InnerTextAsync()).ShouldBe("Platinum");
        (await page.Locator("#tiers .tier-card .next-tier").InnerTextAsync()).ShouldBe("none: the top tier");
        (await page.Locator("#tiers table.tier-history tbody tr .change").InnerTextAsync()).ShouldBe("Silver → Platinum");
        await page.GotoAsync($"{harness.BaseUrl}/console/customers/{member}");
        (await page.Locator("#tiers").InnerTextAsync()).ShouldContain("count toward the group's tier");
        (await page.Locator("#tiers .tier-card .tier").InnerTextAsync()).ShouldBe("Silver");

        // An organization whose programs have no tiers: no tier section, no tier column in the lines.
        var plain = await SceneAsync();
        await page.Context.CloseAsync();
        page = await harness.SignedInPageAsync(plain.Org.Admin);
        await page.GotoAsync($"{harness.BaseUrl}/console/customers/{plain.CustomerId}");
        (await page.Locator("#tiers").CountAsync()).ShouldBe(0);
        await page.Locator("ol.events details.event summary").First.ClickAsync();
        (await page.Locator("table.lines th", new() { HasText = "Tier" }).CountAsync()).ShouldBe(0);
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task an_admin_overrides_a_tier_through_the_form_and_the_override_shows_in_the_history_with_its_reason_and_key()
    {
        var scene = await SceneAsync();
        var t = scene.Api;
        await TiersAsync(t, scene.Shop.ProgramId);
        var page = await harness.SignedInPageAsync(scene.Org.Admin);
        await page.GotoAsync($"{harness.BaseUrl}/console/customers/{scene.CustomerId}");
        (await page.Locator("#tiers .tier-card .tier").InnerTextAsync()).ShouldBe("Silver");

        await page.GetByRole(AriaRole.Link, new() { Name = "Override tier" }).ClickAsync();
        await page.Locator("[name='Form.Tier']").SelectOptionAsync("Platinum");
        await page.Locator("[name='Form.Reason']").FillAsync("Complaint <42>: kept as Platinum");
        await page.Locator("[name='Form.Pinned']").CheckAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Set tier" }).DblClickAsync();
        await page.WaitForURLAsync(new Regex("overridden="));

        new Uri(page.Url).AbsolutePath.ShouldBe($"/console/customers/{scene.CustomerId}");
        (await page.GetByRole(AriaRole.Status).InnerTextAsync()).ShouldBe("Tier set: Platinum in Main program, pinned.");
        var card = page.Locator("#tiers .tier-card");
        (await card.Locator(".tier").InnerTextAsync()).ShouldBe("Platinum");
        (await card.Locator(".multiplier").InnerTextAsync()).ShouldBe("2×");
        (await card.Locator(".pinned").CountAsync()).ShouldBe(1);
        (await card.Locator(".override-reason").InnerTextAsync()).ShouldBe("Complaint <42>: kept as Platinum");
        var row = page.Locator("#tiers table.tier-history tbody tr");
        (await row.CountAsync()).ShouldBe(1);
        (await row.GetAttributeAsync("data-cause")).ShouldBe("OVERRIDE");
        (await row.Locator(".change").InnerTextAsync()).ShouldBe("Silver → Platinum");
        (await row.Locator(".reason").InnerTextAsync()).ShouldBe("Complaint <42>: kept as Platinum");
        (await row.Locator(".by").InnerTextAsync()).ShouldContain(scene.Org.Admin.KeyId);

        // The same change the API records: one OVERRIDE (the double click posted once), by the admin's key; the owner is pinned.
        var changes = (await t.GetOkAsync($"/v1/customers/{scene.CustomerId}/tier-history")).EnumerateArray().ToList();
        changes.Select(c => (c.GetProperty("cause").GetString(), c.GetProperty("toTier").GetString(), c.GetProperty("postedBy").GetString()))
            .ShouldBe([("OVERRIDE", "Platinum", scene.Org.Admin.KeyId)]);
        (await t.GetOkAsync($"/v1/customers/{scene.CustomerId}/tier")).GetProperty("pinned").GetBoolean().ShouldBeTrue();
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task a_read_or_write_key_sees_no_override_form_and_its_forged_override_writes_nothing()
    {
        var scene = await SceneAsync();
        await TiersAsync(scene.Api, scene.Shop.ProgramId);
        var overridePath = $"/console/customers/{scene.CustomerId}/tier";
        foreach (var role in new[] { KeyRole.Read, KeyRole.Write })
        {
            var key = await scene.Org.KeyAsync(role);
            var page = await harness.SignedInPageAsync(key);
            await page.GotoAsync($"{harness.BaseUrl}/console/customers/{scene.CustomerId}");
            (await page.Locator("#tiers .tier-card .tier").InnerTextAsync()).ShouldBe("Silver", role.ToString());
            (await page.GetByRole(AriaRole.Link, new() { Name = "Override tier" }).CountAsync()).ShouldBe(0, role.ToString());
            (await page.GotoAsync(harness.BaseUrl + overridePath))!.Status.ShouldBe(403, role.ToString());
            (await page.Locator("[name='Form.Tier']").CountAsync()).ShouldBe(0, role.ToString());
            await page.Context.CloseAsync();
        }

        // The admin's form, posted by a read key's session with its own token: refused, nothing written.
        using var admin = harness.RawClient(new CookieContainer());
        await harness.RawSignInAsync(admin, scene.Org.Admin);
        var html = await admin.GetStringAsync(overridePath);
        using var reader = harness.RawClient(new CookieContainer());
        var readerToken = await harness.RawSignInAsync(reader, await scene.Org.KeyAsync(KeyRole.Read));
        using (var response = await reader.PostAsync(overridePath, new FormUrlEncodedContent(new Dictionary<string, string>
               {
                   ["_handler"] = "tier-override", ["__RequestVerificationToken"] = readerToken,
                   ["Form.FormKey"] = Regex.Match(html, "name=\"Form.FormKey\" value=\"([^\"]+)\"").Groups[1].Value,
                   ["Form.ProgramId"] = scene.Shop.ProgramId.ToString(), ["Form.Tier"] = "Platinum", ["Form.Reason"] = "forged",
               })))
            response.StatusCode.ShouldBe(HttpStatusCode.Forbidden);
        (await scene.Api.GetOkAsync($"/v1/customers/{scene.CustomerId}/tier-history")).GetArrayLength().ShouldBe(0);
        (await scene.Api.GetOkAsync($"/v1/customers/{scene.CustomerId}/tier")).GetProperty("tier").GetString().ShouldBe("Silver");
    }

    /// <summary>
    /// A customer with six weeks of everything the console shows: bills on many days, redemptions, a
    /// reversal, a return, a transfer, points and a currency with expiry dates, points held for a return
    /// window, a group, tiers (two upgrades). The page-width test runs on it, and its screenshots are the README's.
    /// </summary>
    private async Task<(Scene Scene, long BillEvent)> BusySceneAsync()
    {
        var scene = await SceneAsync(expiry: new { kind = "DATE_EARNED", days = 180 });
        var t = scene.Api;
        await TiersAsync(t, scene.Shop.ProgramId);
        var coffee = await t.PostOkAsync("/v1/programs", new
        {
            name = "Coffee club", earnRate = "1", promisedDays = 14, expiry = new { kind = "DATE_EARNED", days = 120 },
        });
        var coffeeId = coffee.GetProperty("programId").GetInt64();
        var partner = await t.NewCustomerAsync(firstName: "Charles");
        long billEvent = 0;
        for (var day = 1; day <= 42; day++)
        {
            harness.Clock.Advance(TimeSpan.FromDays(1));
            if (day % 3 == 0) billEvent = (await t.BillAsync(scene.Shop, scene.CustomerId, $"W-{day}", 120m + day * 7)).GetProperty("eventId").GetInt64();
            if (day % 7 == 0) await t.PostOkAsync("/v1/redemptions", new { customerId = scene.CustomerId, points = "15", programId = scene.Shop.ProgramId, externalReference = $"order-{day}" });
            if (day % 10 == 0) await t.AwardAsync(scene.CustomerId, "25", programId: scene.Shop.ProgramId);
            if (day % 11 == 0) await t.AwardAsync(scene.CustomerId, "40", "Stars", scene.Shop.ProgramId);
            if (day == 30) await t.PostOkAsync("/v1/redemptions/reversals", new { externalReference = "order-28", points = "5" });
            if (day == 36) await t.PostOkAsync("/v1/transfers", new { from = new { customerId = scene.CustomerId }, to = new { customerId = partner }, points = "10", programId = scene.Shop.ProgramId });
            if (day == 40) await t.PostOkAsync("/v1/transactions", new
            {
                customerId = scene.CustomerId, billNumber = "K-40", amount = 18.5m, storeCode = scene.Shop.StoreCode, programId = coffeeId,
            });
        }
        await t.PostOkAsync("/v1/returns", new { storeCode = scene.Shop.StoreCode, billNumber = "W-39", amount = 100 });
        return (scene, billEvent);
    }

    [Fact]
    public async Task the_pages_fit_a_phone_and_a_desktop_screen_and_the_search_works_from_the_keyboard()
    {
        var (scene, bill) = await BusySceneAsync();
        var hook = (await scene.Api.PostOkAsync("/v1/webhooks", new
        {
            url = "https://crm.example.com/hooks/loyalty-ledger/events", events = new[] { "balance.changed", "points.expiring", "customer.registered" },
            description = "CRM sync",
        })).GetProperty("id").GetInt64();
        await scene.Api.PostOkAsync($"/v1/webhooks/{hook}/test", new { });
        var screenshots = Environment.GetEnvironmentVariable("LEDGER_CONSOLE_SCREENSHOTS") == "1";
        var pages = new (string Name, string Path)[]
        {
            ("search", "/console"), ("customer", $"/console/customers/{scene.CustomerId}"), ("event", $"/console/events/{bill}"),
            ("group", $"/console/groups/{scene.GroupId}"), ("dashboard", "/console/dashboard"), ("keys", "/console/admin/keys"),
            ("webhooks", "/console/admin/webhooks"), ("webhook-log", $"/console/admin/webhooks/{hook}"),
            ("adjust", $"/console/customers/{scene.CustomerId}/adjust"), ("tier", $"/console/customers/{scene.CustomerId}/tier"),
        };
        foreach (var width in new[] { 1280, 390 })
        {
            var page = await harness.SignedInPageAsync(scene.Org.Admin, width);
            foreach (var (name, path) in pages)
            {
                (await page.GotoAsync(harness.BaseUrl + path))!.Status.ShouldBe(200, path);
                if (name == "customer") await page.Locator("ol.events details.event summary").First.ClickAsync();
                var overflow = await page.EvaluateAsync<int>("document.scrollingElement.scrollWidth");
                overflow.ShouldBeLessThanOrEqualTo(width, $"{path} at {width} px");
                if (screenshots) await ScreenshotAsync(page, name, width);
            }

            // By keyboard: the search box is reached with Tab and submitted with Enter.
            await page.GotoAsync(harness.BaseUrl + "/console");
            for (var i = 0; i < 20 && await page.EvaluateAsync<string>("document.activeElement.id") != "search-q"; i++)
                await page.Keyboard.PressAsync("Tab");
            (await page.EvaluateAsync<string>("document.activeElement.id")).ShouldBe("search-q");
            await page.Keyboard.TypeAsync(scene.Card);
            await page.Keyboard.PressAsync("Enter");
            await page.WaitForURLAsync(new Regex($"/console/customers/{scene.CustomerId}"));
            await page.Context.CloseAsync();
        }
    }

    private static async Task ScreenshotAsync(IPage page, string name, int width)
    {
        var dir = RepositoryFiles.PathOf("docs", "console");
        Directory.CreateDirectory(dir);
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(dir, $"{name}-{width}.png"), FullPage = true });
    }

    private Task<long> GoodwillEventsAsync(Scene scene) =>
        harness.Database.ReadAsync(c => c.ExecuteScalarAsync<long>(
            "SELECT COUNT(*) FROM events WHERE org_id = @org AND owner_id = @id AND event_name = 'GoodwillAdjustment'",
            new { org = scene.Org.OrgId, id = scene.CustomerId }), CancellationToken.None);

    /// <summary>The goodwill form's fields as the page rendered them (its key and token), with the points and reason filled in.</summary>
    private static Dictionary<string, string> AdjustFields(string html, string points, string reason)
    {
        string Value(string name) => Regex.Match(html, $"name=\"{Regex.Escape(name)}\" value=\"([^\"]*)\"").Groups[1].Value;
        var wallet = Regex.Match(html, "<option value=\"([^\"]+)\"").Groups[1].Value;
        return new Dictionary<string, string>
        {
            ["_handler"] = "adjust",
            ["__RequestVerificationToken"] = Value("__RequestVerificationToken"),
            ["Form.FormKey"] = Value("Form.FormKey"),
            ["Form.Direction"] = "Credit",
            ["Form.Wallet"] = WebUtility.HtmlDecode(wallet),
            ["Form.Points"] = points,
            ["Form.Reason"] = reason,
        };
    }
}

public sealed class ConsoleTestsOnSqlite(SqliteDatabase db, ConsoleHarness harness)
    : ConsoleTests(db, harness), IClassFixture<SqliteDatabase>, IClassFixture<ConsoleHarness>;

public sealed class ConsoleTestsOnPostgres(PostgresDatabase db, ConsoleHarness harness)
    : ConsoleTests(db, harness), IClassFixture<PostgresDatabase>, IClassFixture<ConsoleHarness>;
