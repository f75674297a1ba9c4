using System.Globalization;
using Dapper;
using LoyaltyLedger.Audit;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Seeding;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Seeding;

/// <summary>A bulk-seeded organization keeps every ledger invariant and reads like a posted one.</summary>
public abstract class SeedTests(DatabaseFixture db)
{
    private static readonly string Name = "seeded " + Guid.NewGuid().ToString("N")[..8];

    private async Task<SeedResult> SeedSmallAsync() =>
        await OrganizationSeeder.SeedAsync(db.Database,
            new SeedOptions { OrganizationName = Name + Guid.NewGuid().ToString("N")[..4], Customers = 200, Events = 5_000, Stores = 5 },
            null, CancellationToken.None);

    [Fact]
    public async Task a_seeded_organization_passes_the_ledger_audit()
    {
        var seeded = await SeedSmallAsync();

        var report = await LedgerVerifier.VerifyAsync(db.Database, seeded.OrgId, CancellationToken.None);
        report.Violations.ShouldBeEmpty();
        report.Events.ShouldBe(seeded.Events);
        report.Entries.ShouldBe(seeded.Entries);
        seeded.Events.ShouldBeInRange(4_700, 5_300);
        seeded.HeaviestCustomerEvents.ShouldBeGreaterThan(100);
        var kinds = await db.Database.ReadAsync(c => c.QueryAsync<string>(
            "SELECT DISTINCT event_name FROM events WHERE org_id = @org ORDER BY event_name", new { org = seeded.OrgId }), CancellationToken.None);
        kinds.ShouldBe(["BulkAllocatePoints", "CustomerRegistration", "GenericEvent", "PointsRedemption", "TransactionAdd"]);
    }

    [Fact]
    public async Task a_seeded_customers_balances_read_through_the_api_equal_the_sums_of_its_entries()
    {
        var seeded = await SeedSmallAsync();
        var http = db.Host.Client(seeded.Key.KeyId, seeded.Key.Secret);
        var tenant = new Tenant(seeded.OrgId, seeded.Key, http, db.Host);

        foreach (var customerId in new[] { seeded.HeaviestCustomerId, seeded.LightCustomerId })
        {
            var sums = (await db.Database.ReadAsync(c => c.QueryAsync<(string? Currency, long Total)>(
                """
                SELECT cur.name, SUM(CASE WHEN e.entry_type = 'DEBIT' THEN -e.points ELSE e.points END)
                FROM ledger_entries e LEFT JOIN currencies cur ON cur.org_id = e.org_id AND cur.currency_id = e.currency_id
                WHERE e.org_id = @org AND e.owner_type = 'CUSTOMER' AND e.owner_id = @customerId
                GROUP BY cur.name
                """, new { org = seeded.OrgId, customerId }), CancellationToken.None)).ToDictionary(x => x.Currency ?? "points", x => x.Total);
            var balances = await tenant.GetOkAsync($"/v1/customers/{customerId.ToString(CultureInfo.InvariantCulture)}/balances");
            var shown = balances.EnumerateArray().ToDictionary(
                b => b.TryGetProperty("currency", out var c) && c.ValueKind == System.Text.Json.JsonValueKind.String ? c.GetString()! : "points",
                b => b.GetProperty("balance").GetString());
            shown.Keys.Order().ShouldBe(["Miles", "Stars", "points"]);
            foreach (var (currency, total) in sums)
                shown[currency].ShouldBe(new LoyaltyLedger.Points(total).ToString(), $"{currency} of customer {customerId}");
        }
        (await tenant.GetOkAsync($"/v1/customers/{seeded.HeaviestCustomerId.ToString(CultureInfo.InvariantCulture)}/balances"))
            .EnumerateArray().ShouldContain(b => b.GetProperty("balance").GetString() != "0.000");
        seeded.Key.Role.ShouldBe(KeyRole.Admin);
    }
}

public sealed class SeedTestsOnSqlite(SqliteDatabase db) : SeedTests(db), IClassFixture<SqliteDatabase>;

public sealed class SeedTestsOnPostgres(PostgresDatabase db) : SeedTests(db), IClassFixture<PostgresDatabase>;
