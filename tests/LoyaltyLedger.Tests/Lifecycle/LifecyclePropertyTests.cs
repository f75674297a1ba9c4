using System.Globalization;
using System.Net;
using System.Text.Json;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Lifecycle;

/// <summary>
/// Random sequences of earn, redeem, return, reverse, transfer, clock moves and expiry runs (seeded,
/// so a failure replays), checking the ledger's invariants after every step.
/// </summary>
public abstract class LifecyclePropertyTests(DatabaseFixture db)
{
    private static readonly string[] AcceptedRefusals =
        ["insufficient_balance", "return_exceeds_bill", "redemption_already_reversed", "reversal_exceeds_redemption"];

    [Theory]
    [InlineData(20251)]
    [InlineData(777)]
    public async Task random_lifecycle_sequences_keep_balances_entries_and_lots_in_agreement(int seed)
    {
        var random = new Random(seed);
        var clock = db.Host.Clock;
        clock.Set(new DateTimeOffset(2025, 1, 1, 9, 0, 0, TimeSpan.Zero));
        var t = await db.Host.NewTenantAsync();
        var program = await t.PostOkAsync("/v1/programs", new
        {
            name = "Random walk",
            earnRate = "0.5",
            promisedDays = 3,
            expiry = new { kind = "DATE_EARNED", days = 20 },
            currencies = new[] { new { name = "Stars", earnRate = "0.1", expiry = new { kind = "ROLLING", days = 15 } } },
        });
        var programId = program.GetProperty("programId").GetInt64();
        await t.PostOkAsync("/v1/stores", new { code = "store-1", name = "Store 1" });
        var customers = new List<long>();
        for (var i = 0; i < 3; i++) customers.Add(await t.NewCustomerAsync());
        var bills = new List<(string Number, decimal Amount)>();
        var redemptions = new List<long>();
        var done = new Dictionary<string, int>();
        void Count(string kind, JsonElement? body) { if (body is not null) done[kind] = done.GetValueOrDefault(kind) + 1; }

        for (var step = 0; step < 120; step++)
        {
            var customer = customers[random.Next(customers.Count)];
            var op = random.Next(8);
            string what;
            switch (op)
            {
                case 0:
                {
                    var amount = random.Next(100, 30_000) / 100m;
                    var number = $"B-{step}";
                    what = $"bill {number} of {amount} for {customer}";
                    Count("bill", await ExpectAsync(await t.PostAsync("/v1/transactions", new { customerId = customer, billNumber = number, amount, storeCode = "store-1", programId })));
                    bills.Add((number, amount));
                    break;
                }
                case 1:
                    what = $"award to {customer}";
                    await ExpectAsync(await t.PostAsync("/v1/events", new
                    {
                        customerId = customer, eventName = "Random", programId,
                        awards = new[] { new { points = random.Next(1, 100).ToString(CultureInfo.InvariantCulture), currency = random.Next(3) == 0 ? "Stars" : null } },
                    }));
                    break;
                case 2:
                {
                    what = $"redeem by {customer}";
                    var body = await ExpectAsync(await t.PostAsync("/v1/redemptions", new
                    {
                        customerId = customer, programId, points = random.Next(1, 150).ToString(CultureInfo.InvariantCulture),
                        currency = random.Next(4) == 0 ? "Stars" : null,
                    }));
                    if (body is { } b) redemptions.Add(b.GetProperty("eventId").GetInt64());
                    Count("redeem", body);
                    break;
                }
                case 3 when bills.Count > 0:
                {
                    var bill = bills[random.Next(bills.Count)];
                    var amount = Math.Max(0.01m, Math.Round(bill.Amount * random.Next(1, 80) / 100m, 2));
                    what = $"return {amount} of {bill.Number}";
                    Count("return", await ExpectAsync(await t.PostAsync("/v1/returns", new { storeCode = "store-1", billNumber = bill.Number, amount })));
                    break;
                }
                case 4 when redemptions.Count > 0:
                {
                    var id = redemptions[random.Next(redemptions.Count)];
                    var points = random.Next(2) == 0 ? null : random.Next(1, 60).ToString(CultureInfo.InvariantCulture);
                    what = $"reverse {points ?? "all"} of redemption {id}";
                    Count("reverse", await ExpectAsync(await t.PostAsync("/v1/redemptions/reversals", new { redemptionEventId = id, points })));
                    break;
                }
                case 5:
                {
                    var to = customers[(customers.IndexOf(customer) + 1 + random.Next(customers.Count - 1)) % customers.Count];
                    what = $"transfer {customer} -> {to}";
                    Count("transfer", await ExpectAsync(await t.PostAsync("/v1/transfers", new
                    {
                        from = new { customerId = customer }, to = new { customerId = to }, programId,
                        points = random.Next(1, 80).ToString(CultureInfo.InvariantCulture),
                    })));
                    break;
                }
                case 6:
                    clock.Advance(TimeSpan.FromHours(random.Next(1, 24 * 6)));
                    what = $"clock to {clock.GetUtcNow():O}";
                    break;
                default:
                {
                    what = "expiry run twice";
                    var run = await t.PostOkAsync("/v1/lifecycle/expire", new { });
                    if (run.GetProperty("expiries").GetInt32() > 0) Count("expire", run);
                    if (run.GetProperty("conversions").GetInt32() > 0) Count("convert", run);
                    var again = await t.PostOkAsync("/v1/lifecycle/expire", new { });
                    again.GetProperty("expiries").GetInt32().ShouldBe(0, "a second run expires nothing more");
                    again.GetProperty("conversions").GetInt32().ShouldBe(0, "a second run converts nothing more");
                    break;
                }
            }
            await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId, $"seed {seed} step {step} ({what})");
        }

        // The walk must have exercised every kind of posting, or the invariants prove little.
        string.Join(",", done.Keys.Order()).ShouldBe("bill,convert,expire,redeem,return,reverse,transfer",
            string.Join(", ", done.Select(kv => $"{kv.Key}={kv.Value}")));
    }

    /// <summary>A success (its body), or one of the documented refusals; anything else fails the test.</summary>
    private static async Task<JsonElement?> ExpectAsync(HttpResponseMessage response)
    {
        using (response)
        {
            var text = await response.Content.ReadAsStringAsync();
            if (response.IsSuccessStatusCode) return JsonDocument.Parse(text).RootElement.Clone();
            ((int)response.StatusCode).ShouldBeOneOf([(int)HttpStatusCode.UnprocessableEntity, (int)HttpStatusCode.Conflict], text);
            JsonDocument.Parse(text).RootElement.GetProperty("code").GetString().ShouldBeOneOf(AcceptedRefusals, text);
            return null;
        }
    }
}

public sealed class LifecyclePropertyTestsOnSqlite(SqliteDatabase db) : LifecyclePropertyTests(db), IClassFixture<SqliteDatabase>;

public sealed class LifecyclePropertyTestsOnPostgres(PostgresDatabase db) : LifecyclePropertyTests(db), IClassFixture<PostgresDatabase>;
