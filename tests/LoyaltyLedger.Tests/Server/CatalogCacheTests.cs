using System.Net;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Tests.Infrastructure;
using LoyaltyLedger.Tests.PointsLedger;

namespace LoyaltyLedger.Tests.Server;

/// <summary>
/// Each server process keeps programs, stores, tills and keys in memory (CatalogCache). These tests
/// run two servers on one database, as two processes would, and check the bounds the cache promises:
/// what one server creates, the other can use at once; what one server revokes, the other refuses
/// within the cache's lifetime; and what a server changes itself, it sees at once.
/// </summary>
public abstract class CatalogCacheTests(DatabaseFixture db)
{
    /// <summary>
    /// The points-ledger read names a line's currency from this server's program list (no join): a
    /// currency another server created a moment ago, not yet in that list, must still be named.
    /// </summary>
    [Fact]
    public async Task a_currency_created_and_posted_through_another_server_is_named_by_this_servers_ledger_read()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(currencies: []);
        var customer = await t.NewCustomerAsync();
        await t.BillAsync(shop, customer, "B-1", 100m);
        // This server now holds the organization's programs (for a second), without the currency.
        await t.LedgerOkAsync(LedgerApi.Customer(customer, "&includeAlternateCurrencies=true"));

        await using var second = await TestServerHost.StartAsync(db.OpenSecondInstance());
        var other = t with { Http = second.Client(t.Key.KeyId, t.Key.Secret), Host = second };
        await other.PostOkAsync($"/v1/programs/{shop.ProgramId}/currencies", new { name = "Gems" });
        await other.AwardAsync(customer, "3", currency: "Gems", programId: shop.ProgramId);

        var body = await t.LedgerOkAsync(LedgerApi.Customer(customer, "&includeAlternateCurrencies=true"));
        body.Lines().ShouldContain(l => l.StartsWith("Gems/", StringComparison.Ordinal), body.ToString());
    }

    /// <summary>
    /// The expiry run takes a wallet's program from this server's program list: a currency another
    /// server created a moment ago, not yet in that list, must still be named on the expiry it writes
    /// (and its policy found), not taken for plain points.
    /// </summary>
    [Fact]
    public async Task an_expiry_run_names_the_currency_of_a_wallet_another_server_created_a_moment_ago()
    {
        var jan1 = new DateTimeOffset(2025, 1, 1, 10, 0, 0, TimeSpan.Zero);
        db.Host.Clock.Set(jan1);
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(currencies: [], expiry: new { kind = "DATE_EARNED", days = 30 });
        var customer = await t.NewCustomerAsync();
        await t.BillAsync(shop, customer, "B-1", 100m);
        await using var second = await TestServerHost.StartAsync(db.OpenSecondInstance());
        second.Clock.Set(jan1);
        var other = t with { Http = second.Client(t.Key.KeyId, t.Key.Secret), Host = second };
        // This server now holds the organization's programs (for a second), without the currency.
        await t.LedgerOkAsync(LedgerApi.Customer(customer, "&includeAlternateCurrencies=true"));

        await other.PostOkAsync($"/v1/programs/{shop.ProgramId}/currencies", new { name = "Gems", expiry = new { kind = "DATE_EARNED", days = 30 } });
        await other.AwardAsync(customer, "3", currency: "Gems", programId: shop.ProgramId);
        db.Host.Clock.Set(jan1.AddDays(40));
        var run = await t.PostOkAsync("/v1/lifecycle/expire", new { });

        var expired = run.GetProperty("events").EnumerateArray().SelectMany(e => e.GetProperty("entries").EnumerateArray())
            .Select(e => e.TryGetProperty("currency", out var c) && c.ValueKind == System.Text.Json.JsonValueKind.String ? c.GetString() : "points")
            .Order().ToList();
        expired.ShouldBe(["Gems", "points"], run.ToString());
        (await t.BalanceAsync(customer, shop.ProgramId, currency: "Gems")).ShouldBe(0);
    }

    [Fact]
    public async Task a_program_store_till_and_currency_created_through_another_server_are_usable_at_once()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var customer = await t.NewCustomerAsync();
        // This server has now read (and cached) the organization's programs and the first store.
        await t.BillAsync(shop, customer, "B-1", 100m);

        await using var second = await TestServerHost.StartAsync(db.OpenSecondInstance());
        var other = t with { Http = second.Client(t.Key.KeyId, t.Key.Secret), Host = second };
        var newShop = await other.NewShopAsync(earnRate: "2", currencies: ["Stamps"], storeCode: "store-2", tillCode: "till-2");
        await other.PostOkAsync($"/v1/programs/{shop.ProgramId}/currencies", new { name = "Gems" });

        var bill = await t.BillAsync(newShop, customer, "B-2", 10m);
        bill.GetProperty("entries").EnumerateArray().ShouldAllBe(e => e.GetProperty("programId").GetInt64() == newShop.ProgramId);
        (await t.BalanceAsync(customer, newShop.ProgramId)).ShouldBe(20_000);
        await t.AwardAsync(customer, "3", currency: "Gems", programId: shop.ProgramId);
        (await t.BalanceAsync(customer, shop.ProgramId, currency: "Gems")).ShouldBe(3_000);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task a_currency_added_through_the_same_server_is_earned_by_rule_on_the_next_bill()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(currencies: []);
        var customer = await t.NewCustomerAsync();
        await t.BillAsync(shop, customer, "B-1", 100m);

        await t.PostOkAsync($"/v1/programs/{shop.ProgramId}/currencies", new { name = "Stars", earnRate = "1" });
        await t.BillAsync(shop, customer, "B-2", 7m);

        (await t.BalanceAsync(customer, shop.ProgramId, currency: "Stars")).ShouldBe(7_000);
    }

    [Fact]
    public async Task a_key_revoked_through_another_server_is_refused_here_within_the_cache_lifetime()
    {
        var admin = await db.Host.NewTenantAsync();
        var issued = await admin.PostOkAsync("/v1/keys", new { role = "Read" });
        var keyId = issued.GetProperty("keyId").GetString()!;
        var client = db.Host.Client(keyId, issued.GetProperty("secret").GetString());
        (await client.GetAsync("/v1/programs")).StatusCode.ShouldBe(HttpStatusCode.OK);

        await using (var second = await TestServerHost.StartAsync(db.OpenSecondInstance()))
        {
            (await admin.Http.GetAsync("/v1/programs")).StatusCode.ShouldBe(HttpStatusCode.OK);
            var otherAdmin = second.Client(admin.Key.KeyId, admin.Key.Secret);
            (await otherAdmin.DeleteAsync($"/v1/keys/{keyId}")).StatusCode.ShouldBe(HttpStatusCode.NoContent);
        }

        await Task.Delay(CatalogCache.KeysTtl + TimeSpan.FromMilliseconds(100));
        using var refused = await client.GetAsync("/v1/programs");
        await Tenant.ShouldFailAsync(refused, 401, "unauthorized");
    }

    [Fact]
    public async Task a_key_issued_again_under_its_id_works_at_once_with_its_new_secret_only()
    {
        var t = await db.Host.NewTenantAsync();
        (await t.Http.GetAsync("/v1/programs")).StatusCode.ShouldBe(HttpStatusCode.OK);

        var reissued = await Tenants.IssueKeyAsync(db.Database, t.OrgId, KeyRole.Admin, db.Host.Clock, CancellationToken.None,
            keyId: t.Key.KeyId, secret: "a-new-secret-1234");

        (await db.Host.Client(t.Key.KeyId, reissued.Secret).GetAsync("/v1/programs")).StatusCode.ShouldBe(HttpStatusCode.OK);
        using var old = await t.Http.GetAsync("/v1/programs");
        await Tenant.ShouldFailAsync(old, 401, "unauthorized");
    }

    [Fact]
    public async Task a_wrong_secret_is_refused_even_while_the_key_is_cached()
    {
        var t = await db.Host.NewTenantAsync();
        (await t.Http.GetAsync("/v1/programs")).StatusCode.ShouldBe(HttpStatusCode.OK);
        using var wrong = await db.Host.Client(t.Key.KeyId, t.Key.Secret + "x").GetAsync("/v1/programs");
        await Tenant.ShouldFailAsync(wrong, 401, "unauthorized");
    }
}

public sealed class CatalogCacheTestsOnSqlite(SqliteDatabase db) : CatalogCacheTests(db), IClassFixture<SqliteDatabase>;

public sealed class CatalogCacheTestsOnPostgres(PostgresDatabase db) : CatalogCacheTests(db), IClassFixture<PostgresDatabase>;
