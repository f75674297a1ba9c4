using System.Text.Json;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.PointsLedger;

/// <summary>Calls and reads of GET /v2/pointsLedger/getCustomerLedgerInfo for the tests.</summary>
public static class LedgerApi
{
    public const string Path = "/v2/pointsLedger/getCustomerLedgerInfo";

    public static async Task<(int Status, JsonElement Body)> GetLedgerAsync(this Tenant t, string query)
    {
        using var response = await t.Http.GetAsync(Path + "?" + query);
        var text = await response.Content.ReadAsStringAsync();
        return ((int)response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    public static async Task<JsonElement> LedgerOkAsync(this Tenant t, string query)
    {
        var (status, body) = await t.GetLedgerAsync(query);
        status.ShouldBe(200, body.ToString());
        return body;
    }

    /// <summary>Asserts the spec's error body: one error with the code, no warnings.</summary>
    public static async Task<string> LedgerFailsAsync(this Tenant t, string query, int status, int code)
    {
        var (actual, body) = await t.GetLedgerAsync(query);
        actual.ShouldBe(status, body.ToString());
        body.EnumerateObject().Select(p => p.Name).ShouldBe(["errors", "warnings"], body.ToString());
        var errors = body.GetProperty("errors");
        errors.GetArrayLength().ShouldBe(1);
        errors[0].GetProperty("code").GetInt32().ShouldBe(code, body.ToString());
        body.GetProperty("warnings").GetArrayLength().ShouldBe(0);
        return errors[0].GetProperty("message").GetString()!;
    }

    public static string Customer(long customerId, string extra = "") =>
        $"identifierName=id&identifierValue={customerId}&source=INSTORE&limit=100{extra}";

    public static IReadOnlyList<JsonElement> Events(this JsonElement body) => body.GetProperty("ledgerEntries").EnumerateArray().ToList();

    public static IReadOnlyList<long> EventIds(this JsonElement body) => body.Events().Select(e => e.GetProperty("eventLogId").GetInt64()).ToList();

    public static IReadOnlyList<string> EventNames(this JsonElement body) => body.Events().Select(e => e.GetProperty("eventName").GetString()!).ToList();

    /// <summary>Every line as "currency-or-points/category/type/points", sorted, to compare as a set.</summary>
    public static IReadOnlyList<string> Lines(this JsonElement body) => body.Events()
        .SelectMany(e => e.GetProperty("entryDetails").EnumerateArray())
        .Select(d => string.Join('/',
            d.TryGetProperty("alternateCurrencyName", out var c) ? c.GetString() : "points",
            d.GetProperty("pointsCategory").GetString(),
            d.GetProperty("ledgerEntryType").GetString(),
            d.GetProperty("points").GetString()))
        .Order(StringComparer.Ordinal).ToList();

    public static long Total(this JsonElement body) => body.GetProperty("ledgerDetails").GetProperty("totalEntries").GetInt64();

    public static IReadOnlyList<string> Warnings(this JsonElement body) =>
        body.GetProperty("warnings").EnumerateArray().Select(w => w.GetProperty("message").GetString()!).ToList();

    /// <summary>A program (with the given currencies, earned at the given rate per unit) and its currency ids by name.</summary>
    public static async Task<(long ProgramId, Dictionary<string, long> Currencies)> NewProgramAsync(this Tenant t, string name,
        string earnRate = "1", string currencyEarnRate = "0", string? concept = null, params string[] currencies)
    {
        var program = await t.PostOkAsync("/v1/programs", new
        {
            name, earnRate, concept, currencies = currencies.Select(c => new { name = c, earnRate = currencyEarnRate }).ToArray(),
        });
        return (program.GetProperty("programId").GetInt64(),
            program.GetProperty("currencies").EnumerateArray().ToDictionary(c => c.GetProperty("name").GetString()!, c => c.GetProperty("currencyId").GetInt64()));
    }

    /// <summary>
    /// Credits points of a category the write API does not post yet (PROMISED, TRIGGER_BASED), through
    /// the one place that writes entries, as the points-lifecycle postings will.
    /// </summary>
    public static Task CreditCategoryAsync(this DatabaseFixture db, Tenant t, long customerId, long programId, long currencyId,
        PointCategory category, long wholePoints, string eventName = "DelayedAccrual", long? groupId = null) =>
        db.Database.WriteAsync(async (c, tx) =>
        {
            var posting = new Posting(c, tx, db.Database.Dialect, t.OrgId, db.Host.Clock.GetUtcNow(), "test");
            var (ownerType, ownerId) = groupId is { } g ? (OwnerType.Group, g) : (OwnerType.Customer, customerId);
            var eventId = await posting.InsertEventAsync(new NewEvent(ownerType, ownerId, customerId, eventName, SourceProgramId: programId));
            var key = new WalletKey(ownerType, ownerId, programId, currencyId, category);
            await posting.LockWalletsAsync([key]);
            await posting.CreditAsync(eventId, key, Points.FromWhole(wholePoints), null);
            return 0;
        }, CancellationToken.None);
}
