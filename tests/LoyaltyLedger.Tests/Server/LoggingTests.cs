using System.Net;
using LoyaltyLedger.Tests.Infrastructure;
using Microsoft.Extensions.Logging;

namespace LoyaltyLedger.Tests.Server;

/// <summary>
/// What the server logs per request: a refused request (a 4xx) is an answer, not a server failure,
/// and the framework's per-request lines stay out of the log unless the operator asks for them.
/// </summary>
public abstract class LoggingTests(DatabaseFixture db)
{
    private static async Task RefusedRequestsAsync(TestServerHost host)
    {
        var t = await host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var customer = await t.NewCustomerAsync();
        await t.BillAsync(shop, customer, "B-1", 10m);
        using (var overdraw = await t.PostAsync("/v1/redemptions", new { customerId = customer, points = "1000" }))
            await Tenant.ShouldFailAsync(overdraw, 422, "insufficient_balance");
        using (var duplicate = await t.PostAsync("/v1/transactions", new { customerId = customer, billNumber = "B-1", amount = 10m, storeCode = shop.StoreCode }))
            await Tenant.ShouldFailAsync(duplicate, 409, "duplicate_bill");
        using (var unknown = await t.Http.GetAsync("/v1/customers/999999"))
            unknown.StatusCode.ShouldBe(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task refused_requests_and_the_framework_per_request_lines_are_not_logged()
    {
        var logs = new CapturedLogs();
        await using var host = await TestServerHost.StartAsync(db.OpenSecondInstance(), logs: logs);

        await RefusedRequestsAsync(host);

        logs.Entries.Where(e => e.Level >= LogLevel.Warning).ShouldBeEmpty();
        logs.Entries.Where(e => e.Category.StartsWith("Microsoft.AspNetCore", StringComparison.Ordinal) && e.Level < LogLevel.Warning)
            .ShouldBeEmpty();
    }

    [Fact]
    public async Task an_operator_can_turn_the_framework_request_lines_back_on()
    {
        var logs = new CapturedLogs();
        await using var host = await TestServerHost.StartAsync(db.OpenSecondInstance(),
            new Dictionary<string, string?> { ["Logging:LogLevel:Microsoft.AspNetCore"] = "Information" }, logs);

        await RefusedRequestsAsync(host);

        logs.Entries.ShouldContain(e => e.Category == "Microsoft.AspNetCore.Hosting.Diagnostics" && e.Level == LogLevel.Information);
        logs.Entries.Where(e => e.Level >= LogLevel.Error).ShouldBeEmpty();
    }
}

public sealed class LoggingTestsOnSqlite(SqliteDatabase db) : LoggingTests(db), IClassFixture<SqliteDatabase>;

public sealed class LoggingTestsOnPostgres(PostgresDatabase db) : LoggingTests(db), IClassFixture<PostgresDatabase>;
