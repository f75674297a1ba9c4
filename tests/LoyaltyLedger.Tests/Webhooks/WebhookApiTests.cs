using System.Net;
using System.Text.Json;
using Dapper;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Webhooks;

/// <summary>The webhook admin API: what it answers, what it refuses, and that it writes nothing when it refuses.</summary>
public abstract class WebhookApiTests(DatabaseFixture db)
{
    private const string Url = "http://127.0.0.1:9/hook";

    private Task<long> EndpointCountAsync(long orgId) =>
        db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM webhook_endpoints WHERE org_id = @orgId", new { orgId }), CancellationToken.None);

    [Fact]
    public async Task creating_a_webhook_answers_201_with_its_secret_once_and_lists_it_without_the_secret()
    {
        var t = await db.Host.NewTenantAsync();
        using var response = await t.PostAsync("/v1/webhooks", new { url = Url, events = new[] { "balance.changed", "ledger.event.posted" }, description = "CRM" });
        response.StatusCode.ShouldBe(HttpStatusCode.Created);
        var created = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        var id = created.GetProperty("id").GetInt64();
        created.GetProperty("url").GetString().ShouldBe(Url);
        created.GetProperty("events").EnumerateArray().Select(e => e.GetString()).ShouldBe(["balance.changed", "ledger.event.posted"]);
        created.GetProperty("enabled").GetBoolean().ShouldBeTrue();
        created.GetProperty("description").GetString().ShouldBe("CRM");
        created.TryGetProperty("createdAt", out _).ShouldBeTrue();
        var secret = created.GetProperty("secret").GetString()!;
        secret.ShouldStartWith("whsec_");
        Convert.FromBase64String(secret["whsec_".Length..]).Length.ShouldBeGreaterThanOrEqualTo(24);

        var listed = await t.GetOkAsync("/v1/webhooks");
        listed.GetArrayLength().ShouldBe(1);
        listed[0].GetProperty("id").GetInt64().ShouldBe(id);
        listed[0].TryGetProperty("secret", out _).ShouldBeFalse();
        (await t.GetOkAsync($"/v1/webhooks/{id}")).TryGetProperty("secret", out _).ShouldBeFalse();
    }

    [Theory]
    [InlineData("ftp://example.com/hook", "[\"*\"]", "url must be an http or https URL")]
    [InlineData("javascript:alert(1)", "[\"*\"]", "url must be an")]
    [InlineData("/relative/hook", "[\"*\"]", "url must be an absolute http or https URL")]
    [InlineData("https://user:pw@example.com/hook", "[\"*\"]", "credentials")]
    [InlineData(Url, "[\"points.expried\"]", "Unknown event type 'points.expried'")]
    [InlineData(Url, "[\"balance.changed\", \"BALANCE.CHANGED\"]", "Unknown event type 'BALANCE.CHANGED'")]
    [InlineData(Url, "[]", "events lists at least one event type")]
    [InlineData(Url, "[\"*\", null]", "strings, not null")]
    public async Task unknown_event_types_and_urls_that_are_not_http_are_refused_with_400_and_nothing_is_written(string url, string events, string detail)
    {
        var t = await db.Host.NewTenantAsync();
        using var response = await t.PostRawAsync("/v1/webhooks", $"{{\"url\":{JsonSerializer.Serialize(url)},\"events\":{events}}}");
        var problem = await Tenant.ShouldFailAsync(response, 400, "invalid_request");
        problem.GetProperty("detail").GetString()!.ShouldContain(detail);
        (await EndpointCountAsync(t.OrgId)).ShouldBe(0);
    }

    [Fact]
    public async Task a_patch_with_an_unknown_event_type_or_a_bad_url_changes_nothing()
    {
        var t = await db.Host.NewTenantAsync();
        var (id, _) = await t.NewWebhookAsync(Url, "balance.changed");
        await Tenant.ShouldFailAsync(await PatchAsync(t, $"/v1/webhooks/{id}", new { events = new[] { "nope" }, description = "changed" }), 400, "invalid_request");
        await Tenant.ShouldFailAsync(await PatchAsync(t, $"/v1/webhooks/{id}", new { url = "mailto:a@example.com", description = "changed" }), 400, "invalid_request");
        var view = await t.GetOkAsync($"/v1/webhooks/{id}");
        view.GetProperty("url").GetString().ShouldBe(Url);
        view.TryGetProperty("description", out _).ShouldBeFalse();
        view.GetProperty("events")[0].GetString().ShouldBe("balance.changed");
    }

    [Fact]
    public async Task a_retried_create_with_the_same_idempotency_key_answers_the_same_endpoint_and_secret_and_creates_one()
    {
        var t = await db.Host.NewTenantAsync();
        var first = await t.PostOkAsync("/v1/webhooks", new { url = Url, events = new[] { "*" } }, "create-hook-1");
        using var again = await t.PostAsync("/v1/webhooks", new { url = Url, events = new[] { "*" } }, "create-hook-1");
        again.StatusCode.ShouldBe(HttpStatusCode.Created);
        again.Headers.GetValues("Idempotent-Replayed").Single().ShouldBe("true");
        var replayed = JsonDocument.Parse(await again.Content.ReadAsStringAsync()).RootElement;
        replayed.GetProperty("id").GetInt64().ShouldBe(first.GetProperty("id").GetInt64());
        replayed.GetProperty("secret").GetString().ShouldBe(first.GetProperty("secret").GetString());
        (await EndpointCountAsync(t.OrgId)).ShouldBe(1);
        // The stored answer holds the secret: it is sealed, never readable in the database.
        var stored = await db.Database.ReadAsync(c => c.ExecuteScalarAsync<string>(
            "SELECT response_body FROM idempotency_keys WHERE org_id = @org AND idempotency_key = 'create-hook-1'", new { org = t.OrgId }), CancellationToken.None);
        stored!.ShouldNotContain(first.GetProperty("secret").GetString()!);
    }

    [Fact]
    public async Task patch_changes_the_url_events_and_description_and_enabled_false_then_true_disables_and_re_enables()
    {
        var t = await db.Host.NewTenantAsync();
        var (id, _) = await t.NewWebhookAsync(Url);
        var changed = await ReadAsync(await PatchAsync(t, $"/v1/webhooks/{id}", new
        {
            url = "https://127.0.0.1:8443/other", events = new[] { "points.expiring", "points.expired" }, description = "e-mail tool",
        }), 200);
        changed.GetProperty("url").GetString().ShouldBe("https://127.0.0.1:8443/other");
        changed.GetProperty("events").GetArrayLength().ShouldBe(2);
        changed.GetProperty("description").GetString().ShouldBe("e-mail tool");

        var disabled = await ReadAsync(await PatchAsync(t, $"/v1/webhooks/{id}", new { enabled = false }), 200);
        disabled.GetProperty("enabled").GetBoolean().ShouldBeFalse();
        disabled.GetProperty("disabledReason").GetString()!.ShouldContain("Disabled through the API");
        disabled.GetProperty("url").GetString().ShouldBe("https://127.0.0.1:8443/other");

        var enabled = await ReadAsync(await PatchAsync(t, $"/v1/webhooks/{id}", new { enabled = true }), 200);
        enabled.GetProperty("enabled").GetBoolean().ShouldBeTrue();
        enabled.TryGetProperty("disabledReason", out _).ShouldBeFalse();
        enabled.GetProperty("description").GetString().ShouldBe("e-mail tool");
    }

    [Fact]
    public async Task rotating_the_secret_answers_a_new_one_and_delete_removes_the_endpoint()
    {
        var t = await db.Host.NewTenantAsync();
        var (id, secret) = await t.NewWebhookAsync(Url);
        var rotated = await t.PostOkAsync($"/v1/webhooks/{id}/rotate-secret", new { });
        rotated.GetProperty("secret").GetString()!.ShouldStartWith("whsec_");
        rotated.GetProperty("secret").GetString().ShouldNotBe(secret);

        using var deleted = await t.Http.DeleteAsync($"/v1/webhooks/{id}");
        deleted.StatusCode.ShouldBe(HttpStatusCode.NoContent);
        await Tenant.ShouldFailAsync(await t.Http.GetAsync($"/v1/webhooks/{id}"), 404, "webhook_not_found");
        (await EndpointCountAsync(t.OrgId)).ShouldBe(0);
    }

    [Fact]
    public async Task the_test_call_queues_a_ping_and_the_delivery_log_shows_it_pending_with_its_webhook_id()
    {
        var t = await db.Host.NewTenantAsync();
        var (id, _) = await t.NewWebhookAsync(Url, "balance.changed");
        using var response = await t.PostAsync($"/v1/webhooks/{id}/test", new { });
        response.StatusCode.ShouldBe(HttpStatusCode.Accepted);
        var delivery = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        delivery.GetProperty("eventType").GetString().ShouldBe("webhook.test");
        delivery.GetProperty("status").GetString().ShouldBe("pending");
        delivery.GetProperty("messageId").GetString()!.ShouldStartWith("evt_test_");
        var log = await t.DeliveriesAsync(id);
        log.Single().GetProperty("deliveryId").GetInt64().ShouldBe(delivery.GetProperty("deliveryId").GetInt64());
        log.Single().GetProperty("attemptLog").GetArrayLength().ShouldBe(0);
    }

    [Fact]
    public async Task the_delivery_log_pages_newest_first_and_refuses_a_bad_limit_or_status()
    {
        var t = await db.Host.NewTenantAsync();
        var (id, _) = await t.NewWebhookAsync(Url);
        for (var i = 0; i < 5; i++) await t.PostOkAsync($"/v1/webhooks/{id}/test", new { });
        var first = await t.GetOkAsync($"/v1/webhooks/{id}/deliveries?limit=3");
        var ids = first.GetProperty("deliveries").EnumerateArray().Select(d => d.GetProperty("deliveryId").GetInt64()).ToList();
        ids.Count.ShouldBe(3);
        ids.ShouldBe(ids.OrderDescending().ToList());
        var next = first.GetProperty("nextBefore").GetInt64();
        var second = await t.GetOkAsync($"/v1/webhooks/{id}/deliveries?limit=3&before={next}");
        second.GetProperty("deliveries").GetArrayLength().ShouldBe(2);
        second.TryGetProperty("nextBefore", out _).ShouldBeFalse();
        (await t.GetOkAsync($"/v1/webhooks/{id}/deliveries?status=succeeded")).GetProperty("deliveries").GetArrayLength().ShouldBe(0);

        await Tenant.ShouldFailAsync(await t.Http.GetAsync($"/v1/webhooks/{id}/deliveries?limit=0"), 400, "invalid_request");
        await Tenant.ShouldFailAsync(await t.Http.GetAsync($"/v1/webhooks/{id}/deliveries?limit=101"), 400, "invalid_request");
        await Tenant.ShouldFailAsync(await t.Http.GetAsync($"/v1/webhooks/{id}/deliveries?status=lost"), 400, "invalid_request");
        await Tenant.ShouldFailAsync(await t.Http.GetAsync($"/v1/webhooks/{id}/deliveries?before=x"), 400, "invalid_request");
    }

    [Fact]
    public async Task another_organizations_webhook_and_delivery_are_404_on_every_webhook_call()
    {
        var owner = await db.Host.NewTenantAsync();
        var (id, _) = await owner.NewWebhookAsync(Url);
        var delivery = (await owner.PostOkAsync($"/v1/webhooks/{id}/test", new { })).GetProperty("deliveryId").GetInt64();
        var other = await db.Host.NewTenantAsync();
        var (ownId, _) = await other.NewWebhookAsync(Url);

        var calls = new (HttpMethod Method, string Path, object? Body)[]
        {
            (HttpMethod.Get, $"/v1/webhooks/{id}", null),
            (HttpMethod.Patch, $"/v1/webhooks/{id}", new { enabled = false }),
            (HttpMethod.Delete, $"/v1/webhooks/{id}", null),
            (HttpMethod.Post, $"/v1/webhooks/{id}/rotate-secret", new { }),
            (HttpMethod.Post, $"/v1/webhooks/{id}/test", new { }),
            (HttpMethod.Get, $"/v1/webhooks/{id}/deliveries", null),
            (HttpMethod.Post, $"/v1/webhooks/{id}/deliveries/{delivery}/redeliver", new { }),
        };
        foreach (var (method, path, body) in calls)
        {
            using var request = new HttpRequestMessage(method, path);
            if (body is not null) request.Content = System.Net.Http.Json.JsonContent.Create(body);
            await Tenant.ShouldFailAsync(await other.Http.SendAsync(request), 404, "webhook_not_found");
        }
        // A delivery of another endpoint, through an endpoint of one's own.
        await Tenant.ShouldFailAsync(await other.PostAsync($"/v1/webhooks/{ownId}/deliveries/{delivery}/redeliver", new { }), 404, "webhook_delivery_not_found");
        (await other.GetOkAsync("/v1/webhooks")).GetArrayLength().ShouldBe(1);
        (await owner.GetOkAsync($"/v1/webhooks/{id}")).GetProperty("enabled").GetBoolean().ShouldBeTrue();
    }

    [Fact]
    public async Task keys_without_the_admin_role_are_forbidden_from_every_webhook_call()
    {
        var admin = await db.Host.NewTenantAsync();
        var (id, _) = await admin.NewWebhookAsync(Url);
        var key = await Tenants.IssueKeyAsync(db.Database, admin.OrgId, KeyRole.Write, db.Host.Clock, CancellationToken.None);
        var writer = db.Host.Client(key.KeyId, key.Secret);
        await Tenant.ShouldFailAsync(await writer.GetAsync("/v1/webhooks"), 403, "forbidden");
        await Tenant.ShouldFailAsync(await writer.GetAsync($"/v1/webhooks/{id}/deliveries"), 403, "forbidden");
        await Tenant.ShouldFailAsync(await writer.PostAsync("/v1/webhooks", System.Net.Http.Json.JsonContent.Create(new { url = Url, events = new[] { "*" } })), 403, "forbidden");
        (await EndpointCountAsync(admin.OrgId)).ShouldBe(1);
    }

    private static async Task<HttpResponseMessage> PatchAsync(Tenant t, string path, object body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Patch, path) { Content = System.Net.Http.Json.JsonContent.Create(body, options: Tenant.Json) };
        return await t.Http.SendAsync(request);
    }

    private static async Task<JsonElement> ReadAsync(HttpResponseMessage response, int status)
    {
        var text = await response.Content.ReadAsStringAsync();
        ((int)response.StatusCode).ShouldBe(status, text);
        response.Dispose();
        return JsonDocument.Parse(text).RootElement.Clone();
    }
}

public sealed class WebhookApiTestsOnSqlite(SqliteDatabase db) : WebhookApiTests(db), IClassFixture<SqliteDatabase>;

public sealed class WebhookApiTestsOnPostgres(PostgresDatabase db) : WebhookApiTests(db), IClassFixture<PostgresDatabase>;
