using System.Net;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Ledger;

public abstract class IdempotencyTests(DatabaseFixture db)
{
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
