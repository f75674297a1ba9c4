using System.Text.Json;
using Dapper;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Vault;

/// <summary>A program with a customer holding a card, ready for vault baskets.</summary>
public sealed record VaultSetup(Shop Shop, long CustomerId, string Account)
{
    public long ProgramId => Shop.ProgramId;
    public string AccountPath => $"/api/v1.0/LoyaltyVault/Account/{Account}";
    public string HistoryPath => $"{AccountPath}/LoyaltyPrograms/{ProgramId}/History";
}

public static class VaultBuilders
{
    public static async Task<VaultSetup> NewVaultAsync(this Tenant t, object? expiry = null)
    {
        var shop = await t.NewShopAsync(earnRate: "1", expiry: expiry);
        var account = "CARD-" + Guid.NewGuid().ToString("N")[..10];
        var customer = await t.NewCustomerAsync(accountNumber: account);
        return new VaultSetup(shop, customer, account);
    }

    public static Task<JsonElement> NewVoucherAsync(this Tenant t, long programId, string price, int? validDays = 30, int uses = 1, string name = "Free coffee") =>
        t.PostOkAsync($"/v1/programs/{programId}/vouchers", new { name, price, validDays, uses });

    /// <summary>A basket of one program with the given lines, from store-1/till-1.</summary>
    public static object Basket(long programId, string? receiptNr = null, object[]? loads = null, object[]? redemptions = null,
        object[]? voucherPurchases = null, object[]? voucherRedemptions = null, string shopId = "store-1", string posId = "till-1") => new
    {
        context = new { receiptNr, shopId, posId, operatorId = "op-7", comment = "basket" },
        loyaltyPrograms = new[]
        {
            new { loyaltyPointDefinitionId = programId, loads, redemptions, voucherPurchases, voucherRedemptions },
        },
    };

    public static Task<JsonElement> PostBasketAsync(this Tenant t, VaultSetup v, object basket, string? idempotencyKey = null) =>
        t.PostOkAsync($"{v.AccountPath}/Transaction", basket, idempotencyKey);

    public static async Task<JsonElement[]> HistoryAsync(this Tenant t, VaultSetup v, string query = "") =>
        (await t.GetOkAsync(v.HistoryPath + query)).EnumerateArray().ToArray();

    public static decimal Number(this JsonElement e, string name) => e.GetProperty(name).GetDecimal();

    /// <summary>Rows of a table that belong to the tenant, straight from the database.</summary>
    public static Task<long> CountAsync(this Tenant t, string table) =>
        t.Host.Database.ReadAsync(c => c.ExecuteScalarAsync<long>($"SELECT COUNT(*) FROM {table} WHERE org_id = @org", new { org = t.OrgId }),
            CancellationToken.None);
}
