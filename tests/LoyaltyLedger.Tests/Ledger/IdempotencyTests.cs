using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using Dapper;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Tests.Infrastructure;
using LoyaltyLedger.Tests.Webhooks;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace LoyaltyLedger.Tests.Ledger;

public abstract class IdempotencyTests(DatabaseFixture db)
{
    /// <summary>
    /// A write to replay: the request, something that happens before the replay (so a replay that
    /// ran again would show), and another request sent under the same key.
    /// </summary>
    public sealed record WriteCase(string Method, string Path, object? Body, string OtherPath, object? OtherBody, Func<Task>? BeforeReplay = null);

    /// <summary>Every write route of the server (method and route pattern), with a request that succeeds.</summary>
    private static readonly Dictionary<string, Func<Tenant, Task<WriteCase>>> WriteRoutes = new()
    {
        ["POST /v1/programs"] = async t =>
            new("POST", "/v1/programs", new { name = "Replayed program" }, "/v1/programs", new { name = "Another program" }),
        ["POST /v1/programs/{programId:long}/currencies"] = async t =>
        {
            var shop = await t.NewShopAsync();
            return new("POST", $"/v1/programs/{shop.ProgramId}/currencies", new { name = "Pebbles" }, $"/v1/programs/{shop.ProgramId}/currencies", new { name = "Shells" });
        },
        ["POST /v1/stores"] = async t => new("POST", "/v1/stores", new { code = "s-replay" }, "/v1/stores", new { code = "s-other" }),
        ["POST /v1/tills"] = async t =>
        {
            await t.NewShopAsync();
            return new("POST", "/v1/tills", new { code = "t-replay", storeCode = "store-1" }, "/v1/tills", new { code = "t-other", storeCode = "store-1" });
        },
        ["POST /v1/customers"] = async t =>
        {
            await t.NewShopAsync();
            return new("POST", "/v1/customers", new { firstName = "Ada", email = "ada@example.com" }, "/v1/customers", new { firstName = "Bob", email = "bob@example.com" });
        },
        ["POST /v1/customers/{customerId:long}/identifiers"] = async t =>
        {
            await t.NewShopAsync();
            var c = await t.NewCustomerAsync();
            return new("POST", $"/v1/customers/{c}/identifiers", new { source = "INSTORE", type = "mobile", value = "+4912345" },
                $"/v1/customers/{c}/identifiers", new { source = "INSTORE", type = "mobile", value = "+4967890" });
        },
        ["POST /v1/customers/{customerId:long}/accounts"] = async t =>
        {
            await t.NewShopAsync();
            var c = await t.NewCustomerAsync();
            return new("POST", $"/v1/customers/{c}/accounts", new { accountNumber = "CARD-R1" }, $"/v1/customers/{c}/accounts", new { accountNumber = "CARD-R2" });
        },
        ["POST /v1/groups"] = async t =>
        {
            await t.NewShopAsync();
            var c = await t.NewCustomerAsync();
            return new("POST", "/v1/groups", new { name = "Family", primaryCustomerId = c }, "/v1/groups", new { name = "Other family", primaryCustomerId = c });
        },
        ["POST /v1/groups/{groupId:long}/members"] = async t =>
        {
            await t.NewShopAsync();
            var group = await t.PostOkAsync("/v1/groups", new { name = "Family", primaryCustomerId = await t.NewCustomerAsync() });
            var id = group.GetProperty("groupId").GetInt64();
            return new("POST", $"/v1/groups/{id}/members", new { customerId = await t.NewCustomerAsync() }, $"/v1/groups/{id}/members", new { customerId = await t.NewCustomerAsync() });
        },
        ["POST /v1/transactions"] = async t =>
        {
            var shop = await t.NewShopAsync();
            var c = await t.NewCustomerAsync();
            return new("POST", "/v1/transactions", new { customerId = c, billNumber = "B-1", amount = 100, storeCode = shop.StoreCode },
                "/v1/transactions", new { customerId = c, billNumber = "B-2", amount = 100, storeCode = shop.StoreCode });
        },
        ["POST /v1/redemptions"] = async t =>
        {
            await t.NewShopAsync();
            var c = await t.NewCustomerAsync();
            await t.AwardAsync(c, "100");
            return new("POST", "/v1/redemptions", new { customerId = c, points = "10" }, "/v1/redemptions", new { customerId = c, points = "11" });
        },
        ["POST /v1/allocations"] = async t =>
        {
            await t.NewShopAsync();
            var c = await t.NewCustomerAsync();
            return new("POST", "/v1/allocations", new { allocations = new[] { new { customerId = c, points = "5" } } },
                "/v1/allocations", new { allocations = new[] { new { customerId = c, points = "6" } } });
        },
        ["POST /v1/events"] = async t =>
        {
            await t.NewShopAsync();
            var c = await t.NewCustomerAsync();
            return new("POST", "/v1/events", new { customerId = c, eventName = "E", awards = new[] { new { points = "2" } } },
                "/v1/events", new { customerId = c, eventName = "E", awards = new[] { new { points = "3" } } });
        },
        ["POST /v1/transfers"] = async t =>
        {
            await t.NewShopAsync();
            var a = await t.NewCustomerAsync();
            var b = await t.NewCustomerAsync();
            await t.AwardAsync(a, "100");
            return new("POST", "/v1/transfers", new { from = new { customerId = a }, to = new { customerId = b }, points = "10" },
                "/v1/transfers", new { from = new { customerId = a }, to = new { customerId = b }, points = "11" });
        },
        ["POST /v1/returns"] = async t =>
        {
            var shop = await t.NewShopAsync(earnRate: "1");
            var c = await t.NewCustomerAsync();
            await t.BillAsync(shop, c, "R-1", 100);
            return new("POST", "/v1/returns", new { storeCode = shop.StoreCode, billNumber = "R-1", amount = 10 },
                "/v1/returns", new { storeCode = shop.StoreCode, billNumber = "R-1", amount = 20 });
        },
        ["POST /v1/redemptions/reversals"] = async t =>
        {
            await t.NewShopAsync();
            var c = await t.NewCustomerAsync();
            await t.AwardAsync(c, "100");
            await t.PostOkAsync("/v1/redemptions", new { customerId = c, points = "50", externalReference = "order-7" });
            return new("POST", "/v1/redemptions/reversals", new { externalReference = "order-7", points = "10" },
                "/v1/redemptions/reversals", new { externalReference = "order-7", points = "11" });
        },
        ["POST /v1/lifecycle/triggers/release"] = async t =>
        {
            var shop = await t.NewShopAsync(earnRate: "1");
            var c = await t.NewCustomerAsync();
            await t.PostOkAsync("/v1/transactions", new { customerId = c, billNumber = "T-1", amount = 40, storeCode = shop.StoreCode, holdForTrigger = true });
            return new("POST", "/v1/lifecycle/triggers/release", new { storeCode = shop.StoreCode, billNumber = "T-1" },
                "/v1/lifecycle/triggers/release", new { storeCode = shop.StoreCode, billNumber = "T-2" });
        },
        ["POST /v1/lifecycle/triggers/cancel"] = async t =>
        {
            var shop = await t.NewShopAsync(earnRate: "1");
            var c = await t.NewCustomerAsync();
            await t.PostOkAsync("/v1/transactions", new { customerId = c, billNumber = "T-1", amount = 40, storeCode = shop.StoreCode, holdForTrigger = true });
            return new("POST", "/v1/lifecycle/triggers/cancel", new { storeCode = shop.StoreCode, billNumber = "T-1" },
                "/v1/lifecycle/triggers/cancel", new { storeCode = shop.StoreCode, billNumber = "T-2" });
        },
        ["POST /v1/lifecycle/expire"] = async t =>
        {
            var shop = await t.NewShopAsync(expiry: new { kind = "DATE_EARNED", days = 1 });
            var c = await t.NewCustomerAsync();
            await t.AwardAsync(c, "10");
            t.Host.Clock.Advance(TimeSpan.FromDays(2));
            // Due again before the replay: a replay that ran the expiry again would expire these too.
            return new("POST", "/v1/lifecycle/expire", new { }, "/v1/lifecycle/expire", new { asOf = "2020-01-01T00:00:00Z" }, async () =>
            {
                await t.AwardAsync(c, "5");
                t.Host.Clock.Advance(TimeSpan.FromDays(2));
            });
        },
        ["POST /v1/keys"] = async t => new("POST", "/v1/keys", new { role = "Read", name = "till app" }, "/v1/keys", new { role = "Write", name = "till app" }),
        ["POST /v1/keys/{keyId}/rotate"] = async t =>
        {
            var a = await Tenants.IssueKeyAsync(t.Host.Database, t.OrgId, KeyRole.Read, t.Host.Clock, CancellationToken.None);
            var b = await Tenants.IssueKeyAsync(t.Host.Database, t.OrgId, KeyRole.Read, t.Host.Clock, CancellationToken.None);
            return new("POST", $"/v1/keys/{a.KeyId}/rotate", null, $"/v1/keys/{b.KeyId}/rotate", null);
        },
        ["DELETE /v1/keys/{keyId}"] = async t =>
        {
            var a = await Tenants.IssueKeyAsync(t.Host.Database, t.OrgId, KeyRole.Read, t.Host.Clock, CancellationToken.None);
            var b = await Tenants.IssueKeyAsync(t.Host.Database, t.OrgId, KeyRole.Read, t.Host.Clock, CancellationToken.None);
            return new("DELETE", $"/v1/keys/{a.KeyId}", null, $"/v1/keys/{b.KeyId}", null);
        },
        ["POST /v1/webhooks"] = async t => new("POST", "/v1/webhooks", new { url = "http://127.0.0.1:9/a", events = new[] { "*" } },
            "/v1/webhooks", new { url = "http://127.0.0.1:9/b", events = new[] { "*" } }),
        ["PATCH /v1/webhooks/{id:long}"] = async t =>
        {
            var (a, _) = await t.NewWebhookAsync("http://127.0.0.1:9/a");
            return new("PATCH", $"/v1/webhooks/{a}", new { description = "first", events = new[] { "balance.changed" } },
                $"/v1/webhooks/{a}", new { description = "second" },
                // Changed since by another request: a replay must not write its change again.
                async () => await t.Http.SendAsync(new HttpRequestMessage(HttpMethod.Patch, $"/v1/webhooks/{a}") { Content = JsonContent.Create(new { description = "third" }) }));
        },
        ["DELETE /v1/webhooks/{id:long}"] = async t =>
        {
            var (a, _) = await t.NewWebhookAsync("http://127.0.0.1:9/a");
            var (b, _) = await t.NewWebhookAsync("http://127.0.0.1:9/b");
            return new("DELETE", $"/v1/webhooks/{a}", null, $"/v1/webhooks/{b}", null);
        },
        ["POST /v1/webhooks/{id:long}/rotate-secret"] = async t =>
        {
            var (a, _) = await t.NewWebhookAsync("http://127.0.0.1:9/a");
            var (b, _) = await t.NewWebhookAsync("http://127.0.0.1:9/b");
            return new("POST", $"/v1/webhooks/{a}/rotate-secret", null, $"/v1/webhooks/{b}/rotate-secret", null);
        },
        ["POST /v1/webhooks/{id:long}/test"] = async t =>
        {
            var (a, _) = await t.NewWebhookAsync("http://127.0.0.1:9/a");
            var (b, _) = await t.NewWebhookAsync("http://127.0.0.1:9/b");
            return new("POST", $"/v1/webhooks/{a}/test", null, $"/v1/webhooks/{b}/test", null);
        },
        ["POST /v1/webhooks/{id:long}/deliveries/{deliveryId:long}/redeliver"] = async t =>
        {
            var (a, _) = await t.NewWebhookAsync("http://127.0.0.1:9/a");
            var first = (await t.PostOkAsync($"/v1/webhooks/{a}/test", new { })).GetProperty("deliveryId").GetInt64();
            var second = (await t.PostOkAsync($"/v1/webhooks/{a}/test", new { })).GetProperty("deliveryId").GetInt64();
            return new("POST", $"/v1/webhooks/{a}/deliveries/{first}/redeliver", null, $"/v1/webhooks/{a}/deliveries/{second}/redeliver", null);
        },
        ["POST /v1/programs/{programId:long}/vouchers"] = async t =>
        {
            var shop = await t.NewShopAsync();
            return new("POST", $"/v1/programs/{shop.ProgramId}/vouchers", new { name = "Coffee", price = "10" },
                $"/v1/programs/{shop.ProgramId}/vouchers", new { name = "Tea", price = "10" });
        },
        ["PUT /v1/programs/{programId:long}/tiers"] = async t =>
        {
            var shop = await t.NewShopAsync();
            return new("PUT", $"/v1/programs/{shop.ProgramId}/tiers", TierPolicy("Gold"), $"/v1/programs/{shop.ProgramId}/tiers", TierPolicy("Gilt"));
        },
        ["POST /v1/customers/{customerId:long}/tier/override"] = async t =>
        {
            var shop = await TieredShopAsync(t);
            var c = await t.NewCustomerAsync();
            return new("POST", $"/v1/customers/{c}/tier/override", new { programId = shop.ProgramId, tier = "Gold", reason = "complaint" },
                $"/v1/customers/{c}/tier/override", new { programId = shop.ProgramId, tier = "Gold", reason = "another complaint" });
        },
        ["POST /v1/groups/{groupId:long}/tier/override"] = async t =>
        {
            var shop = await TieredShopAsync(t);
            var c = await t.NewCustomerAsync();
            var group = (await t.PostOkAsync("/v1/groups", new { name = "Family", primaryCustomerId = c, poolsPoints = true })).GetProperty("groupId").GetInt64();
            return new("POST", $"/v1/groups/{group}/tier/override", new { programId = shop.ProgramId, tier = "Gold", reason = "family of the month" },
                $"/v1/groups/{group}/tier/override", new { programId = shop.ProgramId, tier = "Silver", reason = "family of the month" });
        },
        ["POST /v1/lifecycle/tiers/evaluate"] = async t =>
        {
            var shop = await TieredShopAsync(t);
            var c = await t.NewCustomerAsync();
            await t.AwardAsync(c, "150", programId: shop.ProgramId);
            return new("POST", "/v1/lifecycle/tiers/evaluate", new { }, "/v1/lifecycle/tiers/evaluate", new { asOf = "2020-01-01T00:00:00Z" }, async () =>
            {
                // Between the first run and its replay the Gold member's period ends: a second run would
                // downgrade her; the replay must not.
                t.Host.Clock.Advance(TimeSpan.FromDays(400));
                await Task.CompletedTask;
            });
        },
        ["POST /api/v1.0/LoyaltyVault/Account/{accountNumber}/Transaction"] = async t =>
        {
            var shop = await t.NewShopAsync();
            await t.NewCustomerAsync(accountNumber: "CARD-V1");
            object Basket(int value) => new { loyaltyPrograms = new[] { new { loyaltyPointDefinitionId = shop.ProgramId, loads = new[] { new { value } } } } };
            return new("POST", "/api/v1.0/LoyaltyVault/Account/CARD-V1/Transaction", Basket(5), "/api/v1.0/LoyaltyVault/Account/CARD-V1/Transaction", Basket(6));
        },
        ["POST /api/v1.0/LoyaltyVault/Account/{accountNumber}/Transfer"] = async t =>
        {
            var shop = await t.NewShopAsync();
            var c = await t.NewCustomerAsync(accountNumber: "CARD-V1");
            await t.NewCustomerAsync(accountNumber: "CARD-V2");
            await t.AwardAsync(c, "100");
            return new("POST", "/api/v1.0/LoyaltyVault/Account/CARD-V1/Transfer", new { toAccountNumber = "CARD-V2", loyaltyPointDefinitionId = shop.ProgramId, value = 5 },
                "/api/v1.0/LoyaltyVault/Account/CARD-V1/Transfer", new { toAccountNumber = "CARD-V2", loyaltyPointDefinitionId = shop.ProgramId, value = 6 });
        },
    };

    private static object TierPolicy(string gold) => new
    {
        metric = new { kind = "POINTS", window = "PERIOD" },
        period = new { kind = "ROLLING", months = 12 },
        tiers = new object[] { new { name = "Silver", threshold = "0" }, new { name = gold, threshold = "100", multiplier = "1.5" } },
    };

    private static async Task<Shop> TieredShopAsync(Tenant t)
    {
        var shop = await t.NewShopAsync();
        await t.PutOkAsync($"/v1/programs/{shop.ProgramId}/tiers", TierPolicy("Gold"));
        return shop;
    }

    public static TheoryData<string> WriteRouteNames => [.. WriteRoutes.Keys];

    private static async Task<HttpResponseMessage> SendAsync(Tenant t, string method, string path, object? body, string key)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        if (method != "DELETE") request.Content = JsonContent.Create(body ?? new { }, options: Tenant.Json);
        request.Headers.Add("Idempotency-Key", key);
        return await t.Http.SendAsync(request);
    }

    [Theory]
    [MemberData(nameof(WriteRouteNames))]
    public async Task every_write_replays_its_first_answer_under_the_same_key_and_writes_nothing(string route)
    {
        var t = await db.Host.NewTenantAsync();
        var write = await WriteRoutes[route](t);
        using var first = await SendAsync(t, write.Method, write.Path, write.Body, "replay-1");
        var firstBody = await first.Content.ReadAsStringAsync();
        first.IsSuccessStatusCode.ShouldBeTrue($"{route}: {(int)first.StatusCode} {firstBody}");
        if (write.BeforeReplay is not null) await write.BeforeReplay();
        var before = await LedgerAudit.SnapshotAsync(db.Database, t.OrgId);

        using var replay = await SendAsync(t, write.Method, write.Path, write.Body, "replay-1");

        replay.StatusCode.ShouldBe(first.StatusCode, route);
        (await replay.Content.ReadAsStringAsync()).ShouldBe(firstBody, route);
        replay.Headers.GetValues("Idempotent-Replayed").ShouldBe(["true"], route);
        (await LedgerAudit.SnapshotAsync(db.Database, t.OrgId)).ShouldBe(before, route);

        using var other = await SendAsync(t, write.Method, write.OtherPath, write.OtherBody, "replay-1");
        await Tenant.ShouldFailAsync(other, 409, "idempotency_key_reused");
        (await LedgerAudit.SnapshotAsync(db.Database, t.OrgId)).ShouldBe(before, route);
    }

    [Fact]
    public void the_replay_theory_covers_every_write_route_of_the_server()
    {
        // The API's writes: the support console's form posts (left out of the API document) go through
        // the same store with a key per form, and ConsoleTests proves a resubmitted form posts once.
        var writes = db.Host.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .Where(e => e.Metadata.GetMetadata<Microsoft.AspNetCore.Routing.IExcludeFromDescriptionMetadata>() is not { ExcludeFromDescription: true })
            .SelectMany(e => (e.Metadata.GetMetadata<HttpMethodMetadata>()?.HttpMethods ?? []).Select(m => (Method: m, e.RoutePattern.RawText)))
            .Where(r => r.Method is "POST" or "PUT" or "PATCH" or "DELETE")
            .Select(r => $"{r.Method} {r.RawText!.TrimEnd('/')}")
            .Distinct()
            .Order()
            .ToList();
        writes.Count.ShouldBeGreaterThan(20);
        writes.ShouldBe(WriteRoutes.Keys.Order().ToList());
    }

    [Fact]
    public async Task a_retried_create_key_answers_the_same_key_and_secret_and_issues_no_second_key()
    {
        var t = await db.Host.NewTenantAsync();
        var first = await t.PostOkAsync("/v1/keys", new { role = "Write" }, "create-key-1");
        var keys = await t.GetOkAsync("/v1/keys");

        var retried = await t.PostOkAsync("/v1/keys", new { role = "Write" }, "create-key-1");

        retried.GetProperty("keyId").GetString().ShouldBe(first.GetProperty("keyId").GetString());
        retried.GetProperty("secret").GetString().ShouldBe(first.GetProperty("secret").GetString());
        (await t.GetOkAsync("/v1/keys")).GetArrayLength().ShouldBe(keys.GetArrayLength());
        (await db.Host.Client(first.GetProperty("keyId").GetString(), first.GetProperty("secret").GetString()).GetAsync("/v1/programs"))
            .StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    [Fact]
    public async Task the_stored_answer_of_a_key_issue_or_rotation_holds_no_readable_secret()
    {
        var t = await db.Host.NewTenantAsync();
        var issued = await t.PostOkAsync("/v1/keys", new { role = "Read" }, "sealed-1");
        var rotated = await t.PostOkAsync($"/v1/keys/{issued.GetProperty("keyId").GetString()}/rotate", new { }, "sealed-2");

        var stored = (await db.Database.ReadAsync(c => c.QueryAsync<string>(
            "SELECT response_body FROM idempotency_keys WHERE org_id = @org ORDER BY idempotency_key", new { org = t.OrgId }), CancellationToken.None)).ToList();

        stored.Count.ShouldBe(2);
        foreach (var body in stored)
        {
            body.ShouldNotContain(issued.GetProperty("secret").GetString()!);
            body.ShouldNotContain(rotated.GetProperty("secret").GetString()!);
            body.ShouldNotContain(issued.GetProperty("keyId").GetString()!);
        }
    }

    [Fact]
    public async Task another_key_replaying_a_key_issue_is_refused_and_learns_no_secret()
    {
        var t = await db.Host.NewTenantAsync();
        await t.PostOkAsync("/v1/keys", new { role = "Read" }, "shared-create");
        var otherAdmin = await Tenants.IssueKeyAsync(db.Database, t.OrgId, KeyRole.Admin, db.Host.Clock, CancellationToken.None);
        var other = t with { Http = db.Host.Client(otherAdmin.KeyId, otherAdmin.Secret) };
        var before = await LedgerAudit.SnapshotAsync(db.Database, t.OrgId);

        using var replay = await other.PostAsync("/v1/keys", new { role = "Read" }, "shared-create");

        var body = await Tenant.ShouldFailAsync(replay, 409, "idempotency_key_reused");
        body.TryGetProperty("secret", out _).ShouldBeFalse();
        (await LedgerAudit.SnapshotAsync(db.Database, t.OrgId)).ShouldBe(before);
    }

    [Fact]
    public async Task an_expiry_run_still_holding_its_key_answers_409_in_progress_until_its_lease_runs_out()
    {
        var t = await db.Host.NewTenantAsync();
        // What a run that started and has not finished (or whose server died) leaves: a pending claim.
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("POST /v1/lifecycle/expire\n{}")));
        var claimedAt = db.Host.Clock.GetUtcNow().ToUnixTimeMilliseconds();
        await db.Database.WriteAsync((c, tx) => c.ExecuteAsync(
            "INSERT INTO idempotency_keys (org_id, idempotency_key, request_hash, status_code, response_body, created_at) VALUES (@org, 'run-1', @hash, 0, NULL, @claimedAt)",
            new { org = t.OrgId, hash, claimedAt }, tx), CancellationToken.None);

        using (var running = await t.PostAsync("/v1/lifecycle/expire", new { }, "run-1"))
        {
            await Tenant.ShouldFailAsync(running, 409, "idempotency_key_in_progress");
            running.Headers.RetryAfter.ShouldNotBeNull();
        }

        db.Host.Clock.Advance(TimeSpan.FromMinutes(6));
        var takenOver = await t.PostOkAsync("/v1/lifecycle/expire", new { }, "run-1");
        using var replay = await t.PostAsync("/v1/lifecycle/expire", new { }, "run-1");
        (await replay.Content.ReadAsStringAsync()).ShouldBe(takenOver.GetRawText());
        replay.Headers.GetValues("Idempotent-Replayed").ShouldBe(["true"]);
    }

    [Fact]
    public async Task a_key_already_used_is_answered_as_such_even_for_a_request_refused_before_any_statement()
    {
        // The key is claimed with the posting's first statements; a request the posting refuses on
        // sight (points of 0) sends the claim on its own, so the key still speaks first.
        var t = await db.Host.NewTenantAsync();
        await t.NewShopAsync();
        var customer = await t.NewCustomerAsync();
        await db.Database.WriteAsync((c, tx) => c.ExecuteAsync(
            "INSERT INTO idempotency_keys (org_id, idempotency_key, request_hash, status_code, response_body, created_at) VALUES (@org, 'sight-1', 'another request', 201, '{}', 0)",
            new { org = t.OrgId }, tx), CancellationToken.None);
        var before = await LedgerAudit.CountsAsync(db.Database, t.OrgId);

        using var reused = await t.PostAsync("/v1/redemptions", new { customerId = customer, points = "0" }, "sight-1");
        using var fresh = await t.PostAsync("/v1/redemptions", new { customerId = customer, points = "0" }, "sight-2");

        await Tenant.ShouldFailAsync(reused, 409, "idempotency_key_reused");
        await Tenant.ShouldFailAsync(fresh, 400, "invalid_points");
        (await LedgerAudit.CountsAsync(db.Database, t.OrgId)).ShouldBe(before);
    }

    [Fact]
    public async Task a_refused_expiry_run_does_not_burn_its_key()
    {
        var t = await db.Host.NewTenantAsync();
        using var refused = await t.PostAsync("/v1/lifecycle/expire", new { asOf = db.Host.Clock.GetUtcNow().AddDays(1) }, "run-2");
        await Tenant.ShouldFailAsync(refused, 400, "invalid_request");

        await t.PostOkAsync("/v1/lifecycle/expire", new { }, "run-2");
    }
    [Fact]
    public async Task a_replay_returns_the_first_response_and_writes_nothing()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var customer = await t.NewCustomerAsync();
        var bill = new { customerId = customer, billNumber = "IDEM-1", amount = 100, storeCode = shop.StoreCode };
        using var first = await t.PostAsync("/v1/transactions", bill, "key-1");
        var firstBody = await first.Content.ReadAsStringAsync();
        first.StatusCode.ShouldBe(HttpStatusCode.Created);
        var before = await LedgerAudit.CountsAsync(db.Database, t.OrgId);

        using var replay = await t.PostAsync("/v1/transactions", bill, "key-1");

        replay.StatusCode.ShouldBe(HttpStatusCode.Created);
        (await replay.Content.ReadAsStringAsync()).ShouldBe(firstBody);
        replay.Headers.GetValues("Idempotent-Replayed").ShouldBe(["true"]);
        (await LedgerAudit.CountsAsync(db.Database, t.OrgId)).ShouldBe(before);
    }

    [Fact]
    public async Task the_same_key_with_a_different_body_is_refused_with_409()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var customer = await t.NewCustomerAsync();
        await t.AwardAsync(customer, "50");
        await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "5" }, "key-2");
        var before = await LedgerAudit.CountsAsync(db.Database, t.OrgId);

        using var other = await t.PostAsync("/v1/redemptions", new { customerId = customer, points = "6" }, "key-2");

        await Tenant.ShouldFailAsync(other, 409, "idempotency_key_reused");
        (await LedgerAudit.CountsAsync(db.Database, t.OrgId)).ShouldBe(before);
        (await t.BalanceAsync(customer, shop.ProgramId)).ShouldBe(45_000);
    }

    [Fact]
    public async Task a_refused_request_does_not_burn_its_key()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var customer = await t.NewCustomerAsync();
        using var refused = await t.PostAsync("/v1/redemptions", new { customerId = customer, points = "5" }, "key-3");
        await Tenant.ShouldFailAsync(refused, 422, "insufficient_balance");
        await t.AwardAsync(customer, "10");

        await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "5" }, "key-3");

        (await t.BalanceAsync(customer, shop.ProgramId)).ShouldBe(5_000);
    }

    [Fact]
    public async Task keys_are_scoped_to_the_organization()
    {
        var a = await db.Host.NewTenantAsync();
        var b = await db.Host.NewTenantAsync();
        await a.NewShopAsync();
        await b.NewShopAsync();
        var ca = await a.NewCustomerAsync();
        var cb = await b.NewCustomerAsync();

        await a.AwardAsync(ca, "1");
        var first = await a.PostOkAsync("/v1/events", new { customerId = ca, eventName = "E", awards = new[] { new { points = "2" } } }, "shared-key");
        var second = await b.PostOkAsync("/v1/events", new { customerId = cb, eventName = "E", awards = new[] { new { points = "2" } } }, "shared-key");

        second.GetProperty("eventId").GetInt64().ShouldNotBe(first.GetProperty("eventId").GetInt64());
    }

    [Fact]
    public async Task an_empty_or_oversized_key_is_refused()
    {
        var t = await db.Host.NewTenantAsync();
        await t.NewShopAsync();
        var customer = await t.NewCustomerAsync();
        using var response = await t.PostAsync("/v1/events", new { customerId = customer, eventName = "E", awards = new[] { new { points = "2" } } }, new string('k', 201));
        await Tenant.ShouldFailAsync(response, 400, "invalid_request");
    }
}

public sealed class IdempotencyTestsOnSqlite(SqliteDatabase db) : IdempotencyTests(db), IClassFixture<SqliteDatabase>;

public sealed class IdempotencyTestsOnPostgres(PostgresDatabase db) : IdempotencyTests(db), IClassFixture<PostgresDatabase>;
