using System.Net;
using Dapper;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Ledger;

/// <summary>Balance-checked debits stay correct under parallel requests.</summary>
public abstract class ConcurrencyTests(DatabaseFixture db)
{
    [Fact]
    public async Task fifty_parallel_redemptions_of_ten_against_a_hundred_give_exactly_ten_successes_and_a_zero_balance()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var customer = await t.NewCustomerAsync();
        await t.AwardAsync(customer, "100");

        var attempts = Enumerable.Range(0, 50).Select(async i =>
        {
            using var response = await t.PostAsync("/v1/redemptions", new { customerId = customer, points = "10", programId = shop.ProgramId }, $"redeem-{i}");
            return response.StatusCode;
        });
        var statuses = await Task.WhenAll(attempts);

        statuses.Count(s => s == HttpStatusCode.Created).ShouldBe(10);
        statuses.Count(s => s == HttpStatusCode.UnprocessableEntity).ShouldBe(40);
        (await t.BalanceAsync(customer, shop.ProgramId)).ShouldBe(0);
    }

    /// <summary>
    /// Two server instances on one database (each with its own connection pool, caches and, on
    /// SQLite, its own group-commit writer), as two processes behind a proxy would be: their postings
    /// meet only in the database, which must still refuse every redemption beyond the balance.
    /// </summary>
    [Fact]
    public async Task fifty_parallel_redemptions_over_two_servers_never_overspend_and_bills_among_them_all_count()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(earnRate: "1");
        var customer = await t.NewCustomerAsync();
        await t.AwardAsync(customer, "100");
        await using var second = await TestServerHost.StartAsync(db.OpenSecondInstance());
        var other = t with { Http = second.Client(t.Key.KeyId, t.Key.Secret), Host = second };

        // 50 redemptions of 10 and 10 bills of 1 (each earning 1 point), alternating between the servers.
        var redemptions = Enumerable.Range(0, 50).Select(async i =>
        {
            using var response = await (i % 2 == 0 ? t : other).PostAsync("/v1/redemptions",
                new { customerId = customer, points = "10", programId = shop.ProgramId }, $"redeem-{i}");
            return response.StatusCode;
        }).ToList();
        var bills = Enumerable.Range(0, 10).Select(async i =>
        {
            using var response = await (i % 2 == 0 ? other : t).PostAsync("/v1/transactions",
                new { customerId = customer, billNumber = $"B-{i}", amount = 1m, storeCode = shop.StoreCode, tillCode = shop.TillCode, programId = shop.ProgramId },
                $"bill-{i}");
            return response.StatusCode;
        }).ToList();
        var redeemed = await Task.WhenAll(redemptions);
        (await Task.WhenAll(bills)).ShouldAllBe(s => s == HttpStatusCode.Created);

        // 100 points and 10 earned: 10 or 11 redemptions of 10 fit, depending on when the bills land.
        var granted = redeemed.Count(s => s == HttpStatusCode.Created);
        granted.ShouldBeInRange(10, 11);
        redeemed.Count(s => s == HttpStatusCode.UnprocessableEntity).ShouldBe(50 - granted);
        (await t.BalanceAsync(customer, shop.ProgramId)).ShouldBe(110_000 - granted * 10_000);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task parallel_replays_of_one_idempotency_key_post_once_and_are_audited_once()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(earnRate: "1");
        var customer = await t.NewCustomerAsync();

        var bodies = await Task.WhenAll(Enumerable.Range(0, 20).Select(async _ =>
        {
            using var response = await t.PostAsync("/v1/events", new { customerId = customer, eventName = "Promo", awards = new[] { new { points = "5" } } }, "same-key");
            response.StatusCode.ShouldBe(HttpStatusCode.Created);
            return await response.Content.ReadAsStringAsync();
        }));

        bodies.Distinct().Count().ShouldBe(1);
        (await t.BalanceAsync(customer, shop.ProgramId)).ShouldBe(5_000);
        // Replays write nothing, not even an audit record: the one write that posted has one.
        (await db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>(
            "SELECT COUNT(*) FROM write_audit WHERE org_id = @org AND idempotency_key = 'same-key'", new { org = t.OrgId }), CancellationToken.None)).ShouldBe(1);
    }

    [Fact]
    public async Task opposite_transfers_between_two_customers_in_parallel_do_not_deadlock_and_conserve_points()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var a = await t.NewCustomerAsync();
        var b = await t.NewCustomerAsync();
        await t.AwardAsync(a, "500");
        await t.AwardAsync(b, "500");

        var transfers = Enumerable.Range(0, 30).Select(async i =>
        {
            var (from, to) = i % 2 == 0 ? (a, b) : (b, a);
            using var response = await t.PostAsync("/v1/transfers", new { from = new { customerId = from }, to = new { customerId = to }, points = "7" });
            return response.StatusCode;
        });
        (await Task.WhenAll(transfers)).ShouldAllBe(s => s == HttpStatusCode.Created);

        ((await t.BalanceAsync(a, shop.ProgramId)) + (await t.BalanceAsync(b, shop.ProgramId))).ShouldBe(1_000_000);
    }
}

public sealed class ConcurrencyTestsOnSqlite(SqliteDatabase db) : ConcurrencyTests(db), IClassFixture<SqliteDatabase>;

public sealed class ConcurrencyTestsOnPostgres(PostgresDatabase db) : ConcurrencyTests(db), IClassFixture<PostgresDatabase>
{
    /// <summary>
    /// The API's postings of a write lane's batch run side by side (one round trip per round for
    /// all of them) when they touch different customers; every point still lands once, on the right
    /// wallet, and the ledger's invariants hold.
    /// </summary>
    [Fact]
    public async Task parallel_bills_and_redemptions_of_many_customers_run_side_by_side_and_every_point_lands_once()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(earnRate: "1");
        var customers = new List<long>();
        for (var i = 0; i < 20; i++)
        {
            var customer = await t.NewCustomerAsync();
            await t.AwardAsync(customer, "100");
            customers.Add(customer);
        }
        // One write lane: the requests waiting while it commits are its next batch.
        await using var database = db.OpenSecondInstance();
        database.UseWriteLanes(lanes: 1, maxBatch: 16);
        await using var host = await TestServerHost.StartAsync(database);
        var client = t with { Http = host.Client(t.Key.KeyId, t.Key.Secret), Host = host };
        var before = database.SideBySide!.Value;

        // Each customer's bill of 7 and then its redemption of 30; the customers all at once.
        var statuses = await Task.WhenAll(customers.Select(async (customer, i) =>
        {
            using var bill = await client.PostAsync("/v1/transactions",
                new { customerId = customer, billNumber = $"B-{i}", amount = 7m, storeCode = shop.StoreCode, tillCode = shop.TillCode, programId = shop.ProgramId },
                $"bill-{i}");
            using var redemption = await client.PostAsync("/v1/redemptions", new { customerId = customer, points = "30", programId = shop.ProgramId }, $"redeem-{i}");
            return (bill.StatusCode, redemption.StatusCode);
        }));

        statuses.ShouldAllBe(s => s.Item1 == HttpStatusCode.Created && s.Item2 == HttpStatusCode.Created);
        foreach (var customer in customers) (await t.BalanceAsync(customer, shop.ProgramId)).ShouldBe(77_000);
        (database.SideBySide!.Value.Ran - before.Ran).ShouldBeGreaterThan(0);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }
}
