using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Ledger;

/// <summary>Every refused input gets its documented code and leaves the ledger untouched.</summary>
public abstract class BadInputTests(DatabaseFixture db)
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
        await RefusedAsync(t, "/v1/transactions", new { customerId = 999_999, billNumber = "X", amount = 10, storeCode = shop.StoreCode }, 404, "customer_not_found");
        await RefusedAsync(t, "/v1/redemptions", new { customerId = 999_999, points = "1" }, 404, "customer_not_found");
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
}

public sealed class BadInputTestsOnSqlite(SqliteDatabase db) : BadInputTests(db), IClassFixture<SqliteDatabase>;

public sealed class BadInputTestsOnPostgres(PostgresDatabase db) : BadInputTests(db), IClassFixture<PostgresDatabase>;
