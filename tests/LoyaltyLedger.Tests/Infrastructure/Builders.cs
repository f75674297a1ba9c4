using System.Text.Json;

namespace LoyaltyLedger.Tests.Infrastructure;

/// <summary>A program with a store and a till, ready to take bills.</summary>
public sealed record Shop(long ProgramId, string StoreCode, string TillCode);

/// <summary>Builders that keep tests about behaviour, not set-up.</summary>
public static class Builders
{
    public static async Task<Shop> NewShopAsync(this Tenant t, string earnRate = "0.1", bool allowNegative = false,
        string[]? currencies = null, object? expiry = null, string storeCode = "store-1", string tillCode = "till-1")
    {
        var program = await t.PostOkAsync("/v1/programs", new
        {
            name = "Main program",
            earnRate,
            allowNegativeBalance = allowNegative,
            expiry,
            currencies = (currencies ?? ["Stars"]).Select(c => new { name = c }).ToArray(),
        });
        await t.PostOkAsync("/v1/stores", new { code = storeCode, name = "Store " + storeCode });
        await t.PostOkAsync("/v1/tills", new { code = tillCode, storeCode });
        return new Shop(program.GetProperty("programId").GetInt64(), storeCode, tillCode);
    }

    public static async Task<long> NewCustomerAsync(this Tenant t, string? email = null, string? accountNumber = null, string firstName = "Test")
    {
        var customer = await t.PostOkAsync("/v1/customers", new
        {
            firstName,
            lastName = "Customer",
            email = email ?? $"{Guid.NewGuid():N}@example.com",
            accountNumbers = accountNumber is null ? null : new[] { accountNumber },
        });
        return customer.GetProperty("customerId").GetInt64();
    }

    /// <summary>Gives a customer points with a generic event (no bill needed).</summary>
    public static Task<JsonElement> AwardAsync(this Tenant t, long customerId, string points, string? currency = null, long? programId = null) =>
        t.PostOkAsync("/v1/events", new { customerId, eventName = "TestAward", programId, awards = new[] { new { points, currency } } });

    public static Task<JsonElement> BillAsync(this Tenant t, Shop shop, long customerId, string billNumber, decimal amount) =>
        t.PostOkAsync("/v1/transactions", new { customerId, billNumber, amount, storeCode = shop.StoreCode, tillCode = shop.TillCode, programId = shop.ProgramId });

    /// <summary>A wallet's balance in thousandths (plain points when currency is null).</summary>
    public static async Task<long> BalanceAsync(this Tenant t, long customerId, long programId, string? currency = null, string category = "REGULAR")
    {
        var balances = await t.GetOkAsync($"/v1/customers/{customerId}/balances");
        foreach (var b in balances.EnumerateArray())
        {
            var bCurrency = b.TryGetProperty("currency", out var c) ? c.GetString() : null;
            if (b.GetProperty("programId").GetInt64() == programId && bCurrency == currency && b.GetProperty("category").GetString() == category)
                return Points.Parse(b.GetProperty("balance").GetString()!).Thousandths;
        }
        return 0;
    }
}
