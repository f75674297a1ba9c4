using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Ledger;

/// <summary>Every refused input gets its documented code and leaves the ledger untouched.</summary>
public abstract partial class BadInputTests(DatabaseFixture db)
{
    private async Task<(Tenant Tenant, Shop Shop, long Customer)> ArrangeAsync()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var customer = await t.NewCustomerAsync();
        await t.AwardAsync(customer, "100");
        return (t, shop, customer);
    }

    /// <summary>Posts, asserts the status and code, and that no row was written for the organization.</summary>
    private async Task RefusedAsync(Tenant t, string path, object body, int status, string code)
    {
        var before = await LedgerAudit.CountsAsync(db.Database, t.OrgId);
        using var response = await t.PostAsync(path, body);
        await Tenant.ShouldFailAsync(response, status, code);
        (await LedgerAudit.CountsAsync(db.Database, t.OrgId)).ShouldBe(before);
    }

    private async Task RefusedRawAsync(Tenant t, string path, string body, int status, string code)
    {
        var before = await LedgerAudit.CountsAsync(db.Database, t.OrgId);
        using var response = await t.PostRawAsync(path, body);
        await Tenant.ShouldFailAsync(response, status, code);
        (await LedgerAudit.CountsAsync(db.Database, t.OrgId)).ShouldBe(before);
    }

    [Fact]
    public async Task an_unknown_customer_is_refused_with_customer_not_found()
    {
        var (t, shop, _) = await ArrangeAsync();
        var before = await LedgerAudit.SnapshotAsync(db.Database, t.OrgId);
        await RefusedAsync(t, "/v1/transactions", new { customerId = 999_999, billNumber = "X", amount = 10, storeCode = shop.StoreCode }, 404, "customer_not_found");
        await RefusedAsync(t, "/v1/redemptions", new { customerId = 999_999, points = "1" }, 404, "customer_not_found");
        // Not even the wallet the redemption's lock makes before the customer's check answers.
        (await LedgerAudit.SnapshotAsync(db.Database, t.OrgId)).ShouldBe(before);
    }

    [Fact]
    public async Task an_unknown_program_is_refused_with_program_not_found()
    {
        var (t, shop, customer) = await ArrangeAsync();
        await RefusedAsync(t, "/v1/transactions", new { customerId = customer, billNumber = "X", amount = 10, storeCode = shop.StoreCode, programId = 4242 }, 404, "program_not_found");
    }

    [Fact]
    public async Task an_unknown_currency_is_refused_with_currency_not_found()
    {
        var (t, _, customer) = await ArrangeAsync();
        await RefusedAsync(t, "/v1/events", new { customerId = customer, eventName = "E", awards = new[] { new { points = "1", currency = "Doubloons" } } }, 404, "currency_not_found");
    }

    [Fact]
    public async Task an_unknown_store_or_till_is_refused()
    {
        var (t, shop, customer) = await ArrangeAsync();
        await RefusedAsync(t, "/v1/transactions", new { customerId = customer, billNumber = "X", amount = 10, storeCode = "nowhere" }, 404, "store_not_found");
        await RefusedAsync(t, "/v1/transactions", new { customerId = customer, billNumber = "X", amount = 10, storeCode = shop.StoreCode, tillCode = "no-till" }, 404, "till_not_found");
    }

    [Fact]
    public async Task malformed_json_is_refused_with_invalid_json()
    {
        var (t, _, _) = await ArrangeAsync();
        await RefusedRawAsync(t, "/v1/redemptions", "{\"customerId\": 1, \"points\": ", 400, "invalid_json");
        await RefusedRawAsync(t, "/v1/redemptions", "[1,2,3]", 400, "invalid_json");
        await RefusedRawAsync(t, "/v1/transactions", "{\"customerId\": \"abc\"}", 400, "invalid_json");
    }

    [Fact]
    public async Task a_missing_required_field_is_refused_with_invalid_json()
    {
        var (t, _, customer) = await ArrangeAsync();
        await RefusedRawAsync(t, "/v1/transactions", $"{{\"customerId\": {customer}, \"amount\": 10}}", 400, "invalid_json");
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-5")]
    [InlineData("1.0001")]
    [InlineData("99999999999999999999")]
    public async Task a_redemption_of_zero_negative_overprecise_or_huge_points_is_refused_with_invalid_points(string points)
    {
        var (t, _, customer) = await ArrangeAsync();
        await RefusedAsync(t, "/v1/redemptions", new { customerId = customer, points }, 400, "invalid_points");
    }

    [Fact]
    public async Task points_given_as_a_json_number_with_four_decimals_are_refused()
    {
        var (t, _, customer) = await ArrangeAsync();
        await RefusedRawAsync(t, "/v1/events", $"{{\"customerId\": {customer}, \"eventName\": \"E\", \"awards\": [{{\"points\": 1.2345}}]}}", 400, "invalid_points");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-10)]
    [InlineData(10.0001)]
    public async Task a_bill_with_a_zero_negative_or_overprecise_amount_is_refused_with_invalid_amount(decimal amount)
    {
        var (t, shop, customer) = await ArrangeAsync();
        await RefusedAsync(t, "/v1/transactions", new { customerId = customer, billNumber = "A-1", amount, storeCode = shop.StoreCode }, 400, "invalid_amount");
    }

    [Fact]
    public async Task a_redemption_above_the_balance_is_refused_with_insufficient_balance()
    {
        var (t, shop, customer) = await ArrangeAsync();
        await RefusedAsync(t, "/v1/redemptions", new { customerId = customer, points = "100.001", programId = shop.ProgramId }, 422, "insufficient_balance");
        (await t.BalanceAsync(customer, shop.ProgramId)).ShouldBe(100_000);
    }

    [Fact]
    public async Task a_duplicate_bill_number_at_the_same_store_is_refused_with_duplicate_bill()
    {
        var (t, shop, customer) = await ArrangeAsync();
        await t.BillAsync(shop, customer, "DUP-1", 10);
        await RefusedAsync(t, "/v1/transactions", new { customerId = customer, billNumber = "DUP-1", amount = 99, storeCode = shop.StoreCode }, 409, "duplicate_bill");
    }

    [Fact]
    public async Task a_bulk_allocation_with_one_bad_line_writes_nothing_at_all()
    {
        var (t, shop, customer) = await ArrangeAsync();
        await RefusedAsync(t, "/v1/allocations", new
        {
            programId = shop.ProgramId,
            allocations = new object[] { new { customerId = customer, points = "10" }, new { customerId = 123_456_789, points = "10" } },
        }, 404, "customer_not_found");
    }

    [Fact]
    public async Task a_transfer_beyond_the_balance_writes_neither_side()
    {
        var (t, shop, customer) = await ArrangeAsync();
        var other = await t.NewCustomerAsync();
        await RefusedAsync(t, "/v1/transfers", new { from = new { customerId = customer }, to = new { customerId = other }, points = "150", programId = shop.ProgramId }, 422, "insufficient_balance");
    }

    [Fact]
    public async Task an_unknown_route_gets_a_problem_body_not_an_empty_404()
    {
        var (t, _, _) = await ArrangeAsync();
        using var response = await t.Http.GetAsync("/v1/nothing-here");
        await Tenant.ShouldFailAsync(response, 404, "not_found");
    }

    /// <summary>Asserts the documented problem body: its media type, status and code.</summary>
    private static async Task<string> ProblemDetailAsync(HttpResponseMessage response, int status, string code)
    {
        response.Content.Headers.ContentType?.MediaType.ShouldBe("application/problem+json");
        var body = await Tenant.ShouldFailAsync(response, status, code);
        return body.GetProperty("detail").GetString()!;
    }

    [Fact]
    public async Task a_405_names_the_methods_the_route_allows_in_its_detail_and_allow_header()
    {
        var (t, _, _) = await ArrangeAsync();
        using var response = await t.Http.PutAsync("/v1/programs", JsonContent("{}"));

        var detail = await ProblemDetailAsync(response, 405, "method_not_allowed");

        response.Content.Headers.Allow.Order().ShouldBe(["GET", "POST"]);
        detail.ShouldContain("PUT is not allowed");
        detail.ShouldContain("GET, POST");
    }

    [Fact]
    public async Task a_415_says_to_send_content_type_application_json()
    {
        var (t, _, customer) = await ArrangeAsync();
        var before = await LedgerAudit.SnapshotAsync(db.Database, t.OrgId);
        using var content = new StringContent($"{{\"customerId\": {customer}, \"points\": \"1\"}}", Encoding.UTF8, "text/plain");
        using var response = await t.Http.PostAsync("/v1/redemptions", content);

        var detail = await ProblemDetailAsync(response, 415, "unsupported_media_type");

        detail.ShouldContain("Content-Type: application/json");
        detail.ShouldContain("text/plain");
        (await LedgerAudit.SnapshotAsync(db.Database, t.OrgId)).ShouldBe(before);
    }

    [Fact]
    public async Task a_nul_in_a_query_parameter_is_refused_with_a_problem_body_and_nothing_written()
    {
        var (t, _, customer) = await ArrangeAsync();
        var before = await LedgerAudit.SnapshotAsync(db.Database, t.OrgId);

        // (A NUL in the path never reaches the application: Kestrel refuses it, see KestrelRejectionTests.)
        using (var lookup = await t.Http.GetAsync("/v1/customers/lookup?identifierName=email&identifierValue=a%00b&source=INSTORE"))
            (await ProblemDetailAsync(lookup, 400, "invalid_request")).ShouldContain("identifierValue");
        using (var balances = await t.Http.GetAsync($"/v1/lifecycle/balances?customerId={customer}&as%00Of=x"))
            await ProblemDetailAsync(balances, 400, "invalid_request");
        // The points-ledger read answers in its spec's body: a malformed value, 11004.
        using (var ledger = await t.Http.GetAsync("/v2/pointsLedger/getCustomerLedgerInfo?identifierName=email&identifierValue=a%00b&source=INSTORE"))
        {
            ((int)ledger.StatusCode).ShouldBe(400);
            JsonDocument.Parse(await ledger.Content.ReadAsStringAsync()).RootElement.GetProperty("errors")[0].GetProperty("code").GetInt32().ShouldBe(11004);
        }
        (await LedgerAudit.SnapshotAsync(db.Database, t.OrgId)).ShouldBe(before);
    }

    [Fact]
    public async Task every_error_status_the_framework_sets_gets_the_problem_body()
    {
        var (t, _, _) = await ArrangeAsync();
        var before = await LedgerAudit.SnapshotAsync(db.Database, t.OrgId);
        var cases = new (Func<Task<HttpResponseMessage>> Send, int Status, string Code)[]
        {
            (() => t.Http.GetAsync("/v1/programs/not-a-number"), 404, "not_found"),
            (() => t.Http.DeleteAsync("/v1/programs"), 405, "method_not_allowed"),
            (() => t.Http.SendAsync(new HttpRequestMessage(HttpMethod.Options, "/v1/customers/1/balances")), 405, "method_not_allowed"),
            (() => t.Http.PostAsync("/v1/events", new ByteArrayContent("{}"u8.ToArray())), 415, "unsupported_media_type"),
            (() => t.Http.PostAsync("/v1/events", JsonContent("")), 400, "invalid_request"),
            (() => t.Http.PostAsync("/v1/events", JsonContent("{\"name\":\"" + new string('x', 1_100_000) + "\"}")), 413, "payload_too_large"),
            (() => db.Host.Client().GetAsync("/v1/programs"), 401, "unauthorized"),
            (() => db.Host.Client(t.Key.KeyId, "wrong").PostAsync("/v1/events", JsonContent("{}")), 401, "unauthorized"),
        };
        foreach (var (send, status, code) in cases)
        {
            using var response = await send();
            var detail = await ProblemDetailAsync(response, status, code);
            detail.ShouldNotBeNullOrWhiteSpace();
        }
        (await LedgerAudit.SnapshotAsync(db.Database, t.OrgId)).ShouldBe(before);
    }

    private static StringContent JsonContent(string json) => new(json, Encoding.UTF8, "application/json");

    // ---- no .NET type names in error details ----

    [GeneratedRegex(@"System\.|Microsoft\.|LoyaltyLedger\.|Nullable|`[0-9]|\b(U?Int(16|32|64)|DateTimeOffset|DateTime|TimeSpan|Decimal|Double|Single|Boolean|String|Object|IReadOnlyList|IReadOnlyDictionary|IEnumerable|IList|List|Dictionary|JsonElement|JsonException|Exception)\b")]
    private static partial Regex DotNetWords();

    /// <summary>The names of the service's own types with two capitals or more (NewBill, VaultLoad, KeyRole, ...).</summary>
    private static readonly HashSet<string> OwnTypeNames =
    [
        .. new[] { typeof(Points).Assembly, typeof(LoyaltyLedger.Server.Hosting.LedgerServer).Assembly }
            .SelectMany(a => a.GetTypes())
            .Select(type => type.Name)
            .Where(name => OwnTypeName().IsMatch(name)),
    ];

    [GeneratedRegex("^[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*$")]
    private static partial Regex OwnTypeName();

    [GeneratedRegex("[A-Za-z0-9]+")]
    private static partial Regex Words();

    private static string? NamesDotNet(string detail) =>
        DotNetWords().Match(detail) is { Success: true } m ? m.Value
        : Words().Matches(detail).Select(w => w.Value).FirstOrDefault(OwnTypeNames.Contains);

    private static readonly JsonNode?[] WrongValues =
    [
        new JsonObject { ["x"] = 1 }, new JsonArray(1, 2), "text", 1.5, -1, true, null, "2024-13-45", JsonNode.Parse("99999999999999999999999"), "a\u0000b",
    ];

    [Fact]
    public async Task no_error_detail_names_a_dotnet_type_whatever_bad_body_or_parameter_reaches_any_endpoint()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var card = "CARD-" + Guid.NewGuid().ToString("N")[..8];
        var customer = await t.NewCustomerAsync(accountNumber: card);
        var group = (await t.PostOkAsync("/v1/groups", new { name = "G", primaryCustomerId = await t.NewCustomerAsync() })).GetProperty("groupId").GetInt64();
        var vault = $"/api/v1.0/LoyaltyVault/Account/{card}";
        var writes = new (string Method, string Path, string Body)[]
        {
            ("POST", "/v1/programs", """{"name":"P","earnRate":"1","allowNegativeBalance":false,"expiry":{"kind":"DATE_EARNED","days":3},"isDefault":false,"currencies":[{"name":"C"}],"promisedDays":2}"""),
            ("POST", $"/v1/programs/{shop.ProgramId}/currencies", """{"name":"C2","earnRate":"1","expiry":{"kind":"NEVER"}}"""),
            ("POST", "/v1/stores", """{"code":"s","name":"n","concept":"c"}"""),
            ("POST", "/v1/tills", """{"code":"t","storeCode":"store-1","name":"n"}"""),
            ("POST", "/v1/customers", """{"customerId":5,"firstName":"A","email":"a@b.c","identifiers":[{"source":"INSTORE","type":"mobile","value":"1"}],"accountNumbers":["X"]}"""),
            ("POST", $"/v1/customers/{customer}/identifiers", """{"source":"INSTORE","type":"mobile","value":"1","accountId":"a"}"""),
            ("POST", $"/v1/customers/{customer}/accounts", """{"accountNumber":"Y"}"""),
            ("POST", "/v1/groups", $$"""{"name":"G","primaryCustomerId":{{customer}},"maxMembers":3,"poolsPoints":true,"members":[{"customerId":1,"role":"SECONDARY"}]}"""),
            ("POST", $"/v1/groups/{group}/members", """{"customerId":1,"role":"SECONDARY","mayRedeem":true,"mayTransfer":false}"""),
            ("POST", "/v1/transactions", $$"""{"customerId":{{customer}},"billNumber":"B","amount":10,"storeCode":"store-1","tillCode":"till-1","billDate":"2025-01-01T00:00:00Z","awards":[{"points":"1","currency":"Stars"}],"holdForTrigger":false}"""),
            ("POST", "/v1/redemptions", $$"""{"customerId":{{customer}},"points":"1","programId":{{shop.ProgramId}},"externalReference":"e"}"""),
            ("POST", "/v1/allocations", $$"""{"allocations":[{"customerId":{{customer}},"points":"1"}],"programId":{{shop.ProgramId}},"reason":"r"}"""),
            ("POST", "/v1/events", $$"""{"customerId":{{customer}},"details":{"a":"b"},"eventName":"E","awards":[{"points":"1"}]}"""),
            ("POST", "/v1/transfers", $$"""{"from":{"customerId":{{customer}}},"to":{"groupId":{{group}}},"points":"1"}"""),
            ("POST", "/v1/returns", """{"storeCode":"store-1","billNumber":"B","amount":1}"""),
            ("POST", "/v1/redemptions/reversals", """{"redemptionEventId":1,"points":"1"}"""),
            ("POST", "/v1/lifecycle/triggers/release", """{"storeCode":"store-1","billNumber":"B"}"""),
            ("POST", "/v1/lifecycle/triggers/cancel", """{"storeCode":"store-1","billNumber":"B"}"""),
            ("POST", "/v1/lifecycle/expire", """{"asOf":"2025-01-01T00:00:00Z"}"""),
            ("POST", "/v1/keys", """{"role":"Read","name":"n"}"""),
            ("POST", "/v1/keys/nope/rotate", "{}"),
            ("POST", $"/v1/programs/{shop.ProgramId}/vouchers", """{"name":"V","price":"10","validDays":3,"uses":1}"""),
            ("POST", $"{vault}/Transaction", $$"""{"context":{"receiptNr":"R"},"loyaltyPrograms":[{"loyaltyPointDefinitionId":{{shop.ProgramId}},"loads":[{"value":1,"balanceExpiresAt":"2026-01-01T00:00:00Z"}],"voucherPurchases":[{"voucherId":1,"validFrom":"2025-01-01T00:00:00Z"}],"voucherRedemptions":[{"serialId":"S","void":false}]}]}"""),
            ("POST", $"{vault}/Transfer", $$"""{"toAccountNumber":"X","loyaltyPointDefinitionId":{{shop.ProgramId}},"value":1}"""),
        };
        var requests = new List<(string Method, string Path, string? Body, string ContentType)>();
        foreach (var (method, path, body) in writes)
        {
            foreach (var whole in new[] { "", " ", "{", "[]", "null", "42", "\"x\"", "{\"a\":}", "{}" })
                requests.Add((method, path, whole, "application/json"));
            requests.Add((method, path, body, "text/plain"));
            // Each property of the body, and of its first nested object, given a value of every wrong JSON type.
            foreach (var (pointer, _) in Properties(JsonNode.Parse(body)!, ""))
            {
                foreach (var wrong in WrongValues)
                {
                    var mutated = JsonNode.Parse(body)!;
                    Set(mutated, pointer, wrong?.DeepClone());
                    requests.Add((method, path, mutated.ToJsonString(), "application/json"));
                }
            }
        }
        foreach (var bad in new[] { "abc", "1.5", "-", "9999999999999999999999", "%00", "true", "2024-05-04" })
        {
            var v = Uri.EscapeDataString(bad);
            foreach (var path in new[]
            {
                $"/v1/customers/{v}", $"/v1/programs/{v}", $"/v1/groups/{v}", $"/v1/groups/{v}/balances", $"/v1/customers/{v}/balances",
                $"/v1/customers/lookup?identifierName={v}&identifierValue={v}&source={v}&accountId={v}",
                $"/v1/lifecycle/expiry-schedule?customerId={v}", $"/v1/lifecycle/expiry-schedule?groupId={group}&programId={v}&earliestOnly={v}",
                $"/v1/lifecycle/held-schedule?customerId={v}&groupId={v}", $"/v1/lifecycle/balances?customerId={customer}&asOf={v}",
                $"/v1/lifecycle/balances?groupId={v}&asOf=2025-01-01T00:00:00Z", $"/v1/programs/{v}/vouchers",
                $"{vault}?includeInactive={v}", $"/api/v1.0/LoyaltyVault/Account/{v}",
                $"{vault}/LoyaltyPrograms/{shop.ProgramId}/History?from={v}&to={v}", $"{vault}/LoyaltyPrograms/{shop.ProgramId}/History?offset={v}&limit={v}",
                $"{vault}/LoyaltyPrograms/{v}/History",
            })
            {
                requests.Add(("GET", path, null, ""));
            }
            requests.Add(("DELETE", $"/v1/keys/{v}", null, ""));
            requests.Add(("PATCH", $"/v1/customers/{v}", "{}", "application/json"));
        }

        var failures = new List<string>();
        var refused = 0;
        foreach (var (method, path, body, contentType) in requests)
        {
            using var request = new HttpRequestMessage(new HttpMethod(method), path);
            if (body is not null)
            {
                request.Content = new ByteArrayContent(Encoding.UTF8.GetBytes(body));
                request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
            }
            using var response = await t.Http.SendAsync(request);
            var status = (int)response.StatusCode;
            if (status < 400) continue;
            refused++;
            var text = await response.Content.ReadAsStringAsync();
            var description = $"{method} {path} {body?[..Math.Min(body.Length, 120)]} -> {status} {text}";
            if (status >= 500) { failures.Add("server error: " + description); continue; }
            JsonElement problem;
            try { problem = JsonDocument.Parse(text).RootElement; }
            catch (JsonException) { failures.Add("not JSON: " + description); continue; }
            if (!problem.TryGetProperty("code", out _) || !problem.TryGetProperty("detail", out var detail)) { failures.Add("no code or detail: " + description); continue; }
            if (NamesDotNet(detail.GetString()!) is { } name) failures.Add($"names '{name}': {description}");
        }

        failures.ShouldBeEmpty(string.Join('\n', failures.Take(30)));
        refused.ShouldBeGreaterThan(1000);
    }

    /// <summary>Every property of an object and of the objects nested in it, as a path of names and indexes.</summary>
    private static IEnumerable<(string Pointer, JsonNode? Value)> Properties(JsonNode node, string prefix)
    {
        if (node is JsonObject obj)
        {
            foreach (var (name, value) in obj.ToList())
            {
                yield return ($"{prefix}/{name}", value);
                if (value is not null)
                    foreach (var inner in Properties(value, $"{prefix}/{name}")) yield return inner;
            }
        }
        else if (node is JsonArray array && array.Count > 0 && array[0] is { } first)
        {
            foreach (var inner in Properties(first, $"{prefix}/0")) yield return inner;
        }
    }

    private static void Set(JsonNode root, string pointer, JsonNode? value)
    {
        var steps = pointer.Trim('/').Split('/');
        var node = root;
        foreach (var step in steps[..^1])
            node = node is JsonArray array ? array[int.Parse(step, System.Globalization.CultureInfo.InvariantCulture)]! : node[step]!;
        if (node is JsonArray target) target[int.Parse(steps[^1], System.Globalization.CultureInfo.InvariantCulture)] = value;
        else node[steps[^1]] = value;
    }
}

public sealed class BadInputTestsOnSqlite(SqliteDatabase db) : BadInputTests(db), IClassFixture<SqliteDatabase>;

public sealed class BadInputTestsOnPostgres(PostgresDatabase db) : BadInputTests(db), IClassFixture<PostgresDatabase>;
