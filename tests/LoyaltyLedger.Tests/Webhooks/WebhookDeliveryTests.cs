using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Webhooks;

/// <summary>
/// Webhooks delivered for real: servers over the class's database send to a Kestrel receiver on
/// 127.0.0.1 (and nowhere else), with a retry schedule of fractions of a second so that a day's
/// schedule runs in seconds. Signatures are checked with the StandardWebhooks package.
/// </summary>
public abstract class WebhookDeliveryTests(DatabaseFixture db)
{
    [Fact]
    public async Task a_receiver_that_refuses_the_first_three_attempts_gets_the_event_on_the_fourth_signed_and_the_log_shows_every_attempt()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        var tries = new ConcurrentDictionary<string, int>();
        receiver.Answer = (request, _) => Task.FromResult(tries.AddOrUpdate(request.Headers["webhook-id"].ToString(), 1, (_, n) => n + 1) <= 3 ? 503 : 200);
        await using var host = await WebhookHarness.StartAsync(db);
        var t = await host.NewTenantAsync();
        var (id, secret) = await t.NewWebhookAsync(receiver.Url(), "customer.registered");

        var customer = await t.NewCustomerAsync();

        var received = await receiver.WaitForAsync(r => r.Any(x => x.Answered == 200), what: "the fourth attempt");
        received.Select(r => r.Answered).ShouldBe([503, 503, 503, 200]);
        received.Select(r => r.Id).Distinct().Count().ShouldBe(1);
        foreach (var r in received) r.Verify(secret);
        var body = JsonDocument.Parse(received[^1].Body).RootElement;
        body.GetProperty("type").GetString().ShouldBe("customer.registered");
        body.GetProperty("orgId").GetInt64().ShouldBe(t.OrgId);
        body.GetProperty("id").GetString().ShouldBe(received[^1].Id);
        body.GetRawText().ShouldContain(customer.ToString(System.Globalization.CultureInfo.InvariantCulture));

        var delivery = await WaitForLogAsync(t, id, log => log.Count == 1 && log[0].GetProperty("status").GetString() == "succeeded");
        var attempts = delivery[0].GetProperty("attemptLog").EnumerateArray().ToList();
        attempts.Select(a => a.GetProperty("statusCode").GetInt32()).ShouldBe([503, 503, 503, 200]);
        attempts.Select(a => a.GetProperty("attempt").GetInt32()).ShouldBe([1, 2, 3, 4]);
        foreach (var failed in attempts.Take(3))
        {
            failed.TryGetProperty("nextAttemptAt", out _).ShouldBeTrue();
            failed.GetProperty("error").GetString()!.ShouldContain("503");
        }
        attempts[3].TryGetProperty("nextAttemptAt", out _).ShouldBeFalse();
        attempts[3].TryGetProperty("error", out _).ShouldBeFalse();
        attempts.ShouldAllBe(a => a.GetProperty("durationMs").GetInt64() >= 0);
        delivery[0].GetProperty("messageId").GetString().ShouldBe(received[^1].Id);
    }

    [Fact]
    public async Task the_ping_is_delivered_signed_whatever_the_subscription_and_after_a_rotation_both_secrets_sign_and_redelivery_sends_the_same_id()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        await using var host = await WebhookHarness.StartAsync(db);
        var t = await host.NewTenantAsync();
        var (id, secret) = await t.NewWebhookAsync(receiver.Url(), "points.expired");

        var ping = await t.PostOkAsync($"/v1/webhooks/{id}/test", new { });
        var first = (await receiver.WaitForAsync(r => r.Count == 1, what: "the ping"))[0];
        first.Type.ShouldBe("webhook.test");
        first.Id.ShouldBe(ping.GetProperty("messageId").GetString());
        first.Verify(secret);
        Should.Throw<Exception>(() => first.Verify("whsec_" + Convert.ToBase64String(new byte[32])));

        var rotated = (await t.PostOkAsync($"/v1/webhooks/{id}/rotate-secret", new { })).GetProperty("secret").GetString()!;
        await t.PostOkAsync($"/v1/webhooks/{id}/test", new { });
        var second = (await receiver.WaitForAsync(r => r.Count == 2, what: "the second ping"))[1];
        // For a day after a rotation both secrets sign, the new one first. (The StandardWebhooks package
        // checks only the first signature of a header, so the old one is checked by hand.)
        var signatures = second.Headers["webhook-signature"].ToString().Split(' ');
        signatures.Length.ShouldBe(2);
        second.Verify(rotated);
        signatures[1].ShouldBe(second.SignatureWith(secret));
        signatures[0].ShouldBe(second.SignatureWith(rotated));

        await WaitForLogAsync(t, id, log => log.Count == 2 && log.All(d => d.GetProperty("status").GetString() == "succeeded"));
        var again = await t.PostOkAsync($"/v1/webhooks/{id}/deliveries/{ping.GetProperty("deliveryId").GetInt64()}/redeliver", new { });
        again.GetProperty("deliveryId").GetInt64().ShouldNotBe(ping.GetProperty("deliveryId").GetInt64());
        var third = (await receiver.WaitForAsync(r => r.Count == 3, what: "the redelivery"))[2];
        third.Id.ShouldBe(first.Id);
        third.Body.ShouldBe(first.Body);
        third.Verify(rotated);
    }

    [Fact]
    public async Task a_loopback_target_is_refused_at_delivery_time_without_allow_private_targets_and_the_refusal_is_the_attempts_error()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        await using var host = await WebhookHarness.StartAsync(db, WebhookHarness.Settings(retrySchedule: "01:00:00", allowPrivate: false));
        var t = await host.NewTenantAsync();
        var port = new Uri(receiver.Url()).Port;
        var (byAddress, _) = await t.NewWebhookAsync(receiver.Url());
        // A name that DNS resolves to the loopback address: refused after resolution.
        var (byName, _) = await t.NewWebhookAsync($"http://localhost:{port}/hook");

        await t.PostOkAsync($"/v1/webhooks/{byAddress}/test", new { });
        await t.PostOkAsync($"/v1/webhooks/{byName}/test", new { });

        foreach (var (webhook, expected) in new[] { (byAddress, "127.0.0.1 is a loopback address"), (byName, "localhost resolves to") })
        {
            var log = await WaitForLogAsync(t, webhook, l => l.Count == 1 && l[0].GetProperty("attemptLog").GetArrayLength() == 1);
            var attempt = log[0].GetProperty("attemptLog")[0];
            attempt.GetProperty("error").GetString()!.ShouldContain(expected);
            attempt.GetProperty("error").GetString()!.ShouldContain("Ledger:Webhooks:AllowPrivateTargets");
            attempt.TryGetProperty("statusCode", out _).ShouldBeFalse();
            log[0].GetProperty("status").GetString().ShouldBe("pending");
        }
        receiver.Received.ShouldBeEmpty();
    }

    [Fact]
    public async Task deliveries_that_fail_every_try_fail_and_the_endpoint_is_disabled_with_its_reason_and_re_enabling_delivers_what_queued_meanwhile()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        var down = true;
        receiver.Answer = (_, _) => Task.FromResult(Volatile.Read(ref down) ? 500 : 200);
        await using var host = await WebhookHarness.StartAsync(db, WebhookHarness.Settings(retrySchedule: "00:00:00.100", disableAfter: 2));
        var t = await host.NewTenantAsync();
        var (id, _) = await t.NewWebhookAsync(receiver.Url(), "customer.registered");

        await t.NewCustomerAsync();
        await t.NewCustomerAsync();
        await t.NewCustomerAsync();
        var disabled = await WaitForAsync(async () => await t.GetOkAsync($"/v1/webhooks/{id}"), w => !w.GetProperty("enabled").GetBoolean(), "the endpoint disabled");
        disabled.GetProperty("disabledReason").GetString()!.ShouldContain("2 deliveries in a row failed on every try");
        disabled.GetProperty("disabledReason").GetString()!.ShouldContain("HTTP 500");
        var log = await t.DeliveriesAsync(id);
        log.Select(d => d.GetProperty("status").GetString()).ShouldBe(["failed", "failed", "pending"]);
        log.Take(2).ShouldAllBe(d => d.GetProperty("attemptLog").GetArrayLength() == 2);
        log[2].GetProperty("attemptLog").GetArrayLength().ShouldBe(0);
        receiver.Received.Count.ShouldBe(4);

        // While disabled: nothing is sent, and events are not lost.
        await t.NewCustomerAsync();
        await Task.Delay(500);
        receiver.Received.Count.ShouldBe(4);

        Volatile.Write(ref down, false);
        using var patch = new HttpRequestMessage(HttpMethod.Patch, $"/v1/webhooks/{id}") { Content = JsonContent.Create(new { enabled = true }) };
        (await t.Http.SendAsync(patch)).StatusCode.ShouldBe(HttpStatusCode.OK);
        var received = await receiver.WaitForAsync(r => r.Count(x => x.Answered == 200) == 2, what: "the queued and the new event");
        var delivered = received.Where(r => r.Answered == 200).Select(r => r.EventId).ToList();
        delivered.ShouldBe(delivered.Order().ToList());
        delivered.ShouldNotContain(received[0].EventId);
        (await WaitForLogAsync(t, id, l => l.Count == 4 && l[3].GetProperty("status").GetString() == "succeeded"))
            .Select(d => d.GetProperty("status").GetString()).ShouldBe(["failed", "failed", "succeeded", "succeeded"]);
    }

    [Fact]
    public async Task a_later_event_is_not_sent_while_an_earlier_one_to_the_same_endpoint_waits_for_its_retry()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        string? firstId = null;
        receiver.Answer = (request, _) =>
        {
            var webhookId = request.Headers["webhook-id"].ToString();
            return Task.FromResult(Interlocked.CompareExchange(ref firstId, webhookId, null) is null ? 500 : 200);
        };
        // Committed while no server delivers (the class's own does not), so all three are queued
        // before the first is sent: the dispatcher has the later ones in hand when the first fails.
        var t = await db.Host.NewTenantAsync();
        await t.NewWebhookAsync(receiver.Url(), "customer.registered");
        await t.NewCustomerAsync();
        await t.NewCustomerAsync();
        await t.NewCustomerAsync();
        await using var host = await WebhookHarness.StartAsync(db, WebhookHarness.Settings(retrySchedule: "00:00:01.500"));

        var received = await receiver.WaitForAsync(r => r.Count(x => x.Answered == 200) == 3, what: "three events");
        received.Select(r => r.Answered).ShouldBe([500, 200, 200, 200]);
        received[1].Id.ShouldBe(received[0].Id);
        var order = received.Skip(1).Select(r => r.EventId).ToList();
        order.ShouldBe(order.Order().ToList());
    }

    [Fact]
    public async Task events_committed_while_no_server_was_delivering_are_all_delivered_in_order_once_one_is()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        // The class's own server does not deliver: the events commit and wait in the outbox.
        var t = await db.Host.NewTenantAsync();
        var (_, secret) = await t.NewWebhookAsync(receiver.Url(), "customer.registered");
        for (var i = 0; i < 5; i++) await t.NewCustomerAsync();
        await Task.Delay(300);
        receiver.Received.ShouldBeEmpty();

        await using var host = await WebhookHarness.StartAsync(db);
        var received = await receiver.WaitForAsync(r => r.Count == 5, what: "five events");
        received.ShouldAllBe(r => r.Answered == 200 && r.Type == "customer.registered");
        received.Select(r => r.Id).Distinct().Count().ShouldBe(5);
        var positions = await WebhookHarness.PositionsAsync(db.Database, t.OrgId);
        var order = received.Select(r => positions[r.EventId]).ToList();
        order.ShouldBe(order.Order().ToList());
        foreach (var r in received) r.Verify(secret);
    }

    [Fact]
    public async Task a_receiver_that_never_answers_does_not_slow_postings()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        using var release = new CancellationTokenSource();
        receiver.Answer = async (_, _) =>
        {
            await Task.Delay(Timeout.Infinite, release.Token);
            return 200;
        };
        await using var host = await WebhookHarness.StartAsync(db, WebhookHarness.Settings(timeout: "00:01:00"));
        var t = await host.NewTenantAsync();
        await t.NewWebhookAsync(receiver.Url());
        await t.NewCustomerAsync();
        // The dispatcher is stuck in a send that never ends; postings go on regardless.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < 10; i++) await t.NewCustomerAsync();
        clock.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(15));
        await release.CancelAsync();
    }

    [Fact]
    public async Task two_servers_deliver_each_of_a_thousand_events_exactly_once_and_in_commit_order_per_endpoint()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        await using var a = await WebhookHarness.StartAsync(db);
        await using var b = await WebhookHarness.StartAsync(db);
        var ta = await a.NewTenantAsync();
        var tb = ta with { Http = b.Client(ta.Key.KeyId, ta.Key.Secret), Host = b };
        var shop = await ta.NewShopAsync();
        var customers = new List<long>();
        for (var i = 0; i < 20; i++) customers.Add(await ta.NewCustomerAsync());
        var endpoints = new[] { ("/all", "*"), ("/posted", "ledger.event.posted"), ("/balances", "balance.changed") };
        foreach (var (path, events) in endpoints) await ta.NewWebhookAsync(receiver.Url(path), events);

        // 50 bulk allocations of 20 lines, through both servers at once: 1,000 ledger events.
        var posts = Enumerable.Range(0, 50).Select(i => (i % 2 == 0 ? ta : tb).PostOkAsync("/v1/allocations", new
        {
            programId = shop.ProgramId, reason = "bulk " + i,
            allocations = customers.Select(c => new { customerId = c, points = "1" }).ToArray(),
        }));
        await Task.WhenAll(posts);

        await receiver.WaitForAsync(r =>
            r.Count(x => x.Path == "/posted") >= 1000 && r.Count(x => x.Path == "/balances") >= 1000
            && r.Count(x => x.Path == "/all") >= r.Count(x => x.Path == "/posted") + r.Count(x => x.Path == "/balances"),
            TimeSpan.FromSeconds(120), "a thousand events on each endpoint");
        await Task.Delay(500); // anything sent twice would show up now
        var typeOf = await OutboxTypesAsync(ta.OrgId);
        var positions = await WebhookHarness.PositionsAsync(db.Database, ta.OrgId);
        foreach (var (path, events) in endpoints)
        {
            var at = receiver.At(path);
            at.ShouldAllBe(r => r.Answered == 200);
            var ids = at.Select(r => r.EventId).ToList();
            // Duplicates come only from a failed attempt the receiver did get (a timeout on a starved machine): say which.
            var failures = await db.Database.ReadAsync(c => Dapper.SqlMapper.QueryAsync<string>(c,
                "SELECT a.error FROM webhook_attempts a JOIN webhook_deliveries d ON d.delivery_id = a.delivery_id WHERE d.org_id = @org AND a.error IS NOT NULL",
                new { org = ta.OrgId }), CancellationToken.None);
            ids.Distinct().Count().ShouldBe(ids.Count, $"{path}: duplicates; failed attempts: {string.Join("; ", failures.Take(5))}");
            var wanted = typeOf.Where(e => events == "*" || e.Value == events).Select(e => e.Key).ToHashSet();
            // Every event of the subscription after the first one delivered (the endpoints were made after the customers).
            var from = ids.Min(id => positions[id]);
            wanted.Where(e => positions[e] >= from).ToHashSet().SetEquals(ids).ShouldBeTrue($"{path}: lost or extra events");
            var order = ids.Select(id => positions[id]).ToList();
            order.ShouldBe(order.Order().ToList(), $"{path}: out of commit order");
        }
        receiver.At("/posted").Count.ShouldBeGreaterThanOrEqualTo(1000);
    }

    [Fact]
    public async Task a_server_killed_with_sigkill_between_commit_and_delivery_delivers_everything_after_a_restart()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        var inFlight = new TaskCompletionSource();
        var hang = true;
        receiver.Answer = async (request, _) =>
        {
            if (Volatile.Read(ref hang))
            {
                inFlight.TrySetResult();
                await Task.Delay(Timeout.Infinite, request.HttpContext.RequestAborted);
            }
            return 200;
        };
        await using var database = db.OpenSecondInstance();
        var org = await Tenants.CreateOrganizationAsync(database, "kill " + Guid.NewGuid().ToString("N")[..8], TimeProvider.System, CancellationToken.None);
        var key = await Tenants.IssueKeyAsync(database, org.OrgId, KeyRole.Admin, TimeProvider.System, CancellationToken.None);
        var settings = new Dictionary<string, string?>(WebhookHarness.Settings(timeout: "00:00:03"));

        using (var first = await ServerProcess.StartAsync(db.CommandLineArgs, settings))
        {
            using var http = Client(first, key);
            var created = await (await http.PostAsJsonAsync("/v1/webhooks", new { url = receiver.Url(), events = new[] { "customer.registered" } })).Content.ReadFromJsonAsync<JsonElement>();
            (await http.PostAsJsonAsync("/v1/customers", new { firstName = "A", email = $"{Guid.NewGuid():N}@example.com" })).StatusCode.ShouldBe(HttpStatusCode.Created);
            await inFlight.Task.WaitAsync(TimeSpan.FromSeconds(20));
            // Committed while the first is being sent: queued behind it, never sent by this server.
            (await http.PostAsJsonAsync("/v1/customers", new { firstName = "B", email = $"{Guid.NewGuid():N}@example.com" })).StatusCode.ShouldBe(HttpStatusCode.Created);
            first.Kill();
            created.GetProperty("id").GetInt64().ShouldBeGreaterThan(0);
        }
        Volatile.Write(ref hang, false);
        receiver.Received.ShouldBeEmpty();

        using var second = await ServerProcess.StartAsync(db.CommandLineArgs, settings);
        var received = await receiver.WaitForAsync(r => r.Select(x => x.Id).Distinct().Count() == 2, TimeSpan.FromSeconds(40), "both events after the restart");
        received.ShouldAllBe(r => r.Answered == 200 && r.Type == "customer.registered");
        received[0].EventId.ShouldBeLessThan(received[^1].EventId);
    }

    private async Task<Dictionary<long, string>> OutboxTypesAsync(long orgId) =>
        (await db.Database.ReadAsync(c => Dapper.SqlMapper.QueryAsync<(long EventId, string Type)>(c,
            "SELECT event_id, type FROM outbox_events WHERE org_id = @orgId", new { orgId }), CancellationToken.None))
        .ToDictionary(r => r.EventId, r => r.Type);

    private static HttpClient Client(ServerProcess server, IssuedKey key)
    {
        var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{key.KeyId}:{key.Secret}")));
        return http;
    }

    private static Task<List<JsonElement>> WaitForLogAsync(Tenant t, long id, Func<List<JsonElement>, bool> done) =>
        WaitForAsync(() => t.DeliveriesAsync(id), done, "the delivery log");

    private static async Task<T> WaitForAsync<T>(Func<Task<T>> read, Func<T, bool> done, string what)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            var value = await read();
            if (done(value)) return value;
            if (clock.Elapsed > TimeSpan.FromSeconds(20)) throw new Xunit.Sdk.XunitException($"Timed out waiting for {what}: {JsonSerializer.Serialize(value)}");
            await Task.Delay(50);
        }
    }
}

public sealed class WebhookDeliveryTestsOnSqlite(SqliteDatabase db) : WebhookDeliveryTests(db), IClassFixture<SqliteDatabase>;

public sealed class WebhookDeliveryTestsOnPostgres(PostgresDatabase db) : WebhookDeliveryTests(db), IClassFixture<PostgresDatabase>;
