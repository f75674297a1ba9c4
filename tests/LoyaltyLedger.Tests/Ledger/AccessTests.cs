using System.Net;
using System.Net.Http.Headers;
using System.Text;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Ledger;

/// <summary>Authentication, roles, and one organization never seeing another's data.</summary>
public abstract class AccessTests(DatabaseFixture db)
{
    [Fact]
    public async Task a_call_without_credentials_gets_401_with_a_challenge()
    {
        using var response = await db.Host.Client().GetAsync("/v1/programs");
        await Tenant.ShouldFailAsync(response, 401, "unauthorized");
        response.Headers.WwwAuthenticate.ToString().ShouldStartWith("Basic");
    }

    [Fact]
    public async Task a_wrong_secret_or_unknown_key_gets_401()
    {
        var t = await db.Host.NewTenantAsync();
        using var wrongSecret = await db.Host.Client(t.Key.KeyId, t.Key.Secret + "x").GetAsync("/v1/programs");
        await Tenant.ShouldFailAsync(wrongSecret, 401, "unauthorized");
        using var unknownKey = await db.Host.Client("lk_nobody", t.Key.Secret).GetAsync("/v1/programs");
        await Tenant.ShouldFailAsync(unknownKey, 401, "unauthorized");
        var garbage = db.Host.Client();
        garbage.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", "%%%not-base64");
        using var malformed = await garbage.GetAsync("/v1/programs");
        await Tenant.ShouldFailAsync(malformed, 401, "unauthorized");
    }

    [Fact]
    public async Task secrets_are_stored_only_as_hashes()
    {
        var t = await db.Host.NewTenantAsync();
        var stored = await db.Database.ReadAsync(c => Dapper.SqlMapper.ExecuteScalarAsync<string>(c,
            "SELECT secret_hash FROM api_keys WHERE key_id = @k", new { k = t.Key.KeyId }), CancellationToken.None);
        stored.ShouldNotBeNull();
        stored.ShouldNotContain(t.Key.Secret);
        stored.ShouldBe(Tenants.Hash(t.Key.Secret));
    }

    [Fact]
    public async Task a_read_key_can_read_but_not_write()
    {
        var admin = await db.Host.NewTenantAsync();
        await admin.NewShopAsync();
        var reader = await Tenants.IssueKeyAsync(db.Database, admin.OrgId, KeyRole.Read, db.Host.Clock, CancellationToken.None);
        var client = db.Host.Client(reader.KeyId, reader.Secret);

        (await client.GetAsync("/v1/programs")).StatusCode.ShouldBe(HttpStatusCode.OK);
        using var write = await client.PostAsync("/v1/customers", new StringContent("{\"firstName\":\"X\"}", Encoding.UTF8, "application/json"));
        await Tenant.ShouldFailAsync(write, 403, "forbidden");
    }

    [Fact]
    public async Task a_write_key_cannot_create_programs()
    {
        var admin = await db.Host.NewTenantAsync();
        var writer = await Tenants.IssueKeyAsync(db.Database, admin.OrgId, KeyRole.Write, db.Host.Clock, CancellationToken.None);
        using var response = await db.Host.Client(writer.KeyId, writer.Secret)
            .PostAsync("/v1/programs", new StringContent("{\"name\":\"P\"}", Encoding.UTF8, "application/json"));
        await Tenant.ShouldFailAsync(response, 403, "forbidden");
    }

    [Fact]
    public async Task an_organization_cannot_read_or_post_to_another_organizations_customers()
    {
        var a = await db.Host.NewTenantAsync();
        var b = await db.Host.NewTenantAsync();
        var shopA = await a.NewShopAsync();
        await b.NewShopAsync(storeCode: shopA.StoreCode);
        var customerOfA = await a.NewCustomerAsync(email: "only-a@example.com", accountNumber: "A-CARD-1");
        await a.AwardAsync(customerOfA, "100");
        var before = await LedgerAudit.CountsAsync(db.Database, a.OrgId);

        using (var read = await b.Http.GetAsync($"/v1/customers/{customerOfA}")) await Tenant.ShouldFailAsync(read, 404, "customer_not_found");
        using (var balances = await b.Http.GetAsync($"/v1/customers/{customerOfA}/balances")) await Tenant.ShouldFailAsync(balances, 404, "customer_not_found");
        using (var lookup = await b.Http.GetAsync("/v1/customers/lookup?identifierName=email&identifierValue=only-a@example.com&source=ALL"))
            await Tenant.ShouldFailAsync(lookup, 404, "customer_not_found");
        using (var redeem = await b.PostAsync("/v1/redemptions", new { customerId = customerOfA, points = "10" })) await Tenant.ShouldFailAsync(redeem, 404, "customer_not_found");
        using (var bill = await b.PostAsync("/v1/transactions", new { customerId = customerOfA, billNumber = "X1", amount = 10, storeCode = shopA.StoreCode }))
            await Tenant.ShouldFailAsync(bill, 404, "customer_not_found");
        using (var card = await b.PostAsync($"/v1/customers/{customerOfA}/accounts", new { accountNumber = "B-CARD" })) await Tenant.ShouldFailAsync(card, 404, "customer_not_found");

        (await LedgerAudit.CountsAsync(db.Database, a.OrgId)).ShouldBe(before);
        (await a.BalanceAsync(customerOfA, shopA.ProgramId)).ShouldBe(100_000);
    }

    [Fact]
    public async Task an_organization_cannot_see_another_organizations_programs_stores_or_groups()
    {
        var a = await db.Host.NewTenantAsync();
        var b = await db.Host.NewTenantAsync();
        var shopA = await a.NewShopAsync();
        var primary = await a.NewCustomerAsync();
        var group = await a.PostOkAsync("/v1/groups", new { name = "G", primaryCustomerId = primary });

        (await b.GetOkAsync("/v1/programs")).GetArrayLength().ShouldBe(0);
        (await b.GetOkAsync("/v1/stores")).GetArrayLength().ShouldBe(0);
        using (var program = await b.Http.GetAsync($"/v1/programs/{shopA.ProgramId}")) await Tenant.ShouldFailAsync(program, 404, "program_not_found");
        using (var g = await b.Http.GetAsync($"/v1/groups/{group.GetProperty("groupId").GetInt64()}")) await Tenant.ShouldFailAsync(g, 404, "group_not_found");
    }

    [Fact]
    public async Task two_server_instances_on_one_database_never_overspend_a_balance()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var customer = await t.NewCustomerAsync();
        await t.AwardAsync(customer, "100");
        await using var second = await TestServerHost.StartAsync(db.OpenSecondInstance());
        var secondClient = second.Client(t.Key.KeyId, t.Key.Secret);
        var firstClient = t.Http;

        var attempts = Enumerable.Range(0, 50).Select(async i =>
        {
            var client = i % 2 == 0 ? firstClient : secondClient;
            using var response = await client.PostAsync("/v1/redemptions",
                new StringContent($"{{\"customerId\":{customer},\"points\":\"10\"}}", Encoding.UTF8, "application/json"));
            return response.StatusCode;
        });
        var statuses = await Task.WhenAll(attempts);

        statuses.Count(s => s == HttpStatusCode.Created).ShouldBe(10);
        (await t.BalanceAsync(customer, shop.ProgramId)).ShouldBe(0);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }
}

public sealed class AccessTestsOnSqlite(SqliteDatabase db) : AccessTests(db), IClassFixture<SqliteDatabase>;

public sealed class AccessTestsOnPostgres(PostgresDatabase db) : AccessTests(db), IClassFixture<PostgresDatabase>;
