using System.Globalization;
using System.Text.Json;
using Dapper;
using LoyaltyLedger.Lifecycle;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Lifecycle;

/// <summary>
/// A lifecycle run over many wallets issues their postings together, through group commit (the
/// postings of <see cref="LifecycleRun.PostingsInFlight"/> owners at once): each wallet is still
/// settled exactly once, one owner's postings (its points and its currency, two bills) run one after
/// another, and the run reports its conversions in the order their lots came due.
/// </summary>
public abstract class LifecycleRunBatchTests(DatabaseFixture db)
{
    private static readonly DateTimeOffset Jan1 = new(2025, 1, 1, 10, 0, 0, TimeSpan.Zero);

    /// <summary>More wallets than postings in flight, so the run fills its window more than once.</summary>
    protected const int Customers = LifecycleRun.PostingsInFlight * 2 + 5;

    /// <summary>Customers with a second bill a day later: two promised lots in one wallet.</summary>
    private const int TwoBills = 6;

    protected DatabaseFixture Db => db;

    /// <summary>
    /// Every customer has a promised bill of 100 (converting on Jan 15), the first few a second of 50
    /// (Jan 16); each bill earns points and as many Stars, each held in a lot of its own. The converted
    /// points and Stars expire 30 days after their conversion.
    /// </summary>
    protected async Task<(Tenant T, Shop Shop, List<long> Customers)> SetUpAsync()
    {
        db.Host.Clock.Set(Jan1);
        var t = await db.Host.NewTenantAsync();
        var expiry = new { kind = "DATE_EARNED", days = 30 };
        var program = await t.PostOkAsync("/v1/programs", new
        {
            name = "Batched", earnRate = "1", expiry, promisedDays = 14,
            currencies = new[] { new { name = "Stars", earnRate = "1", expiry } },
        });
        await t.PostOkAsync("/v1/stores", new { code = "store-1", name = "Store 1" });
        await t.PostOkAsync("/v1/tills", new { code = "till-1", storeCode = "store-1" });
        var shop = new Shop(program.GetProperty("programId").GetInt64(), "store-1", "till-1");
        var customers = new List<long>();
        for (var i = 0; i < Customers; i++)
        {
            var c = await t.NewCustomerAsync();
            customers.Add(c);
            await t.BillAsync(shop, c, $"B-{i}", 100m);
        }
        db.Host.Clock.Set(Jan1.AddDays(1));
        for (var i = 0; i < TwoBills; i++) await t.BillAsync(shop, customers[i], $"B-{i}-second", 50m);
        return (t, shop, customers);
    }

    private Task<JsonElement> ExpireAsync(Tenant t, int month, int day)
    {
        db.Host.Clock.Set(new DateTimeOffset(2025, month, day, 10, 0, 0, TimeSpan.Zero));
        return t.PostOkAsync("/v1/lifecycle/expire", new { });
    }

    [Fact]
    public async Task a_run_over_many_wallets_settles_each_once_and_reports_them_in_the_order_they_came_due()
    {
        var (t, shop, customers) = await SetUpAsync();

        var conversion = await ExpireAsync(t, 1, 20);
        conversion.GetProperty("conversions").GetInt32().ShouldBe(2 * (Customers + TwoBills));
        conversion.GetProperty("expiries").GetInt32().ShouldBe(0);
        // Bills were taken in order, and their promised lots come due in that order: the report keeps
        // it, whichever posting of the run committed first.
        var billIds = conversion.GetProperty("events").EnumerateArray().Select(e => e.GetProperty("billId").GetInt64()).ToList();
        billIds.ShouldBe(billIds.Order().ToList());
        billIds.Distinct().Count().ShouldBe(Customers + TwoBills);
        billIds.GroupBy(b => b).ShouldAllBe(bill => bill.Count() == 2);
        (await ExpireAsync(t, 1, 20)).GetProperty("conversions").GetInt32().ShouldBe(0);

        var lines = await LedgerProbe.LinesAsync(db.Database, t.OrgId, customers[0]);
        lines.Count(l => l.StartsWith("DelayedAccrual CREDIT REGULAR/", StringComparison.Ordinal)).ShouldBe(2);
        lines.Where(l => !l.Split(' ')[2].Contains('/')).ShouldBe([
            "TransactionAdd CREDIT PROMISED 100.000 = 100.000",
            "TransactionAdd CREDIT PROMISED 50.000 = 150.000",
            "DelayedAccrual DEBIT PROMISED 100.000 = 50.000",
            "DelayedAccrual CREDIT REGULAR 100.000 = 100.000",
            "DelayedAccrual DEBIT PROMISED 50.000 = 0.000",
            "DelayedAccrual CREDIT REGULAR 50.000 = 150.000",
        ]);
        (await t.BalanceAsync(customers[^1], shop.ProgramId)).ShouldBe(100_000);

        var expiry = await ExpireAsync(t, 3, 1);
        expiry.GetProperty("expiries").GetInt32().ShouldBe(2 * Customers);
        expiry.GetProperty("events").GetArrayLength().ShouldBe(2 * Customers);
        (await ExpireAsync(t, 3, 1)).GetProperty("expiries").GetInt32().ShouldBe(0);
        foreach (var c in customers)
        {
            (await t.BalanceAsync(c, shop.ProgramId)).ShouldBe(0);
            (await LedgerProbe.LinesAsync(db.Database, t.OrgId, c)).Count(l => l.StartsWith("PointsExpiry DEBIT REGULAR", StringComparison.Ordinal)).ShouldBe(2);
        }
        await LedgerProbe.AssertInvariantsAsync(db.Database, t.OrgId);
    }
}

public sealed class LifecycleRunBatchTestsOnSqlite(SqliteDatabase db) : LifecycleRunBatchTests(db), IClassFixture<SqliteDatabase>;

public sealed class LifecycleRunBatchTestsOnPostgres(PostgresDatabase db) : LifecycleRunBatchTests(db), IClassFixture<PostgresDatabase>
{
    /// <summary>
    /// Each outbox row records the (top-level) transaction that wrote it (<c>xact</c>, PostgreSQL's
    /// <c>pg_current_xact_id()</c>): expiries issued together go through the write lanes and share
    /// transactions, where each used to commit alone.
    /// </summary>
    [Fact]
    public async Task a_runs_expiries_share_transactions_through_the_write_lanes()
    {
        var (t, _, _) = await SetUpAsync();
        Db.Host.Clock.Set(new DateTimeOffset(2025, 1, 20, 10, 0, 0, TimeSpan.Zero));
        await t.PostOkAsync("/v1/lifecycle/expire", new { });
        Db.Host.Clock.Set(new DateTimeOffset(2025, 3, 1, 10, 0, 0, TimeSpan.Zero));
        (await t.PostOkAsync("/v1/lifecycle/expire", new { })).GetProperty("expiries").GetInt32().ShouldBe(2 * Customers);

        var transactions = await Db.Database.ReadAsync(c => c.QueryAsync<string>(
            "SELECT xact::text FROM outbox_events WHERE org_id = @org AND type = 'points.expired'", new { org = t.OrgId }), CancellationToken.None);
        var perTransaction = transactions.GroupBy(x => x).Select(g => g.Count()).ToList();
        perTransaction.Sum().ShouldBe(2 * Customers);
        perTransaction.Count.ShouldBeLessThan(2 * Customers,
            $"expiries per transaction: {string.Join(", ", perTransaction.Select(n => n.ToString(CultureInfo.InvariantCulture)))}");
    }
}
