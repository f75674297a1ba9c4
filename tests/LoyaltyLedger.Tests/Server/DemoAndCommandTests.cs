using Dapper;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Server.Cli;
using LoyaltyLedger.Server.Demo;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Server;

/// <summary>The demo organization and the executable's admin commands.</summary>
public abstract class DemoAndCommandTests(DatabaseFixture db)
{
    [Fact]
    public async Task the_demo_reproduces_the_specs_customers_group_programs_currencies_stores_and_tills()
    {
        var demo = await DemoData.EnsureAsync(db.Database, "demo-test", "demo-test-secret", CancellationToken.None);
        var client = db.Host.Client("demo-test", "demo-test-secret");
        var t = new Tenant(demo.OrgId, new IssuedKey(demo.OrgId, "demo-test", "demo-test-secret", KeyRole.Admin), client, db.Host);

        var programs = await t.GetOkAsync("/v1/programs");
        var byId = programs.EnumerateArray().ToDictionary(p => p.GetProperty("programId").GetInt64(), p => p);
        byId[626].GetProperty("name").GetString().ShouldBe("David Jones- Default Program");
        byId[817].GetProperty("name").GetString().ShouldBe("David Jones- Card Program");
        byId[469].GetProperty("name").GetString().ShouldBe("Default Program");
        byId[805].GetProperty("name").GetString().ShouldBe("Seven Entertainment");
        byId[626].GetProperty("currencies").EnumerateArray().Select(c => c.GetProperty("name").GetString())
            .ShouldBe(["Tier-points", "Pebbles", "Boost", "Stars", "Stamps", DemoData.SpecCurrencyName], ignoreOrder: true);
        byId[469].GetProperty("currencies").EnumerateArray().Select(c => c.GetProperty("name").GetString()).ShouldBe(["Stars", "Coins"], ignoreOrder: true);

        var naresh = await t.GetOkAsync("/v1/customers/64035151");
        naresh.GetProperty("firstName").GetString().ShouldBe("naresh");
        naresh.GetProperty("lastName").GetString().ShouldBe("silla");
        var kamal = await t.GetOkAsync("/v1/customers/lookup?identifierName=externalId&identifierValue=000000043488&source=INSTORE");
        kamal.GetProperty("customerId").GetInt64().ShouldBe(170940055);
        (await t.GetOkAsync("/v1/customers/98662653")).GetProperty("customerId").GetInt64().ShouldBe(98662653);
        (await t.GetOkAsync("/v1/customers/423725119")).GetProperty("customerId").GetInt64().ShouldBe(423725119);
        (await t.GetOkAsync("/v1/groups/381335652")).GetProperty("members").GetArrayLength().ShouldBe(3);

        var stores = (await t.GetOkAsync("/v1/stores")).EnumerateArray().Select(s => s.GetProperty("code").GetString()).ToList();
        stores.ShouldBe(["default", "demostorebukl", "supermarketdemo"], ignoreOrder: true);
        var tills = (await t.GetOkAsync("/v1/tills")).EnumerateArray().Select(s => s.GetProperty("code").GetString()).ToList();
        tills.ShouldContain("till.marketsuper");
        tills.ShouldContain("demostorebukl.1");

        var specBills = await db.Database.ReadAsync(c => c.QueryAsync<string>(
            "SELECT bill_number FROM bills WHERE org_id = @org AND customer_id = 64035151 AND bill_number LIKE '15422807086%' ORDER BY bill_number", new { org = demo.OrgId }), CancellationToken.None);
        specBills.ShouldContain("1542280708645");
        var eventNames = await db.Database.ReadAsync(c => c.QueryAsync<string>(
            "SELECT DISTINCT event_name FROM events WHERE org_id = @org AND owner_id = 64035151", new { org = demo.OrgId }), CancellationToken.None);
        eventNames.ShouldBe(["CustomerRegistration", "TransactionAdd", "BulkAllocatePoints", "GenericEvent", "PointsRedemption", "PointsTransfer"], ignoreOrder: true);
        (await LedgerAudit.ViolationsAsync(db.Database, demo.OrgId)).ShouldBeEmpty();

        var again = await DemoData.EnsureAsync(db.Database, "demo-test", "demo-test-secret", CancellationToken.None);
        again.ShouldBe(new DemoData.Result(demo.OrgId, Seeded: false));
    }

    [Fact]
    public async Task the_org_and_key_commands_create_an_organization_and_keys_that_authenticate()
    {
        var name = "cli-org-" + Guid.NewGuid().ToString("N")[..8];
        (await Commands.RunAsync(["org", "create", "--name", name, .. db.CommandLineArgs])).ShouldBe(0);
        var org = await Tenants.FindOrganizationAsync(db.Database, name, CancellationToken.None);
        org.ShouldNotBeNull();

        (await Commands.RunAsync(["key", "create", "--org", org.OrgId.ToString(System.Globalization.CultureInfo.InvariantCulture), "--role", "read", .. db.CommandLineArgs])).ShouldBe(0);
        var roles = await db.Database.ReadAsync(c => c.QueryAsync<string>("SELECT role FROM api_keys WHERE org_id = @org ORDER BY role", new { org = org.OrgId }), CancellationToken.None);
        roles.ShouldBe(["ADMIN", "READ"]);

        var orgArg = org.OrgId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var readKey = (await Tenants.ListKeysAsync(db.Database, org.OrgId, CancellationToken.None)).Single(k => k.Role == KeyRole.Read).KeyId;
        (await Commands.RunAsync(["key", "revoke", "--org", orgArg, "--key", readKey, .. db.CommandLineArgs])).ShouldBe(0);
        (await Tenants.ListKeysAsync(db.Database, org.OrgId, CancellationToken.None)).Single(k => k.KeyId == readKey).RevokedAt.ShouldNotBeNull();
        (await Commands.RunAsync(["key", "rotate", "--org", orgArg, "--key", readKey, .. db.CommandLineArgs])).ShouldBe(1);
        (await Commands.RunAsync(["key", "list", "--org", orgArg, .. db.CommandLineArgs])).ShouldBe(0);

        (await Commands.RunAsync(["key", "create", "--org", "not-a-number", .. db.CommandLineArgs])).ShouldBe(2);
        (await Commands.RunAsync(["key", "create", "--org", "999999", .. db.CommandLineArgs])).ShouldBe(1);
        (await Commands.RunAsync(["no-such-command"])).ShouldBe(2);
        (await Commands.RunAsync(["--help"])).ShouldBe(0);
    }
}

public sealed class DemoAndCommandTestsOnSqlite(SqliteDatabase db) : DemoAndCommandTests(db), IClassFixture<SqliteDatabase>;

public sealed class DemoAndCommandTestsOnPostgres(PostgresDatabase db) : DemoAndCommandTests(db), IClassFixture<PostgresDatabase>;
