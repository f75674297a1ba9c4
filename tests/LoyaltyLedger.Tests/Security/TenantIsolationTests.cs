using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using Dapper;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Security;

/// <summary>
/// On every endpoint that names a customer, group, account, program, bill, redemption, voucher or
/// key, another organization's key gets exactly the answer it would get for something that does not
/// exist at all: it cannot read, write, find or even confirm the existence of the other's data.
/// </summary>
public abstract class TenantIsolationTests(DatabaseFixture db)
{
    private sealed record Resources(long Customer, long Other, long GroupId, string Card, long ProgramId, string StoreCode, string BillNumber, long RedemptionId, long VoucherId, string KeyId);

    /// <summary>Every organization-scoped call, aimed at the given resources.</summary>
    private static IEnumerable<(string Method, string Path, object? Body)> Calls(Resources r, long ownCustomer, string ownCard, long ownProgram)
    {
        var c = r.Customer.ToString(CultureInfo.InvariantCulture);
        yield return ("GET", $"/v1/customers/{c}", null);
        yield return ("GET", $"/v1/customers/{c}/balances", null);
        yield return ("POST", $"/v1/customers/{c}/identifiers", new { source = "INSTORE", type = "email", value = Guid.NewGuid().ToString("N") + "@x.example" });
        yield return ("POST", $"/v1/customers/{c}/accounts", new { accountNumber = "ISO-" + Guid.NewGuid().ToString("N")[..10] });
        yield return ("GET", $"/v1/groups/{r.GroupId}", null);
        yield return ("GET", $"/v1/groups/{r.GroupId}/balances", null);
        yield return ("POST", $"/v1/groups/{r.GroupId}/members", new { customerId = ownCustomer });
        yield return ("GET", $"/v1/programs/{r.ProgramId}", null);
        yield return ("POST", $"/v1/programs/{r.ProgramId}/currencies", new { name = "Iso" + Guid.NewGuid().ToString("N")[..6] });
        yield return ("GET", $"/v1/programs/{r.ProgramId}/vouchers", null);
        yield return ("POST", $"/v1/programs/{r.ProgramId}/vouchers", new { name = "V", price = "1" });
        yield return ("POST", "/v1/transactions", new { customerId = r.Customer, billNumber = "ISO-" + Guid.NewGuid().ToString("N")[..8], amount = 10, storeCode = "own-store", programId = ownProgram });
        yield return ("POST", "/v1/redemptions", new { customerId = r.Customer, points = "1" });
        yield return ("POST", "/v1/allocations", new { allocations = new[] { new { customerId = r.Customer, points = "1" } } });
        yield return ("POST", "/v1/events", new { customerId = r.Customer, eventName = "E", awards = new[] { new { points = "1" } } });
        yield return ("POST", "/v1/transfers", new { from = new { customerId = ownCustomer }, to = new { customerId = r.Customer }, points = "1" });
        yield return ("POST", "/v1/transfers", new { from = new { customerId = r.Customer }, to = new { customerId = ownCustomer }, points = "1" });
        yield return ("POST", "/v1/transfers", new { from = new { customerId = ownCustomer }, to = new { groupId = r.GroupId }, points = "1" });
        yield return ("POST", "/v1/returns", new { storeCode = r.StoreCode, billNumber = r.BillNumber, amount = 1 });
        yield return ("POST", "/v1/redemptions/reversals", new { redemptionEventId = r.RedemptionId });
        yield return ("POST", "/v1/lifecycle/triggers/release", new { storeCode = r.StoreCode, billNumber = r.BillNumber });
        yield return ("GET", $"/v1/lifecycle/expiry-schedule?customerId={c}", null);
        yield return ("GET", $"/v1/lifecycle/held-schedule?groupId={r.GroupId}", null);
        yield return ("GET", $"/v1/lifecycle/balances?customerId={c}&asOf=2030-01-01T00:00:00Z", null);
        yield return ("GET", $"/v1/exports/ledger.csv?customerId={c}", null);
        yield return ("GET", $"/v1/exports/ledger.ndjson?groupId={r.GroupId}", null);
        yield return ("GET", $"/v1/exports/ledger.csv?programId={r.ProgramId}", null);
        yield return ("POST", $"/v1/keys/{r.KeyId}/rotate", new { });
        yield return ("DELETE", $"/v1/keys/{r.KeyId}", null);
        yield return ("GET", $"/api/v1.0/LoyaltyVault/Account/{r.Card}", null);
        yield return ("GET", $"/api/v1.0/LoyaltyVault/Account/{r.Card}/LoyaltyPrograms/{ownProgram}/History", null);
        yield return ("POST", $"/api/v1.0/LoyaltyVault/Account/{r.Card}/Transaction",
            new { loyaltyPrograms = new[] { new { loyaltyPointDefinitionId = ownProgram, loads = new[] { new { value = 1 } } } }, context = new { receiptNr = Guid.NewGuid().ToString("N") } });
        yield return ("POST", $"/api/v1.0/LoyaltyVault/Account/{ownCard}/Transfer", new { toAccountNumber = r.Card, loyaltyPointDefinitionId = ownProgram, value = 1 });
        yield return ("GET", $"/v2/pointsLedger/getCustomerLedgerInfo?identifierName=id&identifierValue={c}&source=INSTORE", null);
        yield return ("GET", $"/v2/pointsLedger/getCustomerLedgerInfo?type=USERGROUP2&identifierName=groupId&identifierValue={r.GroupId}&source=INSTORE", null);
    }

    private static async Task<(int Status, string Code)> SendAsync(Tenant t, (string Method, string Path, object? Body) call)
    {
        using var request = new HttpRequestMessage(new HttpMethod(call.Method), call.Path);
        if (call.Body is not null) request.Content = JsonContent.Create(call.Body, options: Tenant.Json);
        using var response = await t.Http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        if (response.IsSuccessStatusCode) return ((int)response.StatusCode, "success: " + text[..Math.Min(120, text.Length)]);
        var body = JsonDocument.Parse(text).RootElement;
        var code = body.TryGetProperty("code", out var c) ? c.GetString()! : body.GetProperty("errors")[0].GetProperty("code").GetInt32().ToString(CultureInfo.InvariantCulture);
        return ((int)response.StatusCode, code);
    }

    [Fact]
    public async Task another_organizations_resources_answer_exactly_as_nonexistent_ones_on_every_endpoint_and_nothing_is_written()
    {
        var a = await db.Host.NewTenantAsync();
        var b = await db.Host.NewTenantAsync();
        // Ids are per organization, so B has a customer 1 and a program 1 of its own: A's resources
        // get ids that B's do not use, or the test would only prove that B sees its own data.
        var shopB = await b.NewShopAsync(storeCode: "own-store", tillCode: "b-till");
        var program = await a.PostOkAsync("/v1/programs", new { programId = 770_001, name = "A program", earnRate = "1" });
        var shopA = new Shop(program.GetProperty("programId").GetInt64(), "shared-store", "a-till");
        await a.PostOkAsync("/v1/stores", new { code = shopA.StoreCode });
        await a.PostOkAsync("/v1/tills", new { code = shopA.TillCode, storeCode = shopA.StoreCode });
        var cardA = "A-" + Guid.NewGuid().ToString("N")[..10];
        var customerA = (await a.PostOkAsync("/v1/customers", new { customerId = 770_101, accountNumbers = new[] { cardA } })).GetProperty("customerId").GetInt64();
        var otherA = (await a.PostOkAsync("/v1/customers", new { customerId = 770_102 })).GetProperty("customerId").GetInt64();
        await a.BillAsync(shopA, customerA, "A-BILL-1", 100);
        var redemption = await a.PostOkAsync("/v1/redemptions", new { customerId = customerA, points = "1" });
        var group = await a.PostOkAsync("/v1/groups", new { groupId = 770_201, name = "A group", primaryCustomerId = otherA });
        var voucher = await a.PostOkAsync($"/v1/programs/{shopA.ProgramId}/vouchers", new { name = "A voucher", price = "5" });
        var ownCard = "B-" + Guid.NewGuid().ToString("N")[..10];
        var ownCustomer = await b.NewCustomerAsync(accountNumber: ownCard);
        await b.AwardAsync(ownCustomer, "10");
        await b.PostOkAsync("/v1/stores", new { code = shopA.StoreCode });

        var real = new Resources(customerA, otherA, group.GetProperty("groupId").GetInt64(), cardA, shopA.ProgramId, shopA.StoreCode, "A-BILL-1",
            redemption.GetProperty("eventId").GetInt64(), voucher.GetProperty("voucherId").GetInt64(), a.Key.KeyId);
        var missing = new Resources(880_000_001, 880_000_002, 880_000_003, "NO-SUCH-CARD", 880_000_004, shopA.StoreCode, "NO-SUCH-BILL",
            880_000_005, 880_000_006, "lk_nosuchkey");
        var beforeA = await CountsAsync(a.OrgId);
        var beforeB = await CountsAsync(b.OrgId);

        var realCalls = Calls(real, ownCustomer, ownCard, shopB.ProgramId).ToList();
        var missingCalls = Calls(missing, ownCustomer, ownCard, shopB.ProgramId).ToList();
        var differences = new List<string>();
        for (var i = 0; i < realCalls.Count; i++)
        {
            var onForeign = await SendAsync(b, realCalls[i]);
            var onMissing = await SendAsync(b, missingCalls[i]);
            if (onForeign != onMissing || onForeign.Status is < 400 or >= 500)
                differences.Add($"{realCalls[i].Method} {realCalls[i].Path}: foreign {onForeign}, nonexistent {onMissing}");
        }

        differences.ShouldBeEmpty(string.Join('\n', differences));
        (await CountsAsync(a.OrgId)).ShouldBe(beforeA);
        (await CountsAsync(b.OrgId)).ShouldBe(beforeB);
        (await a.Http.GetAsync("/v1/programs")).IsSuccessStatusCode.ShouldBeTrue("A's key must still work");
    }

    private Task<long[]> CountsAsync(long orgId) => db.Database.ReadAsync(async c =>
    {
        var counts = new List<long>();
        foreach (var table in new[] { "events", "ledger_entries", "lots", "bills", "customers", "customer_identifiers", "loyalty_accounts", "currencies", "group_members", "api_keys", "idempotency_keys" })
            counts.Add(await c.ExecuteScalarAsync<long>($"SELECT COUNT(*) FROM {table} WHERE org_id = @orgId", new { orgId }));
        counts.Add(await c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM api_keys WHERE org_id = @orgId AND revoked_at IS NOT NULL", new { orgId }));
        return counts.ToArray();
    }, CancellationToken.None);
}

public sealed class TenantIsolationTestsOnSqlite(SqliteDatabase db) : TenantIsolationTests(db), IClassFixture<SqliteDatabase>;

public sealed class TenantIsolationTestsOnPostgres(PostgresDatabase db) : TenantIsolationTests(db), IClassFixture<PostgresDatabase>;
