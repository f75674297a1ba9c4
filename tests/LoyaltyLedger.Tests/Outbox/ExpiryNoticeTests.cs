using System.Text.Json;
using LoyaltyLedger.Lifecycle;
using LoyaltyLedger.Tests.Infrastructure;
using LoyaltyLedger.Tests.Readme;

namespace LoyaltyLedger.Tests.Outbox;

/// <summary>
/// points.expiring: sent by the lifecycle run for main points that expire within the program's
/// notice window, once per lot and window, never on every posting or every run.
/// </summary>
public abstract class ExpiryNoticeTests(DatabaseFixture db)
{
    private TestClock Clock => db.Host.Clock;

    private void At(int month, int day) => Clock.Set(new DateTimeOffset(2025, month, day, 10, 0, 0, TimeSpan.Zero));

    private async Task<(Tenant T, long ProgramId, long Customer)> SetUpAsync(object expiry, int? expiryNoticeDays = null)
    {
        At(1, 1);
        var t = await db.Host.NewTenantAsync();
        var program = await t.PostOkAsync("/v1/programs", new { name = "Expiring", earnRate = "1", expiry, expiryNoticeDays });
        var customer = await t.NewCustomerAsync();
        return (t, program.GetProperty("programId").GetInt64(), customer);
    }

    /// <summary>The expiry run's answer: how many notices it sent.</summary>
    private static async Task<int> RunAsync(Tenant t) =>
        (await t.PostOkAsync("/v1/lifecycle/expire", new { })).GetProperty("expiryNotices").GetInt32();

    private static async Task<List<JsonElement>> NoticesAsync(Tenant t) =>
        (await t.FeedAsync(types: "points.expiring")).Select(e => e.Data()).ToList();

    private static IEnumerable<string> Expiries(JsonElement notice) =>
        notice.GetProperty("expiries").EnumerateArray().Select(e => $"{e.GetProperty("points").GetString()} at {e.GetProperty("expiresAt").GetString()}");

    [Fact]
    public async Task each_lot_is_announced_once_when_it_comes_within_the_window_and_never_again_however_often_the_run_goes()
    {
        var (t, programId, customer) = await SetUpAsync(new { kind = "DATE_EARNED", days = 30 });
        await t.AwardAsync(customer, "100", programId: programId);   // due 31 Jan
        At(1, 10);
        await t.AwardAsync(customer, "50", programId: programId);    // due 9 Feb

        At(1, 16);
        (await RunAsync(t)).ShouldBe(0);
        At(1, 17);
        (await RunAsync(t)).ShouldBe(1, "31 Jan is 14 days away");
        (await RunAsync(t)).ShouldBe(0);
        At(1, 20);
        await t.AwardAsync(customer, "1", programId: programId);
        (await RunAsync(t)).ShouldBe(0);
        At(1, 26);
        (await RunAsync(t)).ShouldBe(1, "9 Feb is 14 days away");
        (await RunAsync(t)).ShouldBe(0);

        var notices = await NoticesAsync(t);
        notices.Count.ShouldBe(2);
        JsonPattern.Parse($$"""
            {"ownerType":"CUSTOMER","ownerId":{{customer}},"customerId":{{customer}},"programId":{{programId}},"category":"REGULAR",
             "points":"100.000","expiresAt":"2025-01-31T10:00:00.000Z","balance":"150.000","expiryType":"DATE_EARNED","noticeDays":14,
             "expiries":[{"expiresAt":"2025-01-31T10:00:00.000Z","points":"100.000"}]}
            """).Mismatch(notices[0], "data", new HashSet<string>()).ShouldBeNull();
        Expiries(notices[1]).ShouldBe(["50.000 at 2025-02-09T10:00:00.000Z"]);
        (await t.FeedAsync(types: "points.expiring")).Select(e => e.GetProperty("createdAt").GetString())
            .ShouldBe(["2025-01-17T10:00:00.000Z", "2025-01-26T10:00:00.000Z"]);
    }

    [Fact]
    public async Task a_rolling_extension_opens_a_new_window_and_the_moved_lots_are_announced_again_when_it_comes()
    {
        var (t, programId, customer) = await SetUpAsync(new { kind = "ROLLING", days = 30 });
        await t.AwardAsync(customer, "100", programId: programId);   // due 31 Jan
        At(1, 20);
        (await RunAsync(t)).ShouldBe(1);
        At(1, 21);
        await t.AwardAsync(customer, "20", programId: programId);    // activity: every lot now due 20 Feb
        (await RunAsync(t)).ShouldBe(0);
        At(2, 6);
        (await RunAsync(t)).ShouldBe(1);
        (await RunAsync(t)).ShouldBe(0);

        var notices = await NoticesAsync(t);
        notices.Select(n => n.GetProperty("points").GetString()).ShouldBe(["100.000", "120.000"]);
        Expiries(notices[1]).ShouldBe(["120.000 at 2025-02-20T10:00:00.000Z"]);
    }

    [Fact]
    public async Task a_whole_balance_is_announced_once_per_date_its_last_activity_makes_it_due()
    {
        var (t, programId, customer) = await SetUpAsync(new { kind = "WHOLE_BALANCE", days = 30 });
        await t.AwardAsync(customer, "100", programId: programId);   // the balance is due 31 Jan
        At(1, 18);
        (await RunAsync(t)).ShouldBe(1);
        (await RunAsync(t)).ShouldBe(0);
        At(1, 20);
        await t.AwardAsync(customer, "10", programId: programId);    // due 19 Feb now
        (await RunAsync(t)).ShouldBe(0);
        At(2, 6);
        (await RunAsync(t)).ShouldBe(1);

        var notices = await NoticesAsync(t);
        notices.Select(Expiries).ShouldBe([["100.000 at 2025-01-31T10:00:00.000Z"], ["110.000 at 2025-02-19T10:00:00.000Z"]]);
        notices.ShouldAllBe(n => n.GetProperty("expiryType").GetString() == "WHOLE_BALANCE");
    }

    [Fact]
    public async Task a_programs_notice_window_is_its_own_shown_on_the_program_and_zero_sends_none()
    {
        var (t, programId, customer) = await SetUpAsync(new { kind = "DATE_EARNED", days = 30 }, expiryNoticeDays: 3);
        var silent = (await t.PostOkAsync("/v1/programs", new { name = "Silent", earnRate = "1", expiry = new { kind = "DATE_EARNED", days = 30 }, expiryNoticeDays = 0 }))
            .GetProperty("programId").GetInt64();
        (await t.GetOkAsync($"/v1/programs/{programId}")).GetProperty("expiryNoticeDays").GetInt32().ShouldBe(3);
        (await t.GetOkAsync($"/v1/programs/{silent}")).GetProperty("expiryNoticeDays").GetInt32().ShouldBe(0);
        (await t.PostOkAsync("/v1/programs", new { name = "Default" })).GetProperty("expiryNoticeDays").GetInt32().ShouldBe(14);
        await t.AwardAsync(customer, "100", programId: programId);
        await t.AwardAsync(customer, "100", programId: silent);

        At(1, 27);
        (await RunAsync(t)).ShouldBe(0);
        At(1, 28);
        (await RunAsync(t)).ShouldBe(1);
        At(1, 30);
        (await RunAsync(t)).ShouldBe(0);
        (await NoticesAsync(t)).ShouldHaveSingleItem().GetProperty("noticeDays").GetInt32().ShouldBe(3);
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("3651")]
    [InlineData("\"14\"")]
    [InlineData("1.5")]
    public async Task a_notice_window_out_of_range_or_not_a_whole_number_is_refused(string days)
    {
        At(1, 1);
        var t = await db.Host.NewTenantAsync();
        using var response = await t.PostRawAsync("/v1/programs", $$"""{"name":"P","expiryNoticeDays":{{days}}}""");
        ((int)response.StatusCode).ShouldBe(400, await response.Content.ReadAsStringAsync());
        (await t.GetOkAsync("/v1/programs")).GetArrayLength().ShouldBe(0);
    }

    [Fact]
    public async Task two_runs_at_once_announce_a_lot_once()
    {
        var (t, programId, customer) = await SetUpAsync(new { kind = "DATE_EARNED", days = 30 });
        for (var i = 0; i < 5; i++) await t.AwardAsync(await t.NewCustomerAsync(), "10", programId: programId);
        await t.AwardAsync(customer, "10", programId: programId);
        At(1, 20);
        await using var second = db.OpenSecondInstance();
        var now = Clock.GetUtcNow();

        var runs = await Task.WhenAll(Enumerable.Range(0, 4).Select(i =>
            LifecycleRun.RunAsync(i % 2 == 0 ? db.Database : second, t.OrgId, now, now, "test", CancellationToken.None)));

        runs.Sum(r => r.ExpiryNotices).ShouldBe(6);
        (await NoticesAsync(t)).Select(n => n.GetProperty("ownerId").GetInt64()).Distinct().Count().ShouldBe(6);
        (await NoticesAsync(t)).Count.ShouldBe(6);
    }

    [Fact]
    public async Task points_already_spent_or_expired_are_not_announced()
    {
        var (t, programId, customer) = await SetUpAsync(new { kind = "DATE_EARNED", days = 30 });
        await t.AwardAsync(customer, "100", programId: programId);
        await t.PostOkAsync("/v1/redemptions", new { customerId = customer, points = "100", programId });
        At(1, 10);
        await t.AwardAsync(customer, "10", programId: programId);    // due 9 Feb
        At(2, 1);
        // 31 Jan is past: nothing of it left anyway; 9 Feb is within the window.
        (await RunAsync(t)).ShouldBe(1);
        Expiries((await NoticesAsync(t)).ShouldHaveSingleItem()).ShouldBe(["10.000 at 2025-02-09T10:00:00.000Z"]);
    }
}

public sealed class ExpiryNoticeTestsOnSqlite(SqliteDatabase db) : ExpiryNoticeTests(db), IClassFixture<SqliteDatabase>;

public sealed class ExpiryNoticeTestsOnPostgres(PostgresDatabase db) : ExpiryNoticeTests(db), IClassFixture<PostgresDatabase>;
