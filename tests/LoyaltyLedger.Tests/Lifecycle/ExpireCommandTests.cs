using LoyaltyLedger.Server.Cli;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Lifecycle;

/// <summary>The operator's <c>expire --as-of</c> command, on the class's database (SQLite file or PostgreSQL).</summary>
public abstract class ExpireCommandTests(DatabaseFixture db)
{
    [Fact]
    public async Task the_expire_command_expires_what_was_due_at_as_of_and_a_second_run_expires_nothing_more()
    {
        var host = db.Host;
        host.Clock.Set(new DateTimeOffset(2025, 1, 1, 10, 0, 0, TimeSpan.Zero));
        var t = await host.NewTenantAsync();
        await t.NewShopAsync(expiry: new { kind = "DATE_EARNED", days = 30 });
        var customer = await t.NewCustomerAsync();
        await t.AwardAsync(customer, "100");
        host.Clock.Set(new DateTimeOffset(2025, 1, 10, 10, 0, 0, TimeSpan.Zero));
        await t.AwardAsync(customer, "20");
        var orgId = t.OrgId;
        var org = orgId.ToString(System.Globalization.CultureInfo.InvariantCulture);

        (await Commands.RunAsync(["expire", "--as-of", "2025-02-05T00:00:00Z", "--org", org, .. db.CommandLineArgs])).ShouldBe(0);
        (await Commands.RunAsync(["expire", "--as-of", "2025-02-05T00:00:00Z", "--org", org, .. db.CommandLineArgs])).ShouldBe(0);
        (await Commands.RunAsync(["expire", "--as-of", "not-a-date", .. db.CommandLineArgs])).ShouldBe(2);

        (await LedgerProbe.LinesAsync(db.Database, orgId, customer)).ShouldBe([
            "GenericEvent CREDIT REGULAR 100.000 = 100.000",
            "GenericEvent CREDIT REGULAR 20.000 = 120.000",
            "PointsExpiry DEBIT REGULAR 100.000 = 20.000",
        ]);
        (await LedgerProbe.LotsAsync(db.Database, orgId, customer)).ShouldBe(["0.000/100.000 until 2025-01-31", "20.000/20.000 until 2025-02-09"]);
        await LedgerProbe.AssertInvariantsAsync(db.Database, orgId);
    }
}

public sealed class ExpireCommandTestsOnSqlite(SqliteDatabase db) : ExpireCommandTests(db), IClassFixture<SqliteDatabase>;

public sealed class ExpireCommandTestsOnPostgres(PostgresDatabase db) : ExpireCommandTests(db), IClassFixture<PostgresDatabase>;
