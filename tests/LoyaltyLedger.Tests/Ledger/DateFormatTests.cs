using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Ledger;

/// <summary>
/// One date rule in, one date format out. In: ISO 8601 with seconds and a UTC offset (a plain date
/// only where the README says so), anything else a 400 <c>invalid_request</c> that names the
/// parameter and the format, with nothing written. Out: <c>2024-05-04T07:16:34.000Z</c>.
/// </summary>
public abstract partial class DateFormatTests(DatabaseFixture db)
{
    private sealed record Arranged(Tenant Tenant, Shop Shop, long Customer, string Card, long VoucherId);

    private async Task<Arranged> ArrangeAsync()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var card = "CARD-" + Guid.NewGuid().ToString("N")[..8];
        var customer = await t.NewCustomerAsync(accountNumber: card);
        await t.AwardAsync(customer, "100");
        var voucher = await t.PostOkAsync($"/v1/programs/{shop.ProgramId}/vouchers", new { name = "Coffee", price = "10" });
        return new Arranged(t, shop, customer, card, voucher.GetProperty("voucherId").GetInt64());
    }

    /// <summary>Every date parameter: its name as the error names it, whether it takes plain dates, and how to send a value.</summary>
    private static IEnumerable<(string Name, bool TakesDates, Func<string, Task<HttpResponseMessage>> Send)> DateParameters(Arranged a)
    {
        var t = a.Tenant;
        var basket = $"/api/v1.0/LoyaltyVault/Account/{a.Card}/Transaction";
        var history = $"/api/v1.0/LoyaltyVault/Account/{a.Card}/LoyaltyPrograms/{a.Shop.ProgramId}/History";
        object Load(string field, string value) => new
        {
            loyaltyPrograms = new[] { new { loyaltyPointDefinitionId = a.Shop.ProgramId, loads = new[] { new Dictionary<string, object> { ["value"] = 5, [field] = value } } } },
        };
        object Purchase(string field, string value) => new
        {
            loyaltyPrograms = new[] { new { loyaltyPointDefinitionId = a.Shop.ProgramId, voucherPurchases = new[] { new Dictionary<string, object> { ["voucherId"] = a.VoucherId, [field] = value } } } },
        };

        yield return ("asOf", false, v => t.Http.GetAsync($"/v1/lifecycle/balances?customerId={a.Customer}&asOf={Uri.EscapeDataString(v)}"));
        yield return ("asOf", false, v => t.PostAsync("/v1/lifecycle/expire", new { asOf = v }));
        yield return ("billDate", false, v => t.PostAsync("/v1/transactions", new { customerId = a.Customer, billNumber = "D-1", amount = 10, storeCode = a.Shop.StoreCode, billDate = v }));
        yield return ("loyaltyPrograms[0].loads[0].balanceExpiresAt", false, v => t.PostAsync(basket, Load("balanceExpiresAt", v)));
        yield return ("loyaltyPrograms[0].loads[0].accountExpiresAt", false, v => t.PostAsync(basket, Load("accountExpiresAt", v)));
        yield return ("loyaltyPrograms[0].voucherPurchases[0].validFrom", false, v => t.PostAsync(basket, Purchase("validFrom", v)));
        yield return ("loyaltyPrograms[0].voucherPurchases[0].expiresAt", false, v => t.PostAsync(basket, Purchase("expiresAt", v)));
        yield return ("from", true, v => t.Http.GetAsync($"{history}?from={Uri.EscapeDataString(v)}"));
        yield return ("to", true, v => t.Http.GetAsync($"{history}?to={Uri.EscapeDataString(v)}"));
    }

    [Theory]
    [InlineData("1.5")]
    [InlineData("abc")]
    [InlineData("2024-05-04T07:16:34")]
    [InlineData("2024-05-04 07:16:34Z")]
    [InlineData("2024-05-04T07:16Z")]
    [InlineData("20240504T071634Z")]
    [InlineData("2024-13-04T07:16:34Z")]
    [InlineData("2024-02-30T00:00:00Z")]
    [InlineData("2024-05-04t07:16:34z")]
    [InlineData("2024-05-04T07:16:34+0200")]
    [InlineData("04/05/2024")]
    [InlineData("2024-05-04T07:16:34.12345678Z")]
    [InlineData("٢٠٢٤-05-04T07:16:34Z")]
    [InlineData("2024-05-04")]
    public async Task a_date_not_in_iso_8601_with_an_offset_is_refused_with_invalid_request_naming_the_parameter_and_the_format(string value)
    {
        var a = await ArrangeAsync();
        var before = await LedgerAudit.SnapshotAsync(db.Database, a.Tenant.OrgId);
        foreach (var (name, takesDates, send) in DateParameters(a))
        {
            if (takesDates && value == "2024-05-04") continue;
            using var response = await send(value);
            var body = await Tenant.ShouldFailAsync(response, 400, "invalid_request");
            var detail = body.GetProperty("detail").GetString()!;
            detail.ShouldStartWith(name + " must be", Case.Sensitive, $"{name}={value}: {detail}");
            detail.ShouldContain("ISO 8601");
            detail.ShouldContain("2024-05-04T07:16:34.000Z");
        }
        (await LedgerAudit.SnapshotAsync(db.Database, a.Tenant.OrgId)).ShouldBe(before);
    }

    [Fact]
    public async Task a_date_of_the_wrong_json_type_is_refused_with_invalid_json_naming_the_property()
    {
        var a = await ArrangeAsync();
        using var response = await a.Tenant.PostAsync("/v1/lifecycle/expire", new { asOf = 1.5 });
        var body = await Tenant.ShouldFailAsync(response, 400, "invalid_json");
        body.GetProperty("detail").GetString()!.ShouldStartWith("asOf must be a string holding an ISO 8601 date-time");
    }

    [Theory]
    [InlineData("2024-05-04T07:16:34.000Z", "2024-05-04T07:16:34.000Z")]
    [InlineData("2024-05-04T07:16:34Z", "2024-05-04T07:16:34.000Z")]
    [InlineData("2024-05-04T09:16:34+02:00", "2024-05-04T07:16:34.000Z")]
    [InlineData("2024-05-04T03:16:34.5-04:00", "2024-05-04T07:16:34.500Z")]
    [InlineData("2024-05-04T07:16:34.1234567Z", "2024-05-04T07:16:34.123Z")]
    public async Task an_iso_8601_date_time_with_an_offset_is_taken_as_that_instant(string value, string instant)
    {
        var a = await ArrangeAsync();

        var run = await a.Tenant.PostOkAsync("/v1/lifecycle/expire", new { asOf = value });
        (await a.Tenant.Http.GetAsync($"/v1/lifecycle/balances?customerId={a.Customer}&asOf={Uri.EscapeDataString(value)}")).StatusCode.ShouldBe(HttpStatusCode.OK);

        run.GetProperty("asOf").GetString().ShouldBe(instant);
    }

    [Fact]
    public async Task the_vault_history_takes_a_plain_date_as_midnight_utc()
    {
        var a = await ArrangeAsync();
        var history = $"/api/v1.0/LoyaltyVault/Account/{a.Card}/LoyaltyPrograms/{a.Shop.ProgramId}/History";
        var today = db.Host.Clock.GetUtcNow().UtcDateTime.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);

        (await a.Tenant.GetOkAsync($"{history}?from={today}")).GetArrayLength().ShouldBe(1);
        (await a.Tenant.GetOkAsync($"{history}?to={today}")).GetArrayLength().ShouldBe(0);
    }

    [GeneratedRegex(@"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$")]
    private static partial Regex IsoUtcMillis();

    /// <summary>Properties that hold an instant: *At, *Date, asOf.</summary>
    private static bool IsInstantName(string name) =>
        name.EndsWith("At", StringComparison.Ordinal) || name.EndsWith("Date", StringComparison.Ordinal) || name == "asOf";

    private static void CollectInstants(JsonElement element, string path, List<string> wrong, ref int seen)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var p in element.EnumerateObject())
                {
                    if (IsInstantName(p.Name) && p.Value.ValueKind != JsonValueKind.Null)
                    {
                        seen++;
                        if (p.Value.ValueKind != JsonValueKind.String || !IsoUtcMillis().IsMatch(p.Value.GetString()!))
                            wrong.Add($"{path}.{p.Name} = {p.Value.GetRawText()}");
                    }
                    CollectInstants(p.Value, $"{path}.{p.Name}", wrong, ref seen);
                }
                break;
            case JsonValueKind.Array:
                var i = 0;
                foreach (var item in element.EnumerateArray()) CollectInstants(item, $"{path}[{i++}]", wrong, ref seen);
                break;
        }
    }

    [Fact]
    public async Task a_group_members_joinedAt_is_an_iso_8601_utc_string_not_epoch_milliseconds()
    {
        var a = await ArrangeAsync();
        var group = await a.Tenant.PostOkAsync("/v1/groups", new { name = "Family", primaryCustomerId = a.Customer });

        var read = await a.Tenant.GetOkAsync($"/v1/groups/{group.GetProperty("groupId").GetInt64()}");

        var now = db.Host.Clock.GetUtcNow().UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", System.Globalization.CultureInfo.InvariantCulture);
        foreach (var answer in new[] { group, read })
            answer.GetProperty("members")[0].GetProperty("joinedAt").GetString().ShouldBe(now);
    }

    [Fact]
    public async Task every_instant_in_a_native_answer_is_iso_8601_utc_with_milliseconds()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(earnRate: "1", expiry: new { kind = "DATE_EARNED", days = 30 });
        var customer = await t.PostOkAsync("/v1/customers", new { firstName = "Ada", email = $"{Guid.NewGuid():N}@example.com" });
        var c = customer.GetProperty("customerId").GetInt64();
        var answers = new List<(string Call, JsonElement Body)>
        {
            ("POST /v1/customers", customer),
            ("POST /v1/transactions", await t.PostOkAsync("/v1/transactions", new { customerId = c, billNumber = "B-1", amount = 100, storeCode = shop.StoreCode, billDate = "2025-03-01T10:00:00Z" })),
            ("POST /v1/transactions (held)", await t.PostOkAsync("/v1/transactions", new { customerId = c, billNumber = "B-2", amount = 50, storeCode = shop.StoreCode, holdForTrigger = true })),
            ("POST /v1/groups", await t.PostOkAsync("/v1/groups", new { name = "Family", primaryCustomerId = c })),
            ("POST /v1/keys", await t.PostOkAsync("/v1/keys", new { role = "Read" })),
        };
        var issued = answers[^1].Body.GetProperty("keyId").GetString();
        (await t.Http.DeleteAsync($"/v1/keys/{issued}")).StatusCode.ShouldBe(HttpStatusCode.NoContent);
        db.Host.Clock.Advance(TimeSpan.FromDays(31));
        answers.Add(("POST /v1/lifecycle/expire", await t.PostOkAsync("/v1/lifecycle/expire", new { })));
        foreach (var path in new[]
        {
            $"/v1/customers/{c}", "/v1/keys", $"/v1/lifecycle/expiry-schedule?customerId={c}", $"/v1/lifecycle/held-schedule?customerId={c}",
            $"/v1/groups/{answers[3].Body.GetProperty("groupId").GetInt64()}", "/v1/programs",
        })
        {
            answers.Add(("GET " + path, await t.GetOkAsync(path)));
        }

        var wrong = new List<string>();
        var seen = 0;
        foreach (var (call, body) in answers) CollectInstants(body, call, wrong, ref seen);

        wrong.ShouldBeEmpty(string.Join('\n', wrong));
        // registeredAt, expiresAt of the bill's lines, joinedAt, createdAt and revokedAt, the run's asOf, convertsAt ...
        seen.ShouldBeGreaterThan(8);
    }
}

public sealed class DateFormatTestsOnSqlite(SqliteDatabase db) : DateFormatTests(db), IClassFixture<SqliteDatabase>;

public sealed class DateFormatTestsOnPostgres(PostgresDatabase db) : DateFormatTests(db), IClassFixture<PostgresDatabase>;
