using System.Globalization;
using Dapper;
using LoyaltyLedger.Audit;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Seeding;
using LoyaltyLedger.Storage;
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

    /// <summary>
    /// A seeded wallet knows when its first open lot is due, as a posting that looked for due lots
    /// leaves it: the next posting then looks only once that time has come, as on a ledger that has
    /// been posted to, rather than once for every wallet of a fresh seed.
    /// </summary>
    [Fact]
    public async Task a_seeded_wallet_keeps_the_time_its_first_open_lot_is_due()
    {
        var seeded = await SeedSmallAsync();

        var wallets = (await db.Database.ReadAsync(c => c.QueryAsync<(long? DueFrom, long FirstDue)>(
            """
            SELECT w.lots_due_from, COALESCE((SELECT MIN(l.expires_at) FROM lots l
                WHERE l.org_id = w.org_id AND l.wallet_id = w.wallet_id AND l.remaining > 0 AND l.is_debt = 0), @never)
            FROM wallets w WHERE w.org_id = @org
            """, new { org = seeded.OrgId, never = Wallet.NoLotDue }), CancellationToken.None)).ToList();

        wallets.Count.ShouldBeGreaterThan(200);
        wallets.ShouldAllBe(w => w.DueFrom == w.FirstDue);
        wallets.ShouldContain(w => w.FirstDue != Wallet.NoLotDue);
        wallets.ShouldContain(w => w.FirstDue == Wallet.NoLotDue);
    }

    [Fact]
    public async Task a_pipelined_seed_loads_the_same_rows_as_a_seed_written_from_the_generators_thread()
    {
        // The same random seed and end of history generate the same organization; only the ids
        // differ, by where each load starts.
        var until = new DateTimeOffset(2025, 6, 1, 0, 0, 0, TimeSpan.Zero);
        SeedOptions Options(bool pipelined) => new()
        {
            OrganizationName = Name + (pipelined ? " piped" : " direct"), Customers = 300, Events = 6_000, Stores = 5, Until = until, Pipelined = pipelined,
        };
        var direct = await OrganizationSeeder.SeedAsync(db.Database, Options(false), null, CancellationToken.None);
        var piped = await OrganizationSeeder.SeedAsync(db.Database, Options(true), null, CancellationToken.None);

        (piped.Events, piped.Entries, piped.Lots, piped.Rows, piped.HeaviestCustomerEvents)
            .ShouldBe((direct.Events, direct.Entries, direct.Lots, direct.Rows, direct.HeaviestCustomerEvents));
        (await FingerprintAsync(piped.OrgId)).ShouldBe(await FingerprintAsync(direct.OrgId));
        (await LedgerVerifier.VerifyAsync(db.Database, piped.OrgId, CancellationToken.None)).Violations.ShouldBeEmpty();
    }

    /// <summary>
    /// Per table, what does not depend on where the ids start: counts, sums and the spread of kinds
    /// (a redemption's details carry its event id, so only their presence is compared).
    /// </summary>
    private async Task<string[]> FingerprintAsync(long orgId) => (await db.Database.ReadAsync(c => c.QueryAsync<string>(
        """
        SELECT 'customers ' || COUNT(*) || ' ' || SUM(created_at) || ' ' || SUM(LENGTH(first_name || last_name || email || mobile)) FROM customers WHERE org_id = @org
        UNION ALL SELECT 'identifiers ' || COUNT(*) || ' ' || SUM(LENGTH(value)) FROM customer_identifiers WHERE org_id = @org
        UNION ALL SELECT 'accounts ' || COUNT(*) || ' ' || SUM(created_at) FROM loyalty_accounts WHERE org_id = @org
        UNION ALL SELECT 'groups ' || COUNT(*) FROM user_groups WHERE org_id = @org
        UNION ALL SELECT 'members ' || COUNT(*) || ' ' || SUM(may_transfer) FROM group_members WHERE org_id = @org
        UNION ALL SELECT 'wallets ' || COUNT(*) || ' ' || SUM(balance) || ' ' || SUM(updated_at) || ' ' || COALESCE(SUM(last_activity_at), 0) FROM wallets WHERE org_id = @org
        UNION ALL SELECT 'events ' || event_name || ' ' || COUNT(*) || ' ' || SUM(created_at) || ' ' || SUM(line_kinds) || ' ' || COUNT(details) || ' ' || COALESCE(SUM(CASE WHEN event_name <> 'PointsRedemption' THEN LENGTH(details) END), 0) FROM events WHERE org_id = @org GROUP BY event_name
        UNION ALL SELECT 'entries ' || entry_type || ' ' || currency_id || ' ' || COUNT(*) || ' ' || SUM(points) || ' ' || SUM(balance_after) || ' ' || SUM(created_at) FROM ledger_entries WHERE org_id = @org GROUP BY entry_type, currency_id
        UNION ALL SELECT 'lots ' || COUNT(*) || ' ' || SUM(original) || ' ' || SUM(remaining) || ' ' || COALESCE(SUM(expires_at), 0) FROM lots WHERE org_id = @org
        UNION ALL SELECT 'movements ' || COUNT(*) || ' ' || SUM(points) FROM lot_movements WHERE org_id = @org
        UNION ALL SELECT 'bills ' || COUNT(*) || ' ' || SUM(amount) || ' ' || SUM(bill_date) FROM bills WHERE org_id = @org
        """, new { org = orgId }), CancellationToken.None)).Order(StringComparer.Ordinal).ToArray();

    [Fact]
    public async Task a_bulk_load_that_hits_a_duplicate_key_keeps_none_of_its_rows()
    {
        // SQLite inserts several rows per statement (INSERT OR FAIL, so without a statement journal):
        // a failure part-way must still leave nothing, because the whole load is one transaction.
        var bills = new BulkTable("bills",
        [
            ("bill_id", BulkType.Bigint), ("org_id", BulkType.Bigint), ("store_id", BulkType.Bigint), ("bill_number", BulkType.Text),
            ("customer_id", BulkType.Bigint), ("amount", BulkType.Bigint), ("gross_amount", BulkType.Bigint), ("bill_date", BulkType.Bigint),
            ("source", BulkType.Text), ("event_id", BulkType.Bigint), ("created_at", BulkType.Bigint),
        ]);
        const long firstId = 9_000_000_000;
        var load = await db.Database.Dialect.OpenBulkLoadAsync(db.Database, [bills], CancellationToken.None);
        var error = await Should.ThrowAsync<Exception>(async () =>
        {
            await using (load)
            {
                var row = load[bills.Name];
                // 100 rows, then the 50th again: the duplicate lands in the middle of a statement's rows.
                foreach (var id in Enumerable.Range(0, 100).Append(50).Select(i => firstId + i))
                {
                    row.Start();
                    row.Long(id); row.Long(999_999); row.Long(1); row.Text("DUP" + id.ToString(CultureInfo.InvariantCulture)); row.Long(1);
                    row.Long(1000); row.Long(1000); row.Long(0); row.Text("INSTORE"); row.Long(1); row.Long(0);
                    row.End();
                }
                await load.CompleteAsync(CancellationToken.None);
            }
        });

        error.Message.ShouldContain("unique", Case.Insensitive);
        var kept = await db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM bills WHERE bill_id >= @firstId", new { firstId }), CancellationToken.None);
        kept.ShouldBe(0);
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
