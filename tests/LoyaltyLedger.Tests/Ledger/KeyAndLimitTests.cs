using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Ledger;

/// <summary>Key rotation and revocation without a restart, key attribution, and per-key rate limits.</summary>
public abstract class KeyAndLimitTests(DatabaseFixture db)
{
    [Fact]
    public async Task a_revoked_key_is_refused_from_the_next_request_on()
    {
        var admin = await db.Host.NewTenantAsync();
        var issued = await admin.PostOkAsync("/v1/keys", new { role = "Write", name = "till app" });
        var keyId = issued.GetProperty("keyId").GetString()!;
        var client = db.Host.Client(keyId, issued.GetProperty("secret").GetString());
        (await client.GetAsync("/v1/programs")).StatusCode.ShouldBe(HttpStatusCode.OK);

        (await admin.Http.DeleteAsync($"/v1/keys/{keyId}")).StatusCode.ShouldBe(HttpStatusCode.NoContent);
        var audited = await db.Database.ReadAsync(c => Dapper.SqlMapper.QueryAsync<string>(c,
            "SELECT method || ' ' || path FROM write_audit WHERE org_id = @org AND key_id = @key ORDER BY audit_id", new { org = admin.OrgId, key = admin.Key.KeyId }), CancellationToken.None);
        audited.ShouldBe(["POST /v1/keys", $"DELETE /v1/keys/{keyId}"]);

        using var refused = await client.GetAsync("/v1/programs");
        await Tenant.ShouldFailAsync(refused, 401, "unauthorized");
        var listed = (await admin.GetOkAsync("/v1/keys")).EnumerateArray().Single(k => k.GetProperty("keyId").GetString() == keyId);
        listed.TryGetProperty("revokedAt", out _).ShouldBeTrue();
        listed.TryGetProperty("secret", out _).ShouldBeFalse();
    }

    [Fact]
    public async Task a_rotated_key_works_with_its_new_secret_only()
    {
        var admin = await db.Host.NewTenantAsync();
        var issued = await admin.PostOkAsync("/v1/keys", new { role = "Read" });
        var keyId = issued.GetProperty("keyId").GetString()!;
        var oldSecret = issued.GetProperty("secret").GetString();

        var rotated = await admin.PostOkAsync($"/v1/keys/{keyId}/rotate", new { });

        var newSecret = rotated.GetProperty("secret").GetString();
        newSecret.ShouldNotBe(oldSecret);
        (await db.Host.Client(keyId, newSecret).GetAsync("/v1/programs")).StatusCode.ShouldBe(HttpStatusCode.OK);
        using var old = await db.Host.Client(keyId, oldSecret).GetAsync("/v1/programs");
        await Tenant.ShouldFailAsync(old, 401, "unauthorized");
    }

    [Fact]
    public async Task an_organization_cannot_revoke_or_rotate_another_organizations_key()
    {
        var a = await db.Host.NewTenantAsync();
        var b = await db.Host.NewTenantAsync();
        using (var revoke = await b.Http.DeleteAsync($"/v1/keys/{a.Key.KeyId}")) await Tenant.ShouldFailAsync(revoke, 404, "key_not_found");
        using (var rotate = await b.PostAsync($"/v1/keys/{a.Key.KeyId}/rotate", new { })) await Tenant.ShouldFailAsync(rotate, 404, "key_not_found");
        (await a.Http.GetAsync("/v1/programs")).StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    [Fact]
    public async Task only_admin_keys_manage_keys()
    {
        var admin = await db.Host.NewTenantAsync();
        var writer = await Tenants.IssueKeyAsync(db.Database, admin.OrgId, KeyRole.Write, db.Host.Clock, CancellationToken.None);
        using var response = await db.Host.Client(writer.KeyId, writer.Secret).GetAsync("/v1/keys");
        await Tenant.ShouldFailAsync(response, 403, "forbidden");
    }

    [Fact]
    public async Task every_event_and_every_write_request_records_the_key_that_made_it()
    {
        var admin = await db.Host.NewTenantAsync();
        await admin.NewShopAsync();
        var writer = await Tenants.IssueKeyAsync(db.Database, admin.OrgId, KeyRole.Write, db.Host.Clock, CancellationToken.None);
        var t = admin with { Http = db.Host.Client(writer.KeyId, writer.Secret) };
        var customer = await t.NewCustomerAsync();
        var posted = await t.AwardAsync(customer, "5");

        var postedBy = await db.Database.ReadAsync(c => Dapper.SqlMapper.QueryAsync<string>(c,
            "SELECT posted_by FROM events WHERE org_id = @org AND owner_id = @customer", new { org = admin.OrgId, customer }), CancellationToken.None);
        postedBy.ShouldAllBe(k => k == writer.KeyId);
        posted.GetProperty("eventId").GetInt64().ShouldBePositive();
        var audit = await db.Database.ReadAsync(c => Dapper.SqlMapper.QueryAsync<(string KeyId, string Method, string Path, long Status)>(c,
            "SELECT key_id, method, path, status_code FROM write_audit WHERE org_id = @org ORDER BY audit_id", new { org = admin.OrgId }), CancellationToken.None);
        audit.Where(a => a.KeyId == writer.KeyId).Select(a => $"{a.Method} {a.Path} {a.Status}").ShouldBe(["POST /v1/customers 201", "POST /v1/events 201"]);
        audit.Where(a => a.KeyId == admin.Key.KeyId).Select(a => a.Path).ShouldBe(["/v1/programs", "/v1/stores", "/v1/tills"]);
    }

    [Fact]
    public async Task a_key_over_its_rate_limit_gets_429_with_retry_after_while_other_keys_go_on()
    {
        await using var host = await TestServerHost.StartAsync(db.OpenSecondInstance(), new Dictionary<string, string?>
        {
            ["Ledger:RateLimit:PermitsPerSecond"] = "1",
            ["Ledger:RateLimit:Burst"] = "3",
        });
        var busy = await host.NewTenantAsync();
        var quiet = await host.NewTenantAsync();

        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 6; i++)
        {
            using var response = await busy.Http.GetAsync("/v1/programs");
            statuses.Add(response.StatusCode);
            if (response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                response.Headers.RetryAfter.ShouldNotBeNull();
                (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("code").GetString().ShouldBe("rate_limited");
            }
        }

        statuses.Count(s => s == HttpStatusCode.TooManyRequests).ShouldBeGreaterThanOrEqualTo(2);
        (await quiet.Http.GetAsync("/v1/programs")).StatusCode.ShouldBe(HttpStatusCode.OK);
    }
}

public sealed class KeyAndLimitTestsOnSqlite(SqliteDatabase db) : KeyAndLimitTests(db), IClassFixture<SqliteDatabase>;

public sealed class KeyAndLimitTestsOnPostgres(PostgresDatabase db) : KeyAndLimitTests(db), IClassFixture<PostgresDatabase>;
