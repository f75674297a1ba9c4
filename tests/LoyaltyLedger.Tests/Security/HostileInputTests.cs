using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Dapper;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Security;

/// <summary>
/// Thousands of malformed requests (seeded, so a failure replays) against every endpoint: bad
/// query values, wrong types, huge and negative numbers, injection strings, oversize bodies, bad
/// encodings. Every request carries at least one defect that must refuse it, so: no 500, every
/// answer a documented error, and not one row written. The count is LEDGER_HOSTILE_REQUESTS
/// (default 10,000 per database).
/// </summary>
public abstract partial class HostileInputTests(DatabaseFixture db)
{
    private static readonly string[] HostileStrings =
    [
        "'; DROP TABLE events; --", "\" OR 1=1 --", "<script>alert(1)</script>", "../../etc/passwd", "%00", "\u0000", "\u202e\u0007",
        "𝕷𝖔𝖞𝖆𝖑𝖙𝖞", "{{7*7}}", "${jndi:ldap://x}", "NaN", "Infinity", "-0", "1e309", "", " ", new string('x', 5000),
        "9223372036854775808", "-9223372036854775809", "0x1F", "１２３",
    ];

    private static readonly JsonNode?[] HostileValues =
    [
        null, true, false, 0, -1, long.MaxValue, long.MinValue, 1e300, -1e-300, "abc", "", new JsonArray(), new JsonObject(),
        JsonNode.Parse(new string('[', 64) + "1" + new string(']', 64)), JsonNode.Parse("{\"$where\":\"1\"}"), "99999999999999999999999", "-5", "1.00001",
    ];

    /// <summary>An endpoint: how to build a valid-looking request, and defects that must refuse it.</summary>
    private sealed record Endpoint(string Method, Func<Random, string> Path, Func<Random, JsonObject>? Body, Func<Random, JsonObject, JsonObject>[] Defects,
        bool BodyOptional = false);

    private sealed record Fixture(Tenant Tenant, Shop Shop, long Customer, long Other, long GroupId, string Card, string OtherCard, long VoucherId, long WebhookId);

    private static string Pick(Random r, string[] values) => values[r.Next(values.Length)];

    /// <summary>
    /// A hostile string as one URL segment or query value. NUL is left out: no HTTP server lets it
    /// reach the application (Kestrel answers 400 itself, the test server's client throws).
    /// </summary>
    private static string Segment(Random r) => Uri.EscapeDataString(Pick(r, HostileStrings).Replace("\0", "", StringComparison.Ordinal));

    private static JsonObject With(JsonObject body, string field, JsonNode? value)
    {
        body[field] = value?.DeepClone();
        return body;
    }

    private static List<Endpoint> Endpoints(Fixture f)
    {
        var unknownCustomer = 987_654_321L;
        JsonObject Bill(Random r) => new() { ["customerId"] = f.Customer, ["billNumber"] = "H-" + r.Next(), ["amount"] = 10, ["storeCode"] = f.Shop.StoreCode, ["tillCode"] = f.Shop.TillCode };
        JsonObject Redemption(Random r) => new() { ["customerId"] = f.Customer, ["points"] = "1", ["programId"] = f.Shop.ProgramId };
        JsonObject Event(Random r) => new() { ["customerId"] = f.Customer, ["eventName"] = "E", ["awards"] = new JsonArray(new JsonObject { ["points"] = "1" }) };
        JsonObject Transfer(Random r) => new() { ["from"] = new JsonObject { ["customerId"] = f.Customer }, ["to"] = new JsonObject { ["customerId"] = f.Other }, ["points"] = "1" };
        JsonObject Basket(Random r) => new()
        {
            ["loyaltyPrograms"] = new JsonArray(new JsonObject
            {
                ["loyaltyPointDefinitionId"] = f.Shop.ProgramId,
                ["loads"] = new JsonArray(new JsonObject { ["value"] = 5 }),
            }),
            ["context"] = new JsonObject { ["receiptNr"] = "R-" + r.Next(), ["shopId"] = "s", ["posId"] = "p" },
        };
        Func<Random, JsonObject, JsonObject> Field(string name, params JsonNode?[] values) => (r, b) => With(b, name, values[r.Next(values.Length)]);
        // A value of a JSON type the field can never take (an object or an array).
        Func<Random, JsonObject, JsonObject> Typed(string name) => (r, b) => With(b, name, r.Next(2) == 0 ? new JsonObject { ["x"] = 1 } : new JsonArray(1, 2));
        var badPoints = new JsonNode?[] { "0", "-5", "1.0001", "abc", "1e5", "99999999999999999999", 0, -1, 1.00001, null };

        return
        [
            new("POST", _ => "/v1/transactions", Bill, [Field("amount", 0, -10, 10.0001, "x", null), Field("customerId", unknownCustomer, -1, "x"), Field("storeCode", "no-such-store"), Field("tillCode", "no-such-till"), Typed("billNumber"), Field("source", "MOON"),
                Field("billDate", "1.5", "2024-05-04T07:16:34", "2024-05-04", 12, new JsonObject())]),
            new("POST", _ => "/v1/redemptions", Redemption, [Field("points", badPoints), Field("customerId", unknownCustomer), Field("points", "100000"), Field("currency", "Doubloons"), Field("programId", 4242)]),
            new("POST", _ => "/v1/events", Event, [Field("awards", new JsonArray(), null, "x"), Field("customerId", unknownCustomer, "x"), Field("eventName", "", new string('e', 200))]),
            new("POST", _ => "/v1/allocations", r => new JsonObject { ["allocations"] = new JsonArray(new JsonObject { ["customerId"] = f.Customer, ["points"] = "1" }) },
                [Field("allocations", new JsonArray(), null, new JsonArray(new JsonObject { ["customerId"] = unknownCustomer, ["points"] = "1" }), new JsonArray(new JsonObject { ["customerId"] = f.Customer, ["points"] = "-1" }))]),
            new("POST", _ => "/v1/transfers", Transfer, [Field("points", badPoints), Field("to", new JsonObject { ["customerId"] = f.Customer }, new JsonObject(), new JsonObject { ["customerId"] = f.Other, ["groupId"] = f.GroupId })]),
            new("POST", _ => "/v1/customers", r => new JsonObject { ["firstName"] = "A" }, [Field("source", "NOWHERE"), Field("entityType", "ROBOT"), Field("customerId", -1, 0, "x"), Typed("firstName"), Field("email", new string('e', 300))]),
            new("POST", _ => $"/v1/customers/{f.Customer}/identifiers", r => new JsonObject { ["source"] = "INSTORE", ["type"] = "email", ["value"] = "x@y" }, [Field("type", "passport", ""), Field("source", "ALL", "X")]),
            new("POST", r => $"/v1/customers/{Pick(r, [f.Customer.ToString(CultureInfo.InvariantCulture), unknownCustomer.ToString(CultureInfo.InvariantCulture)])}/accounts", r => new JsonObject { ["accountNumber"] = "a b" }, [Field("accountNumber", "with space", "", "a/b", new string('9', 100))]),
            new("POST", _ => "/v1/programs", r => new JsonObject { ["name"] = "P" }, [Field("earnRate", "-1", "x", 1.00001), Field("name", "", null), Field("expiry", new JsonObject { ["kind"] = "BOGUS" }, new JsonObject { ["kind"] = "DATE_EARNED", ["days"] = -3 })]),
            new("POST", _ => $"/v1/programs/{f.Shop.ProgramId}/currencies", r => new JsonObject { ["name"] = "Stars" }, [Field("name", "Stars", "a,b", ""), Field("earnRate", "-2")]),
            new("POST", _ => "/v1/stores", r => new JsonObject { ["code"] = "x" }, [Field("code", "", new string('c', 101), f.Shop.StoreCode)]),
            new("POST", _ => "/v1/tills", r => new JsonObject { ["code"] = "t", ["storeCode"] = f.Shop.StoreCode }, [Field("storeCode", "nope", ""), Field("code", f.Shop.TillCode, "")]),
            new("POST", _ => "/v1/groups", r => new JsonObject { ["name"] = "G", ["primaryCustomerId"] = f.Customer }, [Field("primaryCustomerId", unknownCustomer, "x"), Field("maxMembers", 0, 5000), Field("name", "")]),
            new("POST", r => $"/v1/groups/{f.GroupId}/members", r => new JsonObject { ["customerId"] = f.Customer }, [Field("customerId", unknownCustomer, f.Other)]),
            new("POST", _ => "/v1/keys", r => new JsonObject { ["role"] = "Read" }, [Field("role", "Superuser", 7, "")]),
            new("POST", r => $"/v1/keys/{Segment(r)}x/rotate", r => new JsonObject(), [(r, b) => b]),
            new("DELETE", r => $"/v1/keys/nope-{r.Next()}", null, [(r, b) => b]),
            new("POST", _ => $"/v1/programs/{f.Shop.ProgramId}/vouchers", r => new JsonObject { ["name"] = "V", ["price"] = "10" }, [Field("price", badPoints), Field("name", "")]),
            new("POST", r => $"/api/v1.0/LoyaltyVault/Account/{Pick(r, [f.Card, "no-such-card"])}/Transaction", Basket,
                [(r, b) => { b["loyaltyPrograms"]![0]!["loyaltyPointDefinitionId"] = 4242; return b; },
                 (r, b) => { b["loyaltyPrograms"]![0]!["redemptions"] = new JsonArray(new JsonObject { ["value"] = 1_000_000 }); return b; },
                 (r, b) => { b["loyaltyPrograms"]![0]!["voucherRedemptions"] = new JsonArray(new JsonObject { ["serialId"] = Pick(r, HostileStrings) }); return b; },
                 (r, b) => { b["loyaltyPrograms"]![0]!["loads"]![0]!["value"] = badPoints[r.Next(badPoints.Length)]?.DeepClone(); return b; },
                 (r, b) => { b["loyaltyPrograms"]![0]!["loads"]![0]![Pick(r, ["balanceExpiresAt", "accountExpiresAt"])] = Pick(r, ["1.5", "2025-13-01T00:00:00Z", "2025-01-01", "tomorrow"]); return b; }]),
            new("POST", r => $"/api/v1.0/LoyaltyVault/Account/{f.Card}/Transfer", r => new JsonObject { ["toAccountNumber"] = f.OtherCard, ["loyaltyPointDefinitionId"] = f.Shop.ProgramId, ["value"] = 1 },
                [Field("toAccountNumber", "no-such-card", f.Card), Field("value", badPoints), Field("loyaltyPointDefinitionId", 4242)]),
            new("POST", _ => "/v1/returns", r => new JsonObject { ["storeCode"] = f.Shop.StoreCode, ["billNumber"] = "no-such-bill", ["amount"] = 1 },
                [Field("amount", 0, -1, 1.0001, "x"), Field("storeCode", "nowhere"), Field("billNumber", "missing-" + "bill", "")]),
            new("POST", _ => "/v1/redemptions/reversals", r => new JsonObject { ["redemptionEventId"] = 999_999_999 },
                [Field("redemptionEventId", 999_999_999, -1, "x"), Field("points", badPoints), (r, b) => { b.Remove("redemptionEventId"); b["externalReference"] = Pick(r, HostileStrings); return b; }]),
            new("POST", r => Pick(r, ["/v1/lifecycle/triggers/release", "/v1/lifecycle/triggers/cancel"]), r => new JsonObject { ["storeCode"] = f.Shop.StoreCode, ["billNumber"] = "no-such-bill" },
                [Field("billNumber", "nope", ""), Field("storeCode", "nowhere")]),
            new("POST", _ => "/v1/lifecycle/expire", r => new JsonObject(), [Field("asOf", "junk", new JsonObject(), 12, "9999-99-99")], BodyOptional: true),
            // Webhooks: the base bodies are refused too (an ftp URL, an unknown type), so no defect can make a valid one.
            new("POST", _ => "/v1/webhooks", r => new JsonObject { ["url"] = "ftp://example.com/hook", ["events"] = new JsonArray("nope") },
                [Field("url", "", "javascript:alert(1)", "http://", "https://user:pw@example.com/h", "/relative", new string('u', 3000), new JsonObject()),
                 Field("events", new JsonArray(), null, "x", new JsonArray("*", null), new JsonArray("points.expried"), new JsonArray("BALANCE.CHANGED"), new JsonArray(1, 2)),
                 Field("description", new string('d', 600), 12)]),
            new("PATCH", _ => $"/v1/webhooks/{f.WebhookId}", r => new JsonObject { ["url"] = "gopher://example.com/", ["events"] = new JsonArray("nope") },
                [Field("url", "", "mailto:a@b.example"), Field("events", new JsonArray(), new JsonArray("nope")), Field("enabled", "yes", 1)]),
            new("POST", r => Pick(r, ["/v1/webhooks/999999999/test", "/v1/webhooks/999999999/rotate-secret", $"/v1/webhooks/{f.WebhookId}/deliveries/999999999/redeliver"]),
                r => new JsonObject(), [(r, b) => b], BodyOptional: true),
            new("GET", r => Pick(r,
            [
                $"/v1/customers/{Segment(r)}",
                $"/v1/customers/lookup?identifierName={Segment(r)}&identifierValue={Segment(r)}&source={Segment(r)}",
                $"/v1/customers/{unknownCustomer}/balances", $"/v1/groups/{Segment(r)}", $"/v1/programs/{Segment(r)}",
                $"/api/v1.0/LoyaltyVault/Account/{Segment(r)}?includeInactive={Segment(r)}",
                $"/api/v1.0/LoyaltyVault/Account/{f.Card}/LoyaltyPrograms/{f.Shop.ProgramId}/History?from={Segment(r)}&limit={Segment(r)}",
                $"/api/v1.0/LoyaltyVault/Account/{f.Card}/LoyaltyPrograms/{Segment(r)}/History",
                $"/v1/lifecycle/expiry-schedule?customerId={Segment(r)}&earliestOnly={Segment(r)}",
                $"/v1/lifecycle/held-schedule?groupId={Segment(r)}",
                $"/v2/pointsLedger/getCustomerLedgerInfo?identifierName={Segment(r)}&identifierValue={Segment(r)}&source={Segment(r)}",
                $"/v2/pointsLedger/getCustomerLedgerInfo?identifierName=id&identifierValue={f.Customer}&source=INSTORE&limit={Segment(r)}&offset={Segment(r)}&startDate={Segment(r)}&sortOrder={Segment(r)}",
                $"/v2/pointsLedger/getCustomerLedgerInfo?type=USERGROUP2&identifierName={Segment(r)}&identifierValue={Segment(r)}&source=INSTORE&role={Segment(r)}",
                $"/v2/pointsLedger/getCustomerLedgerInfo?identifierName=id&identifierValue={f.Customer}&source=INSTORE&ledgerEntryType={Segment(r)}&pointCategoryType={Segment(r)}&alternateCurrencyNames={Segment(r)}&includeAlternateCurrencies={Segment(r)}",
                $"/v1/lifecycle/balances?customerId={f.Customer}&asOf={Segment(r)}",
                $"/v1/exports/ledger.{Pick(r, ["csv", "ndjson"])}?from={Segment(r)}&to={Segment(r)}&customerId={f.Customer}",
                $"/v1/exports/ledger.{Pick(r, ["csv", "ndjson"])}?customerId={Segment(r)}&groupId={Segment(r)}&programId={Segment(r)}&eventName={Segment(r)}",
                $"/v1/webhooks/{Segment(r)}",
                $"/v1/webhooks/{f.WebhookId}/deliveries?limit={Segment(r)}&before={Segment(r)}&status={Segment(r)}",
            ]), null, [(r, b) => b]),
        ];
    }

    [Fact]
    public async Task thousands_of_malformed_requests_get_documented_errors_no_500_and_write_nothing()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var card = "CARD-" + Guid.NewGuid().ToString("N")[..8];
        var otherCard = "CARD-" + Guid.NewGuid().ToString("N")[..8];
        var customer = await t.NewCustomerAsync(accountNumber: card);
        var other = await t.NewCustomerAsync(accountNumber: otherCard);
        await t.AwardAsync(customer, "50");
        var group = await t.PostOkAsync("/v1/groups", new { name = "G", primaryCustomerId = other });
        var voucher = await t.PostOkAsync($"/v1/programs/{shop.ProgramId}/vouchers", new { name = "Coffee", price = "10" });
        var webhook = await t.PostOkAsync("/v1/webhooks", new { url = "http://127.0.0.1:9/hostile", events = new[] { "*" } });
        var fixture = new Fixture(t, shop, customer, other, group.GetProperty("groupId").GetInt64(), card, otherCard, voucher.GetProperty("voucherId").GetInt64(),
            webhook.GetProperty("id").GetInt64());
        var endpoints = Endpoints(fixture);
        var documented = DocumentedCodes();
        var before = await RowCountsAsync(t.OrgId);

        var count = int.TryParse(Environment.GetEnvironmentVariable("LEDGER_HOSTILE_REQUESTS"), out var n) ? n : 10_000;
        var random = new Random(20261121);
        var failures = new List<string>();
        var statuses = new Dictionary<int, int>();
        for (var i = 0; i < count && failures.Count < 20; i++)
        {
            var endpoint = endpoints[random.Next(endpoints.Count)];
            using var request = Build(endpoint, random, out var description);
            using var response = await t.Http.SendAsync(request);
            var status = (int)response.StatusCode;
            statuses[status] = statuses.GetValueOrDefault(status) + 1;
            var text = await response.Content.ReadAsStringAsync();
            var uri = request.RequestUri!;
            var problem = Check(status, text, endpoint.Method, uri.IsAbsoluteUri ? uri.AbsolutePath : uri.OriginalString, documented);
            if (problem is not null) failures.Add($"#{i} {description} -> {status} {text[..Math.Min(300, text.Length)]}: {problem}");
        }

        failures.ShouldBeEmpty(string.Join('\n', failures));
        (await RowCountsAsync(t.OrgId)).ShouldBe(before);
        statuses.Keys.ShouldNotContain(500);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    private static HttpRequestMessage Build(Endpoint endpoint, Random r, out string description)
    {
        var path = endpoint.Path(r);
        var request = new HttpRequestMessage(new HttpMethod(endpoint.Method), path);
        description = $"{endpoint.Method} {path}";
        if (endpoint.Body is null) return request;

        byte[] bytes;
        // An endpoint whose body is optional accepts an empty or null one: only defective bodies there.
        var shape = endpoint.BodyOptional ? 50 : r.Next(100);
        if (shape < 8)
        {
            // Not JSON at all: garbage, truncated, invalid UTF-8, or empty.
            bytes = r.Next(4) switch
            {
                0 => Encoding.UTF8.GetBytes("{\"customerId\": 1, \"points\": "),
                1 => [0xC3, 0x28, 0xA0, 0xA1, 0xFF, 0xFE],
                2 => [],
                _ => Encoding.UTF8.GetBytes(Pick(r, HostileStrings)),
            };
        }
        else if (shape < 12)
        {
            bytes = Encoding.UTF8.GetBytes(Pick(r, ["[]", "null", "42", "\"text\"", "[{}]"]));
        }
        else if (shape < 13)
        {
            // Over the 1 MiB limit.
            bytes = Encoding.UTF8.GetBytes("{\"name\":\"" + new string('x', 1_100_000) + "\"}");
        }
        else
        {
            var body = endpoint.Body(r);
            body = endpoint.Defects[r.Next(endpoint.Defects.Length)](r, body);
            // Noise on top of the defect, in fields other than the defective one, so it cannot mend it.
            for (var k = r.Next(3); k > 0; k--)
                body[Pick(r, ["notes", "reason", "comment", "extra", "unknownField"])] = r.Next(2) == 0 ? Pick(r, HostileStrings) : HostileValues[r.Next(HostileValues.Length)]?.DeepClone();
            bytes = Encoding.UTF8.GetBytes(body.ToJsonString());
        }
        var content = new ByteArrayContent(bytes);
        content.Headers.TryAddWithoutValidation("Content-Type", r.Next(20) == 0 ? "text/plain" : "application/json");
        request.Content = content;
        if (r.Next(4) == 0) request.Headers.TryAddWithoutValidation("Idempotency-Key", r.Next(10) == 0 ? new string('k', 300) : "hostile-" + r.Next());
        description += " " + Encoding.UTF8.GetString(bytes[..Math.Min(200, bytes.Length)]);
        return request;
    }

    /// <summary>Null when the answer is acceptable for a hostile request.</summary>
    private static string? Check(int status, string text, string method, string path, HashSet<string> documented)
    {
        if (status >= 500) return "server error";
        if (method != "GET" && status < 400) return "a defective write was accepted";
        if (status < 400) return null;
        JsonElement body;
        try { body = JsonDocument.Parse(text).RootElement; }
        catch (JsonException) { return "error body is not JSON"; }
        // Authentication and rate limiting run before any endpoint, so 401 and 429 carry the native body everywhere.
        if (path.StartsWith("/v2/", StringComparison.Ordinal) && status is not (401 or 429))
        {
            // The points-ledger API answers in its spec's body: {"errors":[{"code":N,"message":...}],"warnings":[]}.
            return body.TryGetProperty("errors", out var errors) && errors.GetArrayLength() > 0 && errors[0].GetProperty("code").ValueKind == JsonValueKind.Number
                && documented.Contains(errors[0].GetProperty("code").GetInt32().ToString(CultureInfo.InvariantCulture))
                ? null : "not a documented points-ledger error body";
        }
        if (!body.TryGetProperty("code", out var code)) return "error body has no code";
        return documented.Contains(code.GetString()!) ? null : $"code '{code.GetString()}' is not documented in README.md";
    }

    /// <summary>
    /// The error codes the README documents: backticked snake_case words (native codes) and the
    /// numbers of the points-ledger code table.
    /// </summary>
    private static HashSet<string> DocumentedCodes()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "README.md"))) dir = dir.Parent;
        dir.ShouldNotBeNull("README.md not found above the test binaries");
        var readme = File.ReadAllText(Path.Combine(dir.FullName, "README.md"));
        return [.. CodePattern().Matches(readme).Select(m => m.Groups[1].Success ? m.Groups[1].Value : m.Groups[2].Value)];
    }

    [GeneratedRegex(@"`([a-z]+(?:_[a-z]+)+|[a-z]+)`|\b([0-9]{4,5})\b")]
    private static partial Regex CodePattern();

    private Task<long[]> RowCountsAsync(long orgId) => db.Database.ReadAsync(async c =>
    {
        var tables = new[] { "events", "ledger_entries", "lots", "lot_movements", "bills", "customers", "customer_identifiers", "loyalty_accounts", "programs", "currencies", "stores", "tills", "user_groups", "group_members", "api_keys", "idempotency_keys", "wallets", "write_audit", "webhook_endpoints", "webhook_deliveries" };
        var counts = new List<long>();
        foreach (var table in tables)
            counts.Add(await c.ExecuteScalarAsync<long>($"SELECT COUNT(*) FROM {table} WHERE org_id = @orgId", new { orgId }));
        return counts.ToArray();
    }, CancellationToken.None);
}

public sealed class HostileInputTestsOnSqlite(SqliteDatabase db) : HostileInputTests(db), IClassFixture<SqliteDatabase>;

public sealed class HostileInputTestsOnPostgres(PostgresDatabase db) : HostileInputTests(db), IClassFixture<PostgresDatabase>;
