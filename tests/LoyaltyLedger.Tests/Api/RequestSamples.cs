using System.Text.Json.Nodes;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Api;

/// <summary>A request to one operation: its path with the parameters filled in, its query and its body.</summary>
public sealed record SampleRequest(string Path, Dictionary<string, string> Query, JsonNode? Body);

/// <summary>
/// A valid request for every operation of the document, on the demo organization (its customers,
/// programs, stores, tills and accounts), with whatever each needs made first through the API
/// (a funded customer to redeem from, a bill to return, a key to revoke). Every call makes its own,
/// so a sample can be sent, mutated and sent again.
/// </summary>
public sealed class RequestSamples(Tenant demo)
{
    private const long Program = 626;
    private const string Store = "supermarketdemo";
    private const string Till = "till.marketsuper";
    private const long Naresh = 64035151;
    private const long Priya = 98662653;
    private const long Group = 381335652;
    private const string PriyaAccount = "6001000098662653";
    private const string NareshAccount = "6001000064035151";

    private long _unique = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() % 1_000_000_000 * 1000;

    private string U() => (++_unique).ToString(System.Globalization.CultureInfo.InvariantCulture);

    public IReadOnlyCollection<string> OperationIds => Samples.Keys;

    public Task<SampleRequest> ForAsync(string operationId) =>
        Samples.TryGetValue(operationId, out var make) ? make(this)
            : throw new Xunit.Sdk.XunitException($"No sample request for operation {operationId}: add one to RequestSamples.");

    private static SampleRequest Get(string path, params (string Name, string Value)[] query) =>
        new(path, query.ToDictionary(q => q.Name, q => q.Value), null);

    private static SampleRequest Post(string path, JsonNode body) => new(path, [], body);

    private async Task<(long CustomerId, string Account)> FundedCustomerAsync()
    {
        var account = "77" + U().PadLeft(14, '0');
        var customer = await demo.PostOkAsync("/v1/customers", new
        {
            firstName = "Sample", lastName = "Customer", email = $"sample{U()}@example.com", accountNumbers = new[] { account },
        });
        var id = customer.GetProperty("customerId").GetInt64();
        await demo.PostOkAsync("/v1/allocations", new { programId = Program, reason = "sample", allocations = new[] { new { customerId = id, points = "1000" } } });
        return (id, account);
    }

    private async Task<string> BillAsync(bool holdForTrigger = false)
    {
        var number = "S-" + U();
        await demo.PostOkAsync("/v1/transactions", new
        {
            customerId = Priya, billNumber = number, amount = 100, storeCode = Store, tillCode = Till, programId = Program, holdForTrigger,
        });
        return number;
    }

    private async Task<string> KeyAsync()
    {
        var key = await demo.PostOkAsync("/v1/keys", new { role = "Read", name = "sample" });
        return key.GetProperty("keyId").GetString()!;
    }

    /// <summary>A webhook endpoint; its URL is a closed port on 127.0.0.1, and the test servers do not deliver anyway.</summary>
    private async Task<long> WebhookAsync()
    {
        var webhook = await demo.PostOkAsync("/v1/webhooks", new { url = "http://127.0.0.1:9/hooks/" + U(), events = new[] { "*" } });
        return webhook.GetProperty("id").GetInt64();
    }

    /// <summary>A tier policy: Silver, Gold at 100 tier points (1.5x, 10 points bonus), Platinum at 300 (2x).</summary>
    private static JsonObject TierPolicy() => new()
    {
        ["metric"] = new JsonObject { ["kind"] = "CURRENCY", ["currency"] = "Tier-points", ["window"] = "PERIOD" },
        ["period"] = new JsonObject { ["kind"] = "ROLLING", ["months"] = 12 },
        ["downgrade"] = "ONE_DOWN",
        ["tiers"] = new JsonArray(
            new JsonObject { ["name"] = "Silver", ["threshold"] = "0" },
            new JsonObject { ["name"] = "Gold", ["threshold"] = "100", ["renewalThreshold"] = "80", ["multiplier"] = "1.5", ["upgradeBonus"] = "10" },
            new JsonObject { ["name"] = "Platinum", ["threshold"] = "300", ["multiplier"] = "2" }),
    };

    /// <summary>A program of its own with a Tier-points currency and <see cref="TierPolicy"/>, so the demo's programs keep no tiers.</summary>
    private async Task<long> TieredProgramAsync()
    {
        var program = await demo.PostOkAsync("/v1/programs", new { name = "Tiered " + U(), earnRate = "0.1", currencies = new[] { new { name = "Tier-points", earnRate = "1" } } });
        var id = program.GetProperty("programId").GetInt64();
        await demo.PutOkAsync($"/v1/programs/{id}/tiers", TierPolicy());
        return id;
    }

    private static readonly Dictionary<string, Func<RequestSamples, Task<SampleRequest>>> Samples = new()
    {
        ["SetProgramTiers"] = async s =>
        {
            var program = await s.Demo.PostOkAsync("/v1/programs", new { name = "Tiers " + s.U(), currencies = new[] { new { name = "Tier-points" } } });
            return Post($"/v1/programs/{program.GetProperty("programId").GetInt64()}/tiers", TierPolicy());
        },
        ["GetProgramTiers"] = async s => Get($"/v1/programs/{await s.TieredProgramAsync()}/tiers"),
        ["GetCustomerTier"] = async s => Get($"/v1/customers/{Naresh}/tier", ("programId", (await s.TieredProgramAsync()).ToString())),
        ["GetGroupTier"] = async s => Get($"/v1/groups/{Group}/tier", ("programId", (await s.TieredProgramAsync()).ToString())),
        ["GetCustomerTierHistory"] = async s => Get($"/v1/customers/{Naresh}/tier-history", ("programId", (await s.TieredProgramAsync()).ToString())),
        ["GetGroupTierHistory"] = async s => Get($"/v1/groups/{Group}/tier-history", ("programId", (await s.TieredProgramAsync()).ToString())),
        ["OverrideCustomerTier"] = async s => Post($"/v1/customers/{Naresh}/tier/override", new JsonObject
        {
            ["programId"] = await s.TieredProgramAsync(), ["tier"] = "Gold", ["reason"] = "Complaint 4411: kept Gold", ["pinned"] = false,
        }),
        ["OverrideGroupTier"] = async s => Post($"/v1/groups/{Group}/tier/override", new JsonObject
        {
            ["programId"] = await s.TieredProgramAsync(), ["tier"] = "Platinum", ["reason"] = "Family of the month", ["pinned"] = true,
        }),
        ["EvaluateTiers"] = _ => Task.FromResult(Post("/v1/lifecycle/tiers/evaluate", new JsonObject())),
        ["GetCustomerLedgerInfo"] = _ => Task.FromResult(Get("/v2/pointsLedger/getCustomerLedgerInfo",
            ("identifierName", "id"), ("identifierValue", Naresh.ToString()), ("source", "INSTORE"), ("limit", "5"))),
        ["ListPrograms"] = _ => Task.FromResult(Get("/v1/programs")),
        ["GetProgram"] = _ => Task.FromResult(Get($"/v1/programs/{Program}")),
        ["CreateProgram"] = s => Task.FromResult(Post("/v1/programs", new JsonObject { ["name"] = "Sample " + s.U(), ["earnRate"] = "0.1" })),
        ["AddCurrency"] = s => Task.FromResult(Post($"/v1/programs/{Program}/currencies", new JsonObject { ["name"] = "Cur" + s.U(), ["earnRate"] = "1" })),
        ["ListStores"] = _ => Task.FromResult(Get("/v1/stores")),
        ["CreateStore"] = s => Task.FromResult(Post("/v1/stores", new JsonObject { ["code"] = "store-" + s.U(), ["name"] = "Sample store" })),
        ["ListTills"] = _ => Task.FromResult(Get("/v1/tills")),
        ["CreateTill"] = s => Task.FromResult(Post("/v1/tills", new JsonObject { ["code"] = "till-" + s.U(), ["storeCode"] = Store })),
        ["RegisterCustomer"] = s => Task.FromResult(Post("/v1/customers", new JsonObject
        {
            ["firstName"] = "Ada", ["lastName"] = "L", ["email"] = $"ada{s.U()}@example.com",
        })),
        ["GetCustomer"] = _ => Task.FromResult(Get($"/v1/customers/{Naresh}")),
        ["LookupCustomer"] = _ => Task.FromResult(Get("/v1/customers/lookup",
            ("identifierName", "id"), ("identifierValue", Naresh.ToString()), ("source", "INSTORE"))),
        ["AddCustomerIdentifier"] = async s =>
        {
            var (id, _) = await s.FundedCustomerAsync();
            return Post($"/v1/customers/{id}/identifiers", new JsonObject { ["source"] = "MARTJACK", ["type"] = "email", ["value"] = $"mj{s.U()}@example.com" });
        },
        ["AddLoyaltyAccount"] = async s =>
        {
            var (id, _) = await s.FundedCustomerAsync();
            return Post($"/v1/customers/{id}/accounts", new JsonObject { ["accountNumber"] = "78" + s.U().PadLeft(14, '0') });
        },
        ["GetCustomerBalances"] = _ => Task.FromResult(Get($"/v1/customers/{Naresh}/balances")),
        ["CreateGroup"] = async s =>
        {
            var (id, _) = await s.FundedCustomerAsync();
            return Post("/v1/groups", new JsonObject { ["name"] = "Family " + s.U(), ["primaryCustomerId"] = id });
        },
        ["GetGroup"] = _ => Task.FromResult(Get($"/v1/groups/{Group}")),
        ["AddGroupMember"] = async s =>
        {
            var (primary, _) = await s.FundedCustomerAsync();
            var group = await s.Demo.PostOkAsync("/v1/groups", new { name = "Family " + s.U(), primaryCustomerId = primary });
            var (member, _) = await s.FundedCustomerAsync();
            return Post($"/v1/groups/{group.GetProperty("groupId").GetInt64()}/members", new JsonObject { ["customerId"] = member, ["role"] = "SECONDARY" });
        },
        ["GetGroupBalances"] = _ => Task.FromResult(Get($"/v1/groups/{Group}/balances")),
        ["AddTransaction"] = s => Task.FromResult(Post("/v1/transactions", new JsonObject
        {
            ["customerId"] = Priya, ["billNumber"] = "S-" + s.U(), ["amount"] = 200.00m, ["storeCode"] = Store, ["tillCode"] = Till, ["programId"] = Program,
        })),
        ["Redeem"] = async s =>
        {
            var (id, _) = await s.FundedCustomerAsync();
            return Post("/v1/redemptions", new JsonObject { ["customerId"] = id, ["points"] = "150", ["programId"] = Program });
        },
        ["BulkAllocate"] = _ => Task.FromResult(Post("/v1/allocations", new JsonObject
        {
            ["programId"] = Program, ["reason"] = "Goodwill",
            ["allocations"] = new JsonArray(new JsonObject { ["customerId"] = Naresh, ["points"] = "50" }, new JsonObject { ["customerId"] = Priya, ["points"] = 50 }),
        })),
        ["PostEvent"] = _ => Task.FromResult(Post("/v1/events", new JsonObject
        {
            ["customerId"] = Naresh, ["eventName"] = "ThankYouSanta", ["programId"] = Program,
            ["awards"] = new JsonArray(new JsonObject { ["points"] = "100", ["currency"] = "Tier-points" }),
        })),
        ["Transfer"] = async s =>
        {
            var (id, _) = await s.FundedCustomerAsync();
            return Post("/v1/transfers", new JsonObject
            {
                ["from"] = new JsonObject { ["customerId"] = id }, ["to"] = new JsonObject { ["customerId"] = Priya }, ["points"] = "25", ["programId"] = Program,
            });
        },
        ["ReturnBill"] = async s => Post("/v1/returns", new JsonObject { ["storeCode"] = Store, ["billNumber"] = await s.BillAsync(), ["amount"] = 40 }),
        ["ReverseRedemption"] = async s =>
        {
            var (id, _) = await s.FundedCustomerAsync();
            var redemption = await s.Demo.PostOkAsync("/v1/redemptions", new { customerId = id, points = "100", programId = Program });
            return Post("/v1/redemptions/reversals", new JsonObject { ["redemptionEventId"] = redemption.GetProperty("eventId").GetInt64(), ["points"] = "30" });
        },
        ["ReleaseTriggeredPoints"] = async s => Post("/v1/lifecycle/triggers/release",
            new JsonObject { ["storeCode"] = Store, ["billNumber"] = await s.BillAsync(holdForTrigger: true) }),
        ["CancelTriggeredPoints"] = async s => Post("/v1/lifecycle/triggers/cancel",
            new JsonObject { ["storeCode"] = Store, ["billNumber"] = await s.BillAsync(holdForTrigger: true) }),
        ["RunExpiry"] = _ => Task.FromResult(Post("/v1/lifecycle/expire", new JsonObject())),
        ["GetExpirySchedule"] = _ => Task.FromResult(Get("/v1/lifecycle/expiry-schedule", ("customerId", Naresh.ToString()))),
        ["GetHeldSchedule"] = _ => Task.FromResult(Get("/v1/lifecycle/held-schedule", ("customerId", Naresh.ToString()))),
        ["GetBalancesAsOf"] = _ => Task.FromResult(Get("/v1/lifecycle/balances", ("customerId", Naresh.ToString()), ("asOf", "2024-05-05T00:00:00Z"))),
        ["ExportLedgerCsv"] = _ => Task.FromResult(Get("/v1/exports/ledger.csv",
            ("customerId", Naresh.ToString()), ("from", "2024-01-01T00:00:00Z"), ("to", "2024-06-01T00:00:00Z"))),
        ["ExportLedgerNdjson"] = _ => Task.FromResult(Get("/v1/exports/ledger.ndjson", ("programId", Program.ToString()), ("eventName", "TransactionAdd"))),
        ["ListKeys"] = _ => Task.FromResult(Get("/v1/keys")),
        ["ReadEventFeed"] = _ => Task.FromResult(Get("/v1/events", ("limit", "5"), ("types", "ledger.event.posted,balance.changed"))),
        ["IssueKey"] = _ => Task.FromResult(Post("/v1/keys", new JsonObject { ["role"] = "Read", ["name"] = "till app" })),
        ["RotateKey"] = async s => new SampleRequest($"/v1/keys/{await s.KeyAsync()}/rotate", [], null),
        ["RevokeKey"] = async s => new SampleRequest($"/v1/keys/{await s.KeyAsync()}", [], null),
        ["ListWebhooks"] = _ => Task.FromResult(Get("/v1/webhooks")),
        ["CreateWebhook"] = s => Task.FromResult(Post("/v1/webhooks", new JsonObject
        {
            ["url"] = "http://127.0.0.1:9/hooks/" + s.U(), ["events"] = new JsonArray("balance.changed", "points.expiring"), ["description"] = "CRM",
        })),
        ["GetWebhook"] = async s => Get($"/v1/webhooks/{await s.WebhookAsync()}"),
        ["UpdateWebhook"] = async s => new SampleRequest($"/v1/webhooks/{await s.WebhookAsync()}", [], new JsonObject
        {
            ["events"] = new JsonArray("ledger.event.posted"), ["description"] = "warehouse", ["enabled"] = true,
        }),
        ["DeleteWebhook"] = async s => new SampleRequest($"/v1/webhooks/{await s.WebhookAsync()}", [], null),
        ["RotateWebhookSecret"] = async s => new SampleRequest($"/v1/webhooks/{await s.WebhookAsync()}/rotate-secret", [], null),
        ["TestWebhook"] = async s => new SampleRequest($"/v1/webhooks/{await s.WebhookAsync()}/test", [], null),
        ["ListWebhookDeliveries"] = async s =>
        {
            var id = await s.WebhookAsync();
            await s.Demo.PostOkAsync($"/v1/webhooks/{id}/test", new { });
            return Get($"/v1/webhooks/{id}/deliveries", ("limit", "10"), ("status", "pending"));
        },
        ["RedeliverWebhook"] = async s =>
        {
            var id = await s.WebhookAsync();
            var delivery = await s.Demo.PostOkAsync($"/v1/webhooks/{id}/test", new { });
            return new SampleRequest($"/v1/webhooks/{id}/deliveries/{delivery.GetProperty("deliveryId").GetInt64()}/redeliver", [], null);
        },
        ["ListVouchers"] = _ => Task.FromResult(Get($"/v1/programs/{Program}/vouchers")),
        ["CreateVoucher"] = s => Task.FromResult(Post($"/v1/programs/{Program}/vouchers",
            new JsonObject { ["name"] = "Coffee " + s.U(), ["price"] = 40, ["validDays"] = 30, ["uses"] = 1 })),
        ["VaultGetAccount"] = _ => Task.FromResult(Get($"/api/v1.0/LoyaltyVault/Account/{PriyaAccount}", ("includeInactive", "true"))),
        ["VaultGetAccountHistory"] = _ => Task.FromResult(Get($"/api/v1.0/LoyaltyVault/Account/{PriyaAccount}/LoyaltyPrograms/{Program}/History")),
        ["VaultPostTransaction"] = async s =>
        {
            var (_, account) = await s.FundedCustomerAsync();
            return Post($"/api/v1.0/LoyaltyVault/Account/{account}/Transaction", new JsonObject
            {
                ["context"] = new JsonObject { ["receiptNr"] = "R-" + s.U(), ["shopId"] = Store, ["posId"] = Till, ["operatorId"] = "op-7", ["comment"] = "basket" },
                ["loyaltyPrograms"] = new JsonArray(new JsonObject
                {
                    ["loyaltyPointDefinitionId"] = Program,
                    ["loads"] = new JsonArray(new JsonObject { ["value"] = 100.5m }),
                    ["redemptions"] = new JsonArray(new JsonObject { ["value"] = 20 }),
                }),
            });
        },
        ["VaultTransfer"] = async s =>
        {
            var (_, account) = await s.FundedCustomerAsync();
            return Post($"/api/v1.0/LoyaltyVault/Account/{account}/Transfer", new JsonObject
            {
                ["toAccountNumber"] = NareshAccount, ["loyaltyPointDefinitionId"] = Program, ["value"] = 20, ["comment"] = "gift",
            });
        },
    };

    private Tenant Demo => demo;
}
